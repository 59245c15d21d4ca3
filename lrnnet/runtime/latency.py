"""Latency statistics and the paper's speed reference: the one place of both facts.

The LRNNet paper (Jiang et al., "LRNNet: A Light-Weighted Network with Efficient Reduced
Non-Local Operation for Real-Time Semantic Segmentation", ICME Workshops 2020) reports 71 FPS
on a GTX 1080Ti for a 512x1024 input in FP32 at batch 1. Every report that compares a measured
speed with that figure goes through `compare_with_paper`, so the comparison is stated the same
way (and honestly, as another device, when it is) everywhere.
"""

from __future__ import annotations

import math
import random
from array import array
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = [
    "PAPER_BATCH",
    "PAPER_DEVICE",
    "PAPER_FPS",
    "PAPER_INPUT_SIZE",
    "PAPER_PRECISION",
    "PAPER_SETTING",
    "LatencyRecorder",
    "compare_with_paper",
    "summarize_latency",
]

PAPER_FPS = 71.0
PAPER_DEVICE = "NVIDIA GeForce GTX 1080 Ti"
PAPER_INPUT_SIZE = (512, 1024)  # (height, width)
PAPER_PRECISION = "fp32"
PAPER_BATCH = 1
PAPER_SETTING = (f"{PAPER_FPS:g} FPS on a GTX 1080Ti, {PAPER_INPUT_SIZE[0]}x{PAPER_INPUT_SIZE[1]} input, "
                 f"{PAPER_PRECISION.upper()}, batch {PAPER_BATCH} (LRNNet paper)")

PERCENTILES = (50, 90, 99)


def summarize_latency(samples_ms: Iterable[float]) -> dict[str, Any]:
    """mean/p50/p90/p99 in milliseconds, the FPS that the mean latency gives, and the sample count.

    FPS is 1000 / mean (a throughput figure for a serial loop). With no samples every figure is
    None (JSON null), never NaN, so reports stay valid JSON.
    """
    values = np.asarray(list(samples_ms) if not isinstance(samples_ms, np.ndarray) else samples_ms,
                        dtype=np.float64)
    return _summary(values, float(values.mean()) if values.size else math.nan, int(values.size))


def _summary(values: np.ndarray, mean_ms: float, count: int) -> dict[str, Any]:
    if count == 0:
        return {"mean_ms": None, **{f"p{p}_ms": None for p in PERCENTILES}, "fps": None, "count": 0}
    p50, p90, p99 = (float(v) for v in np.percentile(values, PERCENTILES))
    return {
        "mean_ms": mean_ms,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "fps": 1000.0 / mean_ms if mean_ms > 0 else None,
        "count": count,
    }


class LatencyRecorder:
    """Collects per-call latencies with bounded memory, for videos of any length.

    The mean and count are exact. Percentiles come from every sample while there are at most
    `capacity` (8 bytes each), and from a uniform reservoir of `capacity` samples after that
    (Vitter's algorithm R), so memory stays flat on an hour-long stream.
    """

    def __init__(self, capacity: int = 100_000, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._samples = array("d")
        self._count = 0
        self._total = 0.0
        self._rng = random.Random(seed)

    def add(self, ms: float) -> None:
        self._count += 1
        self._total += ms
        if len(self._samples) < self.capacity:
            self._samples.append(ms)
            return
        slot = self._rng.randrange(self._count)
        if slot < self.capacity:
            self._samples[slot] = ms

    @property
    def count(self) -> int:
        return self._count

    @property
    def total_ms(self) -> float:
        return self._total

    def summary(self) -> dict[str, Any]:
        values = np.frombuffer(self._samples, dtype=np.float64) if self._samples else np.empty(0)
        mean = self._total / self._count if self._count else math.nan
        return _summary(values, mean, self._count)


def _device_key(name: str) -> str:
    return "".join(name.lower().split()).replace("geforce", "").replace("nvidia", "")


def is_paper_device(device: str) -> bool:
    """True when a device name is the paper's GTX 1080 Ti (however the driver spells it)."""
    return "1080ti" in _device_key(device)


def compare_with_paper(fps: float | None, *, device: str, input_size: tuple[int, int], precision: str,
                       target_fps: float = PAPER_FPS) -> dict[str, Any]:
    """How a measured FPS stands against the target, saying what differs from the paper's setting.

    `meets_target` compares the numbers only; `same_setting` says whether the comparison is like for
    like (the paper's device, input size and precision). The `note` is one honest sentence.
    """
    differences = []
    if not is_paper_device(device):
        differences.append(f"device {device} (paper: GTX 1080Ti)")
    if tuple(input_size) != PAPER_INPUT_SIZE:
        differences.append(f"input {input_size[0]}x{input_size[1]} (paper: {PAPER_INPUT_SIZE[0]}x{PAPER_INPUT_SIZE[1]})")
    if precision.lower() != PAPER_PRECISION:
        differences.append(f"precision {precision.upper()} (paper: {PAPER_PRECISION.upper()})")
    result: dict[str, Any] = {
        "target_fps": target_fps,
        "measured_fps": fps,
        "ratio": (fps / target_fps) if fps else None,
        "meets_target": bool(fps is not None and fps >= target_fps),
        "same_setting": not differences,
        "differences": differences,
        "paper_setting": PAPER_SETTING,
    }
    if fps is None:
        result["note"] = "no frames were timed"
        return result
    verdict = (f"{fps:.1f} FPS is {'at or above' if fps >= target_fps else 'below'} the target "
               f"{target_fps:g} FPS ({fps / target_fps:.2f}x)")
    if differences:
        verdict += "; not a like-for-like comparison: " + ", ".join(differences)
    else:
        verdict += " on the paper's own setting"
    result["note"] = verdict
    return result
