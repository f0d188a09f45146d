"""The recognizer: a stack of bidirectional QRNN layers (Bradbury et al. 2017, "Quasi-Recurrent
Neural Networks") or, for comparison, bidirectional LSTMs of about the same size, then a
softmax over the characters plus the CTC blank for every input step (Carbune et al. 2020 use
BiLSTMs and later BiQRNNs over Bézier curves, with CTC).

A QRNN direction computes its gates for all steps at once with a masked (causal)
convolution of width k over the inputs,

    Z = tanh(W_z * X),  F = sigmoid(W_f * X),  O = sigmoid(W_o * X),

and keeps only an element-wise recurrence, fo-pooling:

    c_t = f_t . c_{t-1} + (1 - f_t) . z_t,   h_t = o_t . c_t.

The backward direction runs the same on each sequence reversed within its own length, so
padding never leaks into real steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

CELLS = ("qrnn", "lstm")


@dataclass(frozen=True)
class RecognizerConfig:
    num_features: int = 10
    num_classes: int = 27  # blank + characters
    cell: str = "qrnn"
    layers: int = 3
    units: int = 64  # per direction (QRNN)
    kernel: int = 2  # QRNN gate convolution width
    lstm_units: int = 0  # per direction for cell="lstm" (0: as many parameters as the QRNN)


def fo_pool(z: tf.Tensor, f: tf.Tensor) -> tf.Tensor:
    """c_t = f_t c_{t-1} + (1 - f_t) z_t over axis 1 of [B, T, U] tensors, c_0 = 0."""
    zt, ft = tf.transpose(z, [1, 0, 2]), tf.transpose(f, [1, 0, 2])
    c = tf.scan(lambda prev, zf: zf[1] * prev + (1.0 - zf[1]) * zf[0], (zt, ft),
                initializer=tf.zeros_like(zt[0]))
    return tf.transpose(c, [1, 0, 2])


class QRNN(tf.keras.layers.Layer):
    """One QRNN direction: causal convolution gates of width ``kernel`` + fo-pooling."""

    def __init__(self, units: int, kernel: int = 2, reverse: bool = False, **kw):
        super().__init__(**kw)
        self.units, self.kernel, self.reverse = units, kernel, reverse

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.w = self.add_weight("kernel", [self.kernel, d, 3 * self.units],
                                 initializer=tf.keras.initializers.GlorotUniform())
        self.b = self.add_weight("bias", [3 * self.units], initializer="zeros")

    def gates(self, x: tf.Tensor):
        """(Z, F, O) for inputs x [B, T, D] by a causal convolution (step t sees t-k+1 .. t)."""
        xp = tf.pad(x, [[0, 0], [self.kernel - 1, 0], [0, 0]])
        g = tf.nn.conv1d(xp, self.w, stride=1, padding="VALID") + self.b
        z, f, o = tf.split(g, 3, axis=-1)
        return tf.tanh(z), tf.sigmoid(f), tf.sigmoid(o)

    def call(self, x, lengths=None):
        if lengths is None:
            lengths = tf.fill([tf.shape(x)[0]], tf.shape(x)[1])
        mask = tf.sequence_mask(lengths, tf.shape(x)[1], dtype=x.dtype)[:, :, None]
        x = x * mask
        if self.reverse:
            x = tf.reverse_sequence(x, lengths, seq_axis=1, batch_axis=0)
        z, f, o = self.gates(x)
        h = o * fo_pool(z, f)
        if self.reverse:
            h = tf.reverse_sequence(h, lengths, seq_axis=1, batch_axis=0)
        return h * mask


class BiQRNN(tf.keras.layers.Layer):
    """Forward and backward QRNN directions, concatenated."""

    def __init__(self, units: int, kernel: int = 2, **kw):
        super().__init__(**kw)
        self.fw = QRNN(units, kernel, name="fw")
        self.bw = QRNN(units, kernel, reverse=True, name="bw")

    def call(self, x, lengths=None):
        return tf.concat([self.fw(x, lengths), self.bw(x, lengths)], axis=-1)


class BiLSTM(tf.keras.layers.Layer):
    """A bidirectional LSTM layer (the comparison model), masked by lengths."""

    def __init__(self, units: int, **kw):
        super().__init__(**kw)
        self.rnn = tf.keras.layers.Bidirectional(tf.keras.layers.LSTM(units, return_sequences=True))

    def call(self, x, lengths=None):
        mask = None if lengths is None else tf.sequence_mask(lengths, tf.shape(x)[1])
        out = self.rnn(x, mask=mask)
        return out if mask is None else out * tf.cast(mask, out.dtype)[:, :, None]


def qrnn_params(c: RecognizerConfig) -> int:
    d, total = c.num_features, 0
    for _ in range(c.layers):
        total += 2 * (c.kernel * d * 3 * c.units + 3 * c.units)
        d = 2 * c.units
    return total + d * c.num_classes + c.num_classes


def lstm_params(c: RecognizerConfig, units: int) -> int:
    d, total = c.num_features, 0
    for _ in range(c.layers):
        total += 2 * 4 * units * (d + units + 1)
        d = 2 * units
    return total + d * c.num_classes + c.num_classes


def matched_lstm_units(c: RecognizerConfig) -> int:
    """LSTM width per direction whose model has the parameter count closest to the QRNN's."""
    target = qrnn_params(c)
    return int(min(range(1, 4 * c.units + 1), key=lambda u: abs(lstm_params(c, u) - target)))


class Recognizer(tf.keras.Model):
    """Per-step logits [B, T, num_classes] (class 0: CTC blank) for features [B, T, F]."""

    def __init__(self, config: RecognizerConfig, **kw):
        super().__init__(**kw)
        if config.cell not in CELLS:
            raise ValueError(f"unknown cell {config.cell!r} (allowed: {', '.join(CELLS)})")
        self.config = config
        if config.cell == "qrnn":
            self.rnns = [BiQRNN(config.units, config.kernel, name=f"biqrnn{i}") for i in range(config.layers)]
        else:
            units = config.lstm_units or matched_lstm_units(config)
            self.rnns = [BiLSTM(units, name=f"bilstm{i}") for i in range(config.layers)]
        self.head = tf.keras.layers.Dense(config.num_classes, name="softmax")

    def call(self, x, lengths=None, training=False):
        h = x
        for rnn in self.rnns:
            h = rnn(h, lengths)
        return self.head(h)

