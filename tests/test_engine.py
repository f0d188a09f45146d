"""End-to-end rounds through real Ray actors (small MLP so the whole module takes ~1 min)."""
import json

import numpy as np
import pandas as pd
import pytest
import ray

from engine_testing import tiny_config
from fl.runner import engine, train


def _run(cfg, out):
    with engine(cfg) as process:
        state, recorder = train(process, out, progress=False)
        return state, recorder, process.pool.replaced


def test_rounds_outputs_and_determinism(ray_local, cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, eval={"every": 1, "cohort": 6}, population={"dropout_per_hour": 200.0},
                      cohort={"goal": 8, "over_selection": 1.5, "min_reports": 2, "deadline_s": 3.0})
    s1, rec, _ = _run(cfg, tmp_path / "a")
    s2, _, _ = _run(cfg, tmp_path / "b")
    np.testing.assert_array_equal(s1.weights, s2.weights)
    rounds = pd.read_parquet(tmp_path / "a" / "rounds.parquet")
    clients = pd.read_parquet(tmp_path / "a" / "clients.parquet")
    assert list(rounds["round"]) == [0, 1, 2]
    for col in ["sim_seconds", "selected", "accepted", "dropped", "stragglers", "train_loss", "eval_loss"]:
        assert col in rounds
    assert (rounds["selected"] == 12).all() and rounds["dropped"].sum() > 0
    assert set(clients.columns) >= {"device_id", "round", "status", "examples", "loss", "error"}
    train_rows, eval_rows = clients[clients["phase"] == "train"], clients[clients["phase"] == "eval"]
    per_round = train_rows.groupby("round")["status"].value_counts().unstack(fill_value=0)
    np.testing.assert_array_equal(per_round["accepted"].to_numpy(), rounds["accepted"].to_numpy())
    per_round_eval = eval_rows[eval_rows["status"] == "accepted"].groupby("round").size()
    np.testing.assert_array_equal(per_round_eval.to_numpy(), rounds["eval_devices"].to_numpy())
    assert rounds["eval_loss"].notna().all()
    assert list((tmp_path / "a" / "tensorboard").glob("events.out.tfevents.*"))
    rec.finish({"ok": True})
    assert json.loads((tmp_path / "a" / "summary.json").read_text()) == {"ok": True}
    assert (tmp_path / "a" / "training_curve.png").stat().st_size > 1000


def test_worker_counts_agree_and_loss_falls(ray_local, cache_dir, tmp_path):
    one = tiny_config(cache_dir, workers={"num": 1}, experiment={"rounds": 4})
    two = tiny_config(cache_dir, workers={"num": 2}, experiment={"rounds": 4})
    s1, rec1, _ = _run(one, tmp_path / "one")
    s2, _, _ = _run(two, tmp_path / "two")
    np.testing.assert_allclose(s1.weights, s2.weights, rtol=1e-5, atol=1e-6)
    loss = rec1.rounds_frame()["train_loss"].to_numpy()
    assert loss[-1] < loss[0]


@pytest.mark.parametrize("algorithm,server", [("fedsgd", "sgd"), ("fedprox", "adam"), ("fedavg", "yogi")])
def test_algorithm_variants_train(ray_local, cache_dir, tmp_path, algorithm, server):
    cfg = tiny_config(cache_dir, experiment={"rounds": 5},
                      client={"algorithm": algorithm, "prox_mu": 0.1, "lr": 0.05},
                      server={"optimizer": server, "lr": 0.05 if server != "sgd" else 0.5})
    _, rec, _ = _run(cfg, tmp_path / algorithm)
    loss = rec.rounds_frame()["train_loss"].to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < loss[0]


def test_resume_matches_uninterrupted(ray_local, cache_dir, tmp_path):
    full = tiny_config(cache_dir, experiment={"rounds": 4}, server={"optimizer": "adam", "lr": 0.05})
    s_full, rec_full, _ = _run(full, tmp_path / "full")
    half = tiny_config(cache_dir, experiment={"rounds": 2}, server={"optimizer": "adam", "lr": 0.05})
    _run(half, tmp_path / "resumed")
    s_res, rec_res, _ = _run(full, tmp_path / "resumed")  # same directory: continues from round 2
    np.testing.assert_array_equal(s_full.weights, s_res.weights)
    a = rec_full.rounds_frame()["train_loss"].to_numpy()
    b = pd.read_parquet(tmp_path / "resumed" / "rounds.parquet")["train_loss"].to_numpy()
    np.testing.assert_array_equal(a, b)
    parts = sorted(p.name for p in (tmp_path / "resumed" / "clients.parquet").iterdir())
    assert parts == [f"round-{r:06d}.parquet" for r in range(4)]
    resumed = pd.read_parquet(tmp_path / "resumed" / "clients.parquet").sort_values(["round", "device_id"])
    full = pd.read_parquet(tmp_path / "full" / "clients.parquet").sort_values(["round", "device_id"])
    np.testing.assert_array_equal(resumed["loss"].to_numpy(), full["loss"].to_numpy())


def test_xla_rounds_resume_bit_identically_and_match_the_plain_path(ray_local, cache_dir, tmp_path):
    """client.jit_compile: devices of different sizes per round; resume is bit-identical and
    the weights equal the plain path's to float rounding."""
    sets = dict(experiment={"rounds": 4}, population={"examples_min": 5, "examples_max": 60},
                cohort={"goal": 12, "min_reports": 4, "over_selection": 1.0, "deadline_s": 1e6})
    jit = tiny_config(cache_dir, client={"lr": 0.05, "batch_size": 5, "shuffle": True, "jit_compile": True}, **sets)
    s_full, _, _ = _run(jit, tmp_path / "full")
    half = tiny_config(cache_dir, client={"lr": 0.05, "batch_size": 5, "shuffle": True, "jit_compile": True},
                       **{**sets, "experiment": {"rounds": 2}})
    _run(half, tmp_path / "resumed")
    s_res, _, _ = _run(jit, tmp_path / "resumed")
    np.testing.assert_array_equal(s_full.weights, s_res.weights)
    plain = tiny_config(cache_dir, client={"lr": 0.05, "batch_size": 5, "shuffle": True}, **sets)
    s_plain, _, _ = _run(plain, tmp_path / "plain")
    np.testing.assert_allclose(s_full.weights, s_plain.weights, rtol=1e-4, atol=1e-5)


def test_initialize_gives_the_same_start_after_training(ray_local, cache_dir, tmp_path):
    """A worker's model variables hold the last device it trained; `initialize()` must not
    start from them (it did: a second `initialize()` on a used process began elsewhere)."""
    with engine(tiny_config(cache_dir)) as process:
        first = process.initialize()
        process.next(first)
        np.testing.assert_array_equal(process.initialize().weights, first.weights)


def test_faults_are_recorded_not_fatal(ray_local, cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, experiment={"rounds": 3},
                      faults={"device_error_rate": 0.15, "nan_rate": 0.15, "kill_worker_round": 1},
                      cohort={"goal": 12, "min_reports": 2}, workers={"retry_crashed": 0})
    state, rec, replaced = _run(cfg, tmp_path / "faults")
    clients = rec.clients
    assert replaced == 1
    failed = clients[clients["status"] == "failed"]
    assert len(failed) > 0 and failed["error"].str.contains("injected device fault").all()
    rejected = clients[clients["status"] == "rejected"]
    assert len(rejected) > 0 and rejected["error"].str.contains("NaN").all()
    crashed = clients[(clients["round"] == 1) & (clients["status"] == "dropped")]
    assert len(crashed) >= 6 and crashed["error"].str.contains("crashed").all()
    assert np.isfinite(state.weights).all()
    assert rec.rounds_frame()["updated"].all()


def test_a_crashed_worker_is_replaced_and_its_devices_rerun_bit_identically(ray_local, cache_dir, tmp_path):
    """The simulator failing is not the devices failing: with workers.retry_crashed (default 1)
    a worker killed mid-round every 2nd round is replaced, its devices re-run, and the run
    equals an undisturbed one, weights and per-device rows."""
    base = dict(experiment={"rounds": 3}, cohort={"goal": 10, "min_reports": 3})
    s_ok, rec_ok, replaced_ok = _run(tiny_config(cache_dir, **base), tmp_path / "ok")
    s_kill, rec_kill, replaced = _run(tiny_config(cache_dir, faults={"kill_worker_every": 2}, **base),
                                      tmp_path / "kill")
    assert replaced_ok == 0 and replaced == 1
    np.testing.assert_array_equal(s_ok.weights, s_kill.weights)
    cols = ["round", "device_id", "status", "loss", "examples"]
    pd.testing.assert_frame_equal(rec_ok.clients[cols].reset_index(drop=True),
                                  rec_kill.clients[cols].reset_index(drop=True))


def test_too_few_reports_ends_round_without_update(ray_local, cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, experiment={"rounds": 2}, faults={"device_error_rate": 1.0})
    with engine(cfg) as process:
        init = process.initialize()
        state, out = process.next(init)
    assert not out.metrics["updated"] and "only 0 devices reported" in out.metrics["message"]
    np.testing.assert_array_equal(state.weights, init.weights)
    assert state.round == 1


def test_join_existing_cluster_two_nodes(cache_dir, tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    try:
        cfg = tiny_config(cache_dir, workers={"num": 2, "ray_address": cluster.address}, experiment={"rounds": 2})
        with engine(cfg) as process:
            nodes = {ray.get(a.ping.remote())["node"] for a in process.pool.actors}
            state, rec = train(process, tmp_path / "cluster", progress=False)
            assert len(ray.nodes()) == 2 and len(nodes) == 2
        assert rec.rounds_frame()["accepted"].eq(8).all()
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_secure_aggregation_matches_plain_within_quantization(ray_local, cache_dir, tmp_path):
    base = dict(experiment={"rounds": 2}, cohort={"goal": 10, "min_reports": 3})
    plain = tiny_config(cache_dir, aggregator={"clip_norm": 0.05}, **base)
    secure = tiny_config(cache_dir, aggregator={"clip_norm": 0.05, "kind": "secagg"}, **base)
    s_plain, rec_plain, _ = _run(plain, tmp_path / "plain")
    s_sec, rec_sec, _ = _run(secure, tmp_path / "secure")
    rounds = rec_sec.rounds_frame()
    assert rounds["updated"].all() and (rounds["secagg_survivors"] == 10).all()
    assert rec_plain.rounds_frame()["clipped_fraction"].gt(0).any()  # clipping is active
    diff = np.abs(s_plain.weights - s_sec.weights).max()
    assert 0 < diff < 1e-5, diff  # quantization noise, well inside its bound


def test_secure_aggregation_survives_a_worker_crash(ray_local, cache_dir, tmp_path):
    cfg = tiny_config(cache_dir, experiment={"rounds": 2}, cohort={"goal": 12, "min_reports": 3},
                      aggregator={"clip_norm": 0.05, "kind": "secagg", "secagg_mode": "secagg"},
                      faults={"kill_worker_round": 0}, workers={"retry_crashed": 0})
    state, rec, replaced = _run(cfg, tmp_path / "crash")
    rounds = rec.rounds_frame()
    assert replaced == 1 and rounds["updated"].all()
    assert rounds.loc[0, "secagg_survivors"] == 6 and rounds.loc[0, "dropped"] >= 6


def test_dp_run_accounts_the_cohorts_real_sampling_and_resumes_exactly(ray_local, cache_dir, tmp_path):
    from fl.privacy import Sampling, epsilon_of_events

    agg = {"clip_norm": 0.5, "dp_noise_multiplier": 1.2, "weighting": "uniform", "dp_delta": 1e-6}
    pop = {"eligible_prob": 0.5, "night_hours": 8}  # a cohort comes from a fraction of the population
    full_cfg = tiny_config(cache_dir, experiment={"rounds": 4}, aggregator=agg, population=pop)
    s_full, rec, _ = _run(full_cfg, tmp_path / "full")
    rounds = rec.rounds_frame()
    q = rounds["dp_sampling_q"].to_numpy()
    assert (q > 8 / 300).all()  # the eligible pool is smaller than the population: q is larger than goal/N
    with engine(full_cfg) as process:  # recompute the pool sizes: the closed-form lower bound (fl/population.py)
        pools = [max(process.population.eligible_count(full_cfg.cohort.start_hour_utc * 3600.0
                                                       + r * full_cfg.cohort.round_interval_s), s)
                 for r, s in enumerate(rounds["selected"])]
        ids = np.arange(300)
        for r in range(4):  # the bound is below the realized count (mean - 3 sd of a binomial)
            t = full_cfg.cohort.start_hour_utc * 3600.0 + r * full_cfg.cohort.round_interval_s
            assert process.population.eligible_count(t) <= process.population.eligible(ids, t).sum()
    from fl.privacy.accounting import accounted_pool

    expected = epsilon_of_events([(1.2, Sampling("fixed", sample=8, pool=accounted_pool(p))) for p in pools], 1e-6)
    assert rounds["dp_epsilon"].iloc[-1] == pytest.approx(expected, rel=1e-9)
    half = tiny_config(cache_dir, experiment={"rounds": 2}, aggregator=agg, population=pop)
    _run(half, tmp_path / "resumed")
    s_res, _, _ = _run(full_cfg, tmp_path / "resumed")
    np.testing.assert_array_equal(s_full.weights, s_res.weights)
    for k in s_full.agg_state:
        np.testing.assert_array_equal(s_full.agg_state[k], s_res.agg_state[k])
    resumed = pd.read_parquet(tmp_path / "resumed" / "rounds.parquet")
    np.testing.assert_array_equal(resumed["dp_epsilon"].to_numpy(), rounds["dp_epsilon"].to_numpy())


def test_dp_with_example_weighting_is_refused():
    from fl.config import ConfigError

    with pytest.raises(ConfigError, match=r"'aggregator\.weighting': 'examples'.*allowed: uniform"):
        tiny_config("", aggregator={"clip_norm": 0.5, "dp_noise_multiplier": 1.0})
