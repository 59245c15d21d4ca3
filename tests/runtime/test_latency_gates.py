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
