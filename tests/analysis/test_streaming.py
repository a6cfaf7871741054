"""Streaming accumulators: equal to the in-memory metrics, and memory that does not grow with the examples."""
import tracemalloc

import numpy as np
import pytest

from diagrammar.analysis import metrics as M
from diagrammar.analysis.streaming import Moments, Reservoir, WireStatistics


def _batches(n, batch=500, seed=0, p=6, q=4):
    """Aligned batches of two related wires, generated on the fly (nothing of the stream is kept here)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(p, q))
    for start in range(0, n, batch):
        b = min(batch, n - start)
        x = rng.normal(size=(b, p)) + 100.0  # a large mean: the merge must not lose precision to it
        yield {"x": x, "y": np.tanh(x @ A / 50) + 0.3 * rng.normal(size=(b, q))}


def test_moments_equal_numpy_covariance_over_uneven_batches():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1003, 5)) * 3 + 1e4
    m = Moments(5)
    for part in np.array_split(X, [1, 7, 500, 501]):
        m.update(part)
    assert m.n == 1003
    assert np.allclose(m.mean, X.mean(0), rtol=0, atol=1e-9)
    assert np.allclose(m.comoment / (m.n - 1), np.cov(X.T), rtol=1e-9)


@pytest.mark.parametrize("metric", ["cka", "svcca", "procrustes", "match"])
def test_streamed_metric_equals_in_memory(metric):
    parts = list(_batches(3000))
    X = np.concatenate([p["x"] for p in parts])
    Y = np.concatenate([p["y"] for p in parts])
    stats = WireStatistics({"x": 6, "y": 4}, metric)
    for p in parts:
        stats.update(p)
    assert stats.moments is not None and stats.used == 3000
    want = {"cka": lambda: M.linear_cka(X, Y), "svcca": lambda: M.svcca(X, Y),
            "procrustes": lambda: M.procrustes_distance(X, Y),
            "match": lambda: M.match_units(X, Y)[1].mean()}[metric]()
    assert stats.compare("x", "y") == pytest.approx(want, rel=1e-7)
    assert stats.compare("x", "x") == pytest.approx(0.0 if metric == "procrustes" else 1.0, abs=1e-7)


def _peak(n):
    stats = WireStatistics({"x": 6, "y": 4}, "cka")
    tracemalloc.start()
    tracemalloc.reset_peak()
    for batch in _batches(n):
        stats.update(batch)
    value = stats.compare("x", "y")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, value, stats


def test_streaming_linear_cka_memory_does_not_grow_with_examples():
    small, _, s_small = _peak(1_000)
    large, value, s_large = _peak(100_000)
    assert s_large.seen == 100_000 and 0 < value < 1
    assert s_large.moments.nbytes == s_small.moments.nbytes
    # 100,000 examples of 10 features held in memory would be 8 MB; the stream peaks at a batch or so
    assert large < 1.5 * small + 64_000, (small, large)
    assert large < 1_000_000


def test_reservoir_is_uniform_keeps_order_and_aligns_streams():
    counts = np.zeros(1000)
    for seed in range(200):
        r = Reservoir(100, seed=seed)
        for start in range(0, 1000, 64):
            idx = np.arange(start, min(start + 64, 1000))
            r.update({"i": idx, "j": -idx})
        rows = r.rows()
        assert np.all(np.diff(rows["i"]) > 0) and np.array_equal(rows["j"], -rows["i"])
        counts[rows["i"]] += 1
    # each of the 1,000 rows is kept with probability 0.1: 20 of 200 runs on average
    assert counts.sum() == 200 * 100
    assert counts[:500].mean() == pytest.approx(20, rel=0.1) and counts[500:].mean() == pytest.approx(20, rel=0.1)


def test_pairwise_metrics_run_on_a_stated_sample():
    stats = WireStatistics({"x": 6, "y": 4}, "rsa", max_examples=300)
    for batch in _batches(2000):
        stats.update(batch)
    assert stats.used == 300 and "sample of 300 of 2,000" in stats.describe()
    rows = stats.reservoir.rows()
    assert stats.compare("x", "y") == pytest.approx(M.rsa(rows["x"], rows["y"]))


def test_kernel_analysis_streams_labels_with_the_sample():
    rng = np.random.default_rng(1)
    stats = WireStatistics({"h": 3}, "kernel", max_examples=200)
    for _ in range(5):
        labels = rng.integers(0, 3, 100)
        stats.update({"h": np.eye(3)[labels] * 5 + 0.1 * rng.normal(size=(100, 3))}, labels)
    errors = stats.kernel("h", max_components=4)
    assert errors[2] == 0.0
