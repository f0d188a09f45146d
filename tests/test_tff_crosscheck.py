"""fedpop's FedAvg equals TFF's `build_weighted_fed_avg` on the same model, data and cohorts."""
import numpy as np
import psutil
import pytest

from engine_testing import tiny_config
from fl.runner import engine, train


@pytest.mark.parametrize("task,extra", [
    ("mlp", {}),
    ("charlm", {"task": {"hidden": 16, "embed": 8, "seq_len": 8, "dictionary_size": 300, "new_words": 5}}),
])
def test_three_rounds_match_tff(ray_local, cache_dir, tmp_path, task, extra):
    from fl.task import make_task
    from fl.tff_backend import TFFFedAvg, tff_context, to_dataset

    cfg = tiny_config(cache_dir, experiment={"task": task, "rounds": 3},
                      population={"examples_min": 7, "examples_max": 13, "examples_sigma": 1.0},
                      client={"lr": 0.1 if task == "mlp" else 0.5, "batch_size": 4, "shuffle": False},
                      **extra)
    with engine(cfg) as process:
        init = process.initialize()
        state, rec = train(process, tmp_path / task, progress=False)
        counts = process.population.columns["num_examples"]
    clients = rec.clients
    assert clients["examples"].nunique() > 1  # uneven devices: weighting and partial batches matter

    t = make_task(task, cfg.task, cfg.experiment.seed)
    with tff_context():
        tff_algo = TFFFedAvg(t, client_lr=cfg.client.lr, server_lr=1.0)
        tff_state = tff_algo.initialize(init.weights)
        for r in range(3):
            ids = clients[(clients["round"] == r) & (clients["status"] == "accepted")]["device_id"].to_numpy()
            data = [to_dataset(t.device_data(int(d), int(counts[d]), "train"), cfg.client.batch_size) for d in ids]
            tff_state, _ = tff_algo.next(tff_state, data)
        tff_weights = tff_algo.weights(tff_state)
    np.testing.assert_allclose(state.weights, tff_weights, atol=1e-4, rtol=0)
    assert np.abs(state.weights - init.weights).max() > 1e-3  # the models really moved
    leftover = [p for p in psutil.Process().children(recursive=True) if "worker_binary" in p.name()]
    assert not leftover, "TFF's worker_binary outlived its context"
