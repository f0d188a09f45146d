"""TrieHH: federated heavy hitters with a prefix trie (Zhu, Kairouz, McMahan,
Sun, Li, "Federated Heavy Hitters Discovery with Differential Privacy",
AISTATS 2020, Algorithm 1 and Corollary 1).

The server grows a trie one character per round.  In round ``r`` it samples
each eligible device with probability ``gamma``; a sampled device picks one of
its items whose length-``r-1`` prefix is already in the trie (items are
words closed by the end marker ``$``) and votes for that item's length-``r``
prefix.  Votes are a one-hot vector over the round's candidates (trie nodes
of depth ``r-1`` x (alphabet + ``$``)) and are summed with secure aggregation
(:mod:`analytics.secure_histogram`), so the server sees only vote totals.
Prefixes with at least ``theta`` votes join the trie; a prefix ending in
``$`` is a discovered word.  The output is the set of discovered words.

Privacy (Corollary 1, as in the authors' reference simulation): with ``L``
rounds, ``theta`` is the smallest integer >= 5 with
``(theta-3)/(theta-2) * theta! >= 1/delta`` and ``theta >= e^(eps/L) - 1``;
the sampling rate is ``gamma = (e^(eps/L) - 1) / (theta * e^(eps/L))``,
equivalently ``eps = -L * ln(1 - theta*gamma)``.  E.g. eps=4, L=10,
delta=2.3e-12 gives theta=15, gamma=2.2%.  Here ``L = max_word_len + 1``
(the end marker takes a round).  The guarantee covers the released set of
words; the per-prefix vote totals stay with the server.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from fl.seeding import hash_uniform

from .secure_histogram import SecAggPool, SecAggSettings, one_hot

END = "$"
LETTERS = "abcdefghijklmnopqrstuvwxyz"
SYMBOLS = LETTERS + END  # candidate extensions of a prefix, in this order


class TrieHHError(ValueError):
    """Invalid TrieHH parameters (raised before any work starts)."""


@dataclass(frozen=True)
class TrieHHParams:
    theta: int  # vote threshold
    gamma: float  # per-round sampling rate
    rounds: int  # L: max_word_len + 1
    epsilon: float  # the epsilon these (theta, gamma) give over L rounds
    delta: float  # the delta theta gives: 1 / ((theta-3)/(theta-2) * theta!)

    @property
    def max_word_len(self) -> int:
        return self.rounds - 1

    def as_dict(self) -> dict:
        return {"theta": self.theta, "gamma": self.gamma, "rounds": self.rounds, "epsilon": self.epsilon,
                "delta": self.delta, "max_word_len": self.max_word_len}


def delta_for_theta(theta: int) -> float:
    """delta of Corollary 1 for threshold ``theta`` (needs theta >= 4)."""
    if theta < 4:
        raise TrieHHError(f"theta must be >= 4 for the delta bound, got {theta}")
    return math.exp(-_log_inv_delta(theta))


def _log_inv_delta(theta: int) -> float:
    """log((theta-3)/(theta-2) * theta!) without overflow."""
    return math.log((theta - 3) / (theta - 2)) + math.lgamma(theta + 1)


def theta_for(epsilon: float, delta: float, rounds: int) -> int:
    """Smallest theta >= 5 with delta_for_theta(theta) <= delta and theta >= e^(eps/L) - 1."""
    _check_eps_delta(epsilon, delta, rounds)
    theta = 5
    while _log_inv_delta(theta) < -math.log(delta):
        theta += 1
    return max(theta, math.ceil(math.exp(epsilon / rounds) - 1))


def gamma_for(epsilon: float, theta: int, rounds: int) -> float:
    """Sampling rate (e^(eps/L) - 1) / (theta e^(eps/L))."""
    e = math.exp(epsilon / rounds)
    return (e - 1.0) / (theta * e)


def epsilon_for(theta: int, gamma: float, rounds: int) -> float:
    """Inverse of :func:`gamma_for`: eps = -L ln(1 - theta*gamma); needs theta*gamma < 1."""
    if not 0 < gamma <= 1:
        raise TrieHHError(f"gamma must be in (0, 1], got {gamma}")
    if theta * gamma >= 1:
        raise TrieHHError(f"impossible (theta, gamma) = ({theta}, {gamma}): theta*gamma = {theta * gamma:.3g} >= 1 "
                          "gives no finite epsilon")
    return -rounds * math.log1p(-theta * gamma)


def _check_eps_delta(epsilon, delta, rounds):
    if not (isinstance(epsilon, (int, float)) and math.isfinite(epsilon) and epsilon > 0):
        raise TrieHHError(f"epsilon must be a finite number > 0, got {epsilon!r}")
    if not 0 < delta < 1:
        raise TrieHHError(f"delta must be in (0, 1), got {delta!r}")
    if rounds < 1:
        raise TrieHHError(f"rounds (max_word_len + 1) must be >= 1, got {rounds}")


def triehh_params(epsilon: float, delta: float, max_word_len: int, *, theta: int | None = None,
                  gamma: float | None = None) -> TrieHHParams:
    """(eps, delta, max word length) -> (theta, gamma) by Corollary 1.

    ``theta`` / ``gamma`` may be fixed by hand; they are then checked: theta
    must meet the delta bound, theta*gamma < 1, and the epsilon they give
    must not exceed ``epsilon``.
    """
    rounds = max_word_len + 1
    _check_eps_delta(epsilon, delta, rounds)
    th = theta_for(epsilon, delta, rounds) if theta is None else int(theta)
    if theta is not None and (th < 5 or delta_for_theta(th) > delta):
        raise TrieHHError(f"impossible (theta, gamma): theta={th} gives delta={delta_for_theta(max(th, 4)):.3g} "
                          f"> {delta:.3g} (need theta >= {theta_for(epsilon, delta, rounds)})")
    g = gamma_for(epsilon, th, rounds) if gamma is None else float(gamma)
    eps = epsilon_for(th, g, rounds)
    if eps > epsilon * (1 + 1e-9):
        raise TrieHHError(f"impossible (theta, gamma) = ({th}, {g}): they give epsilon={eps:.3g} > {epsilon}")
    return TrieHHParams(theta=th, gamma=g, rounds=rounds, epsilon=eps, delta=delta_for_theta(th))


class Trie:
    """Prefix trie stored level by level: ``levels[d]`` lists the kept prefixes
    of length d (``levels[0] == ['']``).  Prefixes ending in ``$`` are closed."""

    def __init__(self):
        self.levels: list[list[str]] = [[""]]
        self.votes: dict[str, int] = {}

    def __contains__(self, prefix: str) -> bool:
        d = len(prefix)
        return d < len(self.levels) and prefix in self._sets()[d]

    def _sets(self):
        if getattr(self, "_cache", None) is None or len(self._cache) != len(self.levels):
            self._cache = [set(lv) for lv in self.levels]
        return self._cache

    def open_prefixes(self, depth: int) -> list[str]:
        """Prefixes of length ``depth`` that can still grow (not closed by ``$``)."""
        if depth >= len(self.levels):
            return []
        return [p for p in self.levels[depth] if not p.endswith(END)]

    def candidates(self, depth: int) -> list[str]:
        """Round ``depth+1`` candidates: each open prefix of length ``depth`` x SYMBOLS."""
        return [p + s for p in self.open_prefixes(depth) for s in SYMBOLS if not (p == "" and s == END)]

    def grow(self, depth: int, counts: np.ndarray, theta: int) -> list[str]:
        """Keep the candidates of :meth:`candidates` with >= theta votes; returns them."""
        cands = self.candidates(depth)
        if len(counts) != len(cands):
            raise ValueError(f"{len(counts)} vote totals for {len(cands)} candidates")
        kept = [c for c, v in zip(cands, counts) if v >= theta]
        for c, v in zip(cands, counts):
            if v >= theta:
                self.votes[c] = int(v)
        while len(self.levels) <= depth + 1:
            self.levels.append([])
        self.levels[depth + 1] = sorted(kept)
        self._cache = None
        return kept

    def words(self) -> list[str]:
        """Discovered words (closed prefixes, marker stripped), most votes first."""
        closed = [p for lv in self.levels for p in lv if p.endswith(END)]
        return [p[:-1] for p in sorted(closed, key=lambda p: (-self.votes.get(p, 0), p))]

    def size(self) -> int:
        return sum(len(lv) for lv in self.levels) - 1


def device_vote(words: Sequence[str], trie: Trie, depth: int, u: float) -> str | None:
    """What one device sends in round ``depth+1`` (reference, per device):
    among its items that fit (letters only, ``len <= max``) whose length-``depth``
    prefix is an open trie node and that are still long enough, pick one with
    the uniform ``u`` and vote for its length-``depth+1`` prefix (``None``: no vote)."""
    ok = [w + END for w in words if (w + END)[:depth] in trie and len(w) + 1 > depth
          and not (w + END)[:depth].endswith(END)]
    if not ok:
        return None
    w = ok[min(int(u * len(ok)), len(ok) - 1)]
    return w[:depth + 1]


class VocabVoter:
    """Vectorised :func:`device_vote` for devices whose items are indices into
    a fixed vocabulary (a simulation device: each device still votes only from
    its own items and the public trie; the tables are per vocabulary word)."""

    def __init__(self, vocab: Sequence[str], max_word_len: int):
        self.vocab = list(vocab)
        self.marked = [w + END for w in self.vocab]
        self.valid = np.array([len(w) <= max_word_len and len(w) > 0 and all(c in LETTERS for c in w)
                               for w in self.vocab], bool)

    def word_candidates(self, trie: Trie, depth: int) -> np.ndarray:
        """Per vocabulary word: its candidate index this round, or -1 if not eligible."""
        cands = {c: i for i, c in enumerate(trie.candidates(depth))}
        out = np.full(len(self.vocab), -1, np.int64)
        for i, w in enumerate(self.marked):
            if self.valid[i] and len(w) > depth:
                out[i] = cands.get(w[:depth + 1], -1)
        return out

    def votes(self, items: np.ndarray, word_cand: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Candidate index voted by each device (``items``: (n, k) vocab indices,
        -1 = empty slot; ``u``: one uniform per device), -1 = no vote."""
        items = np.asarray(items, np.int64)
        cand = np.where(items >= 0, word_cand[np.maximum(items, 0)], -1)
        ok = cand >= 0
        n_ok = ok.sum(axis=1)
        pick = np.minimum((u * n_ok).astype(np.int64), np.maximum(n_ok - 1, 0))
        # index of the pick-th eligible slot in each row
        rank = np.cumsum(ok, axis=1) - 1
        hit = ok & (rank == pick[:, None])
        col = hit.argmax(axis=1)
        out = cand[np.arange(len(cand)), col]
        out[n_ok == 0] = -1
        return out


@dataclass
class TrieHHResult:
    words: list  # discovered words, most votes first
    votes: dict  # word -> votes of its closing '$' prefix (server-internal)
    params: TrieHHParams
    rounds_run: int
    per_round: list = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> dict:
        return {"discovered": len(self.words), "rounds_run": self.rounds_run, "seconds": self.seconds,
                "voters_total": int(sum(r["sampled"] for r in self.per_round)),
                "secagg_groups_total": int(sum(r["groups"] for r in self.per_round)), **self.params.as_dict()}


def run_triehh(vocab: Sequence[str], device_items: Callable[[np.ndarray], np.ndarray],
               sample_devices: Callable[[int, float], np.ndarray], params: TrieHHParams, *, seed: int = 0,
               secagg: SecAggSettings | None = SecAggSettings(), pool: SecAggPool | None = None,
               progress: bool = False, label: str = "TrieHH") -> TrieHHResult:
    """Run TrieHH for ``params.rounds`` rounds.

    vocab: the strings device items refer to (device side only; the server
        never reads it).
    device_items(ids) -> (n, k) int array of vocab indices (-1 = empty).
    sample_devices(round, gamma) -> device ids sampled this round.
    secagg: settings for the secure sum of votes; ``None`` sums in the clear
        (identical totals; for sweeps and tests only).
    """
    from analytics.query import Query, run_query

    t0 = time.perf_counter()
    voter = VocabVoter(vocab, params.max_word_len)

    # the query (analytics/query.py): at depth d each sampled device votes for one of the
    # trie's candidate extensions (a one-hot row); the server grows the trie with the
    # extensions that got >= theta votes, and stops when no prefix is left open
    def select(trie, depth):
        return np.asarray(sample_devices(depth, params.gamma), np.int64) if trie.candidates(depth) else None

    def device(trie, ids, depth):
        cands = trie.candidates(depth)
        if not len(ids):
            return np.zeros((0, len(cands)), np.int64)
        u = hash_uniform(seed, ids, 1_000_003 * (depth + 1) + 7)
        return one_hot(voter.votes(device_items(ids), voter.word_candidates(trie, depth), u), len(cands))

    def server(trie, counts, reported_ids, depth):
        cands = trie.candidates(depth)
        kept = trie.grow(depth, counts, params.theta)
        row = {"candidates": len(cands), "voted": int(counts.sum()), "survivors": int(len(reported_ids)),
               "kept": len(kept), "closed": sum(k.endswith(END) for k in kept)}
        return trie, row, not trie.open_prefixes(depth + 1)

    query = Query(Trie, select, device, server, max_total=lambda n: n)
    trie, per_round = run_query(query, settings=secagg, seed=seed, tag=("triehh",), pool=pool,
                                max_rounds=params.rounds, progress=progress, label=label)
    for row in per_round:  # rounds are counted from 1 in TrieHH's tables
        row["sampled"] = row.pop("selected")
        row["round"] += 1
    r = len(per_round)
    words = trie.words()
    return TrieHHResult(words=words, votes={w: trie.votes[w + END] for w in words}, params=params,
                        rounds_run=r, per_round=per_round, seconds=time.perf_counter() - t0)
