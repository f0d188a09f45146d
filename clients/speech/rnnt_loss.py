"""RNN-Transducer loss (Graves 2012, "Sequence Transduction with Recurrent Neural Networks").

The model emits, at every lattice node (t, u) (t encoder frames, u labels consumed so far),
a distribution over the vocabulary; blank moves t -> t+1, label y_{u+1} moves u -> u+1.
Forward and backward variables in log space (Graves 2012, eqs. 10 and 12):

    alpha[0, 0] = 0
    alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1])
    beta[T-1, U] = blank[T-1, U]
    beta[t, u]  = logaddexp(beta[t+1, u] + blank[t, u], beta[t, u+1] + emit[t, u])

-log P(y | x) = -beta[0, 0], and the gradient with respect to the log-probabilities is in
closed form (Graves 2012, eq. 15): at node (t, u) the blank gets
-exp(alpha[t, u] + blank[t, u] + beta[t+1, u] - log P) and the label y_{u+1} gets
-exp(alpha[t, u] + emit[t, u] + beta[t, u+1] - log P). Computing it with the loss, as
warp-transducer does, avoids differentiating through the recursion.

Vectorization: a loop over t; within a row the u-recursion is a linear recurrence in the log
semiring, solved in closed form with a cumulative log-sum-exp: with C[u] = sum_{j<u} emit[t, j]
and a[u] = alpha[t-1, u] + blank[t-1, u], alpha[t, u] = C[u] + logcumsumexp_{k<=u}(a[k] - C[k]);
likewise beta[t, u] = -C[u] + logcumsumexp_{k>=u}(b[k] + C[k]) with b[k] = beta[t+1, k] + blank[t, k].
All examples of a batch run together in float64 numpy: padded frames and labels get -inf
(a large negative number) in beta, so they carry neither probability nor gradient.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_NEG = -1e30  # finite stand-in for log(0)


def forward_backward(blank_lp: np.ndarray, emit_lp: np.ndarray, logit_lengths: np.ndarray,
                     label_lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-log P per example [B] and its gradients with respect to ``blank_lp`` [B, T, U+1] (the
    blank's log-probability at each node) and ``emit_lp`` [B, T, U] (the next label's), in
    float32 (numpy; float64 inside)."""
    blank_lp = np.asarray(blank_lp, np.float64)
    emit = np.asarray(emit_lp, np.float64)
    t_len = np.asarray(logit_lengths, np.int64)
    u_len = np.asarray(label_lengths, np.int64)
    B, T, U1 = blank_lp.shape
    rows = np.arange(B)
    csum = np.concatenate([np.zeros((B, T, 1)), np.cumsum(emit, axis=2)], axis=2)  # C: [B, T, U+1]

    alpha = np.empty((B, T, U1))
    a = np.full((B, U1), _NEG)
    a[:, 0] = 0.0  # a virtual row t = -1 whose blank step puts all mass on (0, 0)
    for t in range(T):
        c = csum[:, t]
        alpha[:, t] = c + np.logaddexp.accumulate(a - c, axis=1)
        a = alpha[:, t] + blank_lp[:, t]

    terminal = np.full((B, U1), _NEG)
    terminal[rows, u_len] = 0.0
    beta = np.empty((B, T, U1))
    nxt = np.full((B, U1), _NEG)  # beta[t+1]: nothing beyond the last frame
    for t in range(T - 1, -1, -1):
        nxt = np.where((t_len - 1 == t)[:, None], terminal, nxt)
        c = csum[:, t]
        beta[:, t] = np.logaddexp.accumulate((nxt + blank_lp[:, t] + c)[:, ::-1], axis=1)[:, ::-1] - c
        nxt = beta[:, t]

    log_p = beta[:, 0, 0]
    # beta at t+1, with the terminal node after each example's last frame
    beta_next = np.concatenate([beta[:, 1:], np.full((B, 1, U1), _NEG)], axis=1)
    beta_next[rows, t_len - 1] = terminal
    g_blank = -np.exp(alpha + blank_lp + beta_next - log_p[:, None, None])
    g_emit = -np.exp(alpha[:, :, :-1] + emit + beta[:, :, 1:] - log_p[:, None, None])
    return (-log_p).astype(np.float32), g_blank.astype(np.float32), g_emit.astype(np.float32)


def rnnt_loss(logits, labels, logit_lengths, label_lengths, blank: int = 0):
    """Per-example RNN-T negative log-likelihood, shape [B] (differentiable in ``logits``).

    Args:
      logits: [B, T, U+1, V] unnormalized joint-network outputs (log-softmax is applied here).
      labels: [B, U] int label ids (padding arbitrary, e.g. 0).
      logit_lengths: [B] valid frames per example (>= 1).
      label_lengths: [B] valid labels per example (<= U).
      blank: index of the blank symbol.
    """
    logits = tf.cast(logits, tf.float32)
    labels = tf.cast(labels, tf.int32)
    # only the blank's and the next label's log-probabilities enter the loss
    lse = tf.reduce_logsumexp(logits, axis=-1)                                  # [B, T, U+1]
    blank_lp = logits[..., blank] - lse
    # (a one-hot product: much cheaper to differentiate on CPU than a batched gather)
    one_hot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=tf.float32)[:, None]  # [B, 1, U, V]
    emit_lp = tf.reduce_sum(logits[:, :, :-1, :] * one_hot, axis=-1) - lse[:, :, :-1]  # [B, T, U]
    lengths = [tf.cast(logit_lengths, tf.int32), tf.cast(label_lengths, tf.int32)]

    @tf.custom_gradient
    def nll(blank_lp, emit_lp):
        value, g_blank, g_emit = tf.numpy_function(forward_backward, [blank_lp, emit_lp, *lengths],
                                                   [tf.float32] * 3, stateful=False)
        value = tf.ensure_shape(value, blank_lp.shape[:1])
        return value, lambda up: (g_blank * up[:, None, None], g_emit * up[:, None, None])

    return nll(blank_lp, emit_lp)
