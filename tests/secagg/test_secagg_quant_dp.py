"""Quantisation error bounds, discrete Gaussian sampling and epsilon accounting."""
import math

import numpy as np
import pytest
from scipy import stats

from secagg import run_protocol
from secagg.dp import add_discrete_gaussian, epsilon, quantized_sensitivity, sample_discrete_gaussian
from secagg.quantize import clip_l2, make_quantizer, stochastic_round


def test_clip_and_stochastic_round():
    x = np.array([3.0, 4.0])
    assert np.isclose(np.linalg.norm(clip_l2(x, 1.0)), 1.0)
    assert np.array_equal(clip_l2(x, 10.0), x)
    rng = np.random.default_rng(0)
    r = stochastic_round(np.full(100_000, 0.3), rng)
    assert set(np.unique(r)) == {0, 1}
    assert abs(r.mean() - 0.3) < 0.01  # unbiased
    a = stochastic_round(np.linspace(-5, 5, 101), np.random.default_rng(7))
    b = stochastic_round(np.linspace(-5, 5, 101), np.random.default_rng(7))
    assert np.array_equal(a, b)  # seeded => deterministic


@pytest.mark.parametrize("bits", [16, 32])
def test_quantized_secure_sum_error_bound(bits):
    n, d, clip = 12, 200, 2.0
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(n, d)) * rng.uniform(0.1, 3, size=(n, 1))
    w = rng.uniform(0.2, 1.0, size=n)
    q = make_quantizer(clip, bits, n, max_weight=1.0)
    enc = np.stack([q.encode(xs[i], weight=w[i], rng=100 + i) for i in range(n)])
    r = run_protocol(enc, bits=bits, mode="secagg", seed=1)
    got = q.decode(r.sum)
    want = sum(w[i] * clip_l2(xs[i], clip) for i in range(n))
    err = np.abs(got - want).max()
    assert err <= q.error_bound(n)
    assert err > 0  # stochastic rounding is not a no-op
    # negative and positive coordinates both survive the modular embedding
    assert (want < -0.1).any() and (want > 0.1).any()


def test_quantizer_headroom():
    q = make_quantizer(1.0, 16, 10, noise_std=20.0)
    assert 10 * 1.0 * q.scale + 10 + 8 * math.sqrt(10) * 20 <= 2**15
    with pytest.raises(ValueError):
        make_quantizer(1.0, 8, 1000)


@pytest.mark.parametrize("sigma", [0.7, 3.0, 25.0])
def test_discrete_gaussian_matches_exact_pmf(sigma):
    x = sample_discrete_gaussian(sigma, 60_000, rng=np.random.default_rng(11))
    assert x.dtype == np.int64
    support = np.arange(-int(12 * sigma) - 3, int(12 * sigma) + 4)
    pmf = np.exp(-support.astype(float) ** 2 / (2 * sigma**2))
    pmf /= pmf.sum()
    var = float((pmf * support**2).sum())
    assert abs(x.var() - var) / var < 0.04
    assert abs(x.mean()) < 4 * math.sqrt(var / x.size)
    # chi-square against the exact pmf on central bins (tails pooled)
    lo, hi = -int(2.5 * sigma) - 1, int(2.5 * sigma) + 1
    edges = np.arange(lo, hi + 1)
    obs = np.array([(x < lo).sum()] + [(x == v).sum() for v in edges] + [(x > hi).sum()])
    exp = np.array([pmf[support < lo].sum()] + [pmf[support == v].sum() for v in edges] + [pmf[support > hi].sum()])
    assert stats.chisquare(obs, exp * x.size / exp.sum()).pvalue > 1e-4


def test_discrete_gaussian_not_continuous_rounding_of_wrong_width():
    x = sample_discrete_gaussian(5.0, 40_000, rng=np.random.default_rng(1))
    assert abs(x.std() - 5.0) < 0.15 and abs(x.std() - 6.0) > 0.5


def test_add_discrete_gaussian_wraps():
    q = np.array([0, 1, 2**16 - 1] * 1000, dtype=np.uint32)
    noisy = add_discrete_gaussian(q, 3.0, 16, rng=0)
    assert noisy.dtype == np.uint32 and int(noisy.max()) < 2**16
    signed = ((noisy.astype(np.int64) - q.astype(np.int64) + 2**15) % 2**16) - 2**15
    assert 2.0 < signed.std() < 4.0


def test_epsilon_monotone():
    sens = quantized_sensitivity(1.0, 100.0, 64)
    assert sens == 100.0 + 8.0
    eps = [epsilon(s, 50, sens, rounds=20, delta=1e-5) for s in (20, 40, 80, 160)]
    assert all(a > b for a, b in zip(eps, eps[1:]))
    assert epsilon(40, 50, sens, rounds=40) > epsilon(40, 50, sens, rounds=20)
    assert epsilon(40, 100, sens, rounds=20) < epsilon(40, 50, sens, rounds=20)
    assert epsilon(40, 50, sens, rounds=20, sampling_rate=0.1) < eps[1]
    pld = epsilon(40, 50, sens, rounds=20, accountant="pld")
    assert 0.5 * eps[1] < pld <= eps[1] * 1.05
    assert epsilon(0, 50, sens) == math.inf
