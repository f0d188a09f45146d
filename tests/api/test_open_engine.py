"""The engine is extended without editing it: a user's algorithm and aggregator, defined in a
test module (user_extensions.py), run through the CLI by import path and take effect."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

HERE = Path(__file__).resolve().parent
SETS = ["experiment.task=tiny_tasks:LabelSkew", "experiment.rounds=3", "experiment.seed=4", "population.size=12",
        "population.availability=always", "cohort.goal=6", "cohort.min_reports=3", "client.lr=0.1",
        "eval.every=0", "workers.num=2"]


def _run(out, cache_dir, *sets):
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = ["run", "fedavg", "--out", str(out), "--quiet", "--cache-dir", cache_dir]
    args += [a for s in [*SETS, *sets] for a in ("--set", s)]
    r = subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True, text=True,
                       cwd=out.parent, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    from fl import checkpoint

    return checkpoint.load(out), pd.read_parquet(out / "rounds.parquet")


def test_user_algorithm_and_aggregator_run_through_the_cli_by_import_path(tmp_path, cache_dir):
    # FedAvgM (beta 0.9) on the halved mean, server SGD at lr 1, is the built-in FedAvg with the
    # server optimizer "momentum" (m <- 0.9 m - delta, w <- w - 0.5 m) to the bit: halving is exact
    user, user_rounds = _run(tmp_path / "user", cache_dir, "client.algorithm=user_extensions:ServerMomentumFedAvg",
                             "aggregator.chain=[user_extensions:halved, mean]")
    ref, ref_rounds = _run(tmp_path / "ref", cache_dir, "server.optimizer=momentum", "server.momentum=0.9",
                           "server.lr=0.5")
    assert user.round == ref.round == 3
    np.testing.assert_array_equal(user.weights, ref.weights)
    # the algorithm's server state is the run's state (checkpointed with it) ...
    np.testing.assert_array_equal(user.algo_state["velocity"], -0.5 * ref.opt_state["m"])
    # ... the aggregator's client half ran on every accepted device, its server half halved the mean
    assert (user_rounds["halved_reports"] == user_rounds["accepted"]).all()
    np.testing.assert_allclose(user_rounds["update_norm"], 0.5 * ref_rounds["update_norm"], rtol=1e-12)
    # and plain FedAvg (server SGD at lr 1) goes elsewhere after its first step
    plain, _ = _run(tmp_path / "plain", cache_dir)
    assert np.abs(plain.weights - user.weights).max() > 1e-3


@pytest.mark.parametrize("spec,message", [("user_extensions:Missing", "has no attribute 'Missing'"),
                                          ("fedmagic", "not a registered algorithm")])
def test_a_bad_algorithm_name_fails_at_load_naming_the_key(spec, message):
    from fl.config import ConfigError, load_config

    sys.path.insert(0, str(HERE))
    with pytest.raises(ConfigError, match="client.algorithm") as e:
        load_config({}, [f"client.algorithm={spec}"])
    assert message in str(e.value)


def test_python_objects_reach_the_workers(ray_local, cache_dir):
    """From Python the same pieces pass as objects (by value to the workers), with names mixed in."""
    import fedpop
    from fl.aggregators import mean
    from tiny_tasks import LabelSkew
    from user_extensions import ServerMomentumFedAvg, halved

    cfg = {s.split("=")[0]: s.split("=")[1] for s in SETS if not s.startswith("experiment.task")}
    cfg.update({"workers.cache_dir": cache_dir, "aggregator.clip_norm": 100.0})
    algo = ServerMomentumFedAvg()
    algo.beta = 0.5
    with fedpop.build_process(LabelSkew, cfg, algorithm=algo, aggregator=[halved, "clip", mean("examples")],
                              progress=False) as p:
        state = p.run(2)
    assert p.cfg.client.algorithm == "user_extensions:ServerMomentumFedAvg"
    assert (p.rounds["halved_reports"] == p.rounds["accepted"]).all()
    assert np.abs(state.algo_state["velocity"]).max() > 0
