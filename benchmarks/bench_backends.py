"""Every available backend and precision side by side, in one process, by the paper's speed protocol.

Runs, on the same random device-resident input (lrnnet.runtime.benchmark):

* PyTorch eager FP32 on the CPU (power-iteration SVD, the exported form) and, for the SVN ratio,
  the same weights with the exact SVD (torch.linalg.svd);
* ONNX Runtime FP32, FP16 and INT8 graphs, built here from the model through the library
  (lrnnet.export.export_onnx, lrnnet.engine.build_engine) unless given; the INT8 graph is calibrated
  on --calib-data, or on a few synthetic street scenes written for the purpose;
* with a CUDA GPU: PyTorch CUDA FP32, FP16 autocast, and both as CUDA-graph replays; ONNX Runtime
  on the CUDA provider when onnxruntime-gpu is installed;

then prints the ratios (ONNX Runtime FP32 vs PyTorch eager, FP16 and INT8 vs FP32, power iteration
vs exact SVD), the parameter count and the GFLOPs (torch.utils.flop_counter, a multiply-add = 2),
and, for every CPU configuration, the achieved GFLOP/s (GOP/s for INT8) and its fraction of this
machine's FP32 or u8s8 GEMM peak, measured right after the timing with the same threads
(lrnnet.runtime.peak; --no-peak skips it).

Configurations are timed round-robin (--rounds), so a load change on a shared machine hits every
one alike and the ratios stay meaningful; absolute CPU times mean little (the paper's 71 FPS is a
GTX 1080Ti figure).

    .venv/bin/python benchmarks/bench_backends.py [--checkpoint model.pth] [--height 512 --width 1024]
        [--warmup 50 --iters 100 --rounds 5] [--threads N] [--onnx fp32.onnx --fp16-onnx .. --int8-onnx ..]
        [--calib-data CITYSCAPES_ROOT] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lrnnet._io import write_json_atomic
from lrnnet.cli._common import json_output
from lrnnet.log import logger, set_progress, setup_logging
from lrnnet.runtime.benchmark import (
    TABLE_HEADER,
    BenchmarkOptions,
    BenchmarkResult,
    add_peak_fraction,
    benchmark,
    host_description,
)
from lrnnet.runtime.latency import PAPER_INPUT_SIZE, PAPER_SETTING, summarize_latency


@dataclass
class Config:
    label: str
    runner: Any
    options: BenchmarkOptions
    results: list[BenchmarkResult]


def build_model(checkpoint: Path | None, size: tuple[int, int], svd: str) -> torch.nn.Module:
    """The checkpoint's LRNNet, or a seeded random one with BatchNorm set on synthetic scenes."""
    from lrnnet.models import LRNNet, load_checkpoint

    if checkpoint is not None:
        return load_checkpoint(checkpoint, svd=svd)
    from lrnnet.data.preprocess import preprocess_batch
    from lrnnet.data.synthetic import SceneLayout, render_scene

    torch.manual_seed(0)
    model = LRNNet(num_classes=19, svd=svd)
    # Random BatchNorm statistics make activations drift block after block; set them on street scenes
    # so the SVN's regions look like a trained network's (the power method's speed does not depend on
    # it, its agreement with the exact SVD does).
    rng = np.random.default_rng(0)
    frames = [render_scene(SceneLayout.random(rng), size)[0] for _ in range(2)]
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(preprocess_batch(frames, size)))
    return model.eval()


def count_flops(model: torch.nn.Module, size: tuple[int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 3, *size))
    return float(counter.get_total_flops())


def calibration_root(args: argparse.Namespace, size: tuple[int, int], work: Path) -> Path:
    """--calib-data, or synthetic scenes written once for the purpose."""
    if args.calib_data is not None:
        return args.calib_data
    from lrnnet.data.synthetic import write_synthetic_cityscapes

    root = work / "calib"
    if not root.exists():
        write_synthetic_cityscapes(root, size=size, counts={"train": args.calib_images}, cities=2, seed=1)
    return root


def build_precision(fp32: Path, precision: str, backend: str, output: Path, args: argparse.Namespace,
                    size: tuple[int, int], work: Path, missing: list[str]) -> Path | None:
    """One engine built from the FP32 export with the library's builder; None (and a line in `missing`) on failure."""
    from lrnnet.calib.int8 import Int8Options
    from lrnnet.engine.build import BuildOptions, build_engine

    try:
        calib = calibration_root(args, size, work) if precision == "int8" else None
        result = build_engine(BuildOptions(onnx=fp32, precision=precision, backend=backend, output=output,
                                           calib_data=calib,
                                           int8=Int8Options(images=args.calib_images) if calib else Int8Options()))
        if result.engine is None:  # a TensorRT target without TensorRT: only its TensorRT-ready graph was written
            missing.append(f"{backend} {precision.upper()} engine: {result.next_step}")
        return result.engine
    except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run
        missing.append(f"{backend} {precision.upper()} engine could not be built: {type(exc).__name__}: {exc}")
        return None


def build_tensorrt_engines(fp32: Path, args: argparse.Namespace, size: tuple[int, int], work: Path,
                           missing: list[str]) -> dict[str, Path]:
    """TensorRT engines (fp32/fp16/int8) built from the FP32 export."""
    engines = {precision: build_precision(fp32, precision, "tensorrt", work / f"lrnnet_{precision}.engine",
                                          args, size, work, missing) for precision in ("fp32", "fp16", "int8")}
    return {precision: engine for precision, engine in engines.items() if engine is not None}


def build_onnx_variants(model: torch.nn.Module, args: argparse.Namespace, size: tuple[int, int], work: Path,
                        missing: list[str]) -> dict[str, Path]:
    """fp32/fp16/int8 ONNX paths: the given ones, else built with the library; what failed goes in `missing`."""
    variants: dict[str, Path] = {}
    fp32 = args.onnx
    if fp32 is None:
        from lrnnet.export import ExportOptions, export_onnx

        fp32 = work / "lrnnet.onnx"
        try:
            # Static at the benchmarked size (as a deployment would export it); verified by the exporter's
            # own tests, not again here.
            export_onnx(model, fp32, ExportOptions(height=size[0], width=size[1], verify=False))
        except Exception as exc:  # noqa: BLE001 - a benchmark reports what it could not run
            missing.append(f"ONNX export failed: {type(exc).__name__}: {exc}")
            return variants
    variants["fp32"] = fp32

    for precision, given in (("fp16", args.fp16_onnx), ("int8", args.int8_onnx)):
        built = given or build_precision(fp32, precision, "onnxruntime", work / f"lrnnet_{precision}.onnx", args,
                                         size, work, missing)
        if built is not None:
            variants[precision] = built
    return variants


def make_configs(args: argparse.Namespace, size: tuple[int, int], stack: contextlib.ExitStack,
                 work: Path, missing: list[str]) -> tuple[list[Config], dict[str, Any]]:
    from lrnnet.runtime.factory import open_runner
    from lrnnet.runtime.torch_runner import TorchRunner

    base = BenchmarkOptions(size=size, batch=1, warmup=args.warmup, iters=args.iters)
    configs: list[Config] = []

    def add(label: str, runner: Any, options: BenchmarkOptions = base) -> None:
        configs.append(Config(label, stack.enter_context(runner), options, []))

    power = build_model(args.checkpoint, size, "power")
    exact = build_model(args.checkpoint, size, "exact")
    exact.load_state_dict(power.state_dict())  # same weights; only the SVD differs
    facts = {"parameters": sum(p.numel() for p in power.parameters()),
             "gflops": count_flops(power, size) / 1e9,
             "gflops_at_paper_size": count_flops(power, PAPER_INPUT_SIZE) / 1e9
             if size != PAPER_INPUT_SIZE else None}

    add("torch eager fp32 (power SVD)", TorchRunner(model=power, size=size, device="cpu", fp16=False))
    add("torch eager fp32 (exact SVD)", TorchRunner(model=exact, size=size, device="cpu", fp16=False))

    variants = build_onnx_variants(power, args, size, work, missing)
    for precision, path in variants.items():
        add(f"onnxruntime {precision} cpu", open_runner(path, backend="onnxruntime", device="cpu",
                                                          threads=args.threads))

    if torch.cuda.is_available():
        import copy

        gpu = copy.deepcopy(power)
        for fp16 in (False, True):
            tag = "fp16 autocast" if fp16 else "fp32"
            add(f"torch cuda {tag}", TorchRunner(model=gpu, size=size, device="cuda", fp16=fp16))
            add(f"torch cuda {tag} + CUDA graph", TorchRunner(model=gpu, size=size, device="cuda", fp16=fp16),
                replace(base, cuda_graph=True))
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            for precision, path in variants.items():
                add(f"onnxruntime {precision} cuda", open_runner(path, backend="onnxruntime", device="cuda"))
        else:
            missing.append("ONNX Runtime CUDA: onnxruntime-gpu is not installed")
    else:
        missing.append("PyTorch CUDA (FP32, FP16, CUDA graphs): no CUDA GPU on this machine")
    from lrnnet.engine.device import current_gpu, tensorrt_version

    if tensorrt_version() is None or current_gpu() is None:
        missing.append("TensorRT engines: needs TensorRT and a CUDA GPU (pip install 'lrnnet[tensorrt]')")
    elif "fp32" in variants:
        for precision, engine in build_tensorrt_engines(variants["fp32"], args, size, work, missing).items():
            add(f"tensorrt {precision}", open_runner(engine, backend="tensorrt"))
            # The engine runner captures its own CUDA graph (BenchmarkOptions.cuda_graph is torch's).
            add(f"tensorrt {precision} + CUDA graph", open_runner(engine, backend="tensorrt", cuda_graph=True))
    return configs, facts


def run_round_robin(configs: list[Config], rounds: int) -> None:
    """Each round times every configuration once (iters/rounds iterations), in turn."""
    for round_index in range(rounds):
        for config in configs:
            per_round = max(1, config.options.iters // rounds)
            warmup = config.options.warmup if round_index == 0 else min(config.options.warmup, 3)
            config.results.append(benchmark(config.runner, replace(config.options, iters=per_round, warmup=warmup),
                                            model_name=config.label))
        logger.info("round %d/%d done", round_index + 1, rounds)


def merged(config: Config) -> BenchmarkResult:
    samples = np.concatenate([r.samples_ms for r in config.results])
    first = config.results[0]
    return replace(first, iters=int(samples.size), latency=summarize_latency(samples), samples_ms=samples)


def ratio(results: dict[str, BenchmarkResult], slow: str, fast: str) -> float | None:
    """How many times faster `fast` is than `slow` (mean latency ratio)."""
    if slow not in results or fast not in results:
        return None
    return results[slow].latency["mean_ms"] / results[fast].latency["mean_ms"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="LRNNet .pth (default: a seeded random LRNNet)")
    parser.add_argument("--height", type=int, default=PAPER_INPUT_SIZE[0])
    parser.add_argument("--width", type=int, default=PAPER_INPUT_SIZE[1])
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--iters", type=int, default=100, help="timed iterations per configuration, all rounds")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds the iterations are split into")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and ONNX Runtime")
    parser.add_argument("--onnx", type=Path, help="FP32 ONNX to use instead of exporting the model")
    parser.add_argument("--fp16-onnx", type=Path, help="FP16 ONNX to use instead of building one")
    parser.add_argument("--int8-onnx", type=Path, help="INT8 ONNX to use instead of building one")
    parser.add_argument("--calib-data", type=Path, help="Cityscapes root for INT8 calibration (default: synthetic)")
    parser.add_argument("--calib-images", type=int, default=8)
    parser.add_argument("--no-peak", action="store_true",
                        help="skip the GEMM peaks (FP32, u8s8) and the fraction of peak of each CPU configuration")
    parser.add_argument("--json", type=json_output, help="write every result and ratio as JSON (FILE.json)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    setup_logging()
    set_progress(not args.no_progress)
    # onnxconverter-common warns once per tiny weight it rounds to FP16's range: noise in a timing table.
    warnings.filterwarnings("ignore", category=UserWarning, module="onnxconverter_common")
    size = (args.height, args.width)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = args.threads or torch.get_num_threads()

    missing: list[str] = []
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="lrnnet-bench-") as tmp:
        configs, facts = make_configs(args, size, stack, Path(tmp), missing)
        run_round_robin(configs, max(1, args.rounds))
        results = {config.label: merged(config) for config in configs}
        peaks = None
        if not args.no_peak:
            from lrnnet.runtime.peak import measure_gemm_peaks

            # Same process, same threads, right after the timing: the limit the CPU rows are held against.
            peaks = measure_gemm_peaks(args.threads)
            for config in configs:
                add_peak_fraction([results[config.label]], config.runner, None, peaks)

    host = host_description()
    print(f"host: {host['cpu']}, {args.threads} threads" + (f", GPU {host['gpu']}" if "gpu" in host else ""))
    print(f"protocol: batch 1, 1x3x{size[0]}x{size[1]} random input on the device, {args.warmup} warm-up, "
          f"{args.iters} timed iterations per configuration in {args.rounds} round-robin rounds; "
          f"reference: {PAPER_SETTING}")
    print(f"{'configuration':<34} {TABLE_HEADER}")
    for label, result in results.items():
        print(f"{label:<34} {result.row()}")
    if peaks is not None:
        print(f"{peaks.summary()}; 'achieved' is the model's 2 x multiply-adds per image over the mean latency")
    ratios = {
        "onnxruntime_fp32_vs_torch_eager": ratio(results, "torch eager fp32 (power SVD)", "onnxruntime fp32 cpu"),
        "onnxruntime_fp16_vs_fp32": ratio(results, "onnxruntime fp32 cpu", "onnxruntime fp16 cpu"),
        "onnxruntime_int8_vs_fp32": ratio(results, "onnxruntime fp32 cpu", "onnxruntime int8 cpu"),
        "power_iteration_vs_exact_svd": ratio(results, "torch eager fp32 (exact SVD)", "torch eager fp32 (power SVD)"),
        "torch_cuda_fp16_vs_fp32": ratio(results, "torch cuda fp32", "torch cuda fp16 autocast"),
        "tensorrt_fp32_vs_torch_cuda_fp32": ratio(results, "torch cuda fp32", "tensorrt fp32"),
        "tensorrt_fp16_vs_fp32": ratio(results, "tensorrt fp32", "tensorrt fp16"),
        "tensorrt_int8_vs_fp32": ratio(results, "tensorrt fp32", "tensorrt int8"),
        "cuda_graph_vs_eager_fp16": ratio(results, "torch cuda fp16 autocast",
                                          "torch cuda fp16 autocast + CUDA graph"),
    }
    print("speed-ups (mean latency ratio, >1 = the second is faster):")
    for name, value in ratios.items():
        if value is not None:
            print(f"  {name:<34} {value:6.2f}x")
    gflops = f"{facts['gflops']:.2f} GFLOPs at {size[0]}x{size[1]}"
    if facts["gflops_at_paper_size"] is not None:
        gflops += f", {facts['gflops_at_paper_size']:.2f} at {PAPER_INPUT_SIZE[0]}x{PAPER_INPUT_SIZE[1]}"
    print(f"model: {facts['parameters'] / 1e6:.3f} M parameters, {gflops} (multiply-add = 2 FLOPs)")
    for line in missing:
        print(f"not run: {line}")
    if args.json is not None:
        write_json_atomic(args.json, {"host": host, "size": list(size), "reference": PAPER_SETTING, **facts,
                                      "results": {k: v.to_dict() for k, v in results.items()},
                                      "ratios": ratios, "not_run": missing,
                                      **({"gemm_peaks": peaks.to_dict()} if peaks is not None else {})})
    return 0


if __name__ == "__main__":
    sys.exit(main())
