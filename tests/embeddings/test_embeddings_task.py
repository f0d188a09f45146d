"""The TRILL engine task: triplets mined inside one device, config checks, and federated rounds
through the public API (`fedpop.build_process("trill", ...)`)."""
import numpy as np
import pytest

from clients.embeddings.task import TrillTask, paper_config
from fl.config import ConfigError

TINY = {"n_devices": 3, "clips_per_device": 2, "eval_clips": 2, "utterances_per_clip": 1,
        "triplets_per_device": 6, "eval_triplets": 4, "width": 4, "stages": 2, "embedding_dim": 8}


def _task(**kw):
    return TrillTask(TrillTask.Config(**{**TINY, **kw}), seed=5)


def test_triplet_mining_stays_inside_one_device():
    task = _task()
    clips = {d: task.device_clips(d) for d in range(2)}
    for d in range(2):
        data = task.device_data(d, 0, "train")
        x, y = data["x"], data["y"]
        assert x.shape == (6, 3, 96, 64) and y.dtype == np.int32
        own = set(task.clip_ids(d).tolist())
        assert set(y.ravel().tolist()) <= own and (y[:, 0] != y[:, 1]).all()
        by_id = dict(zip(task.clip_ids(d).tolist(), clips[d]))
        other = np.concatenate(clips[1 - d])
        for (a, p, n), (ca, cn) in zip(x, y):
            for window, clip in ((a, ca), (p, ca), (n, cn)):
                f = by_id[int(clip)]
                assert any(np.array_equal(f[t:t + 96], window) for t in range(len(f) - 95))  # own audio
                assert not any(np.array_equal(other[t:t + 96], window) for t in range(len(other) - 95))
    ev = task.device_data(0, 0, "eval")
    assert set(ev["y"].ravel().tolist()) <= set(task.clip_ids(0, "eval").tolist())
    assert not set(task.clip_ids(0, "eval").tolist()) & set(task.clip_ids(0).tolist())
    assert not set(task.clip_ids(0).tolist()) & set(task.clip_ids(1).tolist())


def test_deterministic_and_pooled_variant():
    a, b = _task().device_data(1, 0), _task().device_data(1, 0)
    np.testing.assert_array_equal(a["x"], b["x"])
    np.testing.assert_array_equal(a["y"], b["y"])
    pooled = _task().pooled_triplets([0, 1, 2], 40)
    dev = pooled["y"] // _task().clips_total
    assert (dev[:, 0] != dev[:, 1]).any()  # the central variant draws negatives across devices


def test_bad_config_is_refused_by_name():
    with pytest.raises(ConfigError, match="task.window_s"):
        _task(window_s=0.5)
    with pytest.raises(ConfigError, match="task.layer19_stage"):
        _task(layer19_stage=5)
    with pytest.raises(ValueError, match="n_devices"):
        _task().device_data(3, 0)
    assert paper_config().embedding_dim == 512
    import fedpop
    with pytest.raises(ConfigError, match="task.window_s"):
        fedpop.build_process("trill", {"task.window_s": 0.5, "workers.num": 1})


def test_federated_rounds_through_the_public_api(tmp_path):
    import ray

    import fedpop
    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    config = {"experiment.rounds": 2, "experiment.seed": 5,
              "population.size": 3, "population.eligible_prob": 1.0, "population.night_hours": 24,
              "population.dropout_per_hour": 0.0, "cohort.goal": 2, "cohort.over_selection": 1.0,
              "cohort.min_reports": 1, "cohort.deadline_s": 1e6, "client.lr": 0.01, "client.batch_size": 6,
              "client.optimizer": "adam", "eval.every": 2, "eval.cohort": 2, "workers.num": 1,
              "workers.cache_dir": str(tmp_path / "cache"), **{f"task.{k}": v for k, v in TINY.items()}}
    with fedpop.build_process("trill", config) as process:
        init = process.initialize()
        state = process.run()
        weights = process.model(state).trainable_variables
        start = process.model(init).trainable_variables
    rounds = process.rounds
    assert len(rounds) == 2 and rounds["updated"].all() and (rounds["accepted"] == 2).all()
    assert np.isfinite(rounds["train_loss"]).all() and np.isfinite(rounds["eval_loss"].dropna()).all()
    assert 0.0 <= rounds["eval_accuracy"].dropna().iloc[-1] <= 1.0
    assert max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(weights, start)) > 0
    ray.shutdown()
