"""A user task given by import path trains through the CLI, with its summary and tables."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent


def _fedpop(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_import_path_task_with_ditto_trains_through_the_cli(tmp_path, cache_dir):
    out = tmp_path / "run"
    sets = ["experiment.task=tiny_tasks:LabelSkew", "experiment.rounds=4", "population.size=12",
            "population.eligible_prob=1.0", "population.night_hours=24", "cohort.goal=6", "cohort.min_reports=3",
            "client.algorithm=ditto", "client.lr=0.1", "eval.every=4", "eval.cohort=12", "workers.num=2"]
    r = _fedpop("run", "fedavg", "--out", str(out), "--quiet", "--cache-dir", cache_dir,
                *[a for s in sets for a in ("--set", s)], cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 4 and summary["personalization"]["devices"] > 0
    assert 0 <= summary["personalization"]["fraction_improved"] <= 1
    clients = pd.read_parquet(out / "clients.parquet")
    ev = clients[clients["phase"] == "eval"]
    assert ev["personalized_accuracy"].notna().sum() == summary["personalization"]["devices"]
    assert list((out / "device_state").rglob("r*.npz"))


def test_bad_import_path_fails_before_any_work(tmp_path):
    r = _fedpop("run", "fedavg", "--out", str(tmp_path / "x"), "--set", "experiment.task=tiny_tasks:Missing",
                cwd=tmp_path)
    assert r.returncode == 2
    assert "bad value for 'experiment.task'" in r.stderr and "has no attribute 'Missing'" in r.stderr
    assert not (tmp_path / "x").exists()
