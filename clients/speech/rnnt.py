"""Streaming RNN-T speech recognizer (He et al. 2019, "An All-Neural On-Device Speech
Recognizer"), as personalized in "Personalized ASR Models from a Large and Diverse Disordered
Speech Dataset" (fine-tuning only the bottom 5 encoder layers).

Architecture (all unidirectional, hence streamable frame by frame):
  features [B, T, n_mels] -> input frame stacking (``input_stack`` frames, keep every
  ``input_stride``-th) -> ``encoder_layers`` LSTM layers, with a time-reduction layer after
  layer ``reduction_after`` (concatenate ``reduction_stack`` consecutive frames, keep every
  ``reduction_stride``-th) -> encoder output [B, T', E]
  labels -> prediction network: embedding of the previous non-blank label (blank = start)
  -> ``pred_layers`` LSTM layers -> [B, U+1, P]
  joint: tanh(Dense(enc) + Dense(pred)) -> Dense(vocab) -> logits [B, T', U+1, V].

LSTM with projection: He et al. use LSTMP cells (2048 units, 640-dim projection, the
projected output is also the recurrent state). Here a layer with ``proj > 0`` is
``LSTM(units)`` followed by ``Dense(proj)`` (linear); the recurrence runs on the full
``units``-dim state, so per-layer parameter counts are larger than for a true LSTMP
(4*units*(in+units) instead of 4*units*(in+proj)) but layer interfaces (640-dim) match.

Layer selection for personalization: ``model.encoder_layers`` (bottom first; e.g.
``model.encoder_layers[:5]`` = bottom 5, ``[5:]`` = top 3), ``model.prediction_layers``
(embedding + LSTMs) and ``model.joint_layers``; set ``layer.trainable = False`` to freeze.
"""
from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from clients.speech.decoding import BLANK, VOCAB_SIZE
from clients.speech.fused_lstm import lstm_sequence
from clients.speech.rnnt_loss import rnnt_loss


@dataclass
class RNNTConfig:
    """CPU-small defaults; ``RNNTConfig.paper()`` is the full-size model."""
    n_mels: int = 80
    input_stack: int = 1
    input_stride: int = 1
    encoder_layers: int = 8
    encoder_units: int = 64
    encoder_proj: int = 0             # 0 = no projection
    reduction_after: int = 2          # time reduction after this many encoder layers (0 = none)
    reduction_stack: int = 2
    reduction_stride: int = 2
    pred_layers: int = 2
    pred_units: int = 64
    pred_proj: int = 0
    embed_dim: int = 32
    joint_units: int = 64
    vocab_size: int = VOCAB_SIZE      # blank + space + apostrophe + a-z
    residual: bool = False            # encoder layers 2..N: x + LayerNorm(LSTM(x)) (dims permitting)
    ctc_head: bool = False            # a Dense(vocab) on the encoder output for an auxiliary CTC loss

    @classmethod
    def paper(cls) -> "RNNTConfig":
        """He et al. 2019: 80-dim log-mel stacked 4 frames at stride 3 (30 ms frames),
        8 x LSTM(2048) with 640 projection, time reduction x2 after layer 2 (60 ms),
        prediction network 2 x LSTM(2048)/640, joint 640. The embedding size (128) is
        our choice; the vocabulary is characters (29) instead of wordpieces."""
        return cls(n_mels=80, input_stack=4, input_stride=3, encoder_layers=8,
                   encoder_units=2048, encoder_proj=640, reduction_after=2, reduction_stack=2,
                   reduction_stride=2, pred_layers=2, pred_units=2048, pred_proj=640,
                   embed_dim=128, joint_units=640)

    def output_lengths(self, lengths):
        """Encoder frames for ``lengths`` input frames (works on ints and tensors)."""
        out = -(-lengths // self.input_stride)
        if 0 < self.reduction_after <= self.encoder_layers:
            out = -(-out // self.reduction_stride)
        return out

    def num_params(self) -> int:
        """Parameter count of ``RNNT(self)`` computed from the config (no model built)."""
        def lstm(i, u):
            return 4 * u * (i + u) + 4 * u

        def stack(i, layers, units, proj, reduce_after=0, factor=1):
            n = 0
            for k in range(layers):
                n += lstm(i, units)
                i = units
                if proj:
                    n += units * proj + proj
                    i = proj
                if k + 1 == reduce_after:
                    i *= factor
            return n, i

        enc, e = stack(self.n_mels * self.input_stack, self.encoder_layers, self.encoder_units,
                       self.encoder_proj, self.reduction_after, self.reduction_stack)
        if self.residual:
            enc += 2 * (self.encoder_proj or self.encoder_units) * self.encoder_layers  # LayerNorm scale + offset
        if self.ctc_head:
            enc += e * self.vocab_size + self.vocab_size
        pred, p = stack(self.embed_dim, self.pred_layers, self.pred_units, self.pred_proj)
        joint = (e * self.joint_units + self.joint_units + p * self.joint_units
                 + self.joint_units * self.vocab_size + self.vocab_size)
        return enc + self.vocab_size * self.embed_dim + pred + joint


def stack_frames(x, lengths, stack: int, stride: int):
    """Concatenate ``stack`` consecutive frames and keep every ``stride``-th:
    [B, T, D] -> [B, ceil(T/stride), stack*D] (zero-padded at the end)."""
    if stack == 1 and stride == 1:
        return x, lengths
    d = x.shape[-1]
    frames = tf.signal.frame(x, stack, stride, pad_end=True, axis=1)   # [B, T', stack, D]
    # pad_end may add trailing all-padding frames; keep ceil(T/stride) of them
    t_out = -(-tf.shape(x)[1] // stride)
    frames = frames[:, :t_out]
    return tf.reshape(frames, [tf.shape(x)[0], t_out, stack * d]), -(-lengths // stride)


class ProjectedLSTM(tf.keras.layers.Layer):
    """Unidirectional LSTM(units), optionally followed by a linear Dense(proj); with
    ``residual``, the output is LayerNorm(that) + input when the widths match (a residual
    LSTM stack, as in Wu et al. 2016 GNMT; layer norm as in He et al. 2019)."""

    def __init__(self, units: int, proj: int = 0, residual: bool = False, **kw):
        super().__init__(**kw)
        self.units, self.proj, self.residual = units, proj, residual
        self.lstm = tf.keras.layers.LSTM(units, return_sequences=True, return_state=True,
                                         name="lstm")
        self.projection = tf.keras.layers.Dense(proj, name="proj") if proj else None
        self.norm = tf.keras.layers.LayerNormalization(name="norm") if residual else None

    @property
    def output_dim(self) -> int:
        return self.proj or self.units

    def call(self, x, initial_state=None, training=None):
        """x [B, T, in] -> (y [B, T, output_dim], final [h, c] or None). From a zero state the
        whole sequence runs in ``fused_lstm.lstm_sequence`` (the same function, faster on CPU;
        no final state); with ``initial_state`` (step-by-step decoding) in the Keras layer."""
        if initial_state is None:
            if not self.lstm.built:
                self.lstm.build(x.shape)
            cell = self.lstm.cell
            y, state = lstm_sequence(x, cell.kernel, cell.recurrent_kernel, cell.bias), None
        else:
            y, h, c = self.lstm(x, initial_state=initial_state, training=training)
            state = [h, c]
        if self.projection is not None:
            y = self.projection(y)
        if self.norm is not None:
            y = self.norm(y)
            if x.shape[-1] == y.shape[-1]:
                y = y + x
        return y, state


class RNNT(tf.keras.Model):
    """RNN-T model; ``call((features, feature_lengths, labels))`` returns
    (logits [B, T', U+1, V], encoder lengths [B])."""

    def __init__(self, config: RNNTConfig | None = None, **kw):
        super().__init__(**kw)
        self.config = c = config or RNNTConfig()
        self.encoder_layers = [ProjectedLSTM(c.encoder_units, c.encoder_proj, c.residual, name=f"encoder_{i}")
                               for i in range(c.encoder_layers)]
        self.ctc_out = tf.keras.layers.Dense(c.vocab_size, name="ctc_out") if c.ctc_head else None
        self.embedding = tf.keras.layers.Embedding(c.vocab_size, c.embed_dim, name="pred_embedding")
        self.pred_lstms = [ProjectedLSTM(c.pred_units, c.pred_proj, name=f"pred_{i}")
                           for i in range(c.pred_layers)]
        self.prediction_layers = [self.embedding] + self.pred_lstms
        self.joint_enc = tf.keras.layers.Dense(c.joint_units, name="joint_enc")
        self.joint_pred = tf.keras.layers.Dense(c.joint_units, use_bias=False, name="joint_pred")
        self.joint_out = tf.keras.layers.Dense(c.vocab_size, name="joint_out")
        self.joint_layers = [self.joint_enc, self.joint_pred, self.joint_out]

    # --- networks -------------------------------------------------------------------
    def encode(self, features, lengths, training=None):
        """features [B, T, n_mels], lengths [B] -> (encoder output [B, T', E], lengths [B])."""
        c = self.config
        x, lengths = stack_frames(tf.convert_to_tensor(features, tf.float32),
                                  tf.cast(lengths, tf.int32), c.input_stack, c.input_stride)
        for i, layer in enumerate(self.encoder_layers):
            x, _ = layer(x, training=training)
            if i + 1 == c.reduction_after:
                x, lengths = stack_frames(x, lengths, c.reduction_stack, c.reduction_stride)
        return x, lengths

    def predict_labels(self, labels, training=None):
        """labels [B, U] -> prediction outputs [B, U+1, P] (position 0 = after start/blank)."""
        labels = tf.cast(labels, tf.int32)
        start = tf.fill([tf.shape(labels)[0], 1], BLANK)
        x = self.embedding(tf.concat([start, labels], axis=1))
        for layer in self.pred_lstms:
            x, _ = layer(x, training=training)
        return x

    def joint(self, enc, pred):
        """enc [B, T, E], pred [B, U+1, P] -> logits [B, T, U+1, V]."""
        h = self.joint_enc(enc)[:, :, None, :] + self.joint_pred(pred)[:, None, :, :]
        return self.joint_out(tf.tanh(h))

    def call(self, inputs, training=None):
        features, feature_lengths, labels = inputs
        enc, enc_lengths = self.encode(features, feature_lengths, training=training)
        if self.ctc_out is not None:  # build it with the rest (training adds its loss)
            self.ctc_out(enc[:, :1])
        return self.joint(enc, self.predict_labels(labels, training=training)), enc_lengths

    def loss(self, features, feature_lengths, labels, label_lengths, training=None, ctc_weight: float = 0.0):
        """Per-example RNN-T negative log-likelihood [B] (reduce it yourself), plus
        ``ctc_weight`` x the CTC loss of the encoder's CTC head (joint CTC/transducer
        training, e.g. Watanabe et al. 2017 hybrid CTC/attention; helps the deep encoder learn)."""
        enc, enc_lengths = self.encode(features, feature_lengths, training=training)
        logits = self.joint(enc, self.predict_labels(labels, training=training))
        loss = rnnt_loss(logits, labels, enc_lengths, label_lengths, blank=BLANK)
        if ctc_weight and self.ctc_out is not None:
            ctc = tf.nn.ctc_loss(tf.cast(labels, tf.int32), self.ctc_out(enc), label_lengths, enc_lengths,
                                 logits_time_major=False, blank_index=BLANK)
            loss += ctc_weight * ctc
        return loss

    # --- step interface used by clients.speech.decoding -------------------------------
    def prediction_initial_state(self, n: int):
        return [[tf.zeros([n, layer.units]), tf.zeros([n, layer.units])]
                for layer in self.pred_lstms]

    def prediction_step(self, labels, state):
        """labels [n] (last non-blank label, blank = start) -> (pred [n, P], new state)."""
        x = self.embedding(tf.cast(labels, tf.int32)[:, None])
        new_state = []
        for layer, s in zip(self.pred_lstms, state):
            x, s = layer(x, initial_state=s)
            new_state.append(s)
        return x[:, 0], new_state

    def joint_step(self, enc, pred):
        """enc [n, E], pred [n, P] -> logits [n, V]."""
        return self.joint_out(tf.tanh(self.joint_enc(enc) + self.joint_pred(pred)))
