"""lrnnet-eval: mIoU of a model (any backend, any precision) on a Cityscapes split, or of several side by side."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrnnet.cli._common import (
    Parser,
    check_fp16_backend,
    count,
    json_output,
    make_parser,
    parse_size,
    positive_int,
    run_command,
    thread_count,
)
from lrnnet.limits import MAX_IMAGES

if TYPE_CHECKING:
    from lrnnet.eval import EvalReport

PROG = "lrnnet-eval"


def build_parser() -> Parser:
    parser = make_parser(PROG, "Evaluate segmentation accuracy (mIoU, per-class IoU, pixel accuracy) on a Cityscapes "
                               "split, with the official Cityscapes conventions, for a .pth, .onnx or .engine.")
    models = parser.add_mutually_exclusive_group(required=True)
    models.add_argument("--model", type=Path, help="the model to evaluate (.pth, .onnx, .engine)")
    models.add_argument("--compare", type=Path, nargs="+", metavar="MODEL",
                        help="evaluate several models in one run and print the accuracy drop of each against the "
                             "first (e.g. lrnnet.pth lrnnet.onnx lrnnet_fp16.onnx lrnnet_int8.onnx)")
    parser.add_argument("--data", type=Path, required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    parser.add_argument("--split", default="val", choices=("train", "val"), help="labelled split to evaluate")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"),
                        help="auto: by file type")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: a GPU when there is one)")
    parser.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                        help="model input size; default: the export's own size (a .pth runs at the size of the "
                             "first static export compared, else at lrnnet-export's default for it: the size it was "
                             "validated at, else 512x1024); the output line says which")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help="CPU threads for torch and ONNX Runtime (default: from the CPUs this process may use, "
                             "said in the line 'threads: ...')")
    parser.add_argument("--fp16", action="store_true",
                        help="run a .pth under FP16 autocast (CUDA only); by default it is the FP32 reference. An "
                             "export's precision is in its graph: --fp16 with no .pth is refused")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per inference call")
    parser.add_argument("--limit", type=count(MAX_IMAGES), default=None,
                        help="only the first N images (a quick look; not a comparable score)")
    parser.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                        help="write labelIds PNGs ({city}_{seq}_{frame}_pred_labelIds.png) for the official "
                             "cityscapesscripts evaluation; one subfolder per model with --compare")
    parser.add_argument("--json", type=json_output, default=None, metavar="FILE", help="write the report as JSON")
    return parser


def _prediction_dir(root: Path | None, index: int, model: Path, several: bool) -> Path | None:
    if root is None or not several:
        return root
    return root / f"{index}_{model.stem}"


def _runner_options(model: Path, args: argparse.Namespace) -> dict:
    """Per-backend options. A .pth is the FP32 reference unless --fp16 (torch would autocast on CUDA).
    ONNX Runtime takes its thread count per session; torch's is process-wide (set once in _body)."""
    from lrnnet.runtime.factory import resolve_backend

    chosen = resolve_backend(model, args.backend)
    if chosen == "torch":
        return {"fp16": args.fp16}
    return {"threads": args.threads} if args.threads is not None and chosen == "onnxruntime" else {}


def _check_runners(runners: list, models: list[Path], dataset: Any, args: argparse.Namespace) -> None:
    """InputError unless every runner has the first one's input size and the data's classes, and a batch
    of the images to evaluate fits lrnnet.limits at that size."""
    from lrnnet.errors import InputError
    from lrnnet.eval import check_classes
    from lrnnet.limits import pixels_problem

    first = runners[0].info
    for model, runner in zip(models, runners):
        if runner.info.input_size != first.input_size:
            raise InputError(f"{model} runs at {runner.info.input_height}x{runner.info.input_width} but "
                             f"{models[0]} runs at {first.input_height}x{first.input_width}; pass --size "
                             "to compare at one size")
        check_classes(runner, dataset)
    images = min(args.batch, len(dataset), args.limit or args.batch)
    problem = pixels_problem(images, first.input_height, first.input_width)
    if problem is not None:
        raise InputError(f"--batch {args.batch}: {problem}")


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import check_input, preflight, write_json_atomic
    from lrnnet.data import CityscapesDataset
    from lrnnet.engine.sidecar import model_files
    from lrnnet.errors import InputError
    from lrnnet.eval import ChosenSize, check_sizes, common_size, comparison, drop_table
    from lrnnet.runtime.factory import resolve_backend

    models: list[Path] = list(args.compare) if args.compare else [args.model]
    preflight(inputs=[*(f for model in models for f in model_files(model)), args.data], outputs=[args.json],
              folders=[args.save_predictions])
    if args.compare is not None and len(models) < 2:
        raise InputError("--compare needs at least two models (the first is the reference)")
    for model in models:
        check_input(model, "model file")
    if args.fp16:  # with --compare it applies to the .pth models; each row of the table says its precision
        backends = [resolve_backend(model, args.backend) for model in models]
        check_fp16_backend("--fp16", "torch" if "torch" in backends else backends[0])
    dataset = CityscapesDataset(args.data, args.split)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    chosen = ChosenSize(args.size, "--size") if args.size else common_size(models, args.backend)
    size = chosen.size if chosen else None
    size_why = chosen.why if chosen else "the model's own size"
    check_sizes(models, size, args.backend)  # fail before the first model runs, not after

    # The predictions folder is one output, committed as a whole once every model has run (lrnnet._io):
    # a rerun replaces its own earlier folder, and a folder lrnnet did not write is never touched.
    with _predictions_folder(args.save_predictions) as predictions:
        reports = _evaluate_all(models, args, dataset, size, size_why, predictions)
    several = args.compare is not None
    if several:
        print()
        print(drop_table(reports))
    if args.json is not None:
        write_json_atomic(args.json, comparison(reports) if several else reports[0].to_dict())
        print(f"report: {args.json}")
    if args.save_predictions is not None:
        print(f"predictions (labelIds, official format): {args.save_predictions}")
    return 0


def _predictions_folder(folder: Path | None) -> contextlib.AbstractContextManager[Path | None]:
    from lrnnet._io import atomic_output

    return contextlib.nullcontext() if folder is None else atomic_output(folder, directory=True)


def _evaluate_all(models: list[Path], args: argparse.Namespace, dataset: Any, size: tuple[int, int] | None,
                  size_why: str, predictions: Path | None) -> list[EvalReport]:
    from lrnnet.eval import evaluate, open_at_size

    several = args.compare is not None
    reports: list[EvalReport] = []
    with contextlib.ExitStack() as opened:
        # Every model opened and checked against the others and the data before any is evaluated: a
        # mismatch is refused at once, not after the first model's whole split.
        runners = [opened.enter_context(open_at_size(model, size, backend=args.backend, device=args.device,
                                                     **_runner_options(model, args))) for model in models]
        _check_runners(runners, models, dataset, args)
        for index, (model, runner) in enumerate(zip(models, runners)):
            report = evaluate(runner, dataset, batch_size=args.batch, limit=args.limit, model_name=str(model),
                              save_predictions=_prediction_dir(predictions, index, model, several),
                              desc=f"Evaluating {model.name}")
            reports.append(report)
            height, width = report.input_size
            print(f"{report.model}: {report.backend} {report.precision} on {report.device}, input {height}x{width} "
                  f"({size_why}), {report.images} {args.split} images, {report.seconds:.1f} s")
            if not several:
                print(report.table())
    return reports


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _body, build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
