"""lrnnet-infer: segment a video, an image folder or a camera, and report whether it runs in real time."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lrnnet.cli._common import (
    Parser,
    make_parser,
    non_negative_int,
    positive_float,
    positive_int,
    run_command,
)
from lrnnet.errors import InputError

PROG = "lrnnet-infer"


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{text}'") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got '{text}'")
    return value




def build_parser() -> Parser:
    from lrnnet.runtime.factory import BACKENDS
    from lrnnet.runtime.latency import PAPER_FPS
    from lrnnet.runtime.video import OUTPUT_KINDS

    parser = make_parser(PROG, "Segment a video file, an image folder (e.g. Cityscapes demoVideo), a camera index "
                               "or a stream URL; write the result and a latency report against the target FPS.")
    parser.add_argument("source", help="video file, image folder, camera index (0) or URL (rtsp://...)")
    parser.add_argument("--model", type=Path, default=None,
                        help="lrnnet .engine, .onnx or .pth (default: the newest built engine here, "
                             "else lrnnet.engine, else lrnnet.onnx)")
    parser.add_argument("-o", "--out", type=Path, default=None,
                        help="output video (default <source>_seg.mp4), or folder for --output labels "
                             "(default <source>_labels/)")
    parser.add_argument("--backend", choices=("auto", *BACKENDS), default="auto",
                        help="auto: by file type (.engine TensorRT, .onnx ONNX Runtime, .pth PyTorch)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (onnxruntime also: tensorrt); "
                                                       "default the best available")
    parser.add_argument("--size", default=None, help="model input HEIGHTxWIDTH for a .pth (default 512x1024); "
                                                     "exported models carry their own")
    parser.add_argument("--output", choices=OUTPUT_KINDS, default="overlay",
                        help="overlay: colours over the frame; mask: colours only; labels: one lossless "
                             "trainId PNG per frame")
    parser.add_argument("--alpha", type=_alpha, default=0.5, help="overlay opacity of the class colours")
    parser.add_argument("--report", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument("--target-fps", type=positive_float, default=PAPER_FPS,
                        help="real-time target (the LRNNet paper: 71 FPS on a GTX 1080Ti)")
    parser.add_argument("--max-frames", type=positive_int, default=None, help="stop after N frames")
    parser.add_argument("--warmup", type=non_negative_int, default=2,
                        help="untimed inferences before the first frame")
    parser.add_argument("--fps", type=positive_float, default=None,
                        help="output frame rate (default the source's; 17 for image folders)")
    return parser


def default_model(directory: Path = Path(".")) -> Path:
    """The newest built engine in `directory` that can run here, else lrnnet.engine, else lrnnet.onnx."""
    from lrnnet.engine.device import tensorrt_version
    from lrnnet.engine.sidecar import find_newest_engine
    from lrnnet.log import logger

    trt_usable = tensorrt_version() is not None
    candidates: list[tuple[Path, str]] = []
    # Without TensorRT only the ONNX Runtime engines (lrnnet_<precision>.onnx) can run here.
    newest = find_newest_engine(directory, backends=None if trt_usable else {"onnxruntime"})
    if newest is not None:
        candidates.append((Path(newest), "the newest built engine here"))
    candidates += [(directory / "lrnnet.engine", "default"), (directory / "lrnnet.onnx", "default")]
    for path, why in candidates:
        if not path.is_file():
            continue
        if path.suffix == ".engine" and not trt_usable:
            logger.info("Found %s, but TensorRT is not installed here: looking for an ONNX model", path)
            continue
        print(f"Model: {path} ({why})")
        return path
    raise InputError("no model given and none found here (lrnnet.engine, lrnnet.onnx): pass --model, "
                     "or run lrnnet-export and lrnnet-build-engine first")


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import preflight, write_json_atomic
    from lrnnet.cli._common import parse_size
    from lrnnet.runtime.factory import open_runner
    from lrnnet.runtime.sources import open_source, quiet_video_logs
    from lrnnet.runtime.video import PipelineOptions, format_report, run_video

    options = PipelineOptions(output_kind=args.output, alpha=args.alpha, max_frames=args.max_frames,
                              warmup=args.warmup, fps=args.fps, target_fps=args.target_fps)
    quiet_video_logs()
    preflight(inputs=[args.model, args.source if Path(args.source).exists() else None],
              outputs=[args.report, None if args.output == "labels" else args.out],
              folders=[args.out if args.output == "labels" else None])
    source = open_source(args.source)  # first: a bad source fails before a model is loaded
    try:
        model = args.model if args.model is not None else default_model()
        runner_options = {}
        if args.size is not None:
            if model.suffix.lower() not in (".pth", ".pt"):
                raise InputError(f"--size is for .pth checkpoints; {model} carries its own input size")
            try:
                runner_options["size"] = parse_size(args.size)
            except argparse.ArgumentTypeError as exc:
                raise InputError(str(exc)) from None
        with open_runner(model, backend=args.backend, device=args.device, **runner_options) as runner:
            report = run_video(runner, source, args.out, options)
    finally:
        source.close()
    print(format_report(report))
    if args.report is not None:
        write_json_atomic(args.report, report)
        print(f"Report: {args.report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _body, build_parser(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
