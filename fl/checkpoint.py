"""Server state checkpoints, written atomically after every round.

A run directory holds `checkpoint.npz` (weights, optimizer and aggregator state,
round); `--resume DIR` loads it and continues. All randomness is derived from
(seed, round), so a resumed run ends with the same numbers as an uninterrupted one.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fl.process import ServerState

NAME = "checkpoint.npz"


def save(run_dir: str | os.PathLike, state: ServerState) -> Path:
    path = Path(run_dir) / NAME
    arrays = {"round": np.array(state.round), "weights": state.weights}
    arrays.update({f"opt/{k}": np.asarray(v) for k, v in state.opt_state.items()})
    arrays.update({f"agg/{k}": np.asarray(v) for k, v in state.agg_state.items()})
    arrays.update({f"alg/{k}": np.asarray(v) for k, v in state.algo_state.items()})
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return path


def load(run_dir: str | os.PathLike) -> ServerState | None:
    path = Path(run_dir) / NAME
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        opt = {k[4:]: z[k] for k in z.files if k.startswith("opt/")}
        agg = {k[4:]: z[k].item() if z[k].ndim == 0 else z[k] for k in z.files if k.startswith("agg/")}
        alg = {k[4:]: z[k] for k in z.files if k.startswith("alg/")}
        return ServerState(int(z["round"]), z["weights"], opt, agg, alg)
