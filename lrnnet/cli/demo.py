"""lrnnet-demo: the whole path (train, export, FP16/INT8 engines, eval, video, bench) in one command."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lrnnet.cli._common import Parser, make_parser, parse_size, positive_int, run_command

PROG = "lrnnet-demo"


def build_parser() -> Parser:
    from lrnnet.demo import DemoOptions

    defaults = DemoOptions()
    parser = make_parser(PROG, "Run lrnnet end to end: with no Cityscapes given, generate synthetic street scenes, "
                               "train briefly, export, build FP16 and INT8 engines, evaluate them side by side, "
                               "segment a street video and benchmark; each step prints the command it runs.")
    parser.add_argument("--workdir", type=Path, default=Path("demo"), metavar="DIR", help="where every artifact is written")
    parser.add_argument("--cityscapes", type=Path, default=None, metavar="ROOT",
                        help="a real Cityscapes root (leftImg8bit/, gtFine/) instead of synthetic scenes")
    parser.add_argument("--size", type=parse_size, default=defaults.size, metavar="HxW", help="network input HEIGHTxWIDTH")
    parser.add_argument("--train-iters", type=positive_int, default=defaults.train_iters, metavar="N", help="training iterations")
    parser.add_argument("--train-images", type=positive_int, default=defaults.train_images, metavar="N",
                        help="synthetic training scenes")
    parser.add_argument("--video-frames", type=positive_int, default=defaults.video_frames, metavar="N",
                        help="frames of the synthetic video")
    parser.add_argument("--quick", action="store_true", help="a tiny run (seconds; for tests): few images and iterations")
    return parser


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import check_writable, refuse_overwrite
    from lrnnet.demo import DemoOptions, run_demo

    refuse_overwrite(inputs=[args.cityscapes], outputs=[args.workdir])
    check_writable(args.workdir, directory=True, make_parents=True)  # before the first step (lrnnet._io)
    if args.quick:
        options = DemoOptions(workdir=args.workdir, cityscapes=args.cityscapes, size=(64, 128), scene_size=(64, 128),
                              train_images=8, train_iters=4, batch=2, calib_images=4, video_frames=6, bench_iters=3,
                              paper_bench_iters=1)
    else:
        options = DemoOptions(workdir=args.workdir, cityscapes=args.cityscapes, size=args.size,
                              train_iters=args.train_iters, train_images=args.train_images,
                              video_frames=args.video_frames)
    run_demo(options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    # Each step commits its own artifacts (a step is one command), so a failed step keeps the earlier ones.
    return run_command(PROG, _body, build_parser(), argv, all_or_nothing=False)


if __name__ == "__main__":
    raise SystemExit(main())
