"""Public parameters of one aggregation round, known to the server and all clients."""
from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigError
from .graph import choose_k_t, complete_graph, graph_violation, harary_graph, privacy_violation, threshold_for
from .prg import PRGS, word_dtype

MODES = ("secagg+", "secagg")


@dataclass(frozen=True)
class RoundConfig:
    """Round parameters: ``threshold`` t of Shamir sharing among each client's
    ``k`` neighbours and itself (``neighbours[i]``; complete graph for classic
    SecAgg).  ``malicious`` selects the active-security protocol (signed
    messages and the ConsistencyCheck round); ``verify_keys[i]`` is client i's
    Ed25519 verification key from the PKI (required then).  ``dropout_rate``,
    ``corrupt_fraction`` and ``security_bits`` record the assumptions the
    threshold was derived from (:mod:`secagg.graph`)."""
    round_id: bytes
    n: int
    m: int
    bits: int
    threshold: int
    neighbours: tuple
    mode: str = "secagg+"
    prg: str = "aes-ctr"
    malicious: bool = False
    verify_keys: tuple | None = None
    dropout_rate: float = 0.1
    corrupt_fraction: float = 0.05
    security_bits: float = 40.0

    @property
    def k(self) -> int:
        return max(len(s) for s in self.neighbours)

    @property
    def dtype(self):
        return word_dtype(self.bits)

    def registry(self):
        """The PKI view of this round (:class:`secagg.signing.KeyRegistry`), built once."""
        reg = self.__dict__.get("_registry")
        if reg is None:
            from .signing import KeyRegistry

            if self.verify_keys is None:
                raise ConfigError("active mode needs verify_keys (the clients' registered Ed25519 keys)")
            reg = KeyRegistry(dict(enumerate(self.verify_keys)))
            object.__setattr__(self, "_registry", reg)
        return reg

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_registry"}

    def __setstate__(self, state):
        for k, v in state.items():
            object.__setattr__(self, k, v)


def make_config(n: int, m: int, *, bits: int = 32, mode: str = "secagg+", threshold: int | None = None,
                k: int | None = None, dropout_rate: float = 0.1, corrupt_fraction: float = 0.05,
                security_bits: float = 40.0, malicious: bool = False, seed: int | None = None,
                prg: str = "aes-ctr", round_id: bytes | None = None,
                verify_keys=None) -> RoundConfig:
    """Build a :class:`RoundConfig`.

    ``mode='secagg'``: complete graph (Bonawitz et al. 2017).  ``mode='secagg+'``:
    Harary graph with ``(k, t)`` from :func:`secagg.graph.choose_k_t` for the
    assumed ``dropout_rate``, ``corrupt_fraction`` and ``2^-security_bits``
    target (Bell et al. 2020).  An explicit ``k`` gets its threshold from the
    same rule (:func:`secagg.graph.threshold_for`) and must meet the same
    graph-privacy bound (:func:`secagg.graph.graph_violation`); an explicit
    ``threshold`` is checked against the rule's privacy bounds.  Either raises
    :class:`~secagg.errors.ConfigError` naming the bound it misses.
    ``malicious`` is honoured on every path (also the complete-graph fallback).
    ``round_id`` defaults to 16 fresh random bytes.
    """
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {MODES}, got {mode!r}")
    if prg not in PRGS:
        raise ConfigError(f"prg must be one of {PRGS}, got {prg!r}")
    word_dtype(bits)
    if n < 2 or m < 1:
        raise ConfigError("need n >= 2 clients and m >= 1 coordinates")
    if mode == "secagg" or (k is not None and k >= n - 1):
        k_eff = n - 1
        nbrs = complete_graph(n)
    else:
        if k is None:
            k, t_auto = choose_k_t(n, dropout_rate, corrupt_fraction, security_bits, malicious)
            if threshold is None:
                threshold = t_auto
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        why = graph_violation(n, k, dropout_rate, corrupt_fraction, security_bits)
        if why:  # the same rule as the automatic choice: an explicit k gets no exemption
            raise ConfigError(f"unsafe secure-aggregation parameters: {why}")
        nbrs = harary_graph(n, k, seed)
        k_eff = min(len(s) for s in nbrs)
    t = threshold_for(n, k_eff, dropout_rate, corrupt_fraction, security_bits, malicious) \
        if threshold is None else int(threshold)
    if not 1 <= t <= k_eff + 1:
        raise ConfigError(f"threshold {t} must be in [1, {k_eff + 1}] (neighbours + self)")
    why = privacy_violation(n, k_eff, t, corrupt_fraction, security_bits, malicious)
    if why:
        raise ConfigError(f"unsafe secure-aggregation parameters: {why}")
    if malicious:
        if verify_keys is None:
            raise ConfigError("malicious=True needs verify_keys: each client's registered Ed25519 key")
        verify_keys = tuple(bytes(v) for v in verify_keys)
        if len(verify_keys) != n:
            raise ConfigError(f"verify_keys must have one key per client ({n}), got {len(verify_keys)}")
    return RoundConfig(round_id if round_id is not None else os.urandom(16), n, m, bits, t,
                       tuple(nbrs), mode, prg, bool(malicious), verify_keys if malicious else None,
                       float(dropout_rate), float(corrupt_fraction), float(security_bits))
