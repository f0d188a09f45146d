import numpy as np
import pytest
import tensorflow as tf

from clients.speech.decoding import VOCAB_SIZE
from clients.speech.rnnt import RNNT, RNNTConfig, stack_frames

TINY = dict(n_mels=6, encoder_units=8, pred_units=8, embed_dim=4, joint_units=8)


def _batch(B=2, T=11, U=3, n_mels=6, seed=0):
    rng = np.random.default_rng(seed)
    feats = tf.constant(rng.normal(size=(B, T, n_mels)).astype(np.float32))
    labels = tf.constant(rng.integers(1, VOCAB_SIZE, size=(B, U)), tf.int32)
    return feats, labels


def test_defaults_are_small_and_paper_config_is_full_size():
    c = RNNTConfig()
    assert (c.encoder_layers, c.encoder_units, c.encoder_proj, c.pred_layers, c.pred_units,
            c.joint_units, c.vocab_size) == (8, 64, 0, 2, 64, 64, 29)
    p = RNNTConfig.paper()
    assert (p.encoder_layers, p.encoder_units, p.encoder_proj) == (8, 2048, 640)
    assert (p.reduction_after, p.reduction_stride, p.pred_layers, p.pred_units, p.pred_proj,
            p.joint_units) == (2, 2, 2, 2048, 640, 640)
    model = RNNT(p)                                   # constructed, never built: no weights
    assert not model.built and model.weights == []
    assert len(model.encoder_layers) == 8 and len(model.prediction_layers) == 3
    assert all(l.lstm.units == 2048 and l.output_dim == 640 for l in model.encoder_layers)
    assert [l.units for l in model.joint_layers] == [640, 640, VOCAB_SIZE]
    # LSTM(2048)+Dense(640) per layer: ~233M weights (a true LSTMP would be ~half)
    assert 2.0e8 < p.num_params() < 2.6e8
    assert p.output_lengths(300) == 50              # 10 ms -> 30 ms -> 60 ms frames


@pytest.mark.parametrize("extra", [
    dict(),
    dict(input_stack=3, input_stride=2, encoder_proj=5, pred_proj=3, reduction_stack=3),
    dict(encoder_layers=3, reduction_after=0),
])
def test_output_shapes_and_param_count(extra):
    cfg = RNNTConfig(**{**TINY, **extra})
    model = RNNT(cfg)
    feats, labels = _batch()
    logits, enc_lengths = model((feats, tf.constant([11, 6]), labels))
    t_out = int(cfg.output_lengths(11))
    assert logits.shape == (2, t_out, 4, VOCAB_SIZE)
    np.testing.assert_array_equal(enc_lengths.numpy(), cfg.output_lengths(np.array([11, 6])))
    assert model.count_params() == cfg.num_params()
    loss = model.loss(feats, [11, 6], labels, [3, 2])
    assert loss.shape == (2,) and np.all(np.isfinite(loss.numpy())) and np.all(loss.numpy() > 0)


def test_stack_frames():
    x = tf.reshape(tf.range(2 * 5 * 1, dtype=tf.float32), [2, 5, 1])
    y, n = stack_frames(x, tf.constant([5, 3]), stack=2, stride=2)
    np.testing.assert_array_equal(y.numpy()[0], [[0, 1], [2, 3], [4, 0]])
    np.testing.assert_array_equal(n.numpy(), [3, 2])


def test_encoder_is_streaming_and_prediction_steps_match():
    model = RNNT(RNNTConfig(**TINY, input_stack=2, input_stride=2))
    feats, labels = _batch(B=1, T=16)
    enc, _ = model.encode(feats, [16])
    future = tf.concat([feats[:, :8], 10.0 + feats[:, 8:]], axis=1)
    enc2, _ = model.encode(future, [16])
    # output frame j sees input frames < 4j + 4 (stride 2, then reduction 2)
    np.testing.assert_allclose(enc.numpy()[:, :2], enc2.numpy()[:, :2], atol=1e-6)
    assert not np.allclose(enc.numpy()[:, 2:], enc2.numpy()[:, 2:])
    full = model.predict_labels(labels)                              # [1, U+1, P]
    state = model.prediction_initial_state(1)
    steps = []
    for k in [0] + labels.numpy()[0].tolist():
        out, state = model.prediction_step(tf.constant([k]), state)
        steps.append(out.numpy()[0])
    np.testing.assert_allclose(np.stack(steps), full.numpy()[0], atol=1e-5)
    # joint on whole lattices == joint_step on one node (large inputs: tanh is not ~linear)
    big_enc, big_pred = 30.0 * enc, 30.0 * full
    logits = model.joint(big_enc, big_pred)
    assert logits.shape == (1, 4, 4, VOCAB_SIZE)
    np.testing.assert_allclose(model.joint_step(big_enc[:, 3], big_pred[:, 2]).numpy(),
                               logits.numpy()[:, 3, 2], atol=1e-4)
    h = np.tanh(model.joint_enc(big_enc[:, 3]).numpy() + model.joint_pred(big_pred[:, 2]).numpy())
    np.testing.assert_allclose(model.joint_out(h).numpy(), logits.numpy()[:, 3, 2], atol=1e-4)


def _snapshot(layers):
    return [v.numpy().copy() for l in layers for v in l.weights]


@pytest.mark.parametrize("freeze", ["top", "bottom"])
def test_freezing_encoder_layers(freeze):
    tf.keras.utils.set_random_seed(1)
    model = RNNT(RNNTConfig(**TINY))
    feats, labels = _batch()
    model((feats, tf.constant([11, 11]), labels))                  # build
    bottom, top = model.encoder_layers[:5], model.encoder_layers[5:]
    if freeze == "top":   # personalization: only the bottom 5 encoder layers train
        frozen = top + model.prediction_layers + model.joint_layers
        trained = bottom
    else:
        frozen, trained = bottom, top + model.prediction_layers + model.joint_layers
    for layer in frozen:
        layer.trainable = False
    n_trained = sum(len(l.weights) for l in trained)
    assert len(model.trainable_variables) == n_trained
    before_frozen, before_trained = _snapshot(frozen), _snapshot(trained)
    opt = tf.keras.optimizers.SGD(0.5)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model.loss(feats, [11, 9], labels, [3, 2], training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                            model.trainable_variables))
    for a, b in zip(before_frozen, _snapshot(frozen)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before_trained, _snapshot(trained)):
        assert not np.array_equal(a, b)


def test_few_steps_reduce_loss():
    tf.keras.utils.set_random_seed(2)
    model = RNNT(RNNTConfig(**TINY, encoder_layers=2))
    feats, labels = _batch(seed=4)
    opt = tf.keras.optimizers.Adam(0.02)
    losses = []
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(model.loss(feats, [11, 11], labels, [3, 3], training=True))
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
