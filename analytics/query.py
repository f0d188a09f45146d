"""One pattern for every federated analytics query: device function -> secure sum -> server step.

A query is four small pure pieces; `run_query` owns the round loop, the secure sum of the
devices' rows (SecAgg+ in groups, analytics/secure_histogram.py), the progress bar and
the per-round table, so a study writes no loop of its own:

- ``init()`` -> the server's state;
- ``select(state, round)`` -> the device ids asked this round, or None when the query is done;
- ``device(state, ids, round)`` -> one row of non-negative integers per device: all a device
  reveals, and only inside the secure sum (vectorised over ``ids``; ``(0, width)`` for none);
- ``server(state, total, reported_ids, round)`` -> ``(state, row, done)``: the server sees only
  the sum over the devices that completed the protocol (``reported_ids``), adds what it
  wants to the round's ``row`` and says whether the query is done.

Rounds with fewer than ``min_devices`` selected devices sum nothing (an aggregate of one
device would be that device's data); the server step still runs, with a zero total.
This is the shape of TFF's federated analytics computations (a client map, a secure sum,
a server update), e.g. TrieHH (Zhu et al. 2020) in analytics/triehh.py.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np


class Query(NamedTuple):
    init: Callable[[], Any]
    select: Callable[[Any, int], np.ndarray | None]
    device: Callable[[Any, np.ndarray, int], np.ndarray]
    server: Callable[[Any, np.ndarray, np.ndarray, int], tuple[Any, dict, bool]]
    # public bound on any group's per-coordinate sum, from the number of devices asked
    max_total: Callable[[int], int] = lambda n: 2**32 - 1


def run_query(query: Query, *, settings=None, seed: int = 0, tag=(), pool=None, max_rounds: int = 1000,
              min_devices: int = 2, progress: bool = False, label: str = "query") -> tuple[Any, list[dict]]:
    """Run ``query`` until its ``select`` or ``server`` says it is done (or ``max_rounds``).

    ``settings``: `analytics.secure_histogram.SecAggSettings` for the secure sum; None sums
    in the clear (identical totals; for sweeps and tests).  Returns (final state, one dict
    per round with the secure sum's figures and whatever the server step added)."""
    from tqdm import tqdm

    from analytics.secure_histogram import secure_sum

    state, rounds = query.init(), []
    bar = tqdm(total=max_rounds, desc=label, disable=not progress, leave=False, unit="round")
    for r in range(max_rounds):
        ids = query.select(state, r)
        if ids is None:
            break
        ids = np.asarray(ids, np.int64)
        rows = np.asarray(query.device(state, ids, r))
        row = {"round": r, "selected": int(len(ids)), "reported": 0, "dropped": 0, "groups": 0, "secagg_s": 0.0,
               "bytes_sent_per_client": 0.0}
        if len(ids) < min_devices:
            total, reported = np.zeros(rows.shape[1], np.int64), ids[:0]
        elif settings is None:
            total, reported = rows.sum(axis=0, dtype=np.int64), ids
            row["reported"] = int(len(ids))
        else:
            res = secure_sum(rows, settings=settings, seed=seed, tag=(*tag, r), pool=pool,
                             max_total=query.max_total(len(ids)))
            total, reported = res.total.astype(np.int64), ids[res.survivors]
            row.update(reported=int(len(res.survivors)), dropped=int(len(res.dropped)), groups=res.groups,
                       secagg_s=res.seconds, bytes_sent_per_client=res.bytes_sent_per_client,
                       secagg_k=max(res.k, default=0), secagg_threshold=max(res.threshold, default=0))
        state, extra, done = query.server(state, total, reported, r)
        row.update(extra)
        rounds.append(row)
        bar.update(1)
        bar.set_postfix(devices=row["reported"])
        if done:
            break
    bar.close()
    return state, rounds
