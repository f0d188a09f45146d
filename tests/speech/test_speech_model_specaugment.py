import numpy as np
import pytest
import tensorflow as tf

from clients.speech.specaugment import SpecAugmentConfig, spec_augment

MASK = -5.0


def _runs(flags):
    flags = np.concatenate([[False], flags, [False]]).astype(int)
    return int((np.diff(flags) == 1).sum())


def _longest_run(flags):
    best = cur = 0
    for f in flags:
        cur = cur + 1 if f else 0
        best = max(best, cur)
    return best


def test_identity_when_not_training():
    x = tf.random.normal([20, 8])
    assert spec_augment(x, [1, 2], training=False) is x


def test_shapes_dtype_and_determinism():
    x = tf.random.stateless_normal([3, 40, 16], seed=[0, 1])
    cfg = SpecAugmentConfig(time_warp=5, freq_width=4, time_width=6)
    a = spec_augment(x, [3, 4], lengths=[40, 30, 12], config=cfg)
    b = spec_augment(x, [3, 4], lengths=[40, 30, 12], config=cfg)
    c = spec_augment(x, [3, 5], lengths=[40, 30, 12], config=cfg)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    single = spec_augment(x[0], [3, 4], config=cfg)
    assert single.shape == (40, 16)


@pytest.mark.parametrize("time_ratio", [1.0, 0.2])
def test_masks_are_full_bands_with_bounded_count_and_width(time_ratio):
    B, T, F = 64, 30, 12
    cfg = SpecAugmentConfig(time_warp=0, freq_masks=2, freq_width=3, time_masks=2,
                            time_width=4, time_ratio=time_ratio, mask_value=MASK)
    rng = np.random.default_rng(0)
    x = rng.uniform(1.0, 2.0, size=(B, T, F)).astype(np.float32)
    lengths = rng.integers(10, T + 1, size=B)
    y = spec_augment(tf.constant(x), [7, 8], lengths=lengths, config=cfg).numpy()
    any_f = any_t = False
    longest_f = longest_t = 0
    for b in range(B):
        L = lengths[b]
        np.testing.assert_array_equal(y[b, L:], x[b, L:])             # padding untouched
        masked = y[b, :L] == MASK
        np.testing.assert_array_equal(y[b, :L][~masked], x[b, :L][~masked])
        cols, rows = masked.all(axis=0), masked.all(axis=1)
        np.testing.assert_array_equal(masked, cols[None, :] | rows[:, None])
        assert _runs(cols) <= 2 and cols.sum() <= 2 * 3
        t_max = min(4, int(np.floor(time_ratio * L)))
        assert _runs(rows) <= 2 and rows.sum() <= 2 * t_max
        any_f |= cols.any()
        any_t |= rows.any()
        longest_f = max(longest_f, _longest_run(cols))
        if t_max == 4:
            longest_t = max(longest_t, _longest_run(rows))
    assert any_f and any_t
    assert longest_f >= 3                     # the full width f is reached
    if time_ratio == 1.0:
        assert longest_t >= 4


def test_time_warp_is_bounded_monotone_resampling():
    B, T, F, W = 16, 40, 3, 5
    lengths = np.array([40, 25, 17, 40] * 4)
    ramp = np.broadcast_to(np.arange(T, dtype=np.float32)[None, :, None], (B, T, F)).copy()
    cfg = SpecAugmentConfig(time_warp=W, freq_masks=0, time_masks=0)
    y = spec_augment(tf.constant(ramp), [1, 9], lengths=lengths, config=cfg).numpy()
    changed = 0
    for b in range(B):
        L = lengths[b]
        v = y[b, :L, 0]
        np.testing.assert_array_equal(y[b], np.repeat(y[b, :, :1], F, axis=1))
        assert v[0] == pytest.approx(0.0) and v[-1] == pytest.approx(L - 1, abs=1e-4)
        assert np.all(np.diff(v) >= -1e-5)
        assert np.max(np.abs(v - np.arange(L))) <= W + 1e-4
        np.testing.assert_array_equal(y[b, L:], ramp[b, L:])
        changed += not np.allclose(v, np.arange(L))
    assert changed >= B // 2
    no_warp = spec_augment(tf.constant(ramp), [1, 9], lengths=lengths,
                           config=SpecAugmentConfig(time_warp=0, freq_masks=0, time_masks=0))
    np.testing.assert_array_equal(no_warp.numpy(), ramp)


@pytest.mark.parametrize("axis", ["freq", "time"])
def test_single_mask_width_range(axis):
    B, T, F = 96, 20, 10
    if axis == "freq":
        cfg = SpecAugmentConfig(time_warp=0, freq_masks=1, freq_width=3, time_masks=0,
                                mask_value=MASK)
    else:
        cfg = SpecAugmentConfig(time_warp=0, freq_masks=0, time_masks=1, time_width=5,
                                time_ratio=0.2, mask_value=MASK)      # width <= min(5, 0.2*20)
    x = np.random.default_rng(1).uniform(1.0, 2.0, size=(B, T, F)).astype(np.float32)
    y = spec_augment(tf.constant(x), [5, 6], config=cfg).numpy() == MASK
    flags = y.all(axis=1) if axis == "freq" else y.all(axis=2)
    assert all(_runs(f) <= 1 for f in flags)
    widths = set(flags.sum(axis=1).tolist())
    assert widths == ({0, 1, 2, 3} if axis == "freq" else {0, 1, 2, 3, 4})


def test_asr_task_applies_its_configured_policy_in_training_only():
    from clients.speech.task import ASRTask

    def loss(training, **policy):
        cfg = ASRTask.Config(n_typical=1, encoder_layers=2, encoder_units=8, pred_units=8, joint_units=8,
                             max_frames=60, specaugment=True, **policy)
        task = ASRTask(cfg, seed=0)
        model = task.build_model()
        x = np.concatenate([np.random.default_rng(0).normal(size=(2, 60, 80)), np.ones((2, 60, 1))], -1)
        y = np.array([[5, 6, 7] + [0] * 45, [8, 9, 0] + [0] * 45], np.int32)
        return task.batch_loss(model, tf.constant(x, tf.float32), tf.constant(y), training)[0].numpy()

    off = dict(specaugment_time_warp=0, specaugment_freq_width=0, specaugment_time_width=0)
    np.testing.assert_allclose(loss(True, **off), loss(False), rtol=1e-5)  # an empty policy changes nothing
    strong = dict(specaugment_freq_width=30, specaugment_time_width=30, specaugment_time_ratio=1.0)
    assert np.abs(loss(True, **strong) - loss(False, **strong)).max() > 1e-3
    np.testing.assert_allclose(loss(False, **strong), loss(False), rtol=1e-5)
