"""The recognizer: QRNN recurrence against a step-by-step numpy reference, bidirectional
masking, the matched-size BiLSTM, and the CTC loss against path enumeration."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from clients.handwriting.decoding import collapse, ctc_loss, log_softmax
from clients.handwriting.qrnn import (QRNN, BiQRNN, Recognizer, RecognizerConfig, fo_pool, lstm_params,
                                      matched_lstm_units, qrnn_params)


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def reference_direction(x, kernel, bias, length, reverse=False):
    """One QRNN direction over x [T, D], one step at a time: gates from the last k inputs
    (zeros before the start), then c_t = f c_{t-1} + (1 - f) z_t, h_t = o c_t."""
    k, units = kernel.shape[0], kernel.shape[2] // 3
    xs = x[:length][::-1] if reverse else x[:length]
    c, out = np.zeros(units), np.zeros((x.shape[0], units))
    for t in range(length):
        g = bias.astype(np.float64).copy()
        for j in range(k):  # tap j sees the input k-1-j steps back
            s = t - (k - 1 - j)
            if s >= 0:
                g += xs[s] @ kernel[j]
        z, f, o = np.tanh(g[:units]), _sigmoid(g[units:2 * units]), _sigmoid(g[2 * units:])
        c = f * c + (1 - f) * z
        out[t] = o * c
    if reverse:
        out[:length] = out[:length][::-1]
    return out


@pytest.mark.parametrize("kernel,reverse", [(1, False), (2, False), (3, True)])
def test_qrnn_matches_stepwise_reference(kernel, reverse):
    rng = np.random.default_rng(kernel)
    x = rng.normal(size=(3, 9, 5)).astype(np.float32)
    lengths = np.array([9, 4, 1], np.int32)
    layer = QRNN(6, kernel, reverse=reverse)
    out = layer(tf.constant(x), tf.constant(lengths)).numpy()
    w, b = layer.w.numpy().astype(np.float64), layer.b.numpy().astype(np.float64)
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(out[i], reference_direction(x[i].astype(np.float64), w, b, n, reverse),
                                   atol=2e-5)
        assert np.all(out[i, n:] == 0)  # padding stays zero


def test_fo_pool_is_the_recurrence():
    rng = np.random.default_rng(0)
    z, f = rng.normal(size=(2, 7, 3)), _sigmoid(rng.normal(size=(2, 7, 3)))
    c = fo_pool(tf.constant(z), tf.constant(f)).numpy()
    prev = np.zeros((2, 3))
    for t in range(7):
        prev = f[:, t] * prev + (1 - f[:, t]) * z[:, t]
        np.testing.assert_allclose(c[:, t], prev, atol=1e-12)


def test_bidirectional_padding_does_not_change_real_steps():
    rng = np.random.default_rng(1)
    layer = BiQRNN(4, 2)
    x = rng.normal(size=(1, 5, 3)).astype(np.float32)
    short = layer(tf.constant(x), tf.constant([5])).numpy()
    padded = np.concatenate([x, rng.normal(size=(1, 4, 3)).astype(np.float32)], 1)  # garbage after the end
    long = layer(tf.constant(padded), tf.constant([5])).numpy()
    np.testing.assert_allclose(long[:, :5], short, atol=1e-6)
    assert short.shape == (1, 5, 8)
    # the backward half at step 0 depends on the last real step; the forward half does not
    x2 = x.copy()
    x2[0, 4] += 1.0
    moved = layer(tf.constant(x2), tf.constant([5])).numpy()
    assert np.allclose(moved[0, 0, :4], short[0, 0, :4]) and not np.allclose(moved[0, 0, 4:], short[0, 0, 4:])


@pytest.mark.parametrize("cell", ["qrnn", "lstm"])
def test_recognizer_shapes_and_sizes(cell):
    cfg = RecognizerConfig(num_features=10, layers=2, units=16, kernel=2, cell=cell)
    model = Recognizer(cfg)
    logits = model(tf.zeros([2, 7, 10]), tf.constant([7, 3]))
    assert logits.shape == (2, 7, 27)
    n = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    expected = qrnn_params(cfg) if cell == "qrnn" else lstm_params(cfg, matched_lstm_units(cfg))
    assert n == expected
    if cell == "lstm":  # "of similar size": within 15% of the QRNN's parameter count
        assert abs(n - qrnn_params(cfg)) / qrnn_params(cfg) < 0.15


def test_ctc_loss_matches_path_enumeration():
    rng = np.random.default_rng(2)
    t, c = 5, 3
    logits = rng.normal(size=(1, t, c)).astype(np.float32)
    lp = log_softmax(logits[0].astype(np.float64))
    for label in [(1,), (1, 2), (1, 1), (2, 1, 2)]:
        total = -np.inf
        for path in itertools.product(range(c), repeat=t):
            if collapse(path) == label:
                total = np.logaddexp(total, lp[np.arange(t), path].sum())
        y = np.zeros((1, 4), np.int32)
        y[0, :len(label)] = label
        loss = ctc_loss(tf.constant(y), tf.constant(logits), tf.constant([len(label)]), tf.constant([t])).numpy()
        assert loss[0] == pytest.approx(-total, rel=1e-4)


def test_int8_weights_of_a_default_size_recognizer_are_a_quarter(tmp_path):
    """Dynamic-range int8 stores each weight in a byte: the constant buffers shrink ~4x; the
    file shrinks less, the graph being a fixed cost (the default study's 2.5x file ratio)."""
    import numpy as np
    import tensorflow as tf
    from clients.handwriting.qrnn import Recognizer, RecognizerConfig
    from clients.handwriting.tflite_export import constant_bytes, export
    cfg = RecognizerConfig(units=48, layers=2)
    model = Recognizer(cfg)
    model(tf.zeros([1, 8, cfg.num_features]), lengths=tf.constant([8]))
    f, i = export(model, tmp_path / "f.tflite", False), export(model, tmp_path / "i.tflite", True)
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    assert 0.95 * 4 * params < constant_bytes(f) < f.stat().st_size  # float32 weights, then the graph
    assert 3.5 < constant_bytes(f) / constant_bytes(i) <= 4.0
    assert f.stat().st_size / i.stat().st_size < constant_bytes(f) / constant_bytes(i)
