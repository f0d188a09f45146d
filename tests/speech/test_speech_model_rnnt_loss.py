import itertools
import math

import numpy as np
import pytest
import tensorflow as tf

from clients.speech.rnnt_loss import rnnt_loss


def brute_force_nll(logits, labels, logit_lengths, label_lengths, blank=0):
    """-log sum over all alignments, enumerated explicitly (TF ops, so differentiable)."""
    log_probs = tf.nn.log_softmax(logits, axis=-1)
    out = []
    for b in range(len(logit_lengths)):
        T, U = int(logit_lengths[b]), int(label_lengths[b])
        path_scores = []
        # an alignment: T blanks and U labels, the last step a blank
        for pos in itertools.combinations(range(T + U - 1), U):
            t = u = 0
            idx = []
            for step in range(T + U):
                if step in pos:
                    idx.append([b, t, u, int(labels[b][u])])
                    u += 1
                else:
                    idx.append([b, t, u, blank])
                    t += 1
            path_scores.append(tf.reduce_sum(tf.gather_nd(log_probs, idx)))
        out.append(-tf.reduce_logsumexp(tf.stack(path_scores)))
    return tf.stack(out)


@pytest.mark.parametrize("blank", [0, 2])
def test_matches_brute_force_values_and_gradients(blank):
    rng = np.random.default_rng(blank)
    B, T, U, V = 4, 4, 3, 5
    logits = tf.Variable(rng.normal(size=(B, T, U + 1, V)).astype(np.float32) * 2)
    labels = np.array([[1, 3, 4], [4, 1, 0], [3, 0, 0], [1, 1, 1]])
    labels = np.where(labels == blank, (labels + 1) % V, labels)   # labels never equal blank
    logit_lengths, label_lengths = np.array([4, 3, 1, 2]), np.array([3, 2, 0, 3])
    with tf.GradientTape(persistent=True) as tape:
        ours = rnnt_loss(logits, labels, logit_lengths, label_lengths, blank=blank)
        ref = brute_force_nll(logits, labels, logit_lengths, label_lengths, blank)
        s_ours, s_ref = tf.reduce_sum(ours), tf.reduce_sum(ref)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), atol=1e-4)
    g_ours, g_ref = tape.gradient(s_ours, logits), tape.gradient(s_ref, logits)
    assert np.all(np.isfinite(g_ours.numpy()))
    np.testing.assert_allclose(g_ours.numpy(), g_ref.numpy(), atol=1e-4)
    # padded frames / labels get no gradient
    assert np.all(g_ours.numpy()[2, 1:] == 0) and np.all(g_ours.numpy()[1, :, 3:] == 0)


def test_uniform_logits_closed_form():
    # every alignment has probability V^-(T+U); there are C(T+U-1, U) of them
    T, U, V = 5, 3, 7
    nll = rnnt_loss(tf.zeros([1, T, U + 1, V]), [[1, 2, 3]], [T], [U])
    expected = (T + U) * math.log(V) - math.log(math.comb(T + U - 1, U))
    assert nll.numpy()[0] == pytest.approx(expected, abs=1e-4)


def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 3, 3, 4))
    labels, tl, ul = [[2, 3]], [3], [2]
    var = tf.Variable(x.astype(np.float32))
    with tf.GradientTape() as tape:
        loss = rnnt_loss(var, labels, tl, ul)[0]
    g = tape.gradient(loss, var).numpy()
    eps = 1e-2
    for idx in [(0, 0, 0, 0), (0, 1, 1, 3), (0, 2, 2, 0), (0, 0, 1, 2)]:
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (rnnt_loss(xp.astype(np.float32), labels, tl, ul)[0]
              - rnnt_loss(xm.astype(np.float32), labels, tl, ul)[0]).numpy() / (2 * eps)
        assert g[idx] == pytest.approx(fd, abs=2e-3)
