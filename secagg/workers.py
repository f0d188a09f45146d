"""Running the client side of a round in worker processes.

The round engine (and :func:`secagg.run_protocol` with ``workers > 1``) can
host disjoint sets of clients in worker processes.  Each worker keeps its
clients' state machines across the four stages, receives and returns wire
bytes, and pre-sums its clients' masked inputs mod 2^b
(:func:`secagg.messages.presum`) so the server receives one vector per worker
together with the list of client ids it covers.
"""
from __future__ import annotations

import multiprocessing as mp
import time

from .client import SecAggClient
from .errors import SecAggError
from .messages import decode, presum
from .prg import MaskExpander
from .rand import DeterministicRandomSource, SystemRandomSource


def client_rand(i: int, seed, deterministic: bool, purpose: bytes = b"client"):
    if deterministic:
        return DeterministicRandomSource(0 if seed is None else seed, label=purpose + b"-%d" % i)
    return SystemRandomSource()


def identity_keys(n: int, seed, deterministic: bool) -> dict[int, bytes]:
    """Long-term Ed25519 private keys (raw bytes) of clients 0..n-1 for the active
    mode: what each device holds; the public halves go to the PKI."""
    return {i: client_rand(i, seed, deterministic, b"identity").bytes(32) for i in range(n)}


def make_client(i: int, cfg, seed, deterministic: bool, expander, sign_keys: dict | None = None, ledger=None):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    sk = Ed25519PrivateKey.from_private_bytes(sign_keys[i]) if sign_keys else None
    return SecAggClient(i, cfg, client_rand(i, seed, deterministic), expander, signing_key=sk, ledger=ledger)


def run_clients_stage(clients: dict, stage: str, downs: dict, inputs=None, group: int = 0):
    """Run one stage for the given clients.

    ``downs`` maps client id -> server message object (``None`` for the first
    stage).  Yields ``('up', ids, msg, sizes)`` for each outgoing message
    (``sizes``: per-client wire bytes, pre-summing does not change what each
    client would send) and ``('error', id, repr)`` for clients that failed.
    For the masked-input stage, outputs are pre-summed in groups of ``group``
    clients (``0``: all of them).
    """
    pending = []
    cfg = next(iter(clients.values())).cfg if clients else None
    reg = cfg.registry() if cfg is not None and cfg.malicious else None

    def _presum(msgs):  # the server's addition, done here: verify each part first in active mode
        return presum(msgs, registry=reg,
                      bindings={m.client_ids[0]: clients[m.client_ids[0]].binding for m in msgs} if reg else None)

    for i, msg in downs.items():
        c = clients[i]
        try:
            if stage == "advertise_keys":
                out = c.advertise_keys()
            elif stage == "share_keys":
                out = c.share_keys(msg)
            elif stage == "masked_input":
                out = c.masked_input(msg, inputs[i])
            elif stage == "consistency":
                out = c.consistency(msg)
            elif stage == "unmasking":
                out = c.unmask(msg)
            else:
                raise ValueError(f"unknown stage {stage!r}")
        except SecAggError as e:
            yield ("error", i, repr(e))
            continue
        if stage == "masked_input" and group != 1:
            pending.append(out)
            if group and len(pending) >= group:
                yield ("up", tuple(mm.client_ids[0] for mm in pending), _presum(pending),
                       {mm.client_ids[0]: mm.wire_size() for mm in pending})
                pending = []
        else:
            size = out.wire_size() if stage == "masked_input" else None
            yield ("up", (i,), out, {i: size})
    if pending:
        yield ("up", tuple(mm.client_ids[0] for mm in pending), _presum(pending),
               {mm.client_ids[0]: mm.wire_size() for mm in pending})


def _worker_main(conn, cfg, ids, inputs, seed, deterministic, group, sign_keys=None):
    ex = MaskExpander(cfg.m, cfg.bits, cfg.prg)
    clients = {i: make_client(i, cfg, seed, deterministic, ex, sign_keys) for i in ids}
    while True:
        cmd, payload = conn.recv()
        if cmd == "stop":
            conn.close()
            return
        t0 = time.perf_counter()
        downs, errors = {}, []
        for i, data in payload.items():
            if data is None:
                downs[i] = None
                continue
            try:
                downs[i] = decode(data)
            except SecAggError as e:
                errors.append(("error", i, repr(e)))
        out = []
        for item in run_clients_stage(clients, cmd, downs, inputs, group):
            if item[0] == "up":
                _, who, msg, sizes = item
                out.append(("up", who, msg.encode(), sizes))
            else:
                errors.append(item)
        conn.send((out + errors, time.perf_counter() - t0, ex.bytes_generated))


class WorkerPool:
    """``workers`` processes hosting the clients ``ids[w::workers]``."""

    def __init__(self, cfg, inputs, workers: int, seed=None, deterministic: bool = False, group: int = 0,
                 sign_keys: dict | None = None):
        try:
            ctx = mp.get_context("fork")
        except ValueError:  # pragma: no cover - non-POSIX
            ctx = mp.get_context("spawn")
        self.workers = workers
        self.assign = {i: i % workers for i in range(cfg.n)}
        self._conns, self._procs = [], []
        for w in range(workers):
            ids = [i for i in range(cfg.n) if i % workers == w]
            parent, child = ctx.Pipe()
            sub = inputs if ctx.get_start_method() == "fork" else {i: inputs[i] for i in ids}
            keys = {i: sign_keys[i] for i in ids} if sign_keys else None
            p = ctx.Process(target=_worker_main, args=(child, cfg, ids, sub, seed, deterministic, group, keys),
                            daemon=True)
            p.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(p)
        self.prg_bytes = [0] * workers
        self.seconds = [0.0] * workers

    def run(self, stage: str, downs: dict):
        """Send encoded downs (or None) to the workers; return their outputs and
        the slowest worker's busy time."""
        parts = [dict() for _ in range(self.workers)]
        for i, data in downs.items():
            parts[self.assign[i]][i] = data
        for conn, part in zip(self._conns, parts):
            conn.send((stage, part))
        items, busy = [], 0.0
        for w, conn in enumerate(self._conns):
            out, dt, prg_bytes = conn.recv()
            items += out
            busy = max(busy, dt)
            self.seconds[w] += dt
            self.prg_bytes[w] = prg_bytes
        return items, busy

    def close(self) -> None:
        for conn, p in zip(self._conns, self._procs):
            try:
                conn.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
