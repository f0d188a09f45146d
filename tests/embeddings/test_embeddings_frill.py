"""FRILL: student configs, the distillation loss, distillation steps, TFLite size and latency."""
import numpy as np
import pytest
import tensorflow as tf

from clients.embeddings import frill as F


@pytest.mark.parametrize("kw,key", [({"architecture": "tiny"}, "architecture"), ({"alpha": 0.0}, "alpha"),
                                    ({"alpha": -1.0}, "alpha"), ({"qat": True}, "qat")])
def test_bad_student_config_is_refused_by_name(kw, key):
    with pytest.raises(F.FrillConfigError, match=f"frill.{key}"):
        F.StudentConfig(**kw)
    assert F.FRILL.architecture == "small" and F.FRILL.alpha == 2.0 and F.FRILL.output_dim == 2048


def test_distillation_loss_hand_computed():
    t = np.array([[1.0, 2.0], [0.0, 0.0]], np.float32)
    s = tf.constant([[1.0, 4.0], [3.0, -1.0]])
    np.testing.assert_allclose(F.distillation_loss(t, s).numpy(), [2.0, 5.0])  # (0 + 4) / 2, (9 + 1) / 2


def test_student_distills_a_teacher():
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    windows = rng.normal(-5, 2, size=(64, 96, 64)).astype(np.float32)
    targets = windows.mean(axis=(1, 2))[:, None] * np.linspace(-1, 1, 8)[None, :]  # a teacher's 8-d output
    student = F.build_student(F.StudentConfig("small", 0.25, True, 4, True, 8))  # QAT bottleneck
    assert student.output_shape == (None, 8)
    losses = F.distill(student, windows, targets, steps=25, batch=16, lr=1e-2)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    # what is measured and shipped is the student at inference: distill recalibrated its batch-norm
    # statistics, so it fits as well as in training (without: 3.9 against 2.1, as 25 steps at
    # momentum 0.99 leave 78 % of the initial statistics)
    inference = float(np.mean(F.distillation_loss(targets, student(windows, training=False))))
    assert inference < 1.3 * np.mean(losses[-5:]), (inference, losses[-5:])


def test_batch_norm_statistics_are_recalibrated_to_the_data():
    """Precise BN (Wu & Johnson 2021): each layer's moving statistics become its input's statistics
    over the recalibration windows, so inference matches training mode on that batch."""
    tf.keras.utils.set_random_seed(0)
    windows = np.random.default_rng(0).normal(-5, 2, size=(96, 96, 64)).astype(np.float32)
    student = F.build_student(F.StudentConfig("small", 0.25, True, 0, False, 8))
    layers = F.batch_norm_layers(student)
    assert len(layers) > 10 and all(float(b.moving_variance.numpy().min()) == 1.0 for b in layers)  # as built
    momentum = [b.momentum for b in layers]

    def inference_error():  # relative distance of the inference-mode output from the training-mode one
        train = student(windows, training=True).numpy()
        return np.linalg.norm(student(windows, training=False).numpy() - train) / np.linalg.norm(train)
    assert inference_error() > 0.5  # the initial statistics (0, 1) are far from these inputs'
    assert F.recalibrate_batch_norm(student, windows, batches=3, batch=96) == len(layers)
    assert [b.momentum for b in layers] == momentum
    inputs = tf.keras.Model(student.inputs, [b.input for b in layers])(windows, training=True)
    for b, h in zip(layers, inputs):
        h = h.numpy().astype(np.float64)
        axes = tuple(range(h.ndim - 1))
        np.testing.assert_allclose(b.moving_mean.numpy(), h.mean(axes), rtol=1e-3, atol=1e-5, err_msg=b.name)
        np.testing.assert_allclose(b.moving_variance.numpy(), h.var(axes), rtol=1e-2, atol=1e-5, err_msg=b.name)
    assert inference_error() < 0.05  # (TF's fused batch norm keeps the unbiased variance: not exactly 0)


def test_wider_targets_are_regressed_through_a_head_the_student_does_not_keep():
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    windows = rng.normal(-5, 2, size=(64, 96, 64)).astype(np.float32)
    targets = windows.mean(axis=(1, 2))[:, None] * np.linspace(-1, 1, 32)[None, :]  # 32-d, e.g. layer19
    student = F.build_student(F.StudentConfig("small", 0.25, True, 0, False, 8))
    before = [w.copy() for w in student.get_weights()]
    losses = F.distill(student, windows, targets, steps=25, batch=16, lr=1e-2)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert student.output_shape == (None, 8) and len(student.get_weights()) == len(before)
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights()))  # the student trained


def _dense_model(width=256):
    tf.keras.utils.set_random_seed(0)
    return tf.keras.Sequential([tf.keras.Input((96, 64)), tf.keras.layers.Flatten(),
                                tf.keras.layers.Dense(width // 4, activation="relu"), tf.keras.layers.Dense(16)])


def test_tflite_size_and_latency_measurement():
    model = _dense_model()
    params = model.count_params()                                  # 6144 * 64 + 64 + 64 * 16 + 16
    windows = np.random.default_rng(0).normal(-5, 2, size=(8, 96, 64)).astype(np.float32)
    flat = F.tflite_model(model)
    int8 = F.tflite_model(model, "int8", windows)
    assert 4 * params <= len(flat) < 4 * params + 20_000           # float32 weights plus a small graph
    assert params <= len(int8) < 0.35 * len(flat)                  # one byte per weight
    np.testing.assert_allclose(F.tflite_run(flat, windows[:2]), model(windows[:2]).numpy(), rtol=1e-4, atol=1e-4)
    lat = F.tflite_latency_ms(flat, invocations=50)
    assert lat["invocations"] == 50 and 0 < lat["p10_ms"] <= lat["median_ms"] <= lat["p90_ms"]
    with pytest.raises(ValueError, match="representative"):
        F.tflite_model(model, "int8")


@pytest.mark.slow
def test_mobilenet_student_converts_and_measures():
    student = F.build_student(F.StudentConfig("small", 0.25, True, 0, False, 16))
    flat = F.tflite_model(student)
    w = np.random.default_rng(0).normal(-5, 2, size=(2, 96, 64)).astype(np.float32)
    np.testing.assert_allclose(F.tflite_run(flat, w), student(w, training=False).numpy(), rtol=1e-3, atol=1e-4)
    assert len(flat) >= 4 * student.count_params() * 0.9 and F.tflite_latency_ms(flat)["median_ms"] > 0
