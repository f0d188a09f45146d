"""Distributed differential privacy with the discrete Gaussian.

Each client adds discrete Gaussian noise N_Z(0, sigma^2) (in quantised units)
to its quantised update before masking, as in the distributed discrete
Gaussian mechanism of Kairouz, Liu & Steinke (ICML 2021).  Samples are drawn
with the exact rejection sampler of Canonne, Kamath & Steinke, "The Discrete
Gaussian for Differential Privacy" (NeurIPS 2020, Algorithms 1-3), vectorised
with numpy: Bernoulli(exp(-gamma)) is sampled exactly for rational gamma by
integer comparisons, so given ideal uniform integers the output distribution
is exactly N_Z(0, sigma^2) for the rational ``sigma^2`` used (``sigma^2`` is
converted with :class:`fractions.Fraction`, denominator bounded so all
integers fit int64).  The uniform integers come from a numpy ``Generator``
(PCG64), which is not a CSPRNG; seed it from the OS for deployment.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

_I64 = np.int64


def _rng(rng) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _bern_exp_frac(num: np.ndarray, den: np.ndarray, rng) -> np.ndarray:
    """Bernoulli(exp(-num/den)) for 0 <= num <= den (CKS'20 Algorithm 1, gamma <= 1)."""
    size = num.shape[0]
    out = np.empty(size, dtype=bool)
    k = np.ones(size, dtype=_I64)
    active = np.arange(size)
    while active.size:
        kk = k[active]
        hi = den[active] * kk
        if np.any(den[active] > (2**62) // kk):
            raise OverflowError("discrete Gaussian: denominator too large")
        a = rng.integers(0, hi) < num[active]  # A ~ Bernoulli(gamma / K)
        stop = active[~a]
        out[stop] = (k[stop] % 2) == 1
        active = active[a]
        k[active] += 1
    return out


def _bern_exp(num, den, rng) -> np.ndarray:
    """Bernoulli(exp(-num/den)) for any rational num/den >= 0 (num, den: int or
    Python-int object arrays); exp(-gamma) = exp(-1)^floor(gamma) * exp(-frac)."""
    num = np.asarray(num, dtype=object)
    den = np.asarray(den, dtype=object)
    whole = num // den
    frac = (num - whole * den).astype(_I64)
    den64 = den.astype(_I64)
    whole = np.minimum(whole, 2**62).astype(_I64)
    out = np.ones(num.shape[0], dtype=bool)
    act = np.nonzero(whole > 0)[0]
    while act.size:  # floor(gamma) Bernoulli(exp(-1)) trials, stopping at the first failure
        ones = np.ones(act.size, dtype=_I64)
        out[act] &= _bern_exp_frac(ones, ones, rng)
        whole[act] -= 1
        act = act[out[act] & (whole[act] > 0)]
    idx = np.nonzero(out)[0]
    if idx.size:
        out[idx] = _bern_exp_frac(frac[idx], den64[idx], rng)
    return out


def _discrete_laplace(t: int, size: int, rng) -> np.ndarray:
    """Discrete Laplace with scale t (P[x] ∝ exp(-|x|/t)), CKS'20 Algorithm 2 (s=1)."""
    out = np.empty(size, dtype=_I64)
    todo = np.arange(size)
    while todo.size:
        m = todo.size
        u = rng.integers(0, t, size=m)
        ok = _bern_exp(u, np.full(m, t, dtype=object), rng)
        u, idx = u[ok], todo[ok]
        v = np.zeros(idx.size, dtype=_I64)
        act = np.arange(idx.size)
        while act.size:  # V = number of Bernoulli(exp(-1)) successes before a failure
            ones = np.ones(act.size, dtype=_I64)
            a = _bern_exp_frac(ones, ones, rng)
            act = act[a]
            v[act] += 1
        x = u + t * v
        neg = rng.integers(0, 2, size=idx.size).astype(bool)
        keep = ~(neg & (x == 0))
        out[idx[keep]] = np.where(neg[keep], -x[keep], x[keep])
        done = np.zeros(size, dtype=bool)
        done[idx[keep]] = True
        todo = todo[~done[todo]]
    return out


def _as_fraction(sigma2, max_den: int | None = None) -> Fraction:
    f = Fraction(sigma2) if not isinstance(sigma2, float) else Fraction(sigma2)
    if max_den is None:
        # keep den = 2 * a * b * t^2 well inside int64 (a = sigma^2 * b, t ~ sigma)
        s2 = float(f)
        max_den = max(1, int(math.sqrt(2.0**56 / (2.0 * (s2 + 1) * (math.sqrt(s2) + 2) ** 2))))
    return f.limit_denominator(max_den)


def sample_discrete_gaussian(sigma: float, size: int, rng=None, *, sigma2: Fraction | None = None) -> np.ndarray:
    """``size`` exact samples of N_Z(0, sigma^2) (CKS'20 Algorithm 3) as int64.

    The variance parameter (``sigma2`` as a Fraction, else ``sigma**2``) is
    rounded to the nearest rational whose denominator keeps all integers in
    int64; sampling is exact for that rational value.
    """
    rng = _rng(rng)
    s2 = _as_fraction(sigma2 if sigma2 is not None else sigma * sigma)
    if s2 <= 0:
        return np.zeros(size, dtype=_I64)
    a, b = s2.numerator, s2.denominator
    t = math.isqrt(a // b) + 1  # floor(sigma) + 1
    while (t - 1) ** 2 * b > a:  # exact floor(sqrt(a/b)) + 1
        t -= 1
    out = np.empty(size, dtype=_I64)
    todo = np.arange(size)
    den_c = 2 * a * b * t * t
    while todo.size:
        y = _discrete_laplace(t, todo.size, rng)
        d = np.abs(y).astype(object) * (b * t) - a  # gamma = d^2 / (2 a b t^2)
        ok = _bern_exp(d * d, np.full(y.size, den_c, dtype=object), rng)
        out[todo[ok]] = y[ok]
        todo = todo[~ok]
    return out


def add_discrete_gaussian(q: np.ndarray, sigma: float, bits: int, rng=None) -> np.ndarray:
    """Add N_Z(0, sigma^2) noise to a quantised vector mod 2^bits."""
    q = np.asarray(q)
    noise = sample_discrete_gaussian(sigma, q.size, rng).reshape(q.shape)
    if bits == 64:
        return (q.astype(np.uint64) + noise.astype(np.uint64)).astype(q.dtype)
    mod = np.int64(1) << bits
    return np.mod(q.astype(np.int64) + noise, mod).astype(q.dtype)


def quantized_sensitivity(clip: float, scale: float, dim: int) -> float:
    """L2 sensitivity of one client's quantised contribution: ``clip*scale``
    plus at most ``sqrt(dim)`` from rounding every coordinate by < 1."""
    return clip * scale + math.sqrt(dim)


def epsilon(noise_std: float, n_clients: int, sensitivity: float, *, rounds: int = 1, delta: float = 1e-5,
            sampling_rate: float | None = None, accountant: str = "rdp") -> float:
    """Epsilon of ``rounds`` rounds of distributed discrete Gaussian noise.

    Approximation (documented, as in Kairouz et al. 2021 up to their
    correction terms): the sum of ``n_clients`` independent N_Z(0, noise_std^2)
    is treated as a *continuous* Gaussian of variance ``n_clients *
    noise_std^2``; the mechanism is then a Gaussian mechanism with noise
    multiplier ``sqrt(n_clients) * noise_std / sensitivity`` (sensitivity in
    quantised units, see :func:`quantized_sensitivity`), optionally Poisson
    subsampled with ``sampling_rate`` and self-composed over ``rounds``, and
    accounted by fl.privacy (dp_accounting's RDP ``'rdp'`` or PLD ``'pld'``).  Use the smallest number of clients whose noise is guaranteed
    to reach the sum (dropped or colluding clients add none).
    """
    from fl.privacy import Sampling, gaussian_epsilon

    if noise_std <= 0:
        return math.inf
    if n_clients < 1 or sensitivity <= 0 or rounds < 1:
        raise ValueError("need n_clients >= 1, sensitivity > 0, rounds >= 1")
    z = math.sqrt(n_clients) * noise_std / sensitivity
    sampling = Sampling("poisson", sampling_rate) if sampling_rate is not None else Sampling()
    return gaussian_epsilon(z, delta, rounds=rounds, sampling=sampling, accountant=accountant)
