"""SVN stage on the CPU: exact SVD vs power iteration, side by side, measured in one run.

Times the reduced non-local module (and within it the regional singular vectors alone) on the
feature map a 1x3x512x1024 input gives it (1x128x64x128), for torch.linalg.svd and for several
power-iteration counts; for each count also the error against the exact vectors and the
whole model's logits. Then the model's parameter count and GFLOPs at 1x3x512x1024
(torch.utils.flop_counter, which counts a multiply-add as 2 FLOPs).

Activations are trained-like: seeded random weights with BatchNorm statistics calibrated on
street-like images (tests/models/model_helpers.py), because the power method's error depends on
the regions' singular value gaps, which white noise through a random net would misrepresent.

    .venv/bin/python benchmarks/bench_svn.py [--iterations 1 3 5 10 15 20 30] [--repeat 20]

CPU times are only comparable within one run (ratios); absolute times mean little off the GPU.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from _timing import interleaved_median_ms
from model_helpers import calibrate_batchnorm, street_like_batch

from lrnnet.models import DEFAULT_POWER_ITERATIONS, LRNNet


def with_svd(model: LRNNet, svd: str, iterations: int) -> LRNNet:
    other = LRNNet(**{**model.config, "svd": svd, "power_iterations": iterations}).eval()
    other.load_state_dict(model.state_dict())
    return other


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, nargs="+", default=[1, 3, 5, 10, 15, 20, 30])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()

    torch.manual_seed(0)
    exact_model = calibrate_batchnorm(
        LRNNet(svd="exact"), [street_like_batch(2, 256, 512, seed=s) for s in (1, 2)]
    )
    x = street_like_batch(1, args.height, args.width, seed=3)
    with torch.no_grad():
        features = exact_model.encoder(x)
        region_features = exact_model.context.region_features(features)
        exact_logits = exact_model(x)
        exact_vectors = exact_model.context.regional_singular_vectors(region_features)

    print(
        f"SVN stage, input {tuple(x.shape)} -> SVN input {tuple(features.shape)}, "
        f"regions {exact_model.context.region_grids} grids, {torch.get_num_threads()} threads, "
        f"median of {args.repeat} interleaved runs"
    )
    header = (
        f"{'method':<8}{'iters':>6}{'SVN ms':>10}{'x exact':>9}{'SVD ms':>9}{'x exact':>9}"
        f"{'max|u-u1|':>12}{'logits rel':>12}{'argmax agree':>14}"
    )
    print(header)
    print("-" * len(header))

    rows = [("exact", 0)] + [("power", k) for k in args.iterations]
    svns = [(exact_model if svd == "exact" else with_svd(exact_model, svd, k)).context for svd, k in rows]
    with torch.no_grad():
        svn_ms = interleaved_median_ms([partial(svn, features) for svn in svns], args.repeat, warmup=3)
        svd_ms = interleaved_median_ms(
            [partial(svn.regional_singular_vectors, region_features) for svn in svns], args.repeat, warmup=3
        )
    for (svd, k), svn, stage_ms, vectors_ms in zip(rows, svns, svn_ms, svd_ms):
        with torch.no_grad():
            vector_error = (svn.regional_singular_vectors(region_features) - exact_vectors).norm(dim=-1).max()
            model = exact_model if svd == "exact" else with_svd(exact_model, svd, k)
            logits = model(x)
        relative = ((logits - exact_logits).abs().max() / exact_logits.abs().max()).item()
        agree = (logits.argmax(1) == exact_logits.argmax(1)).float().mean().item()
        mark = " (default)" if svd == "power" and k == DEFAULT_POWER_ITERATIONS else ""
        print(
            f"{svd:<8}{(k or '-'):>6}{stage_ms:>10.2f}{stage_ms / svn_ms[0]:>8.2f}x{vectors_ms:>9.2f}"
            f"{vectors_ms / svd_ms[0]:>8.2f}x{vector_error.item():>12.1e}{relative:>12.1e}{agree:>14.6f}{mark}"
        )

    model = LRNNet().eval()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(1, 3, 512, 1024))
    print(
        f"\nLRNNet(num_classes=19): {params:,} parameters ({params / 680_000 - 1:+.1%} vs the paper's 0.68M), "
        f"{counter.get_total_flops() / 1e9:.2f} GFLOPs at 1x3x512x1024 "
        f"({counter.get_total_flops() / 2e9:.2f} G multiply-adds)"
    )


if __name__ == "__main__":
    main()
