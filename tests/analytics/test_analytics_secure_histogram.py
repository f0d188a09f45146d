"""Secure sums/histograms through real SecAgg+ groups, and population statistics."""
import numpy as np
import pytest

from analytics.population_stats import StatsEncoder, histogram_quantile, population_stats
from analytics.secure_histogram import SecAggSettings, bits_for, one_hot, secure_histogram, secure_sum, split_groups

FAST = SecAggSettings(group_size=50, dropout_rate=0.05, corrupt_fraction=0.02)


def test_secure_histogram_equals_plain():
    rng = np.random.default_rng(0)
    idx = rng.integers(-1, 17, size=130)  # -1: nothing to report
    counts, res = secure_histogram(idx, 17, settings=FAST, seed=4)
    assert np.array_equal(counts, np.bincount(idx[idx >= 0], minlength=17))
    assert res.groups == 3 and len(res.survivors) == 130 and res.bytes_sent_per_client > 0
    assert all(k <= 49 for k in res.k)


def test_secure_sum_with_dropouts_sums_survivors_only():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 1000, size=(90, 40)).astype(np.uint32)
    s = SecAggSettings(group_size=45, simulated_dropout=0.1, dropout_rate=0.1)
    res = secure_sum(x, settings=s, seed=9)
    assert len(res.dropped) == 2 * round(0.1 * 45) and len(res.survivors) == 90 - len(res.dropped)
    assert np.array_equal(res.total, x[res.survivors].sum(axis=0, dtype=np.int64))
    again = secure_sum(x, settings=s, seed=9)  # same seed -> same dropouts
    assert np.array_equal(again.dropped, res.dropped)


def test_bits_and_groups():
    assert bits_for(0) == 32 and bits_for(2**32 - 1) == 32 and bits_for(2**32) == 64
    with pytest.raises(ValueError):
        bits_for(2**64)
    sizes = [len(g) for g in split_groups(1001, 300)]
    assert sum(sizes) == 1001 and max(sizes) <= 300 and len(sizes) == 4
    with pytest.raises(ValueError, match="at least 2"):
        split_groups(1, 300)
    with pytest.raises(ValueError, match="at least 2"):
        secure_sum(np.ones((1, 3), np.uint32))
    with pytest.raises(ValueError, match="out of range"):
        one_hot(np.array([0, 5]), 5)
    with pytest.raises(ValueError, match="non-negative"):
        secure_sum(-np.ones((3, 2), np.int64))


def test_large_values_use_64_bit_words():
    x = np.full((4, 3), 2**31, np.uint64)
    res = secure_sum(x, settings=SecAggSettings(group_size=4), seed=0)
    assert res.bits == 64 and np.array_equal(res.total, np.full(3, 2**33, np.uint64))


def test_population_stats_matches_plain():
    rng = np.random.default_rng(2)
    v = rng.gamma(2.0, 0.1, size=120)  # e.g. per-device eval loss
    v[:3] = [-1.0, 5.0, 0.0]  # clipped to [0, 1]
    st = population_stats(v, lo=0.0, hi=1.0, bins=20, settings=FAST, seed=1)
    clipped = np.clip(v, 0, 1)
    assert st.count == 120
    assert abs(st.mean - clipped.mean()) <= 1.0 / (1 << 16)
    ref_hist = np.bincount(np.minimum((clipped * 20).astype(int), 19), minlength=20)
    assert np.array_equal(st.histogram, ref_hist)
    for q, val in st.quantiles.items():
        assert abs(val - np.quantile(clipped, q)) <= 1.0 / 20
    assert set(st.as_dict()) >= {"count", "mean", "q50", "q90"}


def test_population_stats_errors_and_quantile_helper():
    with pytest.raises(ValueError, match="at least 2"):
        population_stats(np.array([]), lo=0, hi=1)
    with pytest.raises(ValueError, match="hi > lo"):
        StatsEncoder(1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        StatsEncoder(0, 1).encode(np.array([np.nan]))
    edges = np.linspace(0, 10, 11)
    hist = np.zeros(10, int)
    hist[3] = 4
    assert histogram_quantile(hist, edges, 0.5) == pytest.approx(3.5)
    assert np.isnan(histogram_quantile(np.zeros(10, int), edges, 0.5))
