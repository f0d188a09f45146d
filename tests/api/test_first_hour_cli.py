"""The CLI in a researcher's first hour: --config layers over an experiment's defaults, a run
with a data section needs no experiment name, failures are printed, Ctrl-C and --resume
say what to do next, and a bad --out is refused before Ray starts."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from experiments import cli

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _fedpop(*args, cwd):
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=ENV, timeout=600)


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _no_ray(monkeypatch):
    import ray

    def refuse(*a, **k):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)


def test_config_layers_over_the_named_experiment(tmp_path):
    mine = _write(tmp_path / "my.yaml", {"cohort": {"goal": 7, "min_reports": 3}, "experiment": {"rounds": 2}})
    name, cfg = cli.run_config("fedavg-mlp", str(mine))
    assert name == "fedavg-mlp" and cfg.experiment.task == "mlp" and cfg.task.input_dim == 784  # fedavg-mlp.yaml's
    assert cfg.population.size == 10000 and cfg.cohort.goal == 7 and cfg.experiment.rounds == 2
    assert cfg.experiment.name == "my"  # named after the file
    named = _write(tmp_path / "other.yaml", {"experiment": {"name": "study-1"}})
    assert cli.run_config("fedavg-mlp", str(named))[1].experiment.name == "study-1"
    name, cfg = cli.run_config(None, str(mine))  # no name: fedavg's defaults
    assert name == "fedavg" and cfg.experiment.task == "mlp" and cfg.population.size == 1000
    # a YAML that changes the task brings its own task keys; the base's belong to the base's task
    swap = _write(tmp_path / "swap.yaml", {"experiment": {"task": "tiny_tasks:LabelSkew"}})
    assert cli.run_config("fedavg-mlp", str(swap))[1].task is None
    _, cfg = cli.run_config("fedavg-mlp", None, ["cohort.goal=9"])
    assert cfg.experiment.name == "fedavg-mlp" and cfg.cohort.goal == 9


def test_bad_out_is_refused_before_ray(tmp_path, monkeypatch, capsys):
    _no_ray(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert cli.main(["run", "fedavg", "--out", str(tmp_path / "file"), "--quiet"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert cli.main(["run", "fedavg", "--out", str(tmp_path / "file" / "run"), "--quiet"]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err


def test_a_yaml_with_a_data_section_runs_without_a_name_and_resume_says_complete(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    rows = [{"client_id": f"c{i}", "a": rng.normal(), "b": rng.normal(), "c": rng.normal(), "y": int(rng.integers(2))}
            for i in range(6) for _ in range(5 + i)]
    pd.DataFrame(rows).to_csv(tmp_path / "clients.csv", index=False)
    _write(tmp_path / "my.yaml", {
        "experiment": {"task": "tiny_tasks:NoData", "rounds": 3},
        "cohort": {"goal": 3, "min_reports": 2}, "eval": {"every": 3, "cohort": 6}, "workers": {"num": 2},
        "data": {"format": "table", "path": "clients.csv", "eval_fraction": 0.2}})
    r = _fedpop("run", "--config", "my.yaml", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    out = tmp_path / "runs" / "my"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "my" and summary["population"] == 6 and summary["availability"] == "always"
    assert summary["coverage"]["clients_trained"] == summary["clients_trained"] >= 4
    assert summary["final_eval_round"] == 2 and summary["rounds_without_update"] == 0
    cov = pd.read_parquet(out / "coverage.parquet")
    assert cov["rounds"].sum() == 9 and set(cov["client_id"]) <= {f"c{i}" for i in range(6)}
    assert "train devices per status: accepted 9" in r.stderr
    assert "traceback" in pd.read_parquet(out / "clients.parquet").columns

    _no_ray(monkeypatch)  # a finished run: said so, exit 0, nothing started
    assert cli.main(["run", "--resume", str(out)]) == 0
    assert "is complete (3 of 3 rounds)" in capsys.readouterr().out


def test_a_run_where_every_device_fails_exits_nonzero_with_the_error(tmp_path):
    r = _fedpop("run", "fedavg", "--out", str(tmp_path / "run"), "--quiet",
                *[a for s in ["experiment.task=first_hour_tasks:WrongShape", "experiment.rounds=2",
                              "population.size=6", "population.availability=always", "cohort.goal=3",
                              "cohort.min_reports=2", "eval.every=0", "workers.num=2"] for a in ("--set", s)],
                cwd=tmp_path)
    assert r.returncode == 1, r.stderr[-3000:]
    err = r.stderr
    assert "fedpop: warning: round 0 made no update" in err and err.count("made no update: only") == 1
    assert "train devices per status: failed 6" in err and "no round made an update" in err
    assert "failed x6, first: device" in err and '  File "' in err  # the traceback's last frames
    clients = pd.read_parquet(tmp_path / "run" / "clients.parquet")
    assert clients["status"].eq("failed").all()
    assert clients["traceback"].str.contains("Traceback").all()
    first_error = clients["error"].iloc[0].splitlines()[0]
    assert first_error[:60] in err


def test_ctrl_c_prints_how_to_resume_and_exits_130(tmp_path):
    out = tmp_path / "run"
    sets = ["experiment.task=tiny_tasks:LabelSkew", "experiment.rounds=100000", "population.size=40",
            "population.availability=always", "cohort.goal=6", "cohort.min_reports=3", "eval.every=0",
            "workers.num=2"]
    # as from a terminal: a test run started in the background (e.g. `make test &`) inherits SIGINT
    # ignored, and Python then installs no KeyboardInterrupt handler in the child
    proc = subprocess.Popen([sys.executable, "-m", "experiments.cli", "run", "fedavg", "--out", str(out), "--quiet",
                             *[a for s in sets for a in ("--set", s)]], cwd=tmp_path, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not (out / "rounds.parquet").exists() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    line = next(x for x in stderr.splitlines() if "interrupted after round" in x)
    assert line.endswith(f"continue with `fedpop run --resume {out}`")
    done = int(np.load(out / "checkpoint.npz")["round"])
    assert f"interrupted after round {done - 1};" in line


def test_run_without_name_or_config_is_refused(capsys):
    assert cli.main(["run"]) == 2
    assert "give an experiment name, --config FILE or --resume DIR" in capsys.readouterr().err
