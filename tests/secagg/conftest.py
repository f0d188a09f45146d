"""Shared fixtures for the secagg tests (helpers are fixtures so the tests work
with any pytest import mode)."""
import numpy as np
import pytest


def _modsum(x, ids, bits=32):
    """Reference sum mod 2^bits of rows ``ids`` of ``x`` (Python ints, no overflow)."""
    s = [0] * x.shape[1]
    for i in ids:
        s = [a + int(b) for a, b in zip(s, x[i])]
    return [v % (1 << bits) for v in s]


def _same(result_sum, ref):
    return [int(v) for v in result_sum] == [int(v) for v in ref]


def _rand_inputs(rng, n, m, bits=32):
    dt = np.uint32 if bits <= 32 else np.uint64
    hi = 2**bits
    if bits >= 63:
        return rng.integers(0, 2**63, size=(n, m), dtype=np.uint64) * 2 + rng.integers(0, 2, size=(n, m), dtype=np.uint64)
    return rng.integers(0, hi, size=(n, m), dtype=np.int64).astype(dt)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def modsum():
    return _modsum


@pytest.fixture
def same():
    return _same


@pytest.fixture
def rand_inputs():
    return _rand_inputs
