"""lrnnet-bench: model-only latency and FPS by the LRNNet paper's protocol, for a .pth, .onnx or .engine."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from lrnnet.cli._common import (
    Parser,
    check_fp16_backend,
    count,
    image_side,
    json_output,
    make_parser,
    parse_size,
    positive_int,
    run_command,
    thread_count,
)
from lrnnet.limits import MAX_BENCH_ITERATIONS

PROG = "lrnnet-bench"



def build_parser() -> Parser:
    from lrnnet.runtime.benchmark import DEFAULT_ITERS, DEFAULT_WARMUP, SWEEP_SIZES

    sweep_default = " ".join(f"{h}x{w}" for h, w in SWEEP_SIZES)
    parser = make_parser(PROG, "Time the model alone by the LRNNet paper's protocol: batch 1, 1x3x512x1024, a random "
                               "input already on the device, warm-up then synchronised timed iterations; mean and "
                               "p50/p90/p99 latency and FPS, against the paper's 71 FPS on a GTX 1080Ti.")
    parser.add_argument("--model", type=Path, required=True, help="model file (.pth, .onnx, .engine)")
    parser.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"),
                        help="auto: by file type")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N; onnxruntime also tensorrt (default: a GPU when there is one)")
    parser.add_argument("--height", type=image_side, default=None,
                        help="input height (default 512, or a static export's own size)")
    parser.add_argument("--width", type=image_side, default=None,
                        help="input width (default 1024, or a static export's own size)")
    parser.add_argument("--batch", type=positive_int, nargs="+", default=[1], metavar="N",
                        help="batch size(s); more than one is a sweep (needs a .pth or a --dynamic export)")
    parser.add_argument("--sweep", type=parse_size, nargs="*", default=None, metavar="HxW",
                        help=f"time several input sizes (default {sweep_default}); needs a .pth or a --dynamic "
                             "export")
    parser.add_argument("--warmup", type=count(MAX_BENCH_ITERATIONS, minimum=0), default=DEFAULT_WARMUP,
                        help=f"untimed iterations first, 0..{MAX_BENCH_ITERATIONS:,}")
    parser.add_argument("--iters", type=count(MAX_BENCH_ITERATIONS), default=DEFAULT_ITERS,
                        help=f"timed iterations, 1..{MAX_BENCH_ITERATIONS:,}")
    parser.add_argument("--threads", type=thread_count, default=None,
                        help="CPU threads (torch intra-op / ONNX Runtime intra-op); default from the CPUs this process "
                             "may use (torch 1 and ONNX Runtime 2 on 2 CPUs: the line 'threads: ...' says it)")
    parser.add_argument("--fp16", action=argparse.BooleanOptionalAction, default=None,
                        help="torch on CUDA: FP16 autocast (default on CUDA); an ONNX's precision is in the graph")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="torch on CUDA or a TensorRT engine: replay a captured CUDA graph")
    parser.add_argument("--peak", action=argparse.BooleanOptionalAction, default=True,
                        help="CPU backends: also measure this machine's FP32 and u8s8 GEMM peaks (a few seconds, "
                             "the same threads) and print the achieved GFLOP/s (GOP/s for INT8) and the fraction "
                             "of the matching peak")
    parser.add_argument("--json", type=json_output, default=None, metavar="FILE", help="write the results as JSON")
    return parser


def _runner_options(args: argparse.Namespace, backend: str) -> dict:
    from lrnnet.errors import InputError

    options: dict = {}
    if args.cuda_graph and backend == "tensorrt":  # the engine runner captures its own graph
        options["cuda_graph"] = True
    elif args.cuda_graph and backend != "torch":
        raise InputError(f"--cuda-graph is for the torch and tensorrt backends, not {backend}")
    if args.fp16 is not None:
        check_fp16_backend("--fp16/--no-fp16", backend)
        options["fp16"] = args.fp16
    if args.threads is not None:
        if backend == "onnxruntime":
            options["threads"] = args.threads
        elif backend == "torch":
            import torch

            torch.set_num_threads(args.threads)
        else:
            raise InputError(f"--threads is for CPU backends (torch, onnxruntime), not {backend}")
    return options


def _body(args: argparse.Namespace) -> int:
    from lrnnet._io import check_input, preflight, write_json_atomic
    from lrnnet.engine.sidecar import model_files
    from lrnnet.errors import InputError
    from lrnnet.runtime.benchmark import (
        SWEEP_SIZES,
        TABLE_HEADER,
        BenchmarkOptions,
        add_peak_fraction,
        check_pixels,
        host_description,
        runner_threads,
        runs_on_cpu,
        sweep,
    )
    from lrnnet.runtime.factory import open_runner, resolve_backend
    from lrnnet.runtime.latency import PAPER_SETTING

    if (args.height is None) != (args.width is None):
        raise InputError("give both --height and --width (or neither: 512x1024)")
    if args.sweep is not None and args.height is not None:
        raise InputError("give either --height/--width or --sweep, not both")
    check_input(args.model, "model file")
    preflight(inputs=model_files(args.model), outputs=[args.json])
    backend = resolve_backend(args.model, args.backend)
    sizes = (args.sweep or list(SWEEP_SIZES)) if args.sweep is not None else \
        [None if args.height is None else (args.height, args.width)]
    check_pixels(sizes, args.batch)  # every combination, before a model is loaded or an input allocated

    with open_runner(args.model, backend=args.backend, device=args.device, **_runner_options(args, backend)) as runner:
        results = sweep(runner, sizes, args.batch, BenchmarkOptions(warmup=args.warmup, iters=args.iters,
                                                                     cuda_graph=args.cuda_graph and backend == "torch"),
                        model_name=str(args.model))
        peaks = None
        if args.peak and runs_on_cpu(runner):
            from lrnnet.log import timed_step
            from lrnnet.runtime.peak import measure_gemm_peaks

            with timed_step("Measuring this machine's GEMM peaks"):
                peaks = measure_gemm_peaks(runner_threads(runner))
            add_peak_fraction(results, runner, args.model, peaks)
    first = results[0]
    print(f"model: {args.model} ({first.backend}, {first.precision})")
    print(f"device: {first.device}")
    print(f"protocol: random input {'on the device' if first.input_on_device else 'on the host'} "
          f"({first.method}), {args.warmup} warm-up + {args.iters} timed iterations, synchronised")
    print(TABLE_HEADER)
    for result in results:
        print(result.row())
    if peaks is not None:
        print(f"{peaks.summary()}; 'achieved' counts 2 x multiply-adds of the model's convolutions and matrix "
              "products per image")
    for result in results:
        if result.batch == 1:
            print(f"vs paper ({result.size[0]}x{result.size[1]}): {result.paper_comparison()['note']}")
    if args.json is not None:
        write_json_atomic(args.json, {"model": str(args.model), "device": first.device, "host": host_description(),
                                      "reference": PAPER_SETTING, "runs": [r.to_dict() for r in results],
                                      **({"gemm_peaks": peaks.to_dict()} if peaks is not None else {})})
        print(f"report: {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(PROG, _body, build_parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
