"""The reduced soak (`fedpop bench soak --quick`): 30 rounds of the CLI with a worker killed
every 10 rounds and the coordinator SIGKILLed at a random round, then resumed."""
import json

import ray


def test_reduced_soak_equals_the_undisturbed_run_and_leaves_no_ray_process(tmp_path, cache_dir):
    from experiments.bench_soak import run_bench

    ray.shutdown()  # the runs are subprocesses; this process holds no cluster
    res = run_bench(str(tmp_path / "soak.json"), quick=True, cache_dir=cache_dir, work_dir=str(tmp_path / "work"))
    assert json.loads((tmp_path / "soak.json").read_text())["targets"]["identical_to_undisturbed"]["met"]
    comparison = res["comparison"]
    assert comparison["weights_identical"] and comparison["rounds_identical"] and comparison["clients_identical"]
    assert comparison["rounds"] == 30 and comparison["client_rows"] > 30 * 20
    assert 0 < res["kill"]["killed_after_round"] < 30  # the coordinator really died mid-run
    assert res["workers_replaced"] == 3
    for stage in ("undisturbed", "kill", "resume"):  # the SIGKILLed coordinator's cluster is gone too
        assert res[stage]["ray_left"] == [] and res[stage]["ray_exit_s"] <= 10.0, stage
    per_round = res["memory"]["per_round"]["undisturbed"]
    assert len(per_round["coordinator_rss_mb"]) == 30 and min(per_round["worker_rss_mb"]) > 50


def test_repeated_soaks_meet_a_target_only_when_every_seed_does(tmp_path):
    from experiments.bench_soak import _summarize

    def soak(seed, identical, slope):
        met = {"identical_to_undisturbed": identical, "rss_slope_mb_per_100_rounds": slope <= 5}
        return {"population": 10, "rounds": 5, "cohort": 2, "kill_worker_every": 2, "seed": seed,
                "memory": {"coordinator_mb_per_100_rounds": slope, "worker_mb_per_100_rounds": 1.0},
                "ray_exit_s_max": 1.0, "wall_s": 3.0,
                "targets": {k: {"met": v, "value": seed, "target": "t"} for k, v in met.items()}}

    out = _summarize(str(tmp_path / "s.json"), [soak(0, True, 1.0), soak(1, False, 3.0), soak(2, True, 9.0)])
    assert out["seeds"] == [0, 1, 2] and out["coordinator_mb_per_100_rounds"] == 3.0
    assert out["spread"]["coordinator_mb_per_100_rounds"] == [1.0, 9.0]
    assert out["headline"] == {"identical_to_undisturbed": False, "rss_slope_mb_per_100_rounds": False}
