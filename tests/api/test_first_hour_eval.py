"""No silently wrong summary: a device's non-finite evaluation is marked and left out, and
final_* name the round they come from."""
import numpy as np
import pandas as pd

import fedpop
from experiments.fedavg_train import final_eval
from tiny_tasks import NoData


def test_nonfinite_eval_device_is_marked_and_left_out(ray_local):
    rng = np.random.default_rng(1)
    train = {c: {"x": rng.normal(size=(10, 3)), "y": rng.integers(0, 2, 10)} for c in "abcd"}
    ev = {c: {"x": rng.normal(size=(4, 3)), "y": rng.integers(0, 2, 4)} for c in "abcd"}
    ev["b"]["x"][1, 0] = np.nan  # one held-out example the model turns into a NaN loss
    data = fedpop.FederatedData.from_clients(train, ev)
    cfg = {"experiment.rounds": 2, "cohort.goal": 4, "cohort.min_reports": 2, "eval.every": 1, "eval.cohort": 4,
           "workers.num": 2}
    with fedpop.build_process(NoData, cfg, data=data) as process:
        process.run()
    rounds, clients = process.rounds, process.clients
    evals = clients[clients["phase"] == "eval"]
    bad = evals[evals["client_id"] == "b"]
    assert len(bad) == 2 and bad["status"].eq("nonfinite").all() and bad["error"].str.contains("non-finite").all()
    assert evals[evals["client_id"] != "b"]["status"].eq("accepted").all()
    assert rounds["eval_nonfinite"].eq(1).all() and rounds["eval_devices"].eq(3).all()
    assert np.isfinite(rounds["eval_loss"]).all() and np.isfinite(rounds["eval_accuracy"]).all()
    good = evals[(evals["round"] == 1) & (evals["status"] == "accepted")]
    expected = (good["loss"] * good["examples"]).sum() / good["examples"].sum()
    np.testing.assert_allclose(rounds["eval_loss"].iloc[-1], expected, rtol=1e-5)
    out = final_eval(rounds)
    assert out["final_eval_round"] == 1 and out["eval_nonfinite_devices"] == 2 and out["eval_rounds_without_result"] == 0


def test_final_eval_names_the_last_round_with_a_result():
    nan = float("nan")
    rounds = pd.DataFrame({"round": [0, 1, 2, 3], "train_loss": [1.0, 0.9, 0.8, 0.7],
                           "eval_loss": [0.5, nan, nan, nan], "eval_accuracy": [0.7, nan, nan, nan],
                           "eval_devices": [5, nan, 0, 0], "eval_nonfinite": [0, nan, 5, 5]})
    out = final_eval(rounds)
    assert out["final_eval_round"] == 0 and out["final_eval_loss"] == 0.5 and out["final_eval_devices"] == 5
    assert out["eval_rounds_without_result"] == 2 and out["eval_nonfinite_devices"] == 10
    assert final_eval(rounds.drop(columns=["eval_loss", "eval_accuracy"])) == {}
