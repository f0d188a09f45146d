"""FRILL distilled on devices (task "frill"): a device's examples are crops of its own audio with
the teacher's outputs computed there; bad configs are refused by name; batch-norm statistics are
estimated on the devices and averaged; rounds run through the engine."""
import numpy as np
import pytest

from clients.embeddings.distill_task import FrillTask
from clients.embeddings.trill import build_trill, embedding_and_layer19
from fl.config import ConfigError

TINY = {"n_devices": 3, "clips_per_device": 2, "eval_clips": 2, "utterances_per_clip": 1,
        "triplets_per_device": 6, "eval_triplets": 4, "width": 4, "stages": 2, "embedding_dim": 8,
        "alpha": 0.25, "windows_per_device": 10, "eval_windows": 4}


def _teacher(tmp_path, seed=1, **kw):
    """A TRILL of the tiny task's shape with its own (seeded) weights, saved as the study saves it."""
    import tensorflow as tf

    cfg = FrillTask(FrillTask.Config(**{**TINY, **kw}), seed=5).model_config
    tf.keras.utils.set_random_seed(seed)
    model = build_trill(cfg)
    path = tmp_path / f"teacher{seed}.npz"
    np.savez(path, *model.get_weights())
    return model, path


def _task(path, **kw):
    return FrillTask(FrillTask.Config(**{**TINY, "teacher_weights": str(path), **kw}), seed=5)


def test_examples_are_own_audio_crops_with_the_teachers_outputs(tmp_path):
    teacher, path = _teacher(tmp_path)
    task = _task(path)
    data = task.device_data(1, 0, "train")
    x, y = data["x"], data["y"]
    assert x.shape == (10, 96, 64) and y.shape == (10, 8) and y.dtype == np.float32
    own, other = np.concatenate(task.device_clips(1)), np.concatenate(task.device_clips(0) + task.device_clips(2))
    for w in x:
        assert any(np.array_equal(own[t:t + 96], w) for t in range(len(own) - 95))
        assert not any(np.array_equal(other[t:t + 96], w) for t in range(len(other) - 95))
    np.testing.assert_allclose(y, teacher.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    ev = task.device_data(1, 0, "eval")["x"]
    held = np.concatenate(task.device_clips(1, "eval"))
    assert len(ev) == 4 and all(any(np.array_equal(held[t:t + 96], w) for t in range(len(held) - 95)) for w in ev)
    np.testing.assert_array_equal(x, _task(path).device_data(1, 0, "train")["x"])  # deterministic


def test_layer19_target_and_a_student_as_wide_as_it(tmp_path):
    teacher, path = _teacher(tmp_path)
    task = _task(path, target="layer19")
    y = task.device_data(0, 0)["y"]
    want = embedding_and_layer19(teacher, task.model_config).predict(task.device_data(0, 0)["x"], verbose=0)[1]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
    assert task.build_model().output_shape[-1] == y.shape[1] == task.target_dim


def test_a_new_teacher_gets_a_new_cache(tmp_path):
    _, a = _teacher(tmp_path, seed=1)
    _, b = _teacher(tmp_path, seed=2)
    assert _task(a).cache_namespace != _task(b).cache_namespace
    assert _task(a).cache_namespace == _task(a).cache_namespace


@pytest.mark.parametrize("kw, key", [
    ({"teacher_weights": "/nonexistent/teacher.npz"}, "task.teacher_weights"),
    ({"target": "logits"}, "task.target"),
    ({"alpha": 0.0}, "task.alpha"),
    ({"architecture": "tiny"}, "task.architecture"),
])
def test_bad_config_is_refused_by_name(tmp_path, kw, key):
    _, path = _teacher(tmp_path)
    with pytest.raises(ConfigError, match=key):
        _task(path, **kw)


def test_a_teacher_that_does_not_fit_or_is_missing_is_refused(tmp_path):
    _, path = _teacher(tmp_path, width=6)  # another network's weights
    with pytest.raises(ConfigError, match="task.teacher_weights"):
        _task(path).device_data(0, 0)
    with pytest.raises(ConfigError, match="task.teacher_weights"):
        FrillTask(FrillTask.Config(**TINY), seed=5).device_data(0, 0)


def test_loss_is_the_mse_with_batch_statistics_when_training(tmp_path):
    import tensorflow as tf

    _, path = _teacher(tmp_path)
    task = _task(path)
    model = task.build_model()
    data = task.device_data(0, 0)
    x, y = tf.constant(data["x"]), tf.constant(data["y"])
    for training in (True, False):
        loss, cos = task.batch_loss(model, x, y, training)
        out = model(x, training=training).numpy()
        np.testing.assert_allclose(loss.numpy(), ((data["y"] - out) ** 2).mean(1), rtol=1e-5)
        assert cos.shape == (10,) and np.all(np.abs(cos.numpy()) <= 1 + 1e-5)
    np.testing.assert_array_equal(task.device_windows(0), data["x"])


def test_batch_norm_statistics_are_the_devices_averaged(tmp_path):
    """Static batch norm: each device estimates the global student's statistics on its own crops;
    the server's are their average weighted by batches, whatever the Ray workers' order."""
    from clients.embeddings.distill_task import device_batch_norm_statistics, federated_batch_norm
    from clients.embeddings.frill import batch_norm_layers

    _, path = _teacher(tmp_path)
    task = _task(path)
    model = task.build_model()
    weights = np.concatenate([v.numpy().ravel() for v in model.trainable_variables])
    per_device = device_batch_norm_statistics(task.config, 5, weights, [0, 1, 2], 4)
    assert [n for n, _ in per_device] == [3, 3, 3]  # 10 crops in batches of 4
    own = device_batch_norm_statistics(task.config, 5, weights, [1], 4)[0][1]
    np.testing.assert_allclose(own[0][0], per_device[1][1][0][0], rtol=1e-6)  # a device's own figures
    assert not np.allclose(per_device[0][1][0][0], per_device[1][1][0][0])    # devices differ
    assert federated_batch_norm(model, task.config, 5, weights, [0, 1, 2], 4, num_workers=2, progress=False) == 3
    for i, layer in enumerate(batch_norm_layers(model)):
        np.testing.assert_allclose(layer.moving_mean.numpy(), np.mean([s[i][0] for _, s in per_device], 0),
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(layer.moving_variance.numpy(), np.mean([s[i][1] for _, s in per_device], 0),
                                   rtol=1e-4, atol=1e-6)


def test_rounds_through_the_engine_move_the_student_toward_the_teacher(tmp_path):
    import fedpop

    _, path = _teacher(tmp_path)
    cfg = {"experiment.seed": 5, "experiment.rounds": 3, "population.size": 3, "population.eligible_prob": 1.0,
           "population.night_hours": 24, "population.dropout_per_hour": 0.0, "cohort.goal": 3,
           "cohort.over_selection": 1.0, "cohort.min_reports": 1, "cohort.deadline_s": 1e6,
           "client.optimizer": "adam", "client.lr": 0.003, "client.batch_size": 5, "client.epochs": 2,
           "workers.num": 1, "workers.cache_dir": str(tmp_path / "cache"),
           "task": {**TINY, "teacher_weights": str(path)}}
    with fedpop.build_process("frill", cfg) as process:
        state = process.initialize()
        losses = []
        for _ in range(3):
            state, metrics = process.next(state)
            losses.append(metrics["train_loss"])
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def _reports(rng, devices=6, shapes=((4,), (3,))):
    return [(3, [(rng.normal(0, 1, s), rng.uniform(0.5, 2.0, s)) for s in shapes]) for _ in range(devices)], shapes


@pytest.mark.parametrize("attack", ["huge_variance", "negative_variance", "nan", "inf_weight", "wrong_shape",
                                    "huge_weight"])
def test_a_cheating_device_cannot_distort_the_batch_norm_average(attack):
    """One device of seven sends crafted statistics.  Non-finite or malformed reports are
    rejected (counted); the rest are clipped to the documented range, so the others'
    average moves by at most that device's share of the bound."""
    from clients.embeddings import distill_task as D

    rng = np.random.default_rng(0)
    honest, shapes = _reports(rng)
    honest_avg = D.average_batch_norm_statistics(honest, shapes)
    bad = {"huge_variance": (3, [(np.zeros(4), np.full(4, 1e30)), (np.zeros(3), np.ones(3))]),
           "negative_variance": (3, [(np.zeros(4), np.full(4, -1e9)), (np.zeros(3), np.ones(3))]),
           "nan": (3, [(np.full(4, np.nan), np.ones(4)), (np.zeros(3), np.ones(3))]),
           "inf_weight": (np.inf, [(np.zeros(4), np.ones(4)), (np.zeros(3), np.ones(3))]),
           "wrong_shape": (3, [(np.zeros(5), np.ones(5)), (np.zeros(3), np.ones(3))]),
           "huge_weight": (1e12, [(np.full(4, 1e6), np.full(4, 1e6)), (np.zeros(3), np.ones(3))])}[attack]
    avg = D.average_batch_norm_statistics(honest + [bad], shapes)
    if attack in ("nan", "inf_weight", "wrong_shape"):
        assert avg.rejected == 1 and avg.used == 6
        for (m, v), (hm, hv) in zip(avg.layers, honest_avg.layers):
            np.testing.assert_allclose(m, hm) and np.testing.assert_allclose(v, hv)
        return
    assert avg.rejected == 0 and avg.used == 7
    weight = min(bad[0], D.BN_MAX_BATCHES)
    share = weight / (weight + sum(n for n, _ in honest))
    mean, var = avg.layers[0]
    assert np.all(var >= 0) and np.all(np.isfinite(var))
    assert np.all(np.abs(mean - honest_avg.layers[0][0]) <= share * (D.BN_MEAN_BOUND + 3) + 1e-9)
    assert np.all(var <= (1 - share) * honest_avg.layers[0][1] + share * D.BN_VAR_BOUND + 1e-9)


def test_batch_norm_statistics_through_the_secure_sum_match_the_clear_average():
    from analytics.config import SecAggSection
    from clients.embeddings import distill_task as D

    rng = np.random.default_rng(1)
    reports, shapes = _reports(rng, devices=8)
    reports.append((3, [(np.full(4, np.nan), np.ones(4)), (np.zeros(3), np.ones(3))]))  # rejected before the sum
    clear = D.average_batch_norm_statistics(reports, shapes)
    settings = SecAggSection(mode="secagg", corrupt_fraction=0.0).settings()
    secure = D.average_batch_norm_statistics(reports, shapes, secure_settings=settings, seed=3)
    assert secure.secure and secure.used == clear.used == 8 and secure.rejected == 1
    for (m, v), (cm, cv) in zip(secure.layers, clear.layers):
        np.testing.assert_allclose(m, cm, atol=1e-5)
        np.testing.assert_allclose(v, cv, atol=1e-5)
