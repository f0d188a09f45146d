"""The public API: build_process over a user's task and data, callbacks, errors before work."""
import numpy as np
import pandas as pd
import pytest

import fedpop
from tiny_tasks import LabelSkew, NoData, NotATask

SMALL = {"experiment.rounds": 3, "experiment.seed": 3, "population.size": 40, "population.eligible_prob": 1.0,
         "population.night_hours": 24, "population.dropout_per_hour": 0.0, "cohort.goal": 6,
         "cohort.over_selection": 1.0, "cohort.min_reports": 3, "cohort.deadline_s": 1e6, "client.lr": 0.1,
         "client.batch_size": 5, "eval.every": 0, "workers.num": 2}


def test_process_runs_a_user_task_and_returns_dataframes(ray_local, cache_dir):
    cfg = {**SMALL, "workers.cache_dir": cache_dir}
    with fedpop.build_process(LabelSkew, cfg) as process:
        state = process.initialize()
        first = state.weights.copy()
        for _ in range(3):
            state, metrics = process.next(state)
        ev = process.evaluate(state)
    assert state.round == 3 and metrics["round"] == 2 and metrics["accepted"] == 6
    assert not np.array_equal(first, state.weights)
    assert set(ev) >= {"eval_loss", "eval_accuracy", "eval_devices"} and ev["eval_devices"] > 0
    rounds, clients = process.rounds, process.clients
    assert isinstance(rounds, pd.DataFrame) and list(rounds["round"]) == [0, 1, 2]
    assert (clients.groupby("round")["status"].apply(lambda s: (s == "accepted").sum()) == 6).all()
    assert clients["phase"].eq("train").all()
    assert process.cfg.experiment.task == "tiny_tasks:LabelSkew"


def test_same_config_same_numbers(ray_local, cache_dir):
    cfg = {**SMALL, "workers.cache_dir": cache_dir, "experiment.rounds": 2}
    runs = []
    for _ in range(2):
        with fedpop.build_process(LabelSkew, cfg) as process:
            runs.append(process.run().weights)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_user_federated_dataset_defines_the_population(ray_local, cache_dir):
    rng = np.random.default_rng(0)
    sizes = {"alice": 12, "bob": 30, "carol": 7, "dave": 21, "erin": 16}
    train = {cid: {"x": rng.normal(size=(n, 3)), "y": rng.integers(0, 2, n)} for cid, n in sizes.items()}
    data = fedpop.FederatedData.from_clients(train, eval_fraction=0.25)
    cfg = {**SMALL, "workers.cache_dir": cache_dir, "cohort.goal": 4, "cohort.min_reports": 2,
           "population.size": 999}  # overridden by the dataset
    with fedpop.build_process(NoData, cfg, data=data) as process:
        state = process.run(rounds=2)
        pop = process.population
    assert len(pop) == 5 and process.cfg.population.size == 5
    held_out = {cid: n - int(round(0.25 * n)) for cid, n in sizes.items()}
    np.testing.assert_array_equal(pop["num_examples"].to_numpy(), [held_out[c] for c in data.client_ids])
    clients = process.clients
    assert set(clients["client_id"]) <= set(sizes)
    trained = clients[clients["status"] == "accepted"]
    assert (trained["examples"] == trained["client_id"].map(held_out)).all()
    assert state.round == 2


def test_function_dataset_and_bad_datasets():
    data = fedpop.FederatedData.from_function(
        lambda cid, split: {"x": np.ones((3, 2)), "y": np.zeros(3)}, {"a": 3, "b": 3})
    assert data.device_data(1, 3, "eval")["x"].dtype == np.float32
    with pytest.raises(ValueError, match="'y'"):
        fedpop.FederatedData.from_clients({"a": {"x": np.ones(3)}})
    with pytest.raises(ValueError, match="3 x rows but 2 y rows"):
        fedpop.FederatedData.from_clients({"a": {"x": np.ones(3), "y": np.ones(2)}})
    with pytest.raises(ValueError, match="no eval data"):
        fedpop.FederatedData.from_clients({"a": {"x": np.ones(3), "y": np.ones(3)}}, eval={})


def test_bad_tasks_and_keys_fail_before_any_work():
    import ray

    was_running = ray.is_initialized()
    with pytest.raises(fedpop.ConfigError, match="missing required method.*device_data"):
        fedpop.build_process(NoData, SMALL)  # no dataset: it must make its own data
    with pytest.raises(fedpop.ConfigError, match="missing required method.*build_model"):
        fedpop.build_process(NotATask, SMALL)
    with pytest.raises(fedpop.ConfigError, match="cannot import module 'no_such_module'"):
        fedpop.build_process("no_such_module:Task", SMALL)
    with pytest.raises(fedpop.ConfigError, match="'tiny_tasks' has no attribute 'Nope'"):
        fedpop.build_process("tiny_tasks:Nope", SMALL)
    with pytest.raises(fedpop.ConfigError, match=r"unknown key 'cohort\.gaol'"):
        fedpop.build_process(LabelSkew, {"cohort.gaol": 3})
    with pytest.raises(fedpop.ConfigError, match="has no config keys"):
        fedpop.build_process(LabelSkew, {"task.width": 3})
    assert ray.is_initialized() == was_running  # nothing was started


def test_callbacks_record_and_stop_early(ray_local, cache_dir):
    seen = []
    stop = fedpop.EarlyStopping(monitor="train_loss", patience=1, min_delta=10.0)  # no round improves by 10
    log = fedpop.Lambda(lambda process, state, out: seen.append(out.metrics["round"]))
    cfg = {**SMALL, "workers.cache_dir": cache_dir, "experiment.rounds": 6}
    with fedpop.build_process(LabelSkew, cfg, callbacks=[log, stop]) as process:
        state = process.run()
    assert seen == [0, 1] and state.round == 2 and stop.stopped_round == 1
    assert len(process.rounds) == 2
