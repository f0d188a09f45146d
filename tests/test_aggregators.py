"""Each aggregator's defining property, on the aggregator alone and through the engine."""
import numpy as np
import pandas as pd
import pytest

from engine_testing import tiny_config
from fl import aggregators as A
from fl.runner import engine, train


def _aggregate(agg, deltas, examples=None, state=None, seed=0):
    """What workers + process do: client half per update, accumulate, finalize."""
    state = agg.init() if state is None else state
    b = agg.broadcast(state)
    outs = [agg.client(d, n, b) for d, n in zip(deltas, examples or [1] * len(deltas))]
    info = {}
    for _, _, i in outs:
        for k, v in i.items():
            info[k] = info.get(k, 0.0) + v
    acc = np.stack([o[0] for o in outs]) if agg.accumulate == "stack" else sum(o[0] for o in outs)
    return agg.finalize(state, acc, sum(o[1] for o in outs), len(outs), seed, {"client_info": info})


def test_median_and_trimmed_mean_ignore_a_minority_of_arbitrary_updates():
    rng = np.random.default_rng(0)
    honest = [np.full(50, 1.0) + rng.normal(0, 0.1, 50) for _ in range(7)]
    attack = [rng.normal(0, 1e4, 50) for _ in range(3)]
    for agg in (A.median(), A.trimmed_mean(0.3)):
        out, _, _ = _aggregate(agg, honest + attack)
        lo, hi = np.min(honest, axis=0), np.max(honest, axis=0)
        assert np.all((out >= lo) & (out <= hi))  # inside the honest range, coordinate by coordinate
    mean, _, _ = _aggregate(A.mean("uniform"), honest + attack)
    assert np.abs(mean - 1.0).max() > 100  # the plain mean is dragged anywhere


def test_trimmed_mean_without_outliers_is_close_to_the_mean_and_exact_at_zero_trim():
    x = [np.arange(4.0) * i for i in range(1, 6)]
    np.testing.assert_allclose(_aggregate(A.trimmed_mean(0.0), x)[0], np.mean(x, axis=0))
    np.testing.assert_allclose(_aggregate(A.trimmed_mean(0.2), x)[0], np.mean(x[1:4], axis=0))


@pytest.mark.parametrize("quantile", [0.3, 0.5, 0.8])
def test_adaptive_clipping_tracks_the_target_quantile(quantile):
    rng = np.random.default_rng(1)
    agg = A.adaptive_clipped(A.mean("uniform"), initial_norm=0.05, target_quantile=quantile, lr=0.2)
    state = agg.init()
    sigma = 0.5
    for r in range(300):
        norms = np.exp(rng.normal(0.0, sigma, 50))  # update norms: lognormal, median 1
        deltas = [n * np.eye(3)[0] for n in norms]
        _, state, m = _aggregate(agg, deltas, state=state, seed=r)
    true_q = float(np.exp(sigma * __import__("statistics").NormalDist().inv_cdf(quantile)))
    assert state["clip_norm"] == pytest.approx(true_q, rel=0.15)
    assert m["under_clip_fraction"] == pytest.approx(quantile, abs=0.2)


def test_zeroing_gives_no_weight_to_huge_or_nonfinite_updates():
    agg = A.zeroing(10.0, A.mean("examples"))
    out, _, _ = _aggregate(agg, [np.ones(3), np.full(3, 1e6), np.array([np.inf, 0, 0])], examples=[5, 5, 5])
    np.testing.assert_allclose(out, np.ones(3))


def test_impossible_chains_are_named():
    from fl.config import ConfigError

    with pytest.raises(ConfigError, match="must end with one reduction"):
        tiny_config("", aggregator={"chain": ["median", "clip"], "clip_norm": 1.0})
    with pytest.raises(ConfigError, match="kind=secagg but the chain has no secure_sum"):
        tiny_config("", aggregator={"chain": ["median"], "kind": "secagg", "clip_norm": 1.0})
    with pytest.raises(ConfigError, match="secure_sum reveals only the sum.*not median"):
        tiny_config("", aggregator={"chain": ["clip", "secure_sum", "median"], "clip_norm": 1.0})
    with pytest.raises(ConfigError, match="secure_sum needs a fixed clip"):
        tiny_config("", aggregator={"chain": ["adaptive_clip", "secure_sum", "mean"], "clip_norm": 1.0})
    with pytest.raises(ConfigError, match="secure_sum must come right before the reduction"):
        tiny_config("", aggregator={"chain": ["clip", "secure_sum", "zeroing", "mean"], "clip_norm": 1.0,
                                    "zeroing_norm": 5.0})
    with pytest.raises(ConfigError, match="distributed_dp must come right before secure_sum"):
        tiny_config("", aggregator={"chain": ["clip", "distributed_dp", "mean"], "clip_norm": 1.0,
                                    "secagg_dp_noise_multiplier": 1.0, "weighting": "uniform"})
    with pytest.raises(ConfigError, match="has no distributed_dp"):
        tiny_config("", aggregator={"chain": ["clip", "secure_sum", "mean"], "clip_norm": 1.0,
                                    "secagg_dp_noise_multiplier": 1.0, "weighting": "uniform"})
    with pytest.raises(ConfigError, match="add noise twice"):
        tiny_config("", aggregator={"chain": ["clip", "distributed_dp", "secure_sum", "dp_mean"], "clip_norm": 1.0,
                                    "secagg_dp_noise_multiplier": 1.0, "dp_noise_multiplier": 1.0,
                                    "weighting": "uniform"})
    with pytest.raises(ConfigError, match="does not end with dp_mean"):
        tiny_config("", aggregator={"chain": ["clip", "mean"], "clip_norm": 1.0, "dp_noise_multiplier": 1.0,
                                    "weighting": "uniform"})


def test_flat_keys_stand_for_a_chain():
    from fl.aggregators import default_chain

    def chain(**agg):
        return default_chain(tiny_config("", aggregator=agg).aggregator)

    assert chain() == ("mean",)
    assert chain(clip_norm=1.0) == ("clip", "mean")
    assert chain(clip_norm=1.0, dp_noise_multiplier=1.0, weighting="uniform") == ("dp_mean",)
    assert chain(clip_norm=1.0, kind="secagg") == ("clip", "secure_sum", "mean")
    assert chain(clip_norm=1.0, kind="secagg", secagg_dp_noise_multiplier=1.0, weighting="uniform") == (
        "clip", "distributed_dp", "secure_sum", "mean")


def test_secure_round_refuses_a_weight_that_could_wrap_the_sum():
    from fl.config import load_config
    from fl.secure_sum import plan_secure_round

    agg = load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1"]).aggregator
    secure = plan_secure_round(agg, range(10), 5, 8.0, seed=0, round_num=0)
    rng = np.random.default_rng(0)
    secure.encode(np.ones(5) * 0.1 * 8.0, 8.0, rng)  # at the bound: fine
    with pytest.raises(ValueError, match="outside the secure sum's range"):
        secure.encode(np.ones(5) * 0.1 * 9.0, 9.0, rng)
    # a contribution over its clip x weight bound is clipped back, never wrapped around
    q = secure.encode(np.full(5, 1e6), 1.0, rng)
    assert np.linalg.norm(secure.quantizer.decode(q)) <= np.sqrt(2) * 1.0 + 1e-3


def _run(cfg, out):
    with engine(cfg) as process:
        state, rec = train(process, out, progress=False)
    return state, rec.rounds_frame()


def test_robust_chain_trains_through_byzantine_devices_where_the_mean_fails(ray_local, cache_dir, tmp_path):
    faults = {"byzantine_rate": 0.2}
    base = dict(experiment={"rounds": 6}, faults=faults, cohort={"goal": 10, "min_reports": 4})
    _, robust = _run(tiny_config(cache_dir, aggregator={"chain": ["trimmed_mean"], "trim_fraction": 0.3}, **base),
                     tmp_path / "robust")
    _, plain = _run(tiny_config(cache_dir, **base), tmp_path / "plain")
    assert robust["train_loss"].iloc[-1] < robust["train_loss"].iloc[0]
    assert plain["update_norm"].max() > 20 * robust["update_norm"].max()  # the attackers steer the mean


def test_adaptive_clip_state_reaches_workers_and_resumes_exactly(ray_local, cache_dir, tmp_path):
    agg = {"chain": ["zeroing", "adaptive_clip", "mean"], "clip_norm": 0.01, "zeroing_norm": 100.0,
           "clip_target_quantile": 0.5, "clip_lr": 0.5}
    full, rounds = _run(tiny_config(cache_dir, experiment={"rounds": 4}, aggregator=agg), tmp_path / "full")
    clip = rounds["clip_norm"].to_numpy()
    assert clip[0] == 0.01 and np.all(np.diff(clip) > 0)  # starts far under the median norm and grows
    assert rounds["clipped_fraction"].iloc[0] == 1.0  # the workers clipped with the broadcast norm
    _run(tiny_config(cache_dir, experiment={"rounds": 2}, aggregator=agg), tmp_path / "resumed")
    resumed, _ = _run(tiny_config(cache_dir, experiment={"rounds": 4}, aggregator=agg), tmp_path / "resumed")
    np.testing.assert_array_equal(full.weights, resumed.weights)
    assert full.agg_state["clip_norm"] == resumed.agg_state["clip_norm"]
    again = pd.read_parquet(tmp_path / "resumed" / "rounds.parquet")["clip_norm"].to_numpy()
    np.testing.assert_array_equal(again, clip)


def test_only_a_plain_weighted_sum_is_linear():
    """Workers sum updates inside the training call only for a client half that is exactly
    delta * weight: any wrapper that replaces the client turns that off."""
    assert A.linear_weight(A.mean())(7.0) == 7.0 and A.linear_weight(A.mean("uniform"))(7.0) == 1.0
    for agg in (A.clipped(1.0, A.mean()), A.zeroing(1.0, A.mean()), A.adaptive_clipped(A.mean()),
                A.gaussian_dp(1.0, 1.0, 10, 1e-6, 1000), A.trimmed_mean(0.1), A.median()):
        assert A.linear_weight(agg) is None
    assert A.linear_weight(A.mean()._replace(finalize=lambda *a: a)) is not None  # a server-only change keeps it


@pytest.mark.parametrize("client", [{}, {"jit_compile": True}])
def test_summing_inside_the_training_call_gives_the_same_bits(cache_dir, client, monkeypatch):
    """The fused sum (`DeviceWorker._run_chunk_summed`) against one device at a time
    (`_finish_device`), in one worker process: the same partial sum, bit for bit, and the
    same records; a device whose update is not finite is rejected by both."""
    import tensorflow as tf

    from fl.worker import DeviceWorker, unpack_records

    for name in ("set_intra_op_parallelism_threads", "set_inter_op_parallelism_threads"):
        monkeypatch.setattr(tf.config.threading, name, lambda n: None)  # (TF is already running here)

    cfg = tiny_config(cache_dir, population={"examples_min": 5, "examples_max": 60},
                      client={"lr": 0.05, "batch_size": 5, "shuffle": True, **client})
    worker = DeviceWorker(cfg.to_dict())
    calls = []
    summing = worker.trainer.train_sum
    monkeypatch.setattr(worker.trainer, "train_sum", lambda *a: calls.append(1) or summing(*a))
    weights = worker.initial_weights()
    ids, n = np.arange(40) * 3, 5 + (np.arange(40) * 7) % 50
    fused = unpack_records(worker.run(0, weights, ids, n))
    assert calls, "the linear mean did not sum inside the call"
    linear = worker.aggregator
    worker.aggregator = linear._replace(linear=None)
    calls.clear()
    plain = unpack_records(worker.run(0, weights, ids, n))
    assert not calls
    np.testing.assert_array_equal(fused["sum"], plain["sum"])
    assert fused["weight"] == plain["weight"] and fused["metrics"] == plain["metrics"]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "compute_s"} for r in recs]  # noqa: E731
    assert strip(fused["records"]) == strip(plain["records"])
    bad = weights.copy()
    bad[0] = np.inf  # every delta is then non-finite
    for agg in (linear, linear._replace(linear=None)):
        worker.aggregator = agg
        out = unpack_records(worker.run(1, bad, ids[:3], n[:3]))
        assert [r["status"] for r in out["records"]] == ["rejected"] * 3 and out["weight"] == 0.0
