"""IBLT encode/decode, overfull tables, TFF cross-check, secure summing, central DP."""
import numpy as np
import pytest

from analytics import central_dp, iblt
from analytics.secure_histogram import SecAggSettings, secure_sum

SPEC = iblt.IbltSpec(capacity=60, string_max_bytes=10, seed=5)


def test_roundtrip_with_counts_and_utf8():
    items = ["apple", "banana", "émigré", "x", "averyverylongword", "apple"]
    tab = iblt.encode(SPEC, items, counts=[3, 1, 2, 7, 4, 2])
    assert tab.shape == SPEC.shape and tab.min() >= 0 and tab.max() < SPEC.field_size
    d = iblt.decode(SPEC, tab)
    assert d.complete and d.undecoded == 0
    # long strings are trimmed to max_length bytes, like TFF's chunker
    assert d.items == {"apple": 5, "banana": 1, "émigré": 2, "x": 7, "averyverylon": 4}


def test_linearity_and_negative_counts():
    a = iblt.encode(SPEC, ["cat", "dog"])
    b = iblt.encode(SPEC, ["cat", "emu"], counts=[2, 1])
    d = iblt.decode(SPEC, (a + b) % SPEC.field_size)
    assert d.items == {"cat": 3, "dog": 1, "emu": 1}
    diff = iblt.decode(SPEC, (a - b) % SPEC.field_size)
    assert diff.items == {"cat": -1, "dog": 1, "emu": -1}


def test_overfull_table_is_reported():
    many = [f"item{i}" for i in range(400)]
    d = iblt.decode(SPEC, iblt.encode(SPEC, many))
    assert not d.complete and d.undecoded > 0 and d.nonempty_cells > 0
    assert "could not be fully decoded" in d.message and "capacity 60" in d.message
    with pytest.raises(iblt.IbltDecodeError, match="capacity"):
        iblt.decode(SPEC, iblt.encode(SPEC, many), strict=True)
    # a corrupted cell is not silently accepted either
    tab = iblt.encode(SPEC, ["alpha", "beta"])
    tab[0, :, -1] = (tab[0, :, -1] + 1) % SPEC.field_size
    assert not iblt.decode(SPEC, tab).complete


def test_spec_validation():
    with pytest.raises(ValueError):
        iblt.IbltSpec(capacity=0, string_max_bytes=4)
    with pytest.raises(ValueError):
        iblt.IbltSpec(capacity=10, string_max_bytes=4, repetitions=2)
    with pytest.raises(ValueError, match="coupled"):
        iblt.IbltSpec(capacity=200_000, string_max_bytes=4)


def test_tff_crosscheck():
    """Same input -> bit-identical tables; each side decodes the other's table to the same (item, count) set."""
    import tensorflow as tf
    from tensorflow_federated.python.analytics.heavy_hitters.iblt import iblt_lib

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(30)] + ["naïve", "hello", "zzzzzzzzzzzzzzzz"]
    counts = rng.integers(1, 9, size=len(words))
    spec = iblt.IbltSpec(capacity=80, string_max_bytes=12, seed=7, repetitions=3)
    tff_enc = iblt_lib.IbltEncoder(capacity=80, string_max_bytes=12, seed=7, repetitions=3)
    tff_tab = tff_enc.compute_iblt(tf.constant(words), tf.constant(counts, tf.int64)).numpy()
    ours = iblt.encode(spec, words, counts=counts)
    assert np.array_equal(ours, tff_tab)
    s, c, left = iblt_lib.decode_iblt_tf(tf.constant(ours), capacity=80, string_max_bytes=12, seed=7)
    tff_items = {a.decode("utf-8", "ignore"): int(b) for a, b in zip(s.numpy(), c.numpy())}
    mine = iblt.decode(spec, tff_tab)
    assert int(left.numpy()) == 0 and mine.complete
    assert mine.items == tff_items
    assert sum(mine.items.values()) == counts.sum()


def test_device_tables_through_secagg():
    devices = [["cat", "dog"], ["cat"], ["cat", "cat", "emu", "owl"], ["dog"], []] * 8
    spec = iblt.IbltSpec(capacity=20, string_max_bytes=6, seed=1)
    rows = iblt.device_rows(spec, devices, max_items=2)
    res = secure_sum(rows, settings=SecAggSettings(group_size=20), seed=3,
                     max_total=(spec.field_size - 1) * 20)
    assert res.bits == 64 and res.groups == 2
    d = iblt.decode(spec, (res.total % np.uint64(spec.field_size)).astype(np.int64), strict=True)
    # each device counts an item once and at most max_items=2 items ('owl' is cut)
    assert d.items == {"cat": 24, "dog": 16, "emu": 8}


def test_central_dp_calibration_and_release():
    dp = central_dp.calibrate(4.0, 1e-6, max_items=2)
    assert 3.9 < dp.epsilon <= 4.0 and dp.sigma > 0 and dp.tau > 1 + 3 * dp.sigma
    tighter = central_dp.calibrate(1.0, 1e-6, max_items=2)
    assert tighter.sigma > dp.sigma and tighter.tau > dp.tau
    counts = {"big": 500, "mid": int(dp.tau + 8 * dp.sigma), "one": 1}
    out = central_dp.release(counts, dp, np.random.default_rng(0))
    assert set(out) == {"big", "mid"} and abs(out["big"] - 500) < 6 * dp.sigma
    with pytest.raises(ValueError, match="epsilon"):
        central_dp.calibrate(0.0, 1e-6, 2)
