"""Latency statistics and the comparison with the paper's 71 FPS."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrnnet.runtime.latency import (
    PAPER_DEVICE,
    PAPER_FPS,
    PAPER_INPUT_SIZE,
    LatencyRecorder,
    compare_with_paper,
    is_paper_device,
    summarize_latency,
)


def test_summary_matches_numpy():
    samples = np.random.default_rng(0).gamma(2.0, 5.0, size=1000)
    summary = summarize_latency(samples.tolist())
    assert summary["count"] == 1000
    assert summary["mean_ms"] == pytest.approx(samples.mean())
    for p in (50, 90, 99):
        assert summary[f"p{p}_ms"] == pytest.approx(np.percentile(samples, p))
    assert summary["fps"] == pytest.approx(1000.0 / samples.mean())
    assert summary["p50_ms"] <= summary["p90_ms"] <= summary["p99_ms"]


def test_empty_summary_is_valid_json():
    summary = summarize_latency([])
    assert summary["count"] == 0 and summary["fps"] is None and summary["p99_ms"] is None
    json.loads(json.dumps(summary, allow_nan=False))


def test_recorder_is_exact_below_capacity():
    samples = np.random.default_rng(1).uniform(1, 30, size=500)
    recorder = LatencyRecorder(capacity=1000)
    for value in samples:
        recorder.add(float(value))
    assert recorder.summary() == pytest.approx(summarize_latency(samples))


def test_recorder_memory_stays_flat_with_exact_mean_and_close_percentiles():
    rng = np.random.default_rng(2)
    samples = rng.uniform(0.0, 100.0, size=50_000)
    recorder = LatencyRecorder(capacity=2_000)
    for value in samples:
        recorder.add(float(value))
    summary = recorder.summary()
    assert len(recorder._samples) == 2_000  # bounded, whatever the stream's length
    assert summary["count"] == 50_000
    assert summary["mean_ms"] == pytest.approx(samples.mean(), rel=1e-9)
    # A uniform reservoir of 2000 from U(0, 100): percentiles within a few units of the true ones.
    for p in (50, 90):
        assert abs(summary[f"p{p}_ms"] - np.percentile(samples, p)) < 4.0


def test_paper_setting_constants():
    assert PAPER_FPS == 71.0
    assert PAPER_INPUT_SIZE == (512, 1024)
    assert is_paper_device(PAPER_DEVICE)
    assert is_paper_device("NVIDIA GeForce GTX 1080Ti")
    assert not is_paper_device("NVIDIA H100 80GB HBM3")


def test_comparison_on_another_device_says_so():
    result = compare_with_paper(30.0, device="AMD EPYC (CPU, 2 threads)", input_size=(128, 256), precision="fp32")
    assert result["meets_target"] is False
    assert result["same_setting"] is False
    assert result["ratio"] == pytest.approx(30.0 / 71.0)
    assert "AMD EPYC" in result["note"] and "not a like-for-like" in result["note"]
    assert "128x256" in result["note"]


def test_comparison_on_the_paper_setting():
    result = compare_with_paper(80.0, device="NVIDIA GeForce GTX 1080 Ti", input_size=(512, 1024), precision="fp32")
    assert result["meets_target"] is True and result["same_setting"] is True and result["differences"] == []
    assert "paper's own setting" in result["note"]


def test_comparison_with_a_custom_target_and_no_frames():
    assert compare_with_paper(40.0, device="x", input_size=(512, 1024), precision="fp16",
                              target_fps=30.0)["meets_target"] is True
    empty = compare_with_paper(None, device="x", input_size=(512, 1024), precision="fp32")
    assert empty["ratio"] is None and empty["meets_target"] is False
