"""Deterministic randomness: every random stream is derived from (seed, purpose, ids)."""
from __future__ import annotations

import zlib

import numpy as np


def _tag(part) -> int:
    if isinstance(part, str):
        return zlib.crc32(part.encode())
    return int(part) & 0xFFFFFFFF


def seed_words(seed: int, *parts) -> list[int]:
    return [int(seed) & 0xFFFFFFFF, *(_tag(p) for p in parts)]


def rng_for(seed: int, *parts) -> np.random.Generator:
    """A numpy Generator for one purpose, e.g. rng_for(seed, 'cohort', round)."""
    return np.random.default_rng(np.random.SeedSequence(seed_words(seed, *parts)))


def tf_seed(seed: int, *parts) -> tuple[int, int]:
    """A stateless TF seed pair for one purpose."""
    words = np.random.SeedSequence(seed_words(seed, *parts)).generate_state(2)
    return int(words[0] & 0x7FFFFFFF), int(words[1] & 0x7FFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15))
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(seed: int, a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Uniform [0, 1) from a vectorized hash of (seed, a, b): O(1) per element, no state."""
    with np.errstate(over="ignore"):
        x = _splitmix64(np.asarray(a, np.int64).astype(np.uint64) ^ np.uint64(seed * 0x632BE59BD9B4E019 & (2**64 - 1)))
        x = _splitmix64(x ^ np.asarray(b, np.int64).astype(np.uint64))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def stream_uniform(seed: int, purpose: str, ids: np.ndarray) -> np.ndarray:
    """Uniform on the open interval (0, 1), one value per id, from a counter-based hash of
    (seed, purpose, id) (SplitMix64 of Steele, Lea and Flood, OOPSLA 2014, as a
    Random123-style keyed counter: Salmon et al., SC 2011): a pure function of its
    arguments, O(1) per id, no generator state, so any subset of ids is drawn in any
    order with the same values.  Never 0 or 1, so inverse CDFs stay finite.  A stream of
    its own: independent of `hash_uniform`'s (seed, a, b) values."""
    with np.errstate(over="ignore"):
        key = np.uint64((int(seed) * 0xD1B54A32D192ED03 + 0x8CB92BA72F3D8DD7) & (2**64 - 1))
        x = _splitmix64(np.asarray(ids, np.int64).astype(np.uint64) ^ key)
        x = _splitmix64(x ^ np.uint64(zlib.crc32(purpose.encode()) << 32 | 0x2545F491))
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
