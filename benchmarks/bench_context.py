"""LRNNet's context modules side by side: SVN, the spectral non-local family, and none, in one run.

For every ``LRNNet(context=...)`` at 1x3x512x1024 (the context module sees the encoder's
1x128x64x128 map, N = 8192 positions): parameters (whole model and the context module), GFLOPs
(torch.utils.flop_counter.FlopCounterMode, a multiply-add = 2 FLOPs; softmax/normalisation
elementwise work is not counted), and CPU time relative to SVN, measured round-robin so a load
change on a shared machine hits every variant alike:

* PyTorch eager, whole model and the context module alone (on precomputed encoder features);
* ONNX Runtime CPU (``--ort``): each variant exported through lrnnet.export (verification off:
  tests/models/test_nonlocal_family.py verifies every variant) and run by the onnxruntime Runner.

    .venv/bin/python benchmarks/bench_context.py [--repeat 5] [--ort] [--height 512 --width 1024]
        [--variants svn snl ...] [--threads N]

The variants that build an N x N affinity (NL, NS: 8192^2 floats, ~0.5 s each) are timed in their
own round-robin with SVN: interleaved with the others, their passes through hundreds of MB slowed
the small variants timed right after them. Every ratio is to the SVN timed in the same group.
Ratios are only comparable within one run; absolute CPU times mean little (the paper's figures
are GPU figures). The markdown table printed last is the README's.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _timing import interleaved_median_ms
from torch.utils.flop_counter import FlopCounterMode

from lrnnet.log import set_progress
from lrnnet.models import CONTEXT_MODULES, LRNNet
from lrnnet.models.nonlocal_family import NONLOCAL_VARIANTS, NonLocalBlock

FORMULAS = {
    "svn": "Y = ReLU(X + W softmax(q Uᵀ) U), U = regional dominant singular vectors (80 keys)",
    "none": "Y = X",
    **{name: variant.formula for name, variant in NONLOCAL_VARIANTS.items()},
}


def ratios_to_svn(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """{name: (median ms, ratio to SVN)}, timing the N x N variants in a separate group with SVN."""
    quadratic = [n for n in fns if n in NONLOCAL_VARIANTS and NONLOCAL_VARIANTS[n].affinity == "softmax"]
    groups = [[n for n in fns if n not in quadratic]] + ([["svn", *quadratic]] if quadratic else [])
    result: dict[str, tuple[float, float]] = {}
    for group in groups:
        medians = dict(zip(group, interleaved_median_ms([fns[n] for n in group], repeat)))
        for name, ms in medians.items():
            result.setdefault(name, (ms, ms / medians["svn"]))
    return result


def count_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        module(x)
    return counter.get_total_flops()


def build(variant: str) -> LRNNet:
    torch.manual_seed(0)
    model = LRNNet(context=variant)
    if isinstance(model.context, NonLocalBlock):
        with torch.no_grad():  # a trained block: its branch contributes (no effect on the work done)
            model.context.norm.weight.fill_(1.0)
    return model.eval()


def ort_times(models: dict[str, LRNNet], x: np.ndarray, size: tuple[int, int], repeat: int,
              threads: int) -> dict[str, tuple[float, float]]:
    from lrnnet.export import ExportOptions, export_onnx
    from lrnnet.runtime import OnnxRuntimeRunner

    runners = {}
    with tempfile.TemporaryDirectory(prefix="bench-context-") as tmp:
        for name, model in models.items():
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, path, ExportOptions(height=size[0], width=size[1], verify=False))
            runners[name] = OnnxRuntimeRunner(path, device="cpu", threads=threads)
        try:
            return ratios_to_svn({name: partial(r.infer, x) for name, r in runners.items()}, repeat)
        finally:
            for runner in runners.values():
                runner.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["svn", *NONLOCAL_VARIANTS, "none"],
                        choices=sorted(CONTEXT_MODULES))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--ort", action="store_true", help="also time ONNX Runtime CPU (exports every variant)")
    args = parser.parse_args()
    if "svn" not in args.variants:
        parser.error("the ratios are against svn: keep it in --variants")
    torch.set_num_threads(args.threads)
    set_progress(False)

    models = {name: build(name) for name in args.variants}
    x = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        features = models["svn"].encoder(x)
    print(f"input {tuple(x.shape)}, context input {tuple(features.shape)} "
          f"(N = {features.shape[2] * features.shape[3]} positions), {args.threads} CPU threads, "
          f"median of {args.repeat} interleaved runs")

    params = {n: sum(p.numel() for p in m.parameters()) for n, m in models.items()}
    context_params = {n: sum(p.numel() for p in m.context.parameters()) for n, m in models.items()}
    gflops = {n: count_flops(m, x) / 1e9 for n, m in models.items()}
    context_gflops = {n: count_flops(m.context, features) / 1e9 for n, m in models.items()}

    def run_model(model: LRNNet) -> None:
        with torch.inference_mode():
            model(x)

    def run_context(model: LRNNet) -> None:
        with torch.inference_mode():
            model.context(features)

    names = list(models)
    model_ms = ratios_to_svn({n: partial(run_model, m) for n, m in models.items()}, args.repeat)
    context_ms = ratios_to_svn({n: partial(run_context, m) for n, m in models.items()}, args.repeat)
    ort_ms = ort_times(models, x.numpy(), (args.height, args.width), args.repeat, args.threads) if args.ort else {}

    header = "| variant | formula | parameters (context) | GFLOPs (context) | eager model ms (vs SVN) " \
             "| eager context ms (vs SVN) |" + (" ORT model ms (vs SVN) |" if ort_ms else "")
    print()
    print(header)
    print("|" + "---|" * header.count(" |"))
    for name in names:
        row = (f"| {name} | {FORMULAS[name]} | {params[name]:,} ({context_params[name]:,}) "
               f"| {gflops[name]:.2f} ({context_gflops[name]:.2f}) "
               f"| {model_ms[name][0]:.0f} ({model_ms[name][1]:.2f}x) "
               f"| {context_ms[name][0]:.1f} ({context_ms[name][1]:.2f}x) |")
        if ort_ms:
            row += f" {ort_ms[name][0]:.0f} ({ort_ms[name][1]:.2f}x) |"
        print(row)


if __name__ == "__main__":
    main()
