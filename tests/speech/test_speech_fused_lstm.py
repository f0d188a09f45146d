"""The fused LSTM kernel computes Keras' LSTM: outputs and every gradient, and the RNN-T uses it."""
import numpy as np
import tensorflow as tf

from clients.speech.fused_lstm import lstm_sequence


def _keras_lstm(units, x):
    tf.keras.utils.set_random_seed(3)
    layer = tf.keras.layers.LSTM(units, return_sequences=True)
    layer(x)
    # larger weights than the default init, so gates saturate and cells grow beyond 1
    for v in layer.weights:
        v.assign(v * 3.0)
    return layer


def test_forward_and_gradients_equal_keras():
    x = tf.constant(np.random.default_rng(0).normal(size=(3, 17, 5)).astype(np.float32))
    layer = _keras_lstm(7, x)
    cell = layer.cell
    upstream = tf.constant(np.random.default_rng(1).normal(size=(3, 17, 7)).astype(np.float32))
    grads = []
    for fn in (lambda x: layer(x), lambda x: lstm_sequence(x, cell.kernel, cell.recurrent_kernel, cell.bias)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = fn(x)
            loss = tf.reduce_sum(y * upstream)
        grads.append((y, tape.gradient(loss, [x, cell.kernel, cell.recurrent_kernel, cell.bias])))
    (y_ref, g_ref), (y, g) = grads
    np.testing.assert_allclose(y.numpy(), y_ref.numpy(), atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


def test_traced_and_length_one():
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 1, 4)).astype(np.float32))
    layer = _keras_lstm(3, x)
    cell = layer.cell
    fn = tf.function(lambda x: lstm_sequence(x, cell.kernel, cell.recurrent_kernel, cell.bias),
                     input_signature=[tf.TensorSpec([None, None, 4], tf.float32)])
    np.testing.assert_allclose(fn(x).numpy(), layer(x).numpy(), atol=1e-6)
    longer = tf.concat([x, x, x], axis=1)
    np.testing.assert_allclose(fn(longer).numpy(), layer(longer).numpy(), atol=1e-5)


def test_rnnt_layers_run_the_fused_kernel_and_match_their_keras_layer():
    from clients.speech.rnnt import ProjectedLSTM

    x = tf.constant(np.random.default_rng(4).normal(size=(2, 9, 6)).astype(np.float32))
    layer = ProjectedLSTM(6, proj=4, residual=True)
    y, state = layer(x)
    assert state is None  # the fused path (no carried state)
    h, _, _ = layer.lstm(x)  # the Keras layer holding the same weights
    expected = layer.norm(layer.projection(h))
    np.testing.assert_allclose(y.numpy(), expected.numpy(), atol=1e-5)
