"""lrnnet-demo: the whole path (train, export, FP16/INT8 engines, eval, video, bench) in one command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrnnet.cli._common import Parser, count, make_parser, parse_size, run_command
from lrnnet.limits import MAX_FRAMES, MAX_IMAGES, MAX_TRAIN_STEPS

if TYPE_CHECKING:
    from lrnnet.demo import DemoOptions

PROG = "lrnnet-demo"
# --quick: the path in seconds, at a tiny size (the test suite runs it).
QUICK: dict[str, Any] = {"size": (64, 128), "train_images": 8, "train_iters": 4, "batch": 2, "calib_images": 4,
                         "video_frames": 6, "bench_iters": 3, "paper_bench_iters": 1}


def build_parser() -> Parser:
    from lrnnet.demo import DemoOptions

    defaults = DemoOptions()
    parser = make_parser(PROG, "Run lrnnet end to end: with no Cityscapes given, generate synthetic street scenes, "
                               "train briefly, export, build FP16 and INT8 engines, evaluate them side by side, "
                               "segment a street video and benchmark; each step prints the command it runs.")
    parser.add_argument("--workdir", type=Path, default=Path("demo"), metavar="DIR", help="where every artifact is written")
    parser.add_argument("--cityscapes", type=Path, default=None, metavar="ROOT",
                        help="a real Cityscapes root (leftImg8bit/, gtFine/) instead of synthetic scenes")
    quick = DemoOptions(**QUICK)
    # Defaults None: an option given beside --quick wins over its preset, so it must be told from a default.
    parser.add_argument("--size", type=parse_size, metavar="HxW",
                        help=f"network input HEIGHTxWIDTH, multiples of 16 (default: {_size(defaults.size)}; "
                             f"{_size(quick.size)} with --quick)")
    parser.add_argument("--train-iters", type=count(MAX_TRAIN_STEPS), metavar="N",
                        help=f"training iterations (default: {defaults.train_iters}; {quick.train_iters} with --quick)")
    parser.add_argument("--train-images", type=count(MAX_IMAGES), metavar="N",
                        help=f"synthetic training scenes (default: {defaults.train_images}; "
                             f"{quick.train_images} with --quick)")
    parser.add_argument("--video-frames", type=count(MAX_FRAMES), metavar="N",
                        help=f"frames of the synthetic video (default: {defaults.video_frames}; "
                             f"{quick.video_frames} with --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny run (seconds; for tests): few images and iterations, at 64x128; the options "
                             "above, given beside it, win over its presets")
    return parser


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """--quick's presets (else the defaults), then every option the user gave: explicit options win."""
    from lrnnet.demo import DemoOptions

    given = {name: getattr(args, name) for name in ("size", "train_iters", "train_images", "video_frames")
             if getattr(args, name) is not None}
    chosen = {**(QUICK if args.quick else {}), **given}
    if args.quick:
        chosen["scene_size"] = chosen["size"]  # quick scenes are made at the network size: nothing to resize
    return DemoOptions(workdir=args.workdir, cityscapes=args.cityscapes, **chosen)


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import check_writable, refuse_overwrite
    from lrnnet.demo import StepFailed, run_demo

    refuse_overwrite(inputs=[args.cityscapes], outputs=[args.workdir])
    # Before the first step. Not `writes_into`: its outputs have common names (street.mp4, accuracy.json), so a
    # folder of the user's is refused like any folder output; one the demo made (run_demo marks it) is written again.
    check_writable(args.workdir, directory=True, make_parents=True, what="--workdir")
    try:
        run_demo(options_from_args(args))
    except StepFailed as failed:  # the step's command printed the one error line: no second one
        return failed.status
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Each step commits its own artifacts (a step is one command), so a failed step keeps the earlier ones.
    return run_command(PROG, _body, build_parser, argv, all_or_nothing=False)


if __name__ == "__main__":
    raise SystemExit(main())
