"""The user-facing paths: `fedpop run` + `--resume`, and the scale benchmark's JSON."""
import json

import pandas as pd
import pytest
import ray

from experiments.cli import main

TINY = ["--set", "population.size=200", "--set", "cohort.goal=6", "--set", "cohort.min_reports=2",
        "--set", "task.hidden=[8]", "--set", "task.input_dim=16", "--set", "experiment.rounds=2",
        "--set", "eval.every=1", "--set", "eval.cohort=4", "--quiet"]


def test_run_then_resume_extends_the_same_run(tmp_path, cache_dir, capsys):
    out = tmp_path / "run"
    ray.shutdown()
    assert main(["run", "fedavg-mlp", "--out", str(out), "--cache-dir", cache_dir, *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 2
    assert main(["run", "--resume", str(out), "--set", "experiment.rounds=3", "--quiet"]) == 0
    rounds = pd.read_parquet(out / "rounds.parquet")
    assert list(rounds["round"]) == [0, 1, 2]
    assert json.loads((out / "summary.json").read_text())["rounds"] == 3
    assert "results in" in capsys.readouterr().out


def test_existing_run_directory_is_not_overwritten(tmp_path, cache_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.npz").write_bytes(b"x")
    try:
        main(["run", "fedavg-mlp", "--out", str(out), *TINY])
    except SystemExit as e:
        assert "--resume" in str(e)
    else:
        raise AssertionError("expected a refusal")


def test_bench_scale_quick_writes_keys(tmp_path, cache_dir):
    from experiments.bench_scale import run_bench

    ray.shutdown()
    res = run_bench(str(tmp_path / "scale.json"), quick=True, cache_dir=cache_dir, population=150_000)
    saved = json.loads((tmp_path / "scale.json").read_text())
    for key in ("population", "build_s", "coordinator_overhead_s_per_round", "coordinator_peak_rss_mb",
                "tensorflow_in_coordinator"):
        assert key in saved
    assert res["population"] == 150_000 and all(r["accepted"] == 200 for r in res["per_round"])
    assert res["population_mb"] == 0  # a lazy population holds nothing per device (fl/population.py)


def test_bench_scale_repeats_in_fresh_processes_and_reports_the_median(tmp_path):
    from experiments.bench_scale import run_bench

    res = run_bench(str(tmp_path / "scale.json"), quick=True, population=60_000, repeats=2)
    assert res["repeats"] == 2 and len(res["runs"]) == 2 and res["population"] == 60_000
    peaks = [r["coordinator_peak_rss_mb"] for r in res["runs"]]
    assert res["spread"]["coordinator_peak_rss_mb"] == [min(peaks), max(peaks)]
    assert res["coordinator_peak_rss_mb"] == pytest.approx(sum(peaks) / 2)  # the median of two
    assert json.loads((tmp_path / "scale.json").read_text())["headline"]["population"] == 60_000


def test_engine_bench_reports_the_median_across_runs_and_the_spread():
    from experiments.bench_engine import SCALARS, summarize_runs

    def run(x):
        return {"workload": {}, **{k: x for k in SCALARS},
                "aggregators": {"mean": {"s_per_round": x, "s_per_round_spread": [x, x], "aggregate_s": x / 10,
                                         "cohort": 50, "extra_coordinator_bytes": 0}}}

    out = summarize_runs([run(3.0), run(1.0), run(2.0)])
    assert out["repeats"] == 3 and out["fedpop_s_per_round"] == 2.0
    assert out["spread"]["fedpop_s_per_round"] == [1.0, 3.0]
    assert out["aggregators"]["mean"]["s_per_round"] == 2.0
    assert out["aggregators"]["mean"]["s_per_round_spread_across_runs"] == [1.0, 3.0]
    assert out["headline"]["speedup_vs_tff"] == 2.0 and len(out["runs"]) == 3
