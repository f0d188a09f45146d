"""Secure aggregation through the engine: fresh round ids, the transport identity
of workers, and the active-security mode end to end on Ray actors."""
import dataclasses

import numpy as np
import pytest

from engine_testing import tiny_config
from fl.config import ConfigError, load_config
from fl.runner import engine, train
from fl.secure_sum import DeviceIdentities, plan_secure_round, run_server


def test_round_ids_are_fresh_random_across_runs_and_rounds():
    agg = load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1"]).aggregator
    ids = [plan_secure_round(agg, range(10), 5, 1.0, seed=0, round_num=0).config.round_id for _ in range(3)]
    ids.append(plan_secure_round(agg, range(10), 5, 1.0, seed=0, round_num=1).config.round_id)
    assert len(set(ids)) == 4 and all(len(i) == 16 for i in ids)


def test_active_mode_registers_device_keys_once():
    agg = load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1",
                           "aggregator.secagg_malicious=true"]).aggregator
    ident = DeviceIdentities()
    a = plan_secure_round(agg, [7, 3, 9] + list(range(20, 30)), 4, 1.0, seed=0, round_num=0, identities=ident)
    b = plan_secure_round(agg, [3, 11] + list(range(30, 40)), 4, 1.0, seed=0, round_num=1, identities=ident)
    assert a.config.malicious and a.config.verify_keys[1] == b.config.verify_keys[0]  # device 3
    assert a.config.verify_keys[0] != a.config.verify_keys[1]
    assert 2 * a.config.threshold >= a.config.k + 3
    from secagg import ConfigError as SecAggConfigError

    with pytest.raises(SecAggConfigError, match="floor"):  # 3 devices cannot run the active mode safely
        plan_secure_round(agg, [1, 2, 3], 4, 1.0, seed=0, round_num=2, identities=ident)


def test_unsafe_secagg_parameters_fail_before_any_work():
    with pytest.raises(ConfigError, match="cohort.goal=3.*structural floor"):
        load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1", "cohort.goal=3", "cohort.min_reports=2",
                         "aggregator.secagg_malicious=true"])


class _ForgingPool:
    """A worker pool in which worker 1 relabels its masked pre-sum as worker 0's clients."""

    def __init__(self, pool):
        self.pool = pool

    def secure_stage(self, stage, messages):
        out = self.pool.secure_stage(stage, messages)
        if stage == "masked_input":
            origins = sorted({o for o, _ in out}, key=min)
            forged = [(o, dataclasses.replace(m, client_ids=tuple(sorted(origins[0]))[:len(m.client_ids)]))
                      if o == origins[-1] else (o, m) for o, m in out]
            return forged
        return out


def test_a_worker_cannot_speak_for_devices_it_does_not_host(ray_local, cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, experiment={"rounds": 1}, cohort={"goal": 10, "min_reports": 3},
                      aggregator={"clip_norm": 0.05, "kind": "secagg", "secagg_mode": "secagg"})
    with engine(cfg) as process:
        from fl.cohort import plan_round

        state = process.initialize()
        plan = plan_round(process.population, cfg.cohort, 0, cfg.experiment.seed, cfg.client.epochs,
                          model_bytes=4 * state.weights.size)
        ids = plan.accepted_ids
        secure = plan_secure_round(cfg.aggregator, ids, state.weights.size, 100.0, cfg.experiment.seed, 0)
        results = process.pool.run(0, state.weights, ids, process.population.columns["num_examples"][ids],
                                   "train", secure)
        advertised = [(process.pool.hosted(w), m) for w, res in enumerate(results) for m in res["advertise"]]
        total, metrics = run_server(_ForgingPool(process.pool), secure, advertised)
        assert metrics["secagg_rejected"] == 1  # worker 1's relabelled pre-sum
        assert sorted(metrics["survivor_positions"]) == sorted(process.pool.hosted(0))
        assert total.shape == (secure.config.m,)


def test_active_mode_through_the_engine_matches_plain(ray_local, cache_dir, tmp_path):
    base = dict(experiment={"rounds": 2}, cohort={"goal": 10, "min_reports": 3})
    plain = tiny_config(cache_dir, aggregator={"clip_norm": 0.05}, **base)
    active = tiny_config(cache_dir, aggregator={"clip_norm": 0.05, "kind": "secagg", "secagg_malicious": True},
                         **base)
    with engine(plain) as p:
        s_plain, _ = train(p, tmp_path / "plain", progress=False)
    with engine(active) as p:
        s_act, rec = train(p, tmp_path / "active", progress=False)
    rounds = rec.rounds_frame()
    assert rounds["updated"].all() and (rounds["secagg_survivors"] == 10).all()
    assert rounds["secagg_malicious"].all() and (rounds["secagg_rejected"] == 0).all()
    assert 0 < np.abs(s_plain.weights - s_act.weights).max() < 1e-5


def test_analytics_secure_sum_in_active_mode():
    from analytics.config import SecAggSection
    from analytics.secure_histogram import secure_sum

    rows = np.random.default_rng(0).integers(0, 5, size=(60, 7))
    settings = SecAggSection(group_size=30, malicious=True, corrupt_fraction=0.0).settings()
    res = secure_sum(rows, settings=settings, seed=1)
    assert res.groups == 2 and np.array_equal(np.asarray(res.total), rows.sum(axis=0))


def test_distributed_dp_through_the_engine_equals_the_plain_mean_within_the_noise(ray_local, cache_dir, tmp_path):
    """The chain clip -> distributed_dp -> secure_sum -> mean: each device adds discrete
    Gaussian noise inside SecAgg (Kairouz et al. 2021); the server's only view is the noisy
    sum; the update differs from the plain clipped mean by that noise (std sqrt(n) sigma /
    scale / goal per coordinate) plus the quantization bound, no more."""
    base = dict(experiment={"rounds": 1}, cohort={"goal": 10, "min_reports": 3})
    agg = {"clip_norm": 0.05, "weighting": "uniform"}
    plain = tiny_config(cache_dir, aggregator=agg, **base)
    ddp = tiny_config(cache_dir, aggregator={**agg, "chain": ["clip", "distributed_dp", "secure_sum", "mean"],
                                             "secagg_dp_noise_multiplier": 0.5}, **base)
    with engine(plain) as p:
        s_plain, _ = train(p, tmp_path / "plain", progress=False)
    with engine(ddp) as p:
        s_ddp, rec = train(p, tmp_path / "ddp", progress=False)
    r = rec.rounds_frame().iloc[0]
    assert r["updated"] and r["secagg_survivors"] == 10 and r["secagg_dp_sigma"] > 0
    n, goal, scale = 10, 10, r["secagg_scale"]
    noise_std = np.sqrt(n) * r["secagg_dp_sigma"] / scale / goal
    diff = s_ddp.weights.astype(np.float64) - s_plain.weights
    bound = 6 * noise_std + n / scale / goal + 1e-6  # 6 sigma + stochastic rounding + float32 weights
    assert np.abs(diff).max() < bound
    assert 0.7 < np.std(diff) / noise_std < 1.3  # the noise is really there, with the stated std
    # the stated std is z x the clipped update's norm over the threshold's devices, per report
    assert noise_std * goal == pytest.approx(0.5 * np.sqrt(2) * 0.05 * np.sqrt(n / r["secagg_threshold"]), rel=0.01)
    assert 0 < r["dp_epsilon"] < np.inf and 0 < r["dp_sampling_q"] <= 1


def test_distributed_dp_needs_secagg_and_uniform_weights():
    with pytest.raises(ConfigError, match="needs aggregator.kind=secagg"):
        load_config({}, ["aggregator.secagg_dp_noise_multiplier=1", "aggregator.clip_norm=1"])
    with pytest.raises(ConfigError, match="weighting"):
        load_config({}, ["aggregator.secagg_dp_noise_multiplier=1", "aggregator.clip_norm=1",
                         "aggregator.kind=secagg"])


def test_central_dp_on_a_secure_sum_equals_plain_dp_up_to_quantization(ray_local, cache_dir, tmp_path):
    """[clip, secure_sum, dp_mean]: the server adds DP-FedAvg's noise to the sum SecAgg
    revealed.  The noise is seeded by the round, so the result equals the plain chain
    [clip, dp_mean] up to the quantization bound: the secure sum is the plain sum."""
    base = dict(experiment={"rounds": 2}, cohort={"goal": 10, "min_reports": 3})
    agg = {"clip_norm": 0.05, "weighting": "uniform", "dp_noise_multiplier": 0.3}
    plain = tiny_config(cache_dir, aggregator={**agg, "chain": ["clip", "dp_mean"]}, **base)
    secure = tiny_config(cache_dir, aggregator={**agg, "chain": ["clip", "secure_sum", "dp_mean"]}, **base)
    with engine(plain) as p:
        s_plain, rec_plain = train(p, tmp_path / "plain", progress=False)
    with engine(secure) as p:
        s_sec, rec = train(p, tmp_path / "secure", progress=False)
    rounds = rec.rounds_frame()
    assert rounds["updated"].all() and (rounds["secagg_survivors"] == 10).all()
    diff = np.abs(s_sec.weights.astype(np.float64) - s_plain.weights).max()
    bound = 2 * 10 / rounds["secagg_scale"].min() / 10 + 1e-6  # 2 rounds x n/scale over the denominator
    assert 0 < diff < bound
    np.testing.assert_allclose(rounds["dp_epsilon"], rec_plain.rounds_frame()["dp_epsilon"])
    # which devices were clipped stays on the devices: only the plain run reports it
    assert "clipped_fraction" in rec_plain.rounds_frame() and "clipped_fraction" not in rounds


def test_a_worker_hosting_a_single_device_keeps_it_counted_in_active_mode():
    """The engine's worker code path (SecureRound.client / SecureRound.presum, as
    DeviceWorker.secure_stage runs it): worker A hosts position 0 alone, worker B the
    other nine.  Position 0's pre-sum keeps its signature and it is counted."""
    from secagg import SecAggServer
    from secagg.prg import MaskExpander

    agg = load_config({}, ["aggregator.kind=secagg", "aggregator.clip_norm=1",
                           "aggregator.secagg_malicious=true", "aggregator.secagg_corrupt_fraction=0"]).aggregator
    ids = list(range(500, 510))
    secure = plan_secure_round(agg, ids, 5, 1.0, seed=0, round_num=0, identities=DeviceIdentities())
    cfg = secure.config
    x = np.random.default_rng(0).integers(0, 2**20, size=(cfg.n, cfg.m)).astype(np.uint32)
    hosts = [{0}, set(range(1, 10))]
    state = [{p: (secure.client(p, MaskExpander(cfg.m, cfg.bits, cfg.prg)), x[p]) for p in h} for h in hosts]
    server = SecAggServer(cfg)
    for h, st in zip(hosts, state):
        for p, (c, _) in st.items():
            server.receive_advertise(c.advertise_keys(), origin=h)
    for i, msg in server.broadcast_keys().items():
        h = 0 if i == 0 else 1
        server.receive_share_keys(state[h][i][0].share_keys(msg), origin=hosts[h])
    fwd = server.forward_shares()
    for h, st in zip(hosts, state):
        outs = [c.masked_input(fwd[p], q) for p, (c, q) in sorted(st.items())]
        server.receive_masked_input(secure.presum(outs, st), origin=hosts[hosts.index(h)])
    for i, msg in server.consistency_requests().items():
        server.receive_consistency(state[0 if i == 0 else 1][i][0].consistency(msg), origin=hosts[0 if i == 0 else 1])
    for i, msg in server.unmask_requests().items():
        server.receive_unmask(state[0 if i == 0 else 1][i][0].unmask(msg), origin=hosts[0 if i == 0 else 1])
    total = server.finalize()
    assert server.u3 == set(range(10))
    assert np.array_equal(total, x.astype(np.uint64).sum(axis=0) % 2**32)
