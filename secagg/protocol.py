"""One complete SecAgg / SecAgg+ round in-process: :func:`run_protocol`.

All clients and the server run in this process with the real cryptography
(X25519, HKDF-SHA256, AES-GCM, Shamir, AES-CTR/ChaCha20 masks); every message
goes through the binary wire format (``wire=True``) so sizes are real.  Used
by analytics and the round engine; the engine may instead drive
:class:`~secagg.client.SecAggClient` / :class:`~secagg.server.SecAggServer`
itself (e.g. client sides in worker processes, pre-summing masked inputs with
:func:`~secagg.messages.presum`).
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np

from .config import RoundConfig, make_config
from .errors import SecAggError
from .messages import MaskedInput, decode
from .prg import MaskExpander, word_dtype
from .server import ACTIVE_STAGES, STAGES, SecAggServer, stages_for
from .signing import verify_key_bytes
from .workers import WorkerPool, identity_keys, make_client, run_clients_stage

_STAGE_ALIASES = {**{s: s for s in ACTIVE_STAGES}, **{i: s for i, s in enumerate(STAGES)},
                  "advertise": STAGES[0], "share": STAGES[1], "masked": STAGES[2], "unmask": STAGES[3]}


@dataclass
class ProtocolResult:
    """Outcome and cost of one round.

    ``sum`` is the exact sum mod 2^bits of the inputs of ``survivors`` (clients
    whose masked input reached the server and was not ejected).  ``ejected``: the
    clients treated as dropped after sending their input, with why (a neighbour
    rejected their shares).  ``cheaters``: clients the evidence proves deviated,
    with the proof in ``evidence``.  ``dropped`` lists, per stage, the
    clients that did not send that stage's message (scheduled dropouts and
    clients whose message was rejected); ``rejected`` records each rejected
    message as ``(stage, party, error)``.  Seconds are wall-clock; bytes are
    wire-format sizes; ``prg_bytes_*`` count keystream bytes actually generated.
    """
    sum: np.ndarray
    survivors: list
    dropped: dict
    rejected: list
    n: int
    m: int
    bits: int
    mode: str
    k: int
    threshold: int
    prg: str
    per_stage_seconds: dict
    client_seconds: dict
    server_seconds: dict
    total_seconds: float
    bytes_sent_per_client: float
    bytes_sent_per_client_by_stage: dict
    bytes_received_per_client: float
    server_bytes_sent: int
    prg_bytes_clients: int
    prg_bytes_server: int
    config: RoundConfig = field(repr=False, default=None)
    malicious: bool = False
    cheaters: list = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    ejected: dict = field(default_factory=dict)

    @property
    def prg_bytes(self) -> int:
        return self.prg_bytes_clients + self.prg_bytes_server

    def summary(self) -> dict:
        """JSON-friendly scalars."""
        return {"n": self.n, "m": self.m, "bits": self.bits, "mode": self.mode, "k": self.k,
                "threshold": self.threshold, "prg": self.prg, "survivors": len(self.survivors),
                "total_s": self.total_seconds, "per_stage_s": dict(self.per_stage_seconds),
                "client_s": dict(self.client_seconds), "server_s": dict(self.server_seconds),
                "bytes_sent_per_client": self.bytes_sent_per_client,
                "bytes_sent_per_client_by_stage": dict(self.bytes_sent_per_client_by_stage),
                "bytes_received_per_client": self.bytes_received_per_client,
                "server_bytes_sent": self.server_bytes_sent,
                "prg_bytes": self.prg_bytes, "prg_bytes_clients": self.prg_bytes_clients,
                "prg_bytes_server": self.prg_bytes_server, "rejected": len(self.rejected),
                "malicious": self.malicious, "cheaters": list(self.cheaters),
                "ejected": sorted(self.ejected)}


def _normalise_dropouts(dropouts, n: int, stages=STAGES) -> dict[str, set[int]]:
    out = {s: set() for s in stages}
    if not dropouts:
        return out
    seen: set[int] = set()
    for stage, ids in dropouts.items():
        if stage not in _STAGE_ALIASES or _STAGE_ALIASES[stage] not in out:
            raise ValueError(f"unknown stage {stage!r}; use one of {stages}")
        ids = {int(i) for i in ids}
        bad = [i for i in ids if not 0 <= i < n]
        if bad:
            raise ValueError(f"dropout ids out of range: {sorted(bad)[:5]}")
        if ids & seen:
            raise ValueError("a client can drop out at only one stage")
        seen |= ids
        out[_STAGE_ALIASES[stage]] |= ids
    return out


Interceptor = Callable[[str, str, object, object], object]


def run_protocol(inputs: np.ndarray, *, bits: int = 32, dropouts: Mapping | None = None,
                 mode: str = "secagg+", threshold: int | None = None, k: int | None = None,
                 dropout_rate: float = 0.1, corrupt_fraction: float = 0.05, security_bits: float = 40.0,
                 malicious: bool = False, seed: int | None = None, prg: str = "aes-ctr",
                 deterministic: bool = False, wire: bool = True, presum_group_size: int = 1,
                 workers: int = 1, interceptor: Interceptor | None = None, round_id: bytes | None = None,
                 config: RoundConfig | None = None, ledgers: Mapping | None = None) -> ProtocolResult:
    """Run one whole SecAgg(+) round over ``inputs`` (shape ``(n, m)``,
    integers in ``[0, 2^bits)``) and return the sum of the survivors' rows.

    dropouts: ``{stage: ids}``; stage is a name in
        ``('advertise_keys', 'share_keys', 'masked_input', 'unmasking')`` (and
        ``'consistency'`` with ``malicious``) or its index; those clients never
        send that stage's message nor anything later.
    malicious: the active-security protocol (Bonawitz et al. §4): long-term
        Ed25519 identity keys registered in the round config (the PKI), signed
        messages and the ConsistencyCheck round; ``(k, t)`` from the malicious
        rule of :mod:`secagg.graph`.
    mode: ``'secagg+'`` (Harary graph, ``k``/``t`` from ``dropout_rate``,
        ``corrupt_fraction``, ``security_bits``) or ``'secagg'`` (complete graph).
    threshold, k: override the automatic choice.
    seed: seeds the graph labelling, and with ``deterministic=True`` also all
        client secrets (reproducible runs for tests; never in deployment).
    workers: run the clients in this many worker processes (each pre-sums
        its clients' masked inputs); 1 = everything in this process.
    presum_group_size: in-process, pre-sum masked inputs of groups of this
        many clients before they reach the server (as a worker would).
    ledgers: client id -> :class:`~secagg.ledger.RoundLedger`, each device's memory of
        the round ids it joined (in-process clients only): a client refuses a
        round id its ledger holds.
    interceptor: ``f(stage, direction, party, msg)`` called on every message in
        flight (``direction`` is ``'up'`` client->server or ``'down'``); returns
        the message to deliver, ``None`` to drop it, or a list of messages.
        Errors raised by a receiver are recorded in ``result.rejected``.

    Raises :class:`~secagg.errors.SecAggAbort` (no partial result) if too few
    clients remain.
    """
    x = np.asarray(inputs)
    if x.ndim != 2 or x.dtype.kind not in "ui":
        raise ValueError("inputs must be a 2-D integer array of shape (n, m)")
    n, m = x.shape
    word_dtype(bits)
    if x.size and (int(x.min()) < 0 or int(x.max()) >> bits):
        raise ValueError(f"inputs must lie in [0, 2^{bits})")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    malicious = bool(config.malicious) if config is not None else bool(malicious)
    sign_keys = identity_keys(n, seed, deterministic) if malicious else None
    if config is None:
        vks = None
        if malicious:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            vks = [verify_key_bytes(Ed25519PrivateKey.from_private_bytes(sign_keys[i])) for i in range(n)]
        config = make_config(n, m, bits=bits, mode=mode, threshold=threshold, k=k,
                             dropout_rate=dropout_rate, corrupt_fraction=corrupt_fraction,
                             security_bits=security_bits, malicious=malicious, seed=seed, prg=prg,
                             round_id=round_id, verify_keys=vks)
    elif malicious and sign_keys_from_config(config, sign_keys) is None:
        raise ValueError("a malicious config must register the identity keys of identity_keys(n, seed, deterministic)")
    cfg = config
    if (cfg.n, cfg.m, cfg.bits) != (n, m, bits):
        raise ValueError("config does not match inputs")
    stages = stages_for(cfg.malicious)
    drops = _normalise_dropouts(dropouts, n, stages)
    t_start = time.perf_counter()

    server_ex = MaskExpander(m, bits, cfg.prg)
    server = SecAggServer(cfg, server_ex)
    pool = clients = client_ex = None
    if workers > 1:
        pool = WorkerPool(cfg, x, workers, seed, deterministic, group=0 if presum_group_size <= 1 else presum_group_size,
                          sign_keys=sign_keys)
    else:
        client_ex = MaskExpander(m, bits, cfg.prg)
        clients = {i: make_client(i, cfg, seed, deterministic, client_ex, sign_keys,
                                  ledger=(ledgers or {}).get(i)) for i in range(n)}
    rejected: list = []
    sent_by_stage = {s: defaultdict(int) for s in stages}
    received = defaultdict(int)
    server_sent = 0
    client_s = {s: 0.0 for s in stages}
    server_s = {s: 0.0 for s in stages}
    stage_s = {s: 0.0 for s in stages}
    not_sent = {s: set() for s in stages}
    if cfg.malicious:
        handlers = dict(zip(stages, (server.receive_advertise, server.receive_share_keys, server.receive_masked_input,
                                     server.receive_consistency, server.receive_unmask)))
        closers = (server.broadcast_keys, server.forward_shares, server.consistency_requests,
                   server.unmask_requests, server.finalize)
    else:
        handlers = dict(zip(stages, (server.receive_advertise, server.receive_share_keys,
                                     server.receive_masked_input, server.receive_unmask)))
        closers = (server.broadcast_keys, server.forward_shares, server.unmask_requests, server.finalize)

    def intercept(stage, direction, party, msg):
        if interceptor is None:
            return [msg]
        out = interceptor(stage, direction, party, msg)
        return [] if out is None else (list(out) if isinstance(out, (list, tuple)) else [out])

    def roundtrip(stage, party, mm):
        """Encode (and, with ``wire``, re-parse) one message; returns (msg, bytes) or None."""
        if not wire and isinstance(mm, MaskedInput):  # skip encoding the large vectors
            return mm, None
        data = mm.encode()
        if wire:
            try:
                mm = decode(data)
            except SecAggError as e:
                rejected.append((stage, party, repr(e)))
                return None
        return mm, data

    def deliver_up(stage, who, msg, sizes):
        party = who[0] if len(who) == 1 else who
        if isinstance(msg, (bytes, bytearray)):  # from a worker process
            for i, sz in sizes.items():
                sent_by_stage[stage][i] += sz if sz is not None else len(msg)
            try:
                msg = decode(msg)
            except SecAggError as e:
                rejected.append((stage, party, repr(e)))
                return
            msgs = [(mm, None) for mm in intercept(stage, "up", party, msg)]
        else:
            msgs = []
            for mm in intercept(stage, "up", party, msg):
                r = roundtrip(stage, party, mm)
                if r is not None:
                    msgs.append(r)
            for i, sz in sizes.items():
                if sz is not None:
                    sent_by_stage[stage][i] += sz
                elif msgs and msgs[0][1] is not None:
                    sent_by_stage[stage][i] += len(msgs[0][1])
        for mm, _ in msgs:
            t0 = time.perf_counter()
            try:
                handlers[stage](mm, origin=who)
            except SecAggError as e:
                rejected.append((stage, party, repr(e)))
            finally:
                server_s[stage] += time.perf_counter() - t0

    def timed_server(stage, fn):
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            dt = time.perf_counter() - t0
            server_s[stage] += dt
            stage_s[stage] += dt

    try:
        downs = {i: None for i in range(n)}
        for si, stage in enumerate(stages):
            t_stage = time.perf_counter()
            deliver = {}
            for i in sorted(downs):
                if i in drops[stage]:
                    not_sent[stage].add(i)
                    continue
                if downs[i] is None:
                    deliver[i] = None
                    continue
                got = []
                for mm in intercept(stage, "down", i, downs[i]):
                    r = roundtrip(stage, i, mm)
                    if r is not None:
                        got.append(r)
                        server_sent += len(r[1])
                        received[i] += len(r[1])
                if len(got) != 1:
                    not_sent[stage].add(i)
                    continue
                deliver[i] = got[0][1] if pool is not None else got[0][0]
            sent_ids = set(deliver)
            if pool is not None:
                items, busy = pool.run(stage, deliver)
                client_s[stage] += busy
                for item in items:
                    if item[0] == "up":
                        deliver_up(stage, *item[1:])
                    else:
                        rejected.append((stage, item[1], item[2]))
                        sent_ids.discard(item[1])
            else:
                gen = run_clients_stage(clients, stage, deliver, x, max(1, int(presum_group_size)))
                while True:
                    t0 = time.perf_counter()
                    item = next(gen, None)
                    client_s[stage] += time.perf_counter() - t0
                    if item is None:
                        break
                    if item[0] == "up":
                        deliver_up(stage, *item[1:])
                    else:
                        rejected.append((stage, item[1], item[2]))
                        sent_ids.discard(item[1])
            not_sent[stage] |= set(deliver) - sent_ids
            stage_s[stage] += time.perf_counter() - t_stage
            downs = timed_server(stage, closers[si])
        total = downs
    finally:
        if pool is not None:
            pool.close()

    survivors = sorted(server.u3)
    per_client = defaultdict(int)
    for s in stages:
        for i, b in sent_by_stage[s].items():
            per_client[i] += b
    mean = lambda vals: float(np.mean(list(vals))) if len(vals) else 0.0  # noqa: E731
    prg_clients = client_ex.bytes_generated if client_ex is not None else sum(pool.prg_bytes)
    return ProtocolResult(
        sum=total, survivors=survivors,
        dropped={s: sorted(v) for s, v in not_sent.items()}, rejected=rejected,
        n=n, m=m, bits=bits, mode=cfg.mode, k=cfg.k, threshold=cfg.threshold, prg=cfg.prg,
        per_stage_seconds=stage_s, client_seconds=client_s, server_seconds=server_s,
        total_seconds=time.perf_counter() - t_start,
        bytes_sent_per_client=mean([per_client[i] for i in survivors]),
        bytes_sent_per_client_by_stage={s: mean(sent_by_stage[s].values()) for s in stages},
        bytes_received_per_client=mean([received[i] for i in survivors]),
        server_bytes_sent=server_sent,
        prg_bytes_clients=prg_clients, prg_bytes_server=server_ex.bytes_generated,
        config=cfg, malicious=cfg.malicious, cheaters=sorted(server.cheaters), evidence=dict(server.evidence),
        ejected=dict(server.ejected))


def sign_keys_from_config(cfg: RoundConfig, sign_keys: dict):
    """``sign_keys`` if their public halves are the ones ``cfg`` registers, else None."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    vks = tuple(verify_key_bytes(Ed25519PrivateKey.from_private_bytes(sign_keys[i])) for i in range(cfg.n))
    return sign_keys if vks == cfg.verify_keys else None
