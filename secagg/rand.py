"""Sources of secret randomness for protocol parties.

:class:`SystemRandomSource` (the default) draws from the OS CSPRNG.
:class:`DeterministicRandomSource` is an AES-256-CTR DRBG keyed from a seed via
HKDF-SHA256 -- only for reproducible tests and benchmarks, never for deployment.
"""
from __future__ import annotations

import os
import secrets

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


class SystemRandomSource:
    """OS CSPRNG (``os.urandom`` / ``secrets``)."""

    def bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def randbelow(self, n: int) -> int:
        return secrets.randbelow(n)


class DeterministicRandomSource:
    """Seeded AES-CTR DRBG (reproducible, for tests/benchmarks only)."""

    def __init__(self, seed: bytes | int | str, label: bytes = b""):
        from .keys import hkdf_sha256

        if isinstance(seed, int):
            seed = seed.to_bytes(16, "little", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        key = hkdf_sha256(bytes(seed), salt=b"fedpop-secagg-drbg", info=label, length=32)
        self._enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()

    def bytes(self, n: int) -> bytes:
        return self._enc.update(bytes(n))

    def randbelow(self, n: int) -> int:
        if n <= 0:
            raise ValueError("n must be positive")
        nbits = n.bit_length()
        nbytes = (nbits + 7) // 8
        mask = (1 << nbits) - 1
        while True:  # rejection sampling: unbiased
            v = int.from_bytes(self.bytes(nbytes), "little") & mask
            if v < n:
                return v
