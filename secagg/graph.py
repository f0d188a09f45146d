"""Communication graphs and the threshold rule of SecAgg / SecAgg+.

Complete graph (classic SecAgg, Bonawitz et al. CCS 2017) and the randomly
labelled Harary graph of SecAgg+ (Bell, Bonawitz, Gascon, Lepoint, Raykova,
"Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020):
each client shares its secrets with, and masks against, only its ``k``
neighbours; ``k = O(log n)``.

**The threshold rule** (:func:`threshold_for`; one rule for every mode, graph
and flag).  A client's two secrets are Shamir-shared t-of-(k+1) among its k
neighbours and itself.  With ``delta`` the dropout rate, ``gamma`` the corrupt
fraction (``C = floor(gamma * n)`` corrupt clients, placed by the adversary
before the random labelling, so a client's corrupt neighbours are
hypergeometric) and a failure target of ``2^-sigma`` per round (union bound over
the n clients):

* *correctness*: ``t_corr`` = the largest t with
  ``n * P[Bin(k, 1 - delta) < t] <= 2^-sigma`` (a dropped client's key needs t
  shares from surviving neighbours);
* *structural floor*: ``t > k/2`` (a strict majority of the neighbours, the
  sparse form of Bonawitz et al.'s ``t > n/2``); with ``malicious`` also
  ``2t >= k + 3``, so two ring-adjacent clients' holder sets (k + 2 clients in
  all) cannot be split into two disjoint honest groups of t;
* *privacy*: ``n * P[corrupt neighbours >= t] <= 2^-sigma`` (the corrupt
  clients alone never hold t shares); with ``malicious`` also
  ``n * P[corrupt among the k + 1 other holders of two adjacent clients >= 2t - k - 2] <= 2^-sigma``:
  a server that shows different survivor sets to different clients needs that
  many corrupt holders to get both the self-mask of a client and the key of its
  ring neighbour (honest holders reveal one share per peer and sign one set);
* *graph privacy* (SecAgg+ only): ``n * (delta + gamma)^(k/2) <= 2^-sigma``, so
  honest survivors stay connected and no partial sum leaks.

``t = max(t_corr, smallest private t)``, and with dropouts expected the
smallest private t must be at most k (t = k + 1 tolerates no dropout).  Above ``t_corr`` the round is still safe but may
abort more often than ``2^-sigma`` (small n).  A ``(k, t)`` that violates the
floor or the privacy bounds is a :class:`~secagg.errors.ConfigError` that names
the bound.  :func:`choose_k_t` returns the smallest even k that meets every
condition, else the complete graph (k = n - 1) under the same rule.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np

from .errors import ConfigError


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


def corrupt_tail(n: int, draws: int, gamma: float, x: int) -> float:
    """P[at least x of ``draws`` other clients are corrupt], with floor(gamma * n)
    corrupt clients among the n - 1 others (hypergeometric, exact)."""
    if x <= 0:
        return 1.0
    c = int(math.floor(gamma * n + 1e-9))
    others = n - 1
    draws = min(draws, others)
    if x > min(c, draws):
        return 0.0
    total = math.comb(others, draws)
    return sum(math.comb(c, i) * math.comb(others - c, draws - i) for i in range(x, min(c, draws) + 1)) / total


def correctness_threshold(n: int, k: int, delta: float, sigma: float = 40.0) -> int:
    """Largest t with n * P[Bin(k, 1-delta) < t] <= 2^-sigma (0 if none)."""
    target = 2.0 ** -sigma / n
    for t in range(k, 0, -1):
        if _binom_cdf(t - 1, k, 1.0 - delta) <= target:
            return t
    return 0


def structural_floor(k: int, malicious: bool = False) -> int:
    """Smallest admissible t for degree k: t > k/2, and 2t >= k + 3 if malicious."""
    t = k // 2 + 1
    if malicious:
        t = max(t, (k + 4) // 2)
    return min(t, k + 1)


def privacy_violation(n: int, k: int, t: int, gamma: float, sigma: float, malicious: bool) -> str | None:
    """Why (k, t) misses the privacy bounds of the rule, or None."""
    target = 2.0 ** -sigma / n
    floor = structural_floor(k, malicious)
    if t < floor and not (n <= 2 and t >= 1):
        need = "t > k/2" + (" and 2t >= k + 3 (malicious)" if malicious else "")
        return f"threshold t={t} is below the structural floor {floor} for k={k} ({need})"
    p = corrupt_tail(n, k, gamma, t)
    if p > target:
        return (f"n * P[corrupt neighbours >= t={t}] = {n * p:.2e} > 2^-{sigma:g} "
                f"(k={k}, corrupt fraction {gamma})")
    if malicious:
        need = 2 * t - k - 2
        p = corrupt_tail(n, k + 1, gamma, need)
        if p > target:
            return (f"n * P[corrupt holders of two adjacent clients >= 2t-k-2={need}] = {n * p:.2e} > "
                    f"2^-{sigma:g} (k={k}, t={t}, corrupt fraction {gamma}, malicious server)")
    return None


def graph_violation(n: int, k: int, delta: float, gamma: float, sigma: float) -> str | None:
    """Why a SecAgg+ degree ``k`` misses the graph-privacy bound
    ``n * (delta + gamma)^(k/2) <= 2^-sigma``, or None (Bell et al. 2020: below it the
    honest survivors' graph can split, and a server that follows the protocol learns
    the sum of one part)."""
    if k >= n - 1:
        return None
    p = n * (delta + gamma) ** (k // 2)
    if p > 2.0 ** -sigma:
        return (f"graph privacy for k={k}, n={n} (dropout {delta}, corrupt fraction {gamma}): "
                f"n * (dropout + corrupt)^(k/2) = {p:.2e} > 2^-{sigma:g}, so the survivors' graph may split; "
                f"use a larger k")
    return None


def min_private_threshold(n: int, k: int, gamma: float = 0.05, sigma: float = 40.0,
                          malicious: bool = False, t_max: int | None = None) -> int | None:
    """Smallest t >= the structural floor that meets the privacy bounds (None if none <= t_max)."""
    for t in range(structural_floor(k, malicious), (k + 1 if t_max is None else t_max) + 1):
        if privacy_violation(n, k, t, gamma, sigma, malicious) is None:
            return t
    return None


def threshold_for(n: int, k: int, delta: float = 0.1, gamma: float = 0.05, sigma: float = 40.0,
                  malicious: bool = False) -> int:
    """The rule's threshold for degree k: ``max(t_corr, smallest private t)``
    (see module docstring); ConfigError if no t <= k + 1 is private."""
    _check_rates(n, delta, gamma)
    t_max = k if delta > 0 and n > 2 else k + 1  # t = k + 1 would tolerate no dropout at all
    t_min = min_private_threshold(n, k, gamma, sigma, malicious, t_max)
    if t_min is None:
        why = privacy_violation(n, k, t_max, gamma, sigma, malicious)
        raise ConfigError(f"no safe threshold for n={n}, k={k}: even t={t_max} fails ({why}); use a larger k "
                          f"(or a smaller corrupt fraction / security level)")
    return max(correctness_threshold(n, k, delta, sigma), t_min)


def classic_threshold(n: int, delta: float = 0.1, sigma: float = 40.0, gamma: float = 0.05,
                      malicious: bool = False) -> int:
    """The rule's threshold for the complete graph (k = n - 1 share holders besides the owner)."""
    if n < 2:
        raise ValueError("need at least 2 clients")
    return threshold_for(n, n - 1, delta, gamma, sigma, malicious)


def _check_rates(n, delta, gamma):
    if n < 2:
        raise ValueError("need at least 2 clients")
    if not (0 <= delta < 1 and 0 <= gamma < 1 and delta + gamma < 1):
        raise ConfigError("need 0 <= dropout_rate, 0 <= corrupt_fraction and dropout_rate + corrupt_fraction < 1")


def choose_k_t(n: int, delta: float = 0.1, gamma: float = 0.05, sigma: float = 40.0,
               malicious: bool = False) -> tuple[int, int]:
    """Degree ``k`` and threshold ``t`` for SecAgg+ (see module docstring): the
    smallest even k whose rule threshold is correct, private and keeps the graph
    connected; else the complete graph with :func:`classic_threshold`."""
    _check_rates(n, delta, gamma)
    for k in range(2, n - 1, 2):
        if graph_violation(n, k, delta, gamma, sigma):
            continue
        t = correctness_threshold(n, k, delta, sigma)
        t_min = min_private_threshold(n, k, gamma, sigma, malicious)
        if t_min is not None and t >= t_min:
            return k, t
    return n - 1, classic_threshold(n, delta, sigma, gamma, malicious)


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
