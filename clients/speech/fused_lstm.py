"""A whole-sequence LSTM kernel for CPU training: the function Keras' ``LSTM`` computes
(Hochreiter & Schmidhuber 1997, with a forget gate as in Gers et al. 2000; Keras weight
layout, gates i, f, c, o; sigmoid gates, tanh cell), with a hand-written backward pass.

Keras runs an LSTM as a graph ``while`` loop of small ops, and its gradient as another
loop that also accumulates the weight gradients step by step. Here:

* forward: TensorFlow's fused ``BlockLSTMV2`` kernel (all time steps in one C++ op), which
  also returns every gate activation, so nothing is recomputed for the backward pass;
* backward (backpropagation through time, Werbos 1990): only the recurrence that must be
  sequential runs per step, ``dh_{t-1} = dz_t R^T`` and ``dc_{t-1} = dc_t f_t``, in numpy
  (a few vector ops per step, no graph-executor cost per op); the gradients of the input
  kernel, the recurrent kernel, the bias and the input are then four large matmuls over all
  time steps at once.

Numerically it equals Keras' LSTM (forward and gradients within float32 rounding; tested),
and it is deterministic. It runs from a zero initial state over the whole sequence, which
is what training and full-utterance encoding need; step-by-step decoding with a carried
state uses the Keras layer itself (same weights).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _recurrence_backward(dh_all, dc_from_h, dz_dc, dz_dh, forget, recurrent_t):
    """Per-step gradient of the gate pre-activations dz [T, B, 4U] (numpy, back in time).

    dh_all: upstream dL/dh_t; dc_from_h: o_t (1 - tanh^2 c_t); dz_dc: [dc -> dz_i, dz_f, dz_c]
    factors; dz_dh: [dh -> dz_o] factor; forget: f_t; recurrent_t: R^T [4U, U]."""
    t_len, batch, units = dh_all.shape
    dz = np.empty((t_len, batch, 4 * units), np.float32)
    dh_next = np.zeros((batch, units), np.float32)
    dc_next = np.zeros((batch, units), np.float32)
    for t in range(t_len - 1, -1, -1):
        dh = dh_all[t] + dh_next
        dc = dc_next + dh * dc_from_h[t]
        out = dz[t]
        np.multiply(np.tile(dc, 3), dz_dc[t], out=out[:, :3 * units])
        np.multiply(dh, dz_dh[t], out=out[:, 3 * units:])
        dh_next = out @ recurrent_t
        dc_next = dc * forget[t]
    return dz


def lstm_sequence(x, kernel, recurrent_kernel, bias):
    """Hidden states h [B, T, U] of an LSTM with Keras-layout weights (kernel [I, 4U],
    recurrent_kernel [U, 4U], bias [4U]) run over x [B, T, I] from a zero state."""
    units = recurrent_kernel.shape[0]

    @tf.custom_gradient
    def run(x, kernel, recurrent_kernel, bias):
        xt = tf.transpose(x, [1, 0, 2])                                   # [T, B, I]
        t_len, batch = tf.shape(xt)[0], tf.shape(xt)[1]
        zero, no_peephole = tf.zeros([batch, units]), tf.zeros([units])
        i, c, f, o, g, tanh_c, h = tf.raw_ops.BlockLSTMV2(
            seq_len_max=tf.cast(t_len, tf.int64), x=xt, cs_prev=zero, h_prev=zero,
            w=tf.concat([kernel, recurrent_kernel], 0), wci=no_peephole, wcf=no_peephole, wco=no_peephole,
            b=bias, cell_clip=0.0, use_peephole=False)                     # each [T, B, U]

        def grad(dh):
            c_prev = tf.concat([zero[None], c[:-1]], 0)
            h_prev = tf.reshape(tf.concat([zero[None], h[:-1]], 0), [-1, units])
            dz = tf.numpy_function(
                _recurrence_backward,
                [tf.transpose(dh, [1, 0, 2]), o * (1 - tanh_c * tanh_c),
                 tf.concat([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], 2),
                 tanh_c * o * (1 - o), f, tf.transpose(recurrent_kernel)],
                tf.float32, stateful=False)
            dz = tf.reshape(dz, [-1, 4 * units])
            flat_x = tf.reshape(xt, [-1, xt.shape[-1]])
            dx = tf.reshape(tf.matmul(dz, kernel, transpose_b=True), [t_len, batch, -1])
            return (tf.transpose(dx, [1, 0, 2]), tf.matmul(flat_x, dz, transpose_a=True),
                    tf.matmul(h_prev, dz, transpose_a=True), tf.reduce_sum(dz, 0))

        return tf.transpose(h, [1, 0, 2]), grad

    return run(x, kernel, recurrent_kernel, bias)
