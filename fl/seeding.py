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
