"""Secure sums and histograms over many devices, in SecAgg groups.

Every sum here goes through the real protocol (:func:`secagg.run_protocol`:
X25519, Shamir shares under AES-GCM, AES-CTR masks, SecAgg+ neighbour graph of
Bell et al., CCS 2020).  Large device sets are split into *groups* of a few
hundred devices; each group is one independent SecAgg round and the server
adds the groups' unmasked sums.  This is how deployments scale secure
aggregation ("Federated Analytics", Ramage & Mazzocchi 2020; Bonawitz et al.
2019 run SecAgg over groups of hundreds of devices): the server learns the sum
of every group (>= ``min_group`` devices), never an individual vector.  That is
a weaker statement than one sum over all devices, and the result records the
group count so it is visible.

A histogram is the secure sum of per-device one-hot (or count) vectors.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import time
from dataclasses import dataclass, field

import numpy as np

from fl.seeding import rng_for, seed_words


@dataclass(frozen=True)
class SecAggSettings:
    """How sums are secured.  ``dropout_rate``, ``corrupt_fraction`` and
    ``security_bits`` set SecAgg+'s (k, t) (see :func:`secagg.choose_k_t`);
    ``simulated_dropout`` is the fraction of each group that really drops
    after sharing keys (their rows are then missing from the sum)."""
    group_size: int = 300
    mode: str = "secagg+"
    dropout_rate: float = 0.1
    corrupt_fraction: float = 0.05
    security_bits: float = 40.0
    simulated_dropout: float = 0.0
    workers: int = 1
    malicious: bool = False  # active-security SecAgg (signed messages + ConsistencyCheck round)


@dataclass
class SecureSumResult:
    """Exact sum of the rows of ``survivors`` (indices into the input rows)."""
    total: np.ndarray
    survivors: np.ndarray
    dropped: np.ndarray
    groups: int
    group_sizes: list
    bits: int
    seconds: float  # wall clock of this call
    protocol_seconds: float  # sum over groups of run_protocol time (CPU time if parallel)
    bytes_sent_per_client: float
    k: list = field(default_factory=list)
    threshold: list = field(default_factory=list)
    aborted_groups: int = 0

    def summary(self) -> dict:
        return {"devices": int(len(self.survivors) + len(self.dropped)), "survivors": int(len(self.survivors)),
                "groups": self.groups, "min_group": int(min(self.group_sizes)) if self.group_sizes else 0,
                "bits": self.bits, "seconds": self.seconds, "protocol_seconds": self.protocol_seconds,
                "bytes_sent_per_client": self.bytes_sent_per_client,
                "secagg_k": sorted(set(self.k)), "secagg_threshold": sorted(set(self.threshold)),
                "aborted_groups": self.aborted_groups}


def bits_for(max_total: int) -> int:
    """Word size for sums up to ``max_total`` without wrap-around (32 or 64)."""
    if max_total < 0:
        raise ValueError("max_total must be >= 0")
    need = max(1, int(max_total).bit_length())
    if need > 64:
        raise ValueError(f"sums up to {max_total} do not fit in 64 bits")
    return 32 if need <= 32 else 64


def split_groups(n: int, group_size: int) -> list[np.ndarray]:
    """Split ``range(n)`` into ceil(n / group_size) contiguous groups of near-equal size."""
    if n < 2:
        raise ValueError(f"secure aggregation needs at least 2 devices, got {n}")
    if group_size < 2:
        raise ValueError("group_size must be >= 2")
    g = max(1, math.ceil(n / group_size))
    return [a for a in np.array_split(np.arange(n), g)]


def _run_group(args):
    """One SecAgg round over one group (runs in a worker process or inline)."""
    from secagg import SecAggAbort, run_protocol

    x, bits, mode, dropout_rate, corrupt, sec_bits, drop_ids, seed, malicious = args
    t0 = time.perf_counter()
    try:
        r = run_protocol(x, bits=bits, mode=mode, dropouts={"masked_input": drop_ids} if len(drop_ids) else None,
                         dropout_rate=dropout_rate, corrupt_fraction=corrupt, security_bits=sec_bits, seed=seed,
                         malicious=malicious)
    except SecAggAbort:
        return None, [], time.perf_counter() - t0, 0.0, 0, 0
    return (np.asarray(r.sum), list(r.survivors), r.total_seconds, r.bytes_sent_per_client, r.k, r.threshold)


class SecAggPool:
    """Worker processes that run SecAgg groups in parallel (``spawn``: safe
    after TensorFlow is imported).  ``workers=1`` runs everything inline."""

    def __init__(self, workers: int = 1):
        self.workers = max(1, int(workers))
        self._pool = None
        if self.workers > 1:
            self._pool = mp.get_context("spawn").Pool(self.workers)

    def map(self, fn, items):
        if self._pool is None:
            return [fn(a) for a in items]
        return self._pool.map(fn, items, chunksize=1)

    def close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def secure_sum(rows: np.ndarray, *, settings: SecAggSettings = SecAggSettings(), seed: int = 0,
               tag=(), max_total: int | None = None, pool: SecAggPool | None = None) -> SecureSumResult:
    """Sum the rows of ``rows`` (one row per device, non-negative integers)
    with SecAgg in groups of ``settings.group_size``.

    ``max_total`` bounds any group's per-coordinate sum (default: from the
    data, as the server would from the public per-device bound); it picks the
    word size so the modular sum is the exact integer sum.  Which devices drop
    out (``settings.simulated_dropout``) is drawn from ``rng_for(seed, tag)``.
    Returns the exact sum over the survivors.
    """
    x = np.asarray(rows)
    if x.ndim != 2 or x.dtype.kind not in "ui":
        raise ValueError("rows must be a 2-D integer array (devices x coordinates)")
    n, m = x.shape
    if m < 1:
        raise ValueError("rows must have at least one coordinate")
    if x.size and int(x.min()) < 0:
        raise ValueError("rows must be non-negative")
    groups = split_groups(n, settings.group_size)
    if max_total is None:
        max_total = int(x.max(initial=0)) * max(len(g) for g in groups)
    bits = bits_for(max_total)
    dtype = np.uint32 if bits <= 32 else np.uint64
    rng = rng_for(seed, "secure-sum", *tag)
    jobs, drops = [], []
    for gi, g in enumerate(groups):
        k = int(round(settings.simulated_dropout * len(g)))
        d = np.sort(rng.choice(len(g), size=k, replace=False)) if k else np.zeros(0, np.int64)
        drops.append(d)
        gseed = int(np.random.SeedSequence(seed_words(seed, "secagg-group", *tag, gi)).generate_state(1)[0])
        jobs.append((x[g].astype(dtype), bits, settings.mode, settings.dropout_rate, settings.corrupt_fraction,
                     settings.security_bits, d.tolist(), gseed, settings.malicious))
    t0 = time.perf_counter()
    out = pool.map(_run_group, jobs) if pool is not None else [_run_group(j) for j in jobs]
    total = np.zeros(m, np.uint64 if bits == 64 else np.int64)
    surv, dropped, ks, ts, sizes = [], [], [], [], []
    proto_s, bytes_w, aborted = 0.0, 0.0, 0
    for g, (s, sv, secs, b, k, t) in zip(groups, out):
        proto_s += secs
        if s is None:
            aborted += 1
            dropped.append(g)
            continue
        total += s.astype(total.dtype)
        sv = np.asarray(sv, np.int64)
        surv.append(g[sv])
        dropped.append(np.setdiff1d(g, g[sv]))
        bytes_w += b * len(sv)
        ks.append(k)
        ts.append(t)
        sizes.append(len(g))
    survivors = np.sort(np.concatenate(surv)) if surv else np.zeros(0, np.int64)
    return SecureSumResult(total=total, survivors=survivors,
                           dropped=np.sort(np.concatenate(dropped)) if dropped else np.zeros(0, np.int64),
                           groups=len(groups), group_sizes=sizes, bits=bits, seconds=time.perf_counter() - t0,
                           protocol_seconds=proto_s,
                           bytes_sent_per_client=bytes_w / max(1, len(survivors)), k=ks, threshold=ts,
                           aborted_groups=aborted)


def one_hot(index: np.ndarray, num_bins: int, dtype=np.uint32) -> np.ndarray:
    """Rows with a 1 at ``index[i]`` (``-1``: an all-zero row, the device has nothing to report)."""
    index = np.asarray(index, np.int64)
    if index.size and (index.max() >= num_bins or index.min() < -1):
        raise ValueError(f"bin index out of range [-1, {num_bins})")
    out = np.zeros((len(index), num_bins), dtype)
    ok = index >= 0
    out[np.flatnonzero(ok), index[ok]] = 1
    return out


def secure_histogram(index: np.ndarray, num_bins: int, **kw) -> tuple[np.ndarray, SecureSumResult]:
    """Histogram of per-device bin indices (``-1`` = no report) via :func:`secure_sum`.

    Returns ``(counts over the surviving devices, SecureSumResult)``.
    """
    index = np.asarray(index, np.int64)
    kw.setdefault("max_total", len(index))
    res = secure_sum(one_hot(index, num_bins), **kw)
    return res.total.astype(np.int64), res
