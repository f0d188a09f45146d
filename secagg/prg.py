"""Cryptographic PRG for mask expansion.

Bonawitz et al. (CCS 2017, §3) expand a 32-byte seed into a mask vector with a
PRG.  Here the PRG is the keystream of AES-256-CTR (default) or ChaCha20 (both
from ``cryptography``/OpenSSL), i.e. the encryption of zeros under key = seed
and a fixed all-zero nonce (each seed is used for exactly one expansion).

Masks are generated as raw bytes straight into a reusable buffer
(``update_into``) and viewed as ``uint32`` words (``uint64`` for b > 32) with
``np.frombuffer``; accumulation is numpy wrap-around arithmetic, reduced mod
2^b only at the end (2^b divides the word modulus, so this is exact).
"""
from __future__ import annotations

import time

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

PRGS = ("aes-ctr", "chacha20")
_ZERO16 = bytes(16)
_CTR_NONCE = modes.CTR(_ZERO16)


def word_dtype(bits: int) -> np.dtype:
    """Word type holding values mod 2^bits (wrap-around add is exact mod 2^bits)."""
    if not 1 <= bits <= 64:
        raise ValueError(f"bits must be in [1, 64], got {bits}")
    return np.dtype(np.uint32 if bits <= 32 else np.uint64)


def _encryptor(prg: str, seed: bytes):
    if prg == "aes-ctr":
        return Cipher(algorithms.AES(seed), _CTR_NONCE).encryptor()
    if prg == "chacha20":
        return Cipher(algorithms.ChaCha20(seed, _ZERO16), mode=None).encryptor()
    raise ValueError(f"unknown prg {prg!r}; choose from {PRGS}")


class MaskExpander:
    """Expands 32-byte seeds into length-``m`` mask vectors and accumulates them.

    Counts every byte of keystream it produces (``bytes_generated``) so the
    benchmark can compute an honest PRG floor.
    """

    def __init__(self, m: int, bits: int, prg: str = "aes-ctr"):
        if prg not in PRGS:
            raise ValueError(f"unknown prg {prg!r}; choose from {PRGS}")
        self.m, self.bits, self.prg = int(m), int(bits), prg
        self.dtype = word_dtype(bits)
        self.nbytes = self.m * self.dtype.itemsize
        self._zeros = bytes(self.nbytes)
        self._buf = bytearray(self.nbytes + 32)
        self._view = np.frombuffer(self._buf, dtype=self.dtype, count=self.m)
        self.bytes_generated = 0
        self.expansions = 0

    def expand(self, seed: bytes) -> np.ndarray:
        """Mask words for ``seed`` (a view into an internal buffer: copy to keep)."""
        if len(seed) != 32:
            raise ValueError("PRG seed must be 32 bytes")
        _encryptor(self.prg, seed).update_into(self._zeros, self._buf)
        self.bytes_generated += self.nbytes
        self.expansions += 1
        return self._view

    def add(self, acc: np.ndarray, seed: bytes) -> None:
        np.add(acc, self.expand(seed), out=acc)

    def sub(self, acc: np.ndarray, seed: bytes) -> None:
        np.subtract(acc, self.expand(seed), out=acc)


def reduce_mod(acc: np.ndarray, bits: int) -> np.ndarray:
    """Reduce word-arithmetic values mod 2^bits (in place)."""
    if bits < acc.dtype.itemsize * 8:
        np.bitwise_and(acc, acc.dtype.type((1 << bits) - 1), out=acc)
    return acc


def measure_throughput(prg: str = "aes-ctr", chunk_bytes: int = 400_000,
                       min_seconds: float = 0.5) -> float:
    """Raw keystream throughput in bytes/s of one core (fixed key, reused buffer).

    This is the most favourable PRG rate (no per-seed key setup), so a floor
    computed from it is a true lower bound on mask-expansion time.
    """
    zeros = bytes(chunk_bytes)
    buf = bytearray(chunk_bytes + 32)
    enc = _encryptor(prg, bytes(range(32)))
    for _ in range(8):  # warm-up
        enc.update_into(zeros, buf)
    best = 0.0
    deadline = time.perf_counter() + min_seconds
    while True:
        reps = max(8, (64 << 20) // chunk_bytes)
        t0 = time.perf_counter()
        for _ in range(reps):
            enc.update_into(zeros, buf)
        dt = time.perf_counter() - t0
        best = max(best, reps * chunk_bytes / dt)
        if time.perf_counter() >= deadline:
            return best
