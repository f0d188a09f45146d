"""Shamir sharing, HKDF, PRG, Harary graph and (k, t) selection."""
import itertools
import random

import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from scipy import stats

from secagg.errors import InconsistentSharesError, SecAggAbort
from secagg.graph import choose_k_t, classic_threshold, complete_graph, harary_graph, is_connected
from secagg.keys import hkdf_sha256
from secagg.prg import MaskExpander, measure_throughput
from secagg.shamir import PRIME, reconstruct, share


def test_shamir_any_t_subset_reconstructs():
    r = random.Random(1)
    s = r.randrange(PRIME)
    xs = [1, 4, 5, 9, 12, 33, 100]
    ys = share(s, 4, xs, r.randrange)
    pts = list(zip(xs, ys))
    for sub in itertools.combinations(pts, 4):
        assert reconstruct(list(sub), 4) == s
    with pytest.raises(SecAggAbort):
        reconstruct(pts[:3], 4)
    # t-1 shares are consistent with any secret: interpolating 3 shares + a fake
    # 4th point at x=0 gives a valid degree-3 polynomial for every candidate.
    assert reconstruct(pts[:3] + [(2, 12345)], 4) != s


def test_shamir_detects_corrupted_share():
    r = random.Random(2)
    xs = list(range(1, 8))
    ys = share(777, 3, xs, r.randrange)
    pts = list(zip(xs, ys))
    bad = [pts[0], (pts[1][0], (pts[1][1] + 1) % PRIME)] + pts[2:]
    with pytest.raises(InconsistentSharesError):
        reconstruct(bad, 3)
    assert reconstruct(pts, 3) == 777


def test_hkdf_matches_rfc5869_and_cryptography():
    # RFC 5869 test case 1
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    okm = hkdf_sha256(ikm, salt, info, 42)
    assert okm.hex() == ("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
                         "34007208d5b887185865")
    ref = HKDF(algorithm=hashes.SHA256(), length=80, salt=b"s", info=b"i").derive(b"k" * 32)
    assert hkdf_sha256(b"k" * 32, b"s", b"i", 80) == ref


@pytest.mark.parametrize("prg", ["aes-ctr", "chacha20"])
def test_prg_deterministic_distinct_and_counted(prg):
    ex = MaskExpander(1000, 32, prg)
    a = ex.expand(b"a" * 32).copy()
    b = ex.expand(b"b" * 32).copy()
    assert np.array_equal(a, ex.expand(b"a" * 32))
    assert not np.array_equal(a, b)
    assert ex.bytes_generated == 3 * 4000
    acc = np.zeros(1000, np.uint32)
    ex.add(acc, b"a" * 32)
    ex.sub(acc, b"a" * 32)
    assert not acc.any()
    assert measure_throughput(prg, 1 << 16, 0.05) > 1e7


@pytest.mark.parametrize("n,k", [(10, 4), (31, 6), (100, 10), (12, 5), (50, 49)])
def test_harary_graph_degree_and_connectivity(n, k):
    g = harary_graph(n, k, seed=3)
    assert all(i not in g[i] for i in range(n))
    assert all(j in g[i] for i in range(n) for j in g[i])  # symmetric
    assert {len(s) for s in g} == {min(k, n - 1)}
    assert is_connected(g)
    # k-connected: removing any k-1 nodes (random samples) keeps it connected
    r = random.Random(0)
    for _ in range(50):
        removed = set(r.sample(range(n), min(k - 1, n - 2)))
        assert is_connected(g, set(range(n)) - removed)
    if k < n - 1:  # but removing a whole neighbourhood isolates a node
        assert not is_connected(g, set(range(n)) - set(g[0]))
    assert harary_graph(n, k, seed=3) == g
    assert harary_graph(n, k, seed=4) != g or k >= n - 1


def test_choose_k_t_meets_targets():
    n, delta, gamma = 1000, 0.1, 0.05
    k, t = choose_k_t(n, delta, gamma)
    assert k % 2 == 0 and k < n - 1 and 1 <= t <= k
    target = 2.0 ** -40
    assert n * stats.binom.cdf(t - 1, k, 1 - delta) <= target  # enough survivors
    assert n * stats.binom.sf(t - 1, k, gamma) <= target  # too few corrupt neighbours
    assert n * (delta + gamma) ** (k // 2) <= target  # no disconnecting run
    k2, _ = choose_k_t(n, delta, gamma, sigma=20)  # weaker target -> smaller k
    assert k2 < k
    # not wasteful: k - 2 fails one of the conditions
    assert choose_k_t(n, 0.2, gamma)[0] > k  # more dropouts -> larger k
    assert choose_k_t(n, delta, 0.2)[0] > k  # more corruption -> larger k
    assert choose_k_t(100_000, delta, gamma)[0] < 100  # O(log n)
    km, tm = choose_k_t(n, delta, gamma, malicious=True)
    assert km > k and 2 * tm > km


def test_choose_k_t_falls_back_to_complete_graph():
    k, t = choose_k_t(20, 0.1, 0.05)
    assert k == 19 and t == classic_threshold(20, 0.1)
    assert len(complete_graph(20)[0]) == 19
    assert classic_threshold(100, 0.1) > 99 // 2
