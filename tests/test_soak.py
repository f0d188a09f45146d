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
