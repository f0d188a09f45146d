"""RNN-Transducer loss (Graves 2012, "Sequence Transduction with Recurrent Neural Networks").

The model emits, at every lattice node (t, u) (t encoder frames, u labels consumed so far),
a distribution over the vocabulary; blank moves t -> t+1, label y_{u+1} moves u -> u+1.
The forward variable in log space is

    alpha[0, 0] = 0
    alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1])

and  -log P(y | x) = -(alpha[T-1, U] + blank[T-1, U]).

Vectorization: a ``tf.scan`` over t; within a row the u-recursion is a linear recurrence in
the log semiring, solved in closed form with a cumulative log-sum-exp:
with C[u] = sum_{j<u} emit[t, j] and a[u] = alpha[t-1, u] + blank[t-1, u],
alpha[t, u] = C[u] + logcumsumexp_k (a[k] - C[k]).
Padded frames / labels sit after the valid ones and cannot reach the valid nodes, so the
result for each example is read at (logit_length - 1, label_length). Gradients come from
TF autodiff through the scan.
"""
from __future__ import annotations

import tensorflow as tf

_NEG = -1e30  # finite stand-in for log(0): keeps gradients NaN-free


def rnnt_log_likelihood(log_probs, labels, logit_lengths, label_lengths, blank: int = 0):
    """log P(labels | x) per example from log-probabilities [B, T, U+1, V]."""
    log_probs = tf.convert_to_tensor(log_probs)
    labels = tf.cast(labels, tf.int32)
    logit_lengths = tf.cast(logit_lengths, tf.int32)
    label_lengths = tf.cast(label_lengths, tf.int32)
    B, T = tf.shape(log_probs)[0], tf.shape(log_probs)[1]
    U = tf.shape(labels)[1]

    blank_lp = log_probs[..., blank]                                   # [B, T, U+1]
    # emit[b, t, u] = log_probs[b, t, u, labels[b, u]] for u < U
    lab = tf.broadcast_to(labels[:, None, :, None], tf.stack([B, T, U, 1]))
    emit = tf.gather(log_probs[:, :, :-1, :], lab, batch_dims=3)[..., 0]  # [B, T, U]
    # C[b, t, u] = sum_{j<u} emit[b, t, j]  -> [B, T, U+1]
    csum = tf.concat([tf.zeros_like(blank_lp[:, :, :1]), tf.cumsum(emit, axis=2)], axis=2)

    blank_t = tf.transpose(blank_lp, [1, 0, 2])                        # [T, B, U+1]
    csum_t = tf.transpose(csum, [1, 0, 2])

    # Virtual row t = -1 whose "blank step" puts all mass on (0, 0): a = [0, -big, ...];
    # then row 0 comes out as alpha[0, u] = C[0, u], and T = 1 needs no special case.
    start = tf.concat([tf.zeros_like(blank_t[0, :, :1]),
                       tf.fill(tf.shape(blank_t[0, :, 1:]), _NEG)], axis=1)
    blank_prev = tf.concat([start[None], blank_t[:-1]], axis=0)        # [T, B, U+1]

    def step(alpha_prev, inputs):
        b_prev, c = inputs
        a = alpha_prev + b_prev
        return c + tf.math.cumulative_logsumexp(a - c, axis=1)

    alphas = tf.scan(step, (blank_prev, csum_t), initializer=tf.zeros_like(start))  # [T, B, U+1]
    alphas = tf.transpose(alphas, [1, 0, 2])                             # [B, T, U+1]

    idx = tf.stack([tf.range(B), logit_lengths - 1, label_lengths], axis=1)
    return tf.gather_nd(alphas, idx) + tf.gather_nd(blank_lp, idx)


def rnnt_loss(logits, labels, logit_lengths, label_lengths, blank: int = 0):
    """Per-example RNN-T negative log-likelihood, shape [B].

    Args:
      logits: [B, T, U+1, V] unnormalized joint-network outputs (log-softmax is applied here).
      labels: [B, U] int label ids (padding arbitrary, e.g. 0).
      logit_lengths: [B] valid frames per example (>= 1).
      label_lengths: [B] valid labels per example (<= U).
      blank: index of the blank symbol.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return -rnnt_log_likelihood(log_probs, labels, logit_lengths, label_lengths, blank)
