"""The analytics query pattern: device function -> secure sum -> server step, one loop for all."""
import numpy as np

from analytics.query import Query, run_query
from analytics.secure_histogram import SecAggSettings


def _word_query(has_word, per_round=60, rounds=4):
    def server(st, total, reported, r):
        st["counts"] = st["counts"] + total
        st["reported"] = np.union1d(st["reported"], reported)
        return st, {"sum": int(total.sum())}, False

    return Query(init=lambda: {"counts": np.zeros(has_word.shape[1], np.int64), "reported": np.zeros(0, np.int64)},
                 select=lambda st, r: np.arange(r * per_round, (r + 1) * per_round) if r < rounds else None,
                 device=lambda st, ids, r: has_word[ids].astype(np.int64),
                 server=server, max_total=lambda n: n)


def test_secure_query_equals_the_sum_over_the_devices_that_reported():
    has_word = np.random.default_rng(0).random((240, 6)) < 0.3
    settings = SecAggSettings(group_size=30, simulated_dropout=0.1)
    st, rounds = run_query(_word_query(has_word), settings=settings, seed=3, tag=("words",))
    assert [r["round"] for r in rounds] == [0, 1, 2, 3] and all(r["groups"] == 2 for r in rounds)
    dropped = sum(r["dropped"] for r in rounds)
    assert dropped > 0 and len(st["reported"]) == 240 - dropped
    np.testing.assert_array_equal(st["counts"], has_word[st["reported"]].sum(axis=0))  # exact, survivors only
    clear, _ = run_query(_word_query(has_word), settings=None)
    np.testing.assert_array_equal(clear["counts"], has_word.sum(axis=0))


def test_a_lone_device_is_never_aggregated_and_the_server_can_stop():
    has_word = np.ones((10, 3), bool)
    q = _word_query(has_word, per_round=1, rounds=10)
    st, rounds = run_query(q, settings=None, min_devices=2)
    assert st["counts"].sum() == 0 and all(r["reported"] == 0 for r in rounds)
    stop = q._replace(server=lambda st, total, reported, r: (st, {}, r == 2))
    _, rounds = run_query(stop, settings=None)
    assert len(rounds) == 3
