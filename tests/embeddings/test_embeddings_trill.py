"""TRILL: triplet loss and semi-hard mining against hand-computed cases, triplet sampling, the network."""
import numpy as np
import pytest
import tensorflow as tf

from clients.embeddings import trill as T


def test_triplet_loss_hand_computed():
    a = tf.constant([[0.0, 0.0], [0.0, 0.0]])
    p = tf.constant([[1.0, 0.0], [2.0, 0.0]])
    n = tf.constant([[0.0, 2.0], [1.0, 1.0]])
    # |a-p|^2 = 1, 4; |a-n|^2 = 4, 2 -> max(1 - 4 + .2, 0) = 0, max(4 - 2 + .2, 0) = 2.2
    np.testing.assert_allclose(T.triplet_loss(a, p, n, 0.2).numpy(), [0.0, 2.2], rtol=1e-6)


def test_semi_hard_negative_hand_computed():
    anchors = tf.constant([[0.0, 0.0], [0.0, 0.0]])
    positives = tf.constant([[1.0, 0.0], [3.0, 0.0]])              # d_ap = 1, 9
    cands = tf.constant([[0.0, 0.5], [0.5, 0.0], [1.2, 0.0], [2.0, 0.0]])  # d = .25, .25, 1.44, 4
    cand_clip = tf.constant([0, 1, 2, 1], tf.int64)
    idx, ok = T.semi_hard_negatives(anchors, positives, cands, tf.constant([0, 0], tf.int64), cand_clip)
    # anchor 0: candidate 0 shares its clip; 1 is closer than the positive; 2 is the closest farther one.
    # anchor 1: every valid candidate is closer than the positive -> the farthest, 3.
    assert idx.numpy().tolist() == [2, 3] and ok.numpy().all()
    _, ok = T.semi_hard_negatives(anchors[:1], positives[:1], cands[:1], tf.constant([0], tf.int64), cand_clip[:1])
    assert not ok.numpy().any()


def test_batch_loss_mines_inside_the_batch_hand_computed():
    unit = lambda *v: np.array(v, np.float32)  # noqa: E731
    x = np.stack([[unit(1, 0), unit(.8, .6), unit(0, 1)],       # d_ap = .4, d_an = 2, clips (0, 1)
                  [unit(0, 1), unit(.6, .8), unit(-1, 0)]])     # d_ap = .4, d_an = 2, clips (1, 0)
    x = x[:, :, None, :]                                          # [B, 3, frames=1, mels=2]
    identity = lambda t, training=False: tf.reshape(t, [tf.shape(t)[0], -1])  # noqa: E731
    clips = np.array([[0, 1], [1, 0]])
    plain, acc = T.triplet_batch_loss(identity, x, clips, margin=0.5, semi_hard=False)
    np.testing.assert_allclose(plain.numpy(), [0.0, 0.0], atol=1e-6)
    assert acc.numpy().tolist() == [1.0, 1.0]
    # semi-hard: anchor 0's closest farther window of another clip is (.6, .8) at d = .8 -> .4 - .8 + .5 = .1
    mined, _ = T.triplet_batch_loss(identity, x, clips, margin=0.5, semi_hard=True)
    np.testing.assert_allclose(mined.numpy(), [0.1, 0.1], atol=1e-5)


def test_sample_triplets_windows_come_from_the_named_clips():
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(t, 4)).astype(np.float32) for t in (1200, 150, 96, 40)]
    ids = np.array([10, 11, 12, 13])
    x, y = T.sample_triplets(feats, ids, 200, np.random.default_rng(1), window_frames=96, max_gap_s=2.0)
    assert x.shape == (200, 3, 96, 4) and y.shape == (200, 2)
    padded = [f if len(f) >= 96 else np.concatenate([f, np.full((96 - len(f), 4), np.log(0.001), np.float32)])
              for f in feats]

    def start(window, clip):
        f = padded[list(ids).index(clip)]
        hits = [t for t in range(len(f) - 95) if np.array_equal(f[t:t + 96], window)]
        assert hits, "window not found in its clip"
        return hits[0]

    for (a, p, n), (ca, cn) in zip(x, y):
        assert ca != cn
        ta, tp = start(a, ca), start(p, ca)
        start(n, cn)
        assert abs(ta - tp) <= 200                            # within max_gap_s = 2 s
        if ca in (10, 11):
            assert ta != tp                                   # a clip longer than a window: distinct windows
    with pytest.raises(ValueError, match="two or more clips"):
        T.sample_triplets(feats[:1], ids[:1], 1, rng)


def test_network_shapes_and_paper_size():
    model = T.build_trill()
    both = T.embedding_and_layer19(model)
    e, l19 = both(np.zeros((2, 96, 64), np.float32))
    assert e.shape == (2, 64) and l19.shape == (2, 12 * 8 * 16) and T.layer19_dim() == 12 * 8 * 16
    odd = T.TrillConfig(window_frames=100, n_mels=40, widths=(4, 8, 16), layer19_stage=0)  # odd sizes round up
    assert T.embedding_and_layer19(T.build_trill(odd), odd).outputs[1].shape[-1] == T.layer19_dim(odd) == 25 * 10 * 4
    paper = T.build_trill(T.PAPER)
    assert paper.output_shape == (None, 512)
    assert paper.count_params() > 100 * model.count_params()


def test_learns_to_tell_clips_apart():
    """A few Adam steps on triplets of two differently coloured noises separate them."""
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    feats = [rng.normal(size=(400, 64)).astype(np.float32) + np.linspace(-2, 2, 64) * s for s in (1, -1, 0.3)]
    x, y = T.sample_triplets(feats, [0, 1, 2], 24, rng)
    model = T.build_trill()
    opt = tf.keras.optimizers.Adam(3e-3)
    losses = []
    for _ in range(15):
        with tf.GradientTape() as tape:
            loss, acc = T.triplet_batch_loss(model, x, y, margin=0.2)
            mean = tf.reduce_mean(loss)
        opt.apply_gradients(zip(tape.gradient(mean, model.trainable_variables), model.trainable_variables))
        losses.append(float(mean))
    assert losses[-1] < 0.5 * losses[0] and float(tf.reduce_mean(acc)) == 1.0
