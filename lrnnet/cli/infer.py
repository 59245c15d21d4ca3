"""lrnnet-infer: segment a video, an image folder or a camera, and report whether it runs in real time."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lrnnet.cli._common import (
    Parser,
    count,
    error_line,
    json_output,
    make_parser,
    output_fps,
    positive_float,
    run_command,
    stream_timeout,
)
from lrnnet.errors import InputError
from lrnnet.limits import MAX_BENCH_ITERATIONS, MAX_FRAMES, MAX_WORKERS

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
    from lrnnet.runtime.sources import STREAM_TIMEOUT_S
    from lrnnet.runtime.video import OUTPUT_KINDS

    parser = make_parser(PROG, "Segment a video file, an image folder (e.g. Cityscapes demoVideo), a camera index "
                               "or a stream URL; write the result and a latency report against the target FPS.")
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="video file, image folder, camera index (0) or URL (rtsp://...); several video "
                             "files or folders, or a .txt list of them (one a line, # comments), run as one "
                             "batch job on Ray (see --output-dir, --workers, --ray-address)")
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
    parser.add_argument("--size", default=None, help="model input HEIGHTxWIDTH for a .pth (default: the size it was "
                                                     "validated at, else 512x1024); exported models carry their own")
    parser.add_argument("--output", choices=OUTPUT_KINDS, default="overlay",
                        help="overlay: colours over the frame; mask: colours only; labels: one lossless "
                             "trainId PNG per frame")
    parser.add_argument("--alpha", type=_alpha, default=0.5, help="overlay opacity of the class colours")
    parser.add_argument("--report", type=json_output, default=None, help="write the report as JSON here")
    parser.add_argument("--target-fps", type=positive_float, default=PAPER_FPS,
                        help="real-time target (the LRNNet paper: 71 FPS on a GTX 1080Ti)")
    parser.add_argument("--max-frames", type=count(MAX_FRAMES), default=None, help="stop after N frames")
    parser.add_argument("--warmup", type=count(MAX_BENCH_ITERATIONS, minimum=0), default=2,
                        help="untimed inferences before the first frame")
    parser.add_argument("--fps", type=output_fps, default=None,
                        help="output frame rate (default the source's; 17 for image folders)")
    parser.add_argument("--timeout", type=stream_timeout, default=STREAM_TIMEOUT_S, metavar="S",
                        help="a stream URL that sends nothing for S seconds, opening or between frames, fails")
    batch = parser.add_argument_group("many sources (Ray; pip install 'lrnnet[ray]')")
    batch.add_argument("--output-dir", type=Path, default=None,
                       help="folder of the outputs, one per source named from it (<stem>_seg.mp4 or "
                            "<stem>_labels/, with a <output>.json done-marker); its parent must exist. "
                            "With --ray-address it must be storage every node sees at the same path")
    batch.add_argument("--workers", type=count(MAX_WORKERS), default=None,
                       help="Ray actors, each holding one loaded model (default 2); threads per actor are "
                            "the cores divided among them")
    batch.add_argument("--ray-address", default=None,
                       help="run on this Ray cluster (HOST:PORT of `ray start --head`, ray://HOST:PORT or "
                            "auto); default: a local Ray started for this run")
    batch.add_argument("--pin-cpus", action="store_true",
                       help="pin each Ray actor to its own CPUs (Linux; unpinned when too few are free)")
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
    from lrnnet.engine.sidecar import model_files
    from lrnnet.runtime.factory import open_runner
    from lrnnet.runtime.sources import open_source, quiet_video_logs
    from lrnnet.runtime.video import PipelineOptions, format_report, resolve_output, run_video

    options = PipelineOptions(output_kind=args.output, alpha=args.alpha, max_frames=args.max_frames,
                              warmup=args.warmup, fps=args.fps, target_fps=args.target_fps)
    quiet_video_logs()
    preflight(inputs=[*model_files(args.model), args.source if Path(args.source).exists() else None],
              outputs=[args.report, None if args.output == "labels" else args.out],
              folders=[args.out if args.output == "labels" else None])
    source = open_source(args.source, timeout_s=args.timeout)  # first: a bad source fails before a model is loaded
    try:
        output = resolve_output(source, args.out, args.output)  # and so does an output that cannot be written
        model = args.model if args.model is not None else default_model()
        runner_options = model_size_options(model, args.size)
        with open_runner(model, backend=args.backend, device=args.device, **runner_options) as runner:
            report = run_video(runner, source, output, options)
    finally:
        source.close()
    print(format_report(report))
    if args.report is not None:
        write_json_atomic(args.report, report)
        print(f"Report: {args.report}")
    if report["damage"]:
        # Returned, not raised: the output keeps the frames that decoded (and the report stays), said as bad input.
        return error_line(PROG, f"{report['source']}: {report['damage']}; {report['output']} keeps the "
                                f"{report['frames']} that decoded")
    return 0


def _is_batch(args: argparse.Namespace) -> bool:
    """Several sources, a list file, or a Ray setting: the batch job. One source: the single-process path."""
    from lrnnet.runtime.batch import LIST_SUFFIXES

    listed = any(Path(s).suffix.lower() in LIST_SUFFIXES and not Path(s).is_dir() for s in args.sources)
    return len(args.sources) > 1 or listed or args.workers is not None or args.ray_address is not None


def _dispatch(args: argparse.Namespace) -> int:
    if _is_batch(args):
        return _batch_body(args)
    args.source = args.sources[0]
    if args.output_dir is None:
        return _body(args)
    # One source into a folder: the name a batch run would give it, the folder made as a batch run makes it.
    from lrnnet.runtime.batch import check_output_dir, make_output_dir, output_name

    if args.out is not None:
        raise InputError("give -o/--out or --output-dir, not both")
    check_output_dir(args.output_dir)
    args.out = args.output_dir / output_name(args.source, args.output)
    created = make_output_dir(args.output_dir)
    try:
        return _body(args)
    finally:
        if created and not any(args.output_dir.iterdir()):  # it failed: no empty folder left behind
            args.output_dir.rmdir()


def _batch_body(args: argparse.Namespace) -> int:
    from lrnnet._io import write_json_atomic
    from lrnnet.runtime.batch import BatchOptions, format_batch_summary, run_batch
    from lrnnet.runtime.sources import quiet_video_logs
    from lrnnet.runtime.video import PipelineOptions

    if args.out is not None:
        raise InputError("-o/--out names the output of one source; give several sources --output-dir")
    if args.output_dir is None:
        raise InputError("several sources need --output-dir (the folder of their outputs)")
    quiet_video_logs()
    model = args.model if args.model is not None else default_model()
    runner_options = model_size_options(model, args.size)
    pipeline = PipelineOptions(output_kind=args.output, alpha=args.alpha, max_frames=args.max_frames,
                               warmup=args.warmup, fps=args.fps, target_fps=args.target_fps)
    options = BatchOptions(workers=args.workers or 2, ray_address=args.ray_address, backend=args.backend,
                           device=args.device, runner_options=runner_options, pipeline=pipeline,
                           pin_cpus=args.pin_cpus)
    report = run_batch(args.sources, model, args.output_dir, options,
                       also_writes=[args.report] if args.report is not None else [])
    print(format_batch_summary(report))
    if args.report is not None:
        write_json_atomic(args.report, report)
        print(f"Report: {args.report}")
    total = report["sources_total"]
    problems = [f"{report['failed']} of {total} sources failed"] * bool(report["failed"]) + \
        [f"{report['damaged']} of {total} sources are damaged (their outputs keep the frames that decoded)"] * \
        bool(report["damaged"])
    if problems:
        # Returned, not raised: the outputs of the sources that worked (and the report) stay committed.
        rerun = "a rerun retries the failed ones and skips the rest" if report["failed"] and report["damaged"] else \
            "a rerun retries them and skips the rest" if report["failed"] else "a rerun skips them and says so again"
        return error_line(PROG, f"{'; '.join(problems)} (listed above); {rerun}")
    return 0


def model_size_options(model: Path, size_text: str | None) -> dict[str, Any]:
    """The runner's size option for `model`, the one rule of both paths (one source, a batch): --size for a .pth;
    without it the size the checkpoint was validated at, else 512x1024 (`default_export_size`, as lrnnet-export
    and lrnnet-eval pick it), said in one line; {} for an exported model, which carries its own."""
    from lrnnet.cli._common import parse_size
    from lrnnet.runtime.factory import MODEL_SUFFIXES

    is_checkpoint = MODEL_SUFFIXES.get(model.suffix.lower()) == "torch"
    if size_text is not None:
        if not is_checkpoint:
            raise InputError(f"--size is for .pth checkpoints; {model} carries its own input size")
        try:
            return {"size": parse_size(size_text)}
        except argparse.ArgumentTypeError as exc:
            raise InputError(str(exc)) from None
    if not is_checkpoint or not model.is_file():  # a missing model: open_runner (or the batch's check) says so
        return {}
    from lrnnet.export.onnx import export_size_of

    size, recorded = export_size_of(model)
    why = "the size it was validated at" if recorded else "it records no validation size"
    print(f"Size: {size[0]}x{size[1]} ({why}; --size sets another)")
    return {"size": size}


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _dispatch, build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
