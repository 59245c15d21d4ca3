"""Round-robin timing shared by the benchmark scripts (run as `python benchmarks/<script>.py`)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved_times_ms(fns: list[Callable[[], object]], repeat: int, warmup: int = 1) -> list[list[float]]:
    """Wall times (ms) of each function, `repeat` each, timed round-robin so that a load change on a
    shared machine hits every function alike and the ratios between them stay meaningful."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, samples in zip(fns, times):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
    return times


def interleaved_median_ms(fns: list[Callable[[], object]], repeat: int, warmup: int = 1) -> list[float]:
    return [statistics.median(samples) for samples in interleaved_times_ms(fns, repeat, warmup)]
