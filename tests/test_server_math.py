import numpy as np
import pytest

from fl import aggregators, optimizers


def test_sgd_lr1_is_fedavg_and_momentum():
    opt = optimizers.sgd(1.0)
    step, _ = opt.update(opt.init(np.zeros(3)), -np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(step, [1, 2, 3])
    mom = optimizers.sgd(0.5, 0.9)
    s = mom.init(np.zeros(1))
    _, s = mom.update(s, np.array([1.0]))
    step, _ = mom.update(s, np.array([1.0]))
    np.testing.assert_allclose(step, [-0.5 * 1.9])


@pytest.mark.parametrize("name", ["adam", "yogi"])
def test_adaptive_first_step_matches_reddi_et_al(name):
    lr, b1, b2, eps = 0.1, 0.9, 0.99, 1e-3
    opt = getattr(optimizers, name)(lr, b1, b2, eps)
    g = np.array([0.5, -2.0])
    step, st = opt.update(opt.init(np.zeros(2)), g)
    v0 = eps ** 2
    v = b2 * v0 + (1 - b2) * g * g if name == "adam" else v0 - (1 - b2) * g * g * np.sign(v0 - g * g)
    np.testing.assert_allclose(step, -lr * (1 - b1) * g / (np.sqrt(v) + eps))
    np.testing.assert_allclose(st["v"], v)


def test_weighted_mean_and_clipping():
    agg = aggregators.mean("examples")
    a, wa, _ = agg.client(np.array([1.0, 0.0]), 3)
    b, wb, _ = agg.client(np.array([0.0, 1.0]), 1)
    mean, _, _ = agg.finalize({}, a + b, wa + wb, 2, 0)
    np.testing.assert_allclose(mean, [0.75, 0.25])
    clip = aggregators.clipped(1.0, aggregators.mean("uniform"))
    out, w, info = clip.client(np.array([3.0, 4.0]), 10)
    assert w == 1.0 and info["clipped"] == 1.0
    np.testing.assert_allclose(np.linalg.norm(out), 1.0)


def test_gaussian_dp_noise_and_epsilon_from_the_rounds_sampling():
    from fl.privacy import Sampling, gaussian_epsilon

    agg = aggregators.gaussian_dp(noise_multiplier=1.0, clip_norm=0.5, expected_reports=10, target_delta=1e-6,
                                  population_size=10_000)
    total = np.zeros(20000)
    info = {"selected": 13, "eligible": 4000}
    mean, state, m = agg.finalize(agg.init(), total, 10.0, 10, 1, info)
    assert abs(np.std(mean) * 10 - 0.5) < 0.02  # noise std z*C on the sum, /10 reports
    _, state, m2 = agg.finalize(state, total, 10.0, 10, 2, info)
    assert len(state["dp_z"]) == 2 and m2["dp_epsilon"] > m["dp_epsilon"] > 0
    fixed = Sampling("fixed", sample=13, pool=4000)
    assert m2["dp_epsilon"] == pytest.approx(gaussian_epsilon(1.0, 1e-6, rounds=2, sampling=fixed), rel=1e-9)
    assert m2["dp_sampling_q"] == 13 / 4000
    # the old report assumed Poisson q = goal / population, which is optimistic here
    assert m2["dp_epsilon"] > aggregators.dp_epsilon(1.0, 10 / 10_000, 2, 1e-6)
    assert aggregators.dp_epsilon(2.0, 0.01, 100, 1e-6) < aggregators.dp_epsilon(1.0, 0.01, 100, 1e-6)
