"""Benchmark of :func:`secagg.run_protocol` (``fedpop bench secagg --out F.json``).

For each case it records wall seconds (total, per stage, client/server
split), wire bytes sent per client, and an honest PRG floor::

    prg_floor_s = (keystream bytes actually generated in the run, by all
                   clients and the server) / (raw keystream throughput of one
                   core, measured in this process just before the case)

The throughput is the best rate of one long-lived cipher context writing into
a reused buffer (no per-seed key setup), so ``prg_floor_s`` is a strict lower
bound for a single-process run: every mask byte has to be produced, and
nothing else (X25519, HKDF, AES-GCM, Shamir, numpy additions, message
encoding) is counted in it.  Runs with ``workers > 1`` are also compared to
``prg_floor_parallel_s``, which divides by the *aggregate* throughput of that
many processes measured concurrently.

Dropouts are applied at the masked-input stage (after key sharing: the most
expensive case for the server, which must re-derive those clients' pairwise
masks).  SecAgg+ parameters are chosen for an assumed 10% dropout rate and 5%
corrupt clients at 2^-40 (so the 0% and 10% cases use the same graph).
"""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import numpy as np

from .prg import measure_throughput
from .protocol import run_protocol

HEADLINE = {"n": 1000, "m": 100_000, "dropout": 0.1, "mode": "secagg+"}


def _tp_worker(args):
    prg, chunk, secs = args
    return measure_throughput(prg, chunk, secs)


def measure_parallel_throughput(prg: str, chunk_bytes: int, workers: int, seconds: float = 0.5) -> float:
    """Aggregate keystream throughput (bytes/s) of ``workers`` concurrent processes."""
    if workers <= 1:
        return measure_throughput(prg, chunk_bytes, seconds)
    ctx = mp.get_context("fork")
    with ctx.Pool(workers) as pool:
        return float(sum(pool.map(_tp_worker, [(prg, chunk_bytes, seconds)] * workers)))


def _cases(quick: bool):
    if quick:
        grid = [(n, m) for n in (20, 40) for m in (1000,)]
        classic_n = {20}
    else:
        grid = [(n, m) for n in (100, 1000) for m in (10_000, 100_000)]
        classic_n = {100}
    for n, m in grid:
        for dropout in (0.0, 0.1):
            yield {"n": n, "m": m, "dropout": dropout, "mode": "secagg+", "workers": 1}
            if n in classic_n:
                yield {"n": n, "m": m, "dropout": dropout, "mode": "secagg", "workers": 1}


def run_case(n: int, m: int, dropout: float, mode: str, *, workers: int = 1, prg: str = "aes-ctr",
             seed: int = 0, inputs: np.ndarray | None = None) -> dict:
    rng = np.random.default_rng(seed)
    x = inputs[:n, :m] if inputs is not None else rng.integers(0, 2**32, size=(n, m), dtype=np.uint32)
    drop = rng.choice(n, int(round(dropout * n)), replace=False) if dropout else []
    tp = measure_throughput(prg, 4 * m, 0.3)
    tp_par = measure_parallel_throughput(prg, 4 * m, workers, 0.3) if workers > 1 else tp
    r = run_protocol(x, bits=32, mode=mode, dropouts={"masked_input": drop}, dropout_rate=0.1,
                     corrupt_fraction=0.05, seed=seed, prg=prg, workers=workers)
    want = (x[r.survivors].astype(np.uint64).sum(axis=0) % (1 << 32)).astype(np.uint32)
    if not np.array_equal(r.sum, want):
        raise AssertionError("benchmark round produced a wrong sum")
    floor = r.prg_bytes / tp
    out = {"n": n, "m": m, "dropout": dropout, "mode": mode, "workers": workers, "prg": prg,
           "k": r.k, "threshold": r.threshold, "survivors": len(r.survivors),
           "total_s": r.total_seconds, "per_stage_s": r.per_stage_seconds,
           "client_s": r.client_seconds, "server_s": r.server_seconds,
           "bytes_sent_per_client": r.bytes_sent_per_client,
           "bytes_sent_per_client_by_stage": r.bytes_sent_per_client_by_stage,
           "prg_bytes": r.prg_bytes, "prg_bytes_clients": r.prg_bytes_clients,
           "prg_bytes_server": r.prg_bytes_server,
           "prg_throughput_Bps": tp, "prg_floor_s": floor, "ratio": r.total_seconds / floor}
    if workers > 1:
        out["prg_throughput_parallel_Bps"] = tp_par
        out["prg_floor_parallel_s"] = r.prg_bytes / tp_par
        out["ratio_parallel"] = r.total_seconds / out["prg_floor_parallel_s"]
    return out


def _row(c: dict) -> str:
    st = c["per_stage_s"]
    return (f"{c['mode']:8s} n={c['n']:5d} m={c['m']:7d} drop={c['dropout']:.0%} w={c['workers']} k={c['k']:4d} "
            f"t={c['threshold']:4d}  total={c['total_s']:7.2f}s  floor={c['prg_floor_s']:6.2f}s  "
            f"ratio={c['ratio']:5.2f}  [adv {st['advertise_keys']:.2f} share {st['share_keys']:.2f} "
            f"mask {st['masked_input']:.2f} unmask {st['unmasking']:.2f}]  "
            f"{c['bytes_sent_per_client'] / 1024:8.1f} KiB/client")


def run_bench(out_path: str, quick: bool = False, prg: str = "aes-ctr", parallel_headline: bool = True) -> dict:
    """Run the benchmark grid, print a table, write JSON to ``out_path``.

    ``quick=True`` runs tiny sizes only (smoke test).  Without ``quick`` the
    headline case is also run with 2 worker processes (``headline_parallel``).
    """
    t0 = time.perf_counter()
    cases = list(_cases(quick))
    nmax, mmax = max(c["n"] for c in cases), max(c["m"] for c in cases)
    inputs = np.random.default_rng(12345).integers(0, 2**32, size=(nmax, mmax), dtype=np.uint32)
    results = []
    print(f"secagg bench ({'quick' if quick else 'full'}, prg={prg}, cpus={os.cpu_count()})", flush=True)
    for c in cases:
        res = run_case(c["n"], c["m"], c["dropout"], c["mode"], workers=c["workers"], prg=prg, inputs=inputs)
        results.append(res)
        print(_row(res), flush=True)
    head_spec = HEADLINE if not quick else {"n": 40, "m": 1000, "dropout": 0.1, "mode": "secagg+"}
    head = next(r for r in results if all(r[k] == v for k, v in head_spec.items()) and r["workers"] == 1)
    report = {
        "headline": {**head_spec, "workers": 1, "k": head["k"], "threshold": head["threshold"],
                     "total_s": head["total_s"], "prg_floor_s": head["prg_floor_s"], "ratio": head["ratio"],
                     "bytes_sent_per_client": head["bytes_sent_per_client"],
                     "target_ratio": 2.5, "target_total_s": 30.0,
                     "meets_targets": head["ratio"] <= 2.5 and head["total_s"] <= 30.0},
        "cases": results,
        "notes": ("prg_floor_s = keystream bytes generated by clients+server / single-core raw keystream "
                  "throughput measured in-process just before each case; dropouts at the masked-input stage."),
    }
    if parallel_headline and (os.cpu_count() or 1) > 1:
        par = run_case(head_spec["n"], head_spec["m"], head_spec["dropout"], head_spec["mode"], workers=2,
                       prg=prg, inputs=inputs)
        results.append(par)
        print(_row(par) + f"  ratio vs 2-process floor={par['ratio_parallel']:.2f}", flush=True)
        report["headline_parallel"] = {**head_spec, "workers": 2, "total_s": par["total_s"],
                                       "prg_floor_s": par["prg_floor_s"], "ratio": par["ratio"],
                                       "prg_floor_parallel_s": par["prg_floor_parallel_s"],
                                       "ratio_parallel": par["ratio_parallel"]}
    report["bench_seconds"] = time.perf_counter() - t0
    with open(out_path, "w") as f:
        json.dump(report, f, indent=2, default=float)
    return report


if __name__ == "__main__":  # pragma: no cover
    import sys

    run_bench(sys.argv[1] if len(sys.argv) > 1 else "secagg_bench.json", quick="--quick" in sys.argv)
