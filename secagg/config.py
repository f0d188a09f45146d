"""Public parameters of one aggregation round, known to the server and all clients."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .graph import choose_k_t, classic_threshold, correctness_threshold, complete_graph, harary_graph
from .prg import PRGS, word_dtype

MODES = ("secagg+", "secagg")


@dataclass(frozen=True)
class RoundConfig:
    """Round parameters: ``threshold`` t of Shamir sharing among each client's
    ``k`` neighbours (``neighbours[i]``; complete graph for classic SecAgg)."""
    round_id: bytes
    n: int
    m: int
    bits: int
    threshold: int
    neighbours: tuple
    mode: str = "secagg+"
    prg: str = "aes-ctr"

    @property
    def k(self) -> int:
        return max(len(s) for s in self.neighbours)

    @property
    def dtype(self):
        return word_dtype(self.bits)


def make_config(n: int, m: int, *, bits: int = 32, mode: str = "secagg+", threshold: int | None = None,
                k: int | None = None, dropout_rate: float = 0.1, corrupt_fraction: float = 0.05,
                security_bits: float = 40.0, malicious: bool = False, seed: int | None = None,
                prg: str = "aes-ctr", round_id: bytes | None = None) -> RoundConfig:
    """Build a :class:`RoundConfig`.

    ``mode='secagg'``: complete graph (Bonawitz et al. 2017), default threshold
    :func:`secagg.graph.classic_threshold`.  ``mode='secagg+'``: Harary graph
    with ``(k, t)`` from :func:`secagg.graph.choose_k_t` for the assumed
    ``dropout_rate``, ``corrupt_fraction`` and ``2^-security_bits`` target
    (Bell et al. 2020); ``k`` / ``threshold`` override the choice.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if prg not in PRGS:
        raise ValueError(f"prg must be one of {PRGS}")
    word_dtype(bits)
    if n < 2 or m < 1:
        raise ValueError("need n >= 2 clients and m >= 1 coordinates")
    if mode == "secagg":
        nbrs = complete_graph(n)
        t = classic_threshold(n, dropout_rate, security_bits) if threshold is None else threshold
    else:
        k_auto, t_auto = choose_k_t(n, dropout_rate, corrupt_fraction, security_bits, malicious)
        if k is None:
            k = k_auto
        nbrs = harary_graph(n, k, seed)
        if threshold is not None:
            t = threshold
        elif k == k_auto:
            t = t_auto
        else:
            t = correctness_threshold(n, min(len(s) for s in nbrs), dropout_rate, security_bits)
    kmin = min(len(s) for s in nbrs)
    if not 1 <= t <= kmin + 1:
        raise ValueError(f"threshold {t} must be in [1, {kmin + 1}] (neighbours + self)")
    return RoundConfig(round_id if round_id is not None else os.urandom(16), n, m, bits, t,
                       tuple(nbrs), mode, prg)
