"""End-to-end rounds: exact sums, dropouts at every stage, thresholds, pre-summing."""
import numpy as np
import pytest

from secagg import STAGES, SecAggAbort, run_protocol

# small test graphs (explicit k on a few clients) are checked at this security level, not 2^-40
SMALL_GRAPH_BITS = 5


@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
@pytest.mark.parametrize("prg", ["aes-ctr", "chacha20"])
def test_exact_sum_no_dropouts(rng, mode, prg, modsum, same, rand_inputs):
    x = rand_inputs(rng, 16, 301)
    r = run_protocol(x, mode=mode, prg=prg, seed=3, k=8 if mode == "secagg+" else None, security_bits=SMALL_GRAPH_BITS,
                     threshold=5 if mode == "secagg+" else None)
    assert r.survivors == list(range(16))
    assert r.sum.dtype == np.uint32 and r.sum.shape == (301,)
    assert same(r.sum, modsum(x, range(16)))
    assert r.rejected == []
    if mode == "secagg+":
        assert r.k == 8
    else:
        assert r.k == 15


@pytest.mark.parametrize("bits", [1, 12, 32, 40, 64])
def test_exact_sum_other_bit_widths(rng, bits, modsum, same, rand_inputs):
    x = rand_inputs(rng, 8, 67, bits)
    r = run_protocol(x, bits=bits, mode="secagg", seed=1, dropouts={"masked_input": [2]})
    assert same(r.sum, modsum(x, r.survivors, bits))
    assert int(r.sum.max()) < 2**bits


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("mode", ["secagg", "secagg+"])
def test_exact_sum_with_dropouts_at_each_stage(rng, stage, mode, modsum, same, rand_inputs):
    n = 24
    x = rand_inputs(rng, n, 129)
    drop = [1, 5, 17]
    kw = dict(k=10, threshold=6, security_bits=SMALL_GRAPH_BITS) if mode == "secagg+" else {}
    r = run_protocol(x, mode=mode, seed=7, dropouts={stage: drop}, **kw)
    expect_surv = [i for i in range(n) if stage == "unmasking" or i not in drop]
    assert r.survivors == expect_surv
    assert r.dropped[stage] == drop
    assert same(r.sum, modsum(x, expect_surv))
    # a wrong reference must not match (the check can fail)
    assert not same(r.sum, modsum(x, range(n))) or stage == "unmasking"


def test_dropouts_spread_over_all_stages(rng, modsum, same, rand_inputs):
    x = rand_inputs(rng, 30, 50)
    d = {"advertise_keys": [0], "share_keys": [1, 2], "masked_input": [3, 4], "unmasking": [5]}
    r = run_protocol(x, mode="secagg+", k=12, threshold=7, security_bits=SMALL_GRAPH_BITS, seed=2, dropouts=d)
    assert r.survivors == [i for i in range(30) if i not in (0, 1, 2, 3, 4)]
    assert same(r.sum, modsum(x, r.survivors))


@pytest.mark.parametrize("stage", STAGES)
def test_classic_threshold_boundary(rng, stage, modsum, same, rand_inputs):
    """Up to n - t dropouts at any stage give the exact sum; one more aborts."""
    n, t = 12, 7
    x = rand_inputs(rng, n, 40)
    ok = list(range(n - t))
    r = run_protocol(x, mode="secagg", threshold=t, seed=4, dropouts={stage: ok})
    assert r.threshold == t
    assert same(r.sum, modsum(x, r.survivors))
    with pytest.raises(SecAggAbort):
        run_protocol(x, mode="secagg", threshold=t, seed=4, dropouts={stage: list(range(n - t + 1))})


def test_secagg_plus_threshold_boundary(rng, modsum, same, rand_inputs):
    """SecAgg+: a client needs t of {itself} ∪ surviving neighbours to unmask."""
    n, k, t = 40, 10, 6
    x = rand_inputs(rng, n, 33)
    from secagg import make_config
    cfg = make_config(n, 33, k=k, threshold=t, seed=9, security_bits=SMALL_GRAPH_BITS)
    u = 0
    nb = sorted(cfg.neighbours[u])
    r = run_protocol(x, config=cfg, dropouts={"masked_input": nb[:k - t + 1]})
    assert u in r.survivors and same(r.sum, modsum(x, r.survivors))
    cfg2 = make_config(n, 33, k=k, threshold=t, seed=9, security_bits=SMALL_GRAPH_BITS)
    with pytest.raises(SecAggAbort, match="fewer than t"):
        run_protocol(x, config=cfg2, dropouts={"masked_input": nb[:k - t + 2]})


def test_abort_releases_no_partial_result(rng, modsum, same, rand_inputs):
    x = rand_inputs(rng, 10, 20)
    with pytest.raises(SecAggAbort) as e:
        run_protocol(x, mode="secagg", threshold=9, seed=1, dropouts={"unmasking": [0, 1]})
    assert "threshold" in str(e.value) or "shares" in str(e.value)


def test_presum_groups_in_process(rng, modsum, same, rand_inputs):
    x = rand_inputs(rng, 20, 77)
    r = run_protocol(x, mode="secagg+", k=8, threshold=5, security_bits=SMALL_GRAPH_BITS, seed=5, presum_group_size=6,
                     dropouts={"masked_input": [3, 11]})
    assert same(r.sum, modsum(x, r.survivors))
    assert 3 not in r.survivors and len(r.survivors) == 18
    # per-client bytes still reflect each client's own masked vector
    assert r.bytes_sent_per_client_by_stage["masked_input"] >= 77 * 4


def test_worker_processes_presum(rng, modsum, same, rand_inputs):
    x = rand_inputs(rng, 18, 64)
    r = run_protocol(x, mode="secagg+", k=8, threshold=5, security_bits=SMALL_GRAPH_BITS, seed=6, workers=2,
                     dropouts={"share_keys": [2], "masked_input": [4, 9], "unmasking": [1]})
    assert same(r.sum, modsum(x, r.survivors))
    assert r.survivors == [i for i in range(18) if i not in (2, 4, 9)]
    assert r.prg_bytes_clients > 0 and r.prg_bytes_server > 0


def test_deterministic_mode_reproducible(rng, modsum, same, rand_inputs):
    x = rand_inputs(rng, 8, 16)
    seen = []

    def grab(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up" and party == 0:
            seen.append(msg.vector.copy())
        return msg

    for _ in range(2):
        run_protocol(x, mode="secagg", seed=11, deterministic=True, interceptor=grab, round_id=b"r" * 16)
    assert np.array_equal(seen[0], seen[1])


def test_input_validation(rng, modsum, same, rand_inputs):
    with pytest.raises(ValueError):
        run_protocol(np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        run_protocol(np.full((4, 3), 300, dtype=np.int64), bits=8)
    with pytest.raises(ValueError):
        run_protocol(np.zeros((4, 3), dtype=np.uint32), dropouts={"nope": [1]})
    with pytest.raises(ValueError):
        run_protocol(np.zeros((4, 3), dtype=np.uint32), dropouts={"share_keys": [1], "unmasking": [1]})


def test_cost_accounting(rng, modsum, same, rand_inputs):
    n, m = 12, 1000
    x = rand_inputs(rng, n, m)
    r = run_protocol(x, mode="secagg", seed=1, dropouts={"masked_input": [0]})
    # clients expand 1 self mask + one pairwise mask per partner; server re-expands
    partners = n - 2  # U2 minus itself (client 0 shared keys, then dropped)
    assert r.prg_bytes_clients == (n - 1) * (1 + partners + 1) * 4 * m
    assert r.prg_bytes_server == ((n - 1) + (n - 1)) * 4 * m  # self masks + dropped client's pairs
    assert r.bytes_sent_per_client > 4 * m
    assert set(r.per_stage_seconds) == set(STAGES)
    assert r.total_seconds >= sum(r.per_stage_seconds.values()) * 0.5


def test_without_wire_encoding_sum_is_exact():
    import numpy as np

    from secagg import run_protocol

    x = np.random.default_rng(0).integers(0, 2**32, (20, 100), dtype=np.uint64).astype(np.uint32)
    r = run_protocol(x, wire=False, dropouts={"masked_input": [3]})
    np.testing.assert_array_equal(r.sum, np.delete(x, 3, 0).astype(np.uint64).sum(0) % 2**32)
