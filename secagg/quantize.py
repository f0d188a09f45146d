"""Quantisation of float updates into Z_{2^b} for secure aggregation.

Following Kairouz, Liu & Steinke, "The Distributed Discrete Gaussian Mechanism
for Federated Learning with Secure Aggregation" (ICML 2021, §4): clip each
update to L2 norm ``clip``, multiply by an optional weight, scale by
``scale`` quantised units per float unit, stochastically round to integers
(unbiased, seeded numpy Generator => deterministic), and embed signed integers
in Z_{2^b} (two's complement).  The modular sum of the encodings decodes to the
weighted sum of the clipped updates with per-coordinate error below
``n / scale`` (each client's rounding error is < 1 unit), provided no
wrap-around: :func:`make_quantizer` picks ``scale`` so that
``n * max_weight * clip * scale + n + noise_tail`` fits in ``2^(b-1)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .prg import word_dtype


def clip_l2(x: np.ndarray, clip: float) -> np.ndarray:
    """Scale ``x`` down to L2 norm at most ``clip`` (no-op if already inside)."""
    x = np.asarray(x, dtype=np.float64)
    norm = float(np.linalg.norm(x))
    return x * (clip / norm) if norm > clip and norm > 0 else x.copy()


def stochastic_round(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Unbiased randomised rounding to int64: floor(x) + Bernoulli(frac(x))."""
    x = np.asarray(x, dtype=np.float64)
    lo = np.floor(x)
    return (lo + (rng.random(x.shape) < (x - lo))).astype(np.int64)


@dataclass(frozen=True)
class Quantizer:
    """Encoder/decoder between float vectors and Z_{2^bits}."""
    clip: float
    bits: int
    scale: float

    @property
    def modulus(self) -> int:
        return 1 << self.bits

    def to_int(self, x: np.ndarray, *, weight: float = 1.0, rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Signed quantised integers of ``weight * clip_l2(x)`` (before modular embedding)."""
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        return stochastic_round(clip_l2(x, self.clip) * (weight * self.scale), rng)

    def wrap(self, q: np.ndarray) -> np.ndarray:
        """Embed signed integers into [0, 2^bits) as the protocol word type."""
        q = np.asarray(q, dtype=np.int64)
        if self.bits == 64:
            return q.astype(np.uint64)
        return np.mod(q, np.int64(1) << self.bits).astype(word_dtype(self.bits))

    def encode(self, x: np.ndarray, *, weight: float = 1.0, rng=None) -> np.ndarray:
        """Clip, weight, scale, stochastically round and wrap mod 2^bits."""
        return self.wrap(self.to_int(x, weight=weight, rng=rng))

    def decode(self, s: np.ndarray) -> np.ndarray:
        """Float sum from a modular sum (two's-complement interpretation)."""
        s = np.asarray(s).astype(np.uint64) & np.uint64(self.modulus - 1 if self.bits < 64 else 2**64 - 1)
        half = np.uint64(1 << (self.bits - 1))
        signed = np.where(s >= half, s.astype(np.float64) - float(self.modulus), s.astype(np.float64))
        return signed / self.scale

    def error_bound(self, n_clients: int) -> float:
        """Max per-coordinate |decode(sum) - sum of weighted clipped inputs|
        without noise (stochastic rounding moves each client by < 1 unit)."""
        return n_clients / self.scale


def make_quantizer(clip: float, bits: int, n_clients: int, *, max_weight: float = 1.0,
                   noise_std: float = 0.0, noise_tail_sds: float = 8.0) -> Quantizer:
    """Largest power-of-two-free scale with no modular wrap-around.

    ``noise_std`` is the per-client noise std in *quantised units* (e.g. the
    discrete Gaussian of :mod:`secagg.dp`); the sum of n such noises is kept
    within ``noise_tail_sds`` standard deviations of headroom.
    """
    if clip <= 0 or n_clients < 1 or max_weight <= 0:
        raise ValueError("clip, n_clients and max_weight must be positive")
    word_dtype(bits)
    room = 2.0 ** (bits - 1) - 1 - n_clients - noise_tail_sds * math.sqrt(n_clients) * noise_std
    if room <= 0:
        raise ValueError(f"{bits} bits leave no room for {n_clients} clients with this noise")
    return Quantizer(clip=float(clip), bits=bits, scale=room / (n_clients * max_weight * clip))
