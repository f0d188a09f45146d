"""Bézier representation: exact recovery of a known cubic, the error bound on noisy ink,
the per-curve features, compaction and the raw-points baseline."""
import numpy as np
import pytest

from clients.handwriting.bezier import (NUM_FEATURES, CurveInk, FitConfig, compaction, curve_features, evaluate,
                                        fit_cubic, fit_ink, fit_stroke, normalize, point_features)
from clients.handwriting.ink import EmptyStrokeError, NonMonotonicTimestampError, WriterStyle, render_word


def _known_cubic(seed):
    rng = np.random.default_rng(seed)
    ctrl = rng.normal(size=(4, 3))
    ctrl[:, 2] = np.cumsum(np.abs(ctrl[:, 2]) + 0.1)  # time increases along the curve
    u = np.sort(rng.uniform(size=50) ** 1.5)  # uneven sampling: chord length is not the answer
    u[0], u[-1] = 0.0, 1.0
    return ctrl, u, evaluate(ctrl, u)


@pytest.mark.parametrize("seed", range(5))
def test_fit_recovers_a_known_cubic_exactly(seed):
    ctrl, u, pts = _known_cubic(seed)
    fitted, params, err = fit_cubic(pts, iterations=100)
    assert err < 1e-8
    np.testing.assert_allclose(fitted, ctrl, atol=1e-7)
    np.testing.assert_allclose(params, u, atol=1e-7)
    # as a stroke: one curve is enough, whatever the threshold
    curves = fit_stroke(pts, FitConfig(threshold=1e-10, time_weight=1.0, iterations=100))
    assert len(curves) == 1
    np.testing.assert_allclose(curves[0], ctrl, atol=1e-6)


def _distance_to_curves(points, curves, w):
    dense = np.concatenate([evaluate(c * w, np.linspace(0, 1, 4001)) for c in curves])
    return np.array([np.linalg.norm(dense - p * w, axis=1).min() for p in points])


@pytest.mark.parametrize("threshold", [0.01, 0.04])
def test_noisy_ink_stays_within_the_error_bound(threshold):
    cfg = FitConfig(threshold=threshold)
    w = np.array([1.0, 1.0, cfg.time_weight])
    style = WriterStyle(noise_px=0.6, jitter=0.05, sample_rate_hz=200.0)
    for word in ("go", "quick"):
        ink = normalize(render_word(word, style, np.random.default_rng(3)))
        for stroke in ink:
            curves = fit_stroke(stroke, cfg)
            for a, b in zip(curves[:-1], curves[1:]):
                np.testing.assert_array_equal(a[-1], b[0])  # consecutive curves share their ends
            np.testing.assert_allclose(curves[0][0], stroke[0], atol=1e-12)
            np.testing.assert_allclose(curves[-1][-1], stroke[-1], atol=1e-12)
            dist = _distance_to_curves(stroke, curves, w)
            assert dist.max() <= threshold * 1.001 + 1e-4  # dense sampling adds a little
    # a noisy known cubic (noise well under the threshold) needs only a few curves
    ctrl, _, pts = _known_cubic(0)
    noisy = pts + np.random.default_rng(1).normal(0, 0.002, pts.shape) * [1, 1, 0]
    noisy[:, 2] = pts[:, 2]
    assert len(fit_stroke(noisy, FitConfig(threshold=0.02, time_weight=1.0))) <= 3


def test_a_tighter_threshold_gives_more_curves():
    ink = render_word("minimum", WriterStyle(noise_px=0.3), np.random.default_rng(0))
    counts = [len(fit_ink(ink, FitConfig(threshold=t))) for t in (0.08, 0.04, 0.01)]
    assert counts[0] < counts[1] < counts[2]


def test_curve_features_by_hand():
    ctrl = np.array([[0, 0, 0], [1, 1, 1 / 3], [2, 1, 2 / 3], [3, 0, 1.0]])
    f = curve_features(CurveInk(ctrl[None], np.zeros(1, np.float32), np.zeros(1, int)))
    assert f.shape == (1, NUM_FEATURES)
    expected = [3, 0, np.sqrt(2) / 3, np.sqrt(2) / 3, np.pi / 4, -np.pi / 4, 1, 0, 0, 0]
    np.testing.assert_allclose(f[0], expected, atol=1e-6)
    # time polynomial: t(s) = t0 + c1 s + c2 s^2 + c3 s^3 reproduces the curve's time
    ctrl2 = ctrl.copy()
    ctrl2[:, 2] = [0.0, 0.1, 0.5, 0.6]
    f2 = curve_features(CurveInk(ctrl2[None], np.ones(1, np.float32), np.zeros(1, int)))[0]
    s = np.linspace(0, 1, 7)
    np.testing.assert_allclose(f2[6] * s + f2[7] * s ** 2 + f2[8] * s ** 3, evaluate(ctrl2, s)[:, 2], atol=1e-6)
    assert f2[9] == 1.0


def test_word_curves_pen_ups_and_compaction():
    style = WriterStyle(family="futural", sample_rate_hz=133.0)
    ink = render_word("hint", style, np.random.default_rng(2))
    curves = fit_ink(ink)
    assert curves.pen_up.sum() == len(ink) - 1  # one pen-up curve between consecutive strokes
    norm = normalize(ink)
    for k in np.flatnonzero(curves.pen_up):  # each pen-up joins one stroke's end to the next start
        i = curves.stroke[k - 1]
        np.testing.assert_allclose(curves.ctrl[k, 0], norm[i][-1])
        np.testing.assert_allclose(curves.ctrl[k, -1], norm[i + 1][0])
    assert compaction(ink, curves) > 5.0
    feats = curve_features(curves)
    assert feats.shape == (len(curves), NUM_FEATURES) and np.isfinite(feats).all()
    # the endpoint deltas add up to the path from the first point to the last
    np.testing.assert_allclose(feats[:, :2].sum(0), norm[-1][-1, :2] - norm[0][0, :2], atol=1e-5)


def test_normalization_and_raw_point_baseline():
    ink = render_word("jot", WriterStyle(x_height_px=50.0), np.random.default_rng(4))
    norm = normalize(ink)
    allp = np.concatenate(norm)
    assert allp[:, 0].min() == 0 and allp[:, 1].min() == 0 and np.isclose(np.ptp(allp[:, 1]), 1.0)
    assert norm[0][0, 2] == 0
    pts = point_features(ink, spacing=0.05)
    assert pts.shape[1] == 4 and pts[:, 3].sum() == len(ink) - 1
    within = pts[1:][pts[1:, 3] == 0]
    step = np.hypot(within[:, 0], within[:, 1])
    assert np.median(step) == pytest.approx(0.05, rel=0.3) and step.max() < 0.05 * 1.01
    assert (within[:, 2] >= 0).all()  # time moves forward


def test_bad_ink_fails_before_fitting():
    with pytest.raises(EmptyStrokeError):
        fit_ink([np.zeros((0, 3))])
    with pytest.raises(NonMonotonicTimestampError):
        fit_ink([np.array([[0, 0, 0.1], [1, 1, 0.0]])])
    with pytest.raises(NonMonotonicTimestampError):
        point_features([np.array([[0, 0, 0.1], [1, 1, 0.1]])])
