"""Communication graphs: complete graph (classic SecAgg) and the randomly
labelled Harary graph of SecAgg+ (Bell, Bonawitz, Gascon, Lepoint, Raykova,
"Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020).

In SecAgg+ each client shares its secrets with, and masks against, only its
``k`` neighbours in a k-regular graph; ``k = O(log n)``.  :func:`choose_k_t`
picks the smallest even ``k`` (and a threshold ``t``) meeting three
conditions, each with failure probability at most ``2^-sigma`` (union bound
over the ``n`` clients), modelling neighbours' fates as independent
(binomial; the random labelling makes them close to hypergeometric):

1. *correctness*: at least ``t`` of a client's ``k`` neighbours survive
   (dropout rate ``delta``): ``n * P[Bin(k, 1-delta) < t] <= 2^-sigma``;
2. *privacy of shares*: fewer than ``t`` neighbours are corrupt (fraction
   ``gamma``): ``n * P[Bin(k, gamma) >= t] <= 2^-sigma`` (semi-honest server),
   or, with ``malicious=True``, the corrupt neighbours plus a split of the
   honest ones cannot yield t shares of both secrets of one client:
   ``n * P[Bin(k, gamma) >= 2t - k] <= 2^-sigma``;
3. *graph privacy* (honest survivors stay connected so no partial sums leak):
   on the ring of a Harary graph H(k, n) a disconnection needs a run of
   ``k/2`` consecutive dropped-or-corrupt nodes, so we require
   ``n * (delta + gamma)^(k/2) <= 2^-sigma`` (conservative: one run suffices).

Among the valid thresholds the largest ``t`` is chosen (most privacy margin).
If no ``k < n - 1`` works the complete graph (classic SecAgg) is returned.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np


def _binom_cdf(x: int, k: int, p: float) -> float:
    """P[Bin(k, p) <= x] (exact sum, fine for k <= a few thousand)."""
    if x < 0:
        return 0.0
    if x >= k:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(k + 1) - math.lgamma(i + 1) - math.lgamma(k - i + 1) + i * lp + (k - i) * lq
             for i in range(0, x + 1)]
    mx = max(terms)
    return min(1.0, math.exp(mx) * sum(math.exp(v - mx) for v in terms))


def _binom_sf(x: int, k: int, p: float) -> float:
    """P[Bin(k, p) >= x]."""
    return _binom_cdf(k - x, k, 1.0 - p) if x > 0 else 1.0


def correctness_threshold(n: int, k: int, delta: float, sigma: float = 40.0) -> int:
    """Largest t with n * P[Bin(k, 1-delta) < t] <= 2^-sigma (at least 1)."""
    target = 2.0 ** -sigma / n
    for t in range(k, 0, -1):
        if _binom_cdf(t - 1, k, 1.0 - delta) <= target:
            return t
    return 1


def classic_threshold(n: int, delta: float = 0.1, sigma: float = 40.0) -> int:
    """Threshold for the complete graph (each client has n-1 share holders).

    Largest t with n * P[Bin(n-1, 1-delta) < t] <= 2^-sigma, but at least a
    strict majority of the n-1 holders (Bonawitz et al. require t > n/2 for
    security against a semi-honest server).
    """
    k = n - 1
    if k < 1:
        raise ValueError("need at least 2 clients")
    return max(correctness_threshold(n, k, delta, sigma), k // 2 + 1)


def choose_k_t(n: int, delta: float = 0.1, gamma: float = 0.05, sigma: float = 40.0,
               malicious: bool = False) -> tuple[int, int]:
    """Degree ``k`` and threshold ``t`` for SecAgg+ (see module docstring).

    Returns ``(n - 1, classic_threshold(n, delta, sigma))`` when no sparse graph
    meets the target (small ``n`` or large ``delta + gamma``).
    """
    if n < 2:
        raise ValueError("need at least 2 clients")
    if not (0 <= delta < 1 and 0 <= gamma < 1 and delta + gamma < 1):
        raise ValueError("need 0 <= delta, gamma and delta + gamma < 1")
    target = 2.0 ** -sigma / n
    for k in range(2, n - 1, 2):
        if n * (delta + gamma) ** (k // 2) > 2.0 ** -sigma:
            continue
        t = correctness_threshold(n, k, delta, sigma)
        c = 2 * t - k if malicious else t
        if c >= 1 and _binom_sf(c, k, gamma) <= target:
            return k, t
    return n - 1, classic_threshold(n, delta, sigma)


def complete_graph(n: int) -> list[frozenset[int]]:
    return [frozenset(j for j in range(n) if j != i) for i in range(n)]


def harary_graph(n: int, k: int, seed: int | None = None) -> list[frozenset[int]]:
    """Randomly labelled Harary graph H(k, n): the k-connected graph with the
    fewest edges.  Nodes sit on a ring in a random order; each is joined to the
    ``k//2`` nearest ring positions on each side, and for odd ``k`` (n even)
    to the diametrically opposite position.  ``k >= n - 1`` gives K_n.
    """
    if n < 2 or k < 1:
        raise ValueError("need n >= 2 and k >= 1")
    if k >= n - 1:
        return complete_graph(n)
    if k % 2 == 1 and n % 2 == 1:
        raise ValueError("odd k needs even n for a k-regular Harary graph")
    perm = np.random.default_rng(seed).permutation(n)
    nbrs: list[set[int]] = [set() for _ in range(n)]
    half = k // 2
    for pos in range(n):
        u = int(perm[pos])
        for d in range(1, half + 1):
            v = int(perm[(pos + d) % n])
            nbrs[u].add(v)
            nbrs[v].add(u)
        if k % 2 == 1:
            v = int(perm[(pos + n // 2) % n])
            nbrs[u].add(v)
            nbrs[v].add(u)
    return [frozenset(s) for s in nbrs]


def is_connected(neighbours: list[frozenset[int]], nodes: set[int] | None = None) -> bool:
    """Whether the subgraph induced by ``nodes`` (default: all) is connected."""
    nodes = set(range(len(neighbours))) if nodes is None else set(nodes)
    if not nodes:
        return True
    start = next(iter(nodes))
    seen, todo = {start}, deque([start])
    while todo:
        u = todo.popleft()
        for v in neighbours[u]:
            if v in nodes and v not in seen:
                seen.add(v)
                todo.append(v)
    return seen == nodes
