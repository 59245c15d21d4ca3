"""The latency reservoir on non-stationary streams: its percentiles are the whole stream's, not the recent part's.

A stream whose latency changes (a warm GPU throttling, another process arriving) is where a
reservoir biased to recent samples, or one that stops sampling once full, reports wrong figures;
identically distributed data cannot tell them apart.
"""

from __future__ import annotations

import numpy as np
import pytest

from lrnnet.runtime.latency import LatencyRecorder, summarize_latency

CAPACITY = 2_000


def _record(stream, capacity: int = CAPACITY, seed: int = 0) -> dict:
    recorder = LatencyRecorder(capacity=capacity, seed=seed)
    for value in stream:
        recorder.add(float(value))
    assert recorder.count == len(stream)
    assert recorder.total_ms == pytest.approx(float(np.sum(stream)), rel=1e-12)
    return recorder.summary()


@pytest.mark.parametrize("slow_share, p50, p90, p99", [
    (0.15, 1.0, 100.0, 100.0),  # 85% at 1 ms, then 15% at 100 ms: p90 is in the slow part
    (0.05, 1.0, 1.0, 100.0),    # 95% at 1 ms, then 5% at 100 ms: only p99 is
])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_from_1ms_to_100ms_past_the_capacity(slow_share, p50, p90, p99, seed):
    total = 20 * CAPACITY
    slow = int(total * slow_share)
    stream = np.concatenate([np.full(total - slow, 1.0), np.full(slow, 100.0)])
    summary = _record(stream, seed=seed)
    assert summary["count"] == total
    assert summary["mean_ms"] == pytest.approx(stream.mean(), rel=1e-12)  # exact, whatever the reservoir
    assert (summary["p50_ms"], summary["p90_ms"], summary["p99_ms"]) == (p50, p90, p99)
    assert summary == {**summarize_latency(stream), "p50_ms": p50, "p90_ms": p90, "p99_ms": p99}


def test_slow_start_then_fast_keeps_the_start():
    # The other way round: a slow first 15% (cold caches) must still be seen after 40k fast calls.
    total = 20 * CAPACITY
    stream = np.concatenate([np.full(int(total * 0.15), 100.0), np.full(total - int(total * 0.15), 1.0)])
    summary = _record(stream)
    assert (summary["p50_ms"], summary["p90_ms"], summary["p99_ms"]) == (1.0, 100.0, 100.0)


@pytest.mark.parametrize("seed", [0, 3])
def test_linear_drift_gives_the_whole_streams_percentiles(seed):
    # Latency growing steadily from 0 to 100 ms over 25 capacities: the true p-th percentile is p ms;
    # a uniform sample of 2000 puts it within ~1.1 ms (one standard error); 4 ms is > 3 of them.
    # A reservoir that stopped at capacity would report ~2 ms, one biased to recent samples far more.
    stream = np.linspace(0.0, 100.0, 25 * CAPACITY)
    summary = _record(stream, seed=seed)
    for p in (50, 90, 99):
        assert abs(summary[f"p{p}_ms"] - float(np.percentile(stream, p))) < 4.0, (p, summary)


def test_exact_up_to_capacity_and_sampled_one_past_it():
    # At exactly `capacity` samples every one is kept; the next one may only replace, never grow.
    stream = np.arange(1.0, CAPACITY + 1)
    recorder = LatencyRecorder(capacity=CAPACITY)
    for value in stream:
        recorder.add(float(value))
    assert recorder.summary() == summarize_latency(stream)
    recorder.add(1e6)
    kept = recorder.summary()
    assert kept["count"] == CAPACITY + 1 and kept["mean_ms"] == pytest.approx((stream.sum() + 1e6) / (CAPACITY + 1))


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity must be positive"):
        LatencyRecorder(capacity=0)
    assert LatencyRecorder(capacity=1).capacity == 1
    assert LatencyRecorder().capacity == 100_000


def test_the_reservoir_is_seeded_and_reproducible():
    stream = np.linspace(0.0, 100.0, 5 * CAPACITY)
    assert _record(stream, seed=5) == _record(stream, seed=5)
    assert _record(stream, seed=5) != _record(stream, seed=6)  # the seed is used


# -- every figure and word of the summaries and of the comparison with the paper ----------------------


def test_summary_accepts_any_iterable_and_computes_in_float64():
    values = [0.1, 0.2, 0.7, 1.3]
    expected = {"mean_ms": float(np.mean(values)), "p50_ms": float(np.percentile(values, 50)),
                "p90_ms": float(np.percentile(values, 90)), "p99_ms": float(np.percentile(values, 99)),
                "fps": 1000.0 / float(np.mean(values)), "count": 4}
    assert summarize_latency(values) == expected
    assert summarize_latency(iter(values)) == expected  # a generator, read once
    assert summarize_latency(np.asarray(values)) == expected
    # float32 input is summarised in float64 (its percentiles between samples are not float32-rounded)
    f32 = np.asarray(values, dtype=np.float32)
    assert summarize_latency(f32)["p90_ms"] == float(np.percentile(f32.astype(np.float64), 90))


def test_empty_summaries_are_all_none_without_warnings():
    import warnings

    empty = {"mean_ms": None, "p50_ms": None, "p90_ms": None, "p99_ms": None, "fps": None, "count": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice", no division by zero
        assert summarize_latency([]) == empty
        assert LatencyRecorder().summary() == empty


def test_fps_of_zero_and_sub_millisecond_latencies():
    assert summarize_latency([0.0, 0.0])["fps"] is None  # no division by zero
    assert summarize_latency([0.5, 0.5])["fps"] == 2000.0  # below 1 ms is still a latency
    recorder = LatencyRecorder()
    recorder.add(0.25)
    assert recorder.summary()["fps"] == 4000.0


def test_default_seed_is_zero():
    stream = np.linspace(0.0, 100.0, 50)
    default, seeded = LatencyRecorder(capacity=10), LatencyRecorder(capacity=10, seed=0)
    for value in stream:
        default.add(float(value))
        seeded.add(float(value))
    assert default.summary() == seeded.summary()


def test_comparison_says_exactly_what_differs():
    from lrnnet.runtime.latency import PAPER_SETTING, compare_with_paper

    result = compare_with_paper(35.5, device="AMD EPYC 7B13", input_size=(128, 256), precision="fp16")
    differences = ["device AMD EPYC 7B13 (paper: GTX 1080Ti)", "input 128x256 (paper: 512x1024)",
                   "precision FP16 (paper: FP32)"]
    assert result == {
        "target_fps": 71.0, "measured_fps": 35.5, "ratio": 35.5 / 71.0, "meets_target": False,
        "same_setting": False, "differences": differences, "paper_setting": PAPER_SETTING,
        "note": "35.5 FPS is below the target 71 FPS (0.50x); not a like-for-like comparison: " + ", ".join(differences),
    }
    assert PAPER_SETTING == "71 FPS on a GTX 1080Ti, 512x1024 input, FP32, batch 1 (LRNNet paper)"


def test_comparison_on_the_paper_setting_and_at_the_target_exactly():
    from lrnnet.runtime.latency import compare_with_paper

    result = compare_with_paper(71.0, device="NVIDIA GeForce GTX 1080 Ti", input_size=(512, 1024), precision="FP32")
    assert result["meets_target"] is True and result["same_setting"] is True and result["ratio"] == 1.0
    assert result["note"] == "71.0 FPS is at or above the target 71 FPS (1.00x) on the paper's own setting"
    result = compare_with_paper(142.0, device="GTX 1080Ti", input_size=(512, 1024), precision="fp32", target_fps=71.0)
    assert result["note"] == "142.0 FPS is at or above the target 71 FPS (2.00x) on the paper's own setting"


def test_comparison_without_frames():
    from lrnnet.runtime.latency import PAPER_SETTING, compare_with_paper

    assert compare_with_paper(None, device="cpu", input_size=(512, 1024), precision="fp32") == {
        "target_fps": 71.0, "measured_fps": None, "ratio": None, "meets_target": False, "same_setting": False,
        "differences": ["device cpu (paper: GTX 1080Ti)"], "paper_setting": PAPER_SETTING,
        "note": "no frames were timed",
    }
