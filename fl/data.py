"""A user's own federated dataset, the way TFF's ``ClientData`` holds one.

`FederatedData` defines the population when it is given: device ``i`` is client
``client_ids[i]`` and its example count is that client's training-set size. Such a
population is always available by default (``population.availability``, fl/population.py).

Constructors (each also reachable from a config's ``data`` section, `from_config`):

- `FederatedData.from_clients` -- a mapping ``client id -> {"x": array, "y": array}``
  (plus an optional mapping for evaluation, else a deterministic held-out fraction);
- `FederatedData.from_function` -- ``fn(client_id, split) -> {"x", "y"}`` and the clients'
  training sizes, for datasets too large to hold in memory (the function runs on the workers);
- `FederatedData.from_dataframe` / `from_file` -- one row per example with a client-id column
  (a pandas DataFrame, or a parquet or CSV file);
- `FederatedData.from_leaf` -- LEAF's JSON layout (``users``, ``num_samples``, ``user_data``),
  as FEMNIST and Shakespeare ship (Caldas et al. 2018);
- `FederatedData.from_tff` -- a TFF ``ClientData`` (``client_ids`` and
  ``create_tf_dataset_for_client``).

A client missing from a given evaluation split gets an empty one. `as_federated_data` turns
any of these objects into a `FederatedData`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

SPLITS = ("train", "eval")


def _check_arrays(client, split: str, d) -> dict[str, np.ndarray]:
    if not isinstance(d, Mapping) or "x" not in d or "y" not in d:
        raise ValueError(f"client {client!r} ({split}): data must be a mapping with 'x' and 'y' arrays")
    x, y = np.asarray(d["x"]), np.asarray(d["y"])
    if len(x) != len(y):
        raise ValueError(f"client {client!r} ({split}): {len(x)} x rows but {len(y)} y rows")
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    if y.dtype == np.int64:
        y = y.astype(np.int32)
    return {"x": x, "y": y}


@dataclass
class FederatedData:
    client_ids: list
    sizes: np.ndarray  # training examples per client, in client_ids order
    _fn: Callable[[object, str], dict]

    def __len__(self) -> int:
        return len(self.client_ids)

    @classmethod
    def from_clients(cls, train: Mapping, eval: Mapping | None = None, eval_fraction: float = 0.2,
                     seed: int = 0) -> "FederatedData":
        """From in-memory arrays.  Without ``eval``, ``eval_fraction`` of each client's examples
        (at least one when it has two or more; chosen by ``seed``) is held out for evaluation."""
        if not train:
            raise ValueError("a federated dataset needs at least one client")
        if not 0.0 <= eval_fraction < 1.0:
            raise ValueError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
        splits: dict = {}
        for i, (cid, d) in enumerate(train.items()):
            d = _check_arrays(cid, "train", d)
            if eval is not None:
                if cid not in eval:
                    raise ValueError(f"client {cid!r} has training data but no eval data")
                splits[cid] = (d, _check_arrays(cid, "eval", eval[cid]))
                continue
            n = len(d["y"])
            k = min(max(int(round(eval_fraction * n)), 1 if (eval_fraction > 0 and n >= 2) else 0), n - 1) if n else 0
            order = np.random.default_rng([seed, i]).permutation(n)
            held, kept = np.sort(order[:k]), np.sort(order[k:])
            splits[cid] = ({key: v[kept] for key, v in d.items()}, {key: v[held] for key, v in d.items()})
        ids = list(splits)
        sizes = np.array([len(splits[c][0]["y"]) for c in ids], np.int64)
        if (sizes == 0).any():
            raise ValueError(f"client {ids[int(np.argmax(sizes == 0))]!r} has no training examples")
        return cls(ids, sizes, _InMemory(splits))

    @classmethod
    def from_function(cls, fn: Callable[[object, str], dict], sizes: Mapping) -> "FederatedData":
        """``fn(client_id, split)`` makes one client's data on demand; ``sizes`` gives each
        client's training-example count (it defines the population)."""
        ids = list(sizes)
        counts = np.array([int(sizes[c]) for c in ids], np.int64)
        if not ids or (counts <= 0).any():
            raise ValueError("from_function needs at least one client, each with a positive size")
        return cls(ids, counts, fn)

    @classmethod
    def from_dataframe(cls, df, client_column: str = "client_id", x_columns=None, y_column: str = "y",
                       eval=None, eval_fraction: float = 0.2, seed: int = 0) -> "FederatedData":
        """One row per example: ``client_column`` names its client, ``y_column`` is its label and
        ``x_columns`` its features (default: every other column; a single column holding arrays
        or lists is stacked into an [n, ...] array). ``eval``: a DataFrame of held-out rows in the
        same layout, else ``eval_fraction`` of each client's rows is held out. Clients keep the
        order of their first row."""
        train = _table_clients(df, client_column, x_columns, y_column, "train")
        ev = None if eval is None else _table_clients(eval, client_column, x_columns, y_column, "eval")
        return cls.from_clients(train, _complete(train, ev), eval_fraction, seed)

    @classmethod
    def from_file(cls, path, client_column: str = "client_id", x_columns=None, y_column: str = "y",
                  eval_path=None, eval_fraction: float = 0.2, seed: int = 0) -> "FederatedData":
        """`from_dataframe` of a parquet (``.parquet``/``.pq``) or CSV (``.csv``/``.tsv``) file."""
        ev = None if not eval_path else _read_table(eval_path)
        return cls.from_dataframe(_read_table(path), client_column, x_columns, y_column, ev, eval_fraction, seed)

    @classmethod
    def from_leaf(cls, train, eval=None, eval_fraction: float = 0.2, seed: int = 0) -> "FederatedData":
        """LEAF's JSON layout: ``{"users": [...], "num_samples": [...], "user_data": {user: {"x":
        [...], "y": [...]}}}``. ``train`` / ``eval``: such a dict, a .json file, or a directory of
        them (LEAF's ``data/train`` and ``data/test``; files are read in name order). Without
        ``eval``, ``eval_fraction`` of each user's examples is held out."""
        tr = _leaf_clients(train, "train")
        ev = None if eval is None else _leaf_clients(eval, "eval")
        return cls.from_clients(tr, _complete(tr, ev), eval_fraction, seed)

    @classmethod
    def from_tff(cls, client_data, eval=None, x_key: str = "x", y_key: str = "y", eval_fraction: float = 0.2,
                 seed: int = 0) -> "FederatedData":
        """A TFF ``ClientData`` (e.g. ``tff.simulation.datasets.emnist.load_data()[0]``): every
        client's dataset is read once into memory; its elements are dicts with ``x_key`` and
        ``y_key`` or ``(x, y)`` pairs. ``eval``: the held-out ``ClientData`` (else ``eval_fraction``)."""
        tr = _tff_clients(client_data, x_key, y_key, "train")
        ev = None if eval is None else _tff_clients(eval, x_key, y_key, "eval")
        return cls.from_clients(tr, _complete(tr, ev), eval_fraction, seed)

    @classmethod
    def from_config(cls, section, seed: int = 0) -> "FederatedData | None":
        """The dataset a config's ``data`` section (`fl.config.DataSection`) describes; None for
        ``format: none``. Relative paths are relative to the current directory."""
        fmt, frac = section.format, section.eval_fraction
        if fmt == "none":
            return None
        if fmt == "table":
            return cls.from_file(section.path, section.client_column, list(section.x_columns) or None,
                                 section.y_column, section.eval_path or None, frac, seed)
        if fmt == "leaf":
            return cls.from_leaf(section.path, section.eval_path or None, frac, seed)
        if fmt == "tff":
            out = _import(section.loader)()
            train, ev = out if isinstance(out, tuple) else (out, None)
            return cls.from_tff(train, ev, section.x_key, section.y_key, frac, seed)
        raise ValueError(f"unknown data format {fmt!r}")

    def client_data(self, client_id, split: str = "train") -> dict[str, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return _check_arrays(client_id, split, self._fn(client_id, split))

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """The engine's view: device ``device_id`` is client ``client_ids[device_id]``; all of
        its examples of the split are used (``num_examples`` comes from ``sizes``)."""
        return self.client_data(self.client_ids[int(device_id)], split)

    def population_overrides(self) -> dict:
        """The ``population`` config keys this dataset fixes."""
        return {"size": len(self), "examples_min": int(self.sizes.min()), "examples_max": int(self.sizes.max())}


class _InMemory:
    """Picklable lookup into the split arrays (shipped once to each worker)."""

    def __init__(self, splits: dict):
        self.splits = splits

    def __call__(self, client_id, split: str) -> dict:
        train, ev = self.splits[client_id]
        return train if split == "train" else ev


def as_federated_data(obj, **kw) -> FederatedData:
    """``obj`` as a `FederatedData`: itself, a pandas DataFrame (`from_dataframe`), a TFF
    ``ClientData`` (`from_tff`), a LEAF dict (`from_leaf`), or a path to a parquet/CSV file or
    to LEAF JSON (by its extension; a directory is read as LEAF)."""
    import pandas as pd

    if isinstance(obj, FederatedData):
        return obj
    if isinstance(obj, pd.DataFrame):
        return FederatedData.from_dataframe(obj, **kw)
    if hasattr(obj, "client_ids") and hasattr(obj, "create_tf_dataset_for_client"):
        return FederatedData.from_tff(obj, **kw)
    if isinstance(obj, Mapping) and "user_data" in obj:
        return FederatedData.from_leaf(obj, **kw)
    if isinstance(obj, (str, Path)):
        p = Path(obj)
        if p.is_dir() or p.suffix == ".json":
            return FederatedData.from_leaf(p, **kw)
        return FederatedData.from_file(p, **kw)
    raise TypeError(f"data must be a fedpop.FederatedData, a pandas DataFrame, a TFF ClientData, LEAF JSON or a "
                    f"parquet/CSV path, not {type(obj).__name__}")


def _stack(values, column: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == object:  # a column of arrays or lists
        try:
            arr = np.stack([np.asarray(v) for v in values])
        except ValueError as e:
            raise ValueError(f"column {column!r}: its arrays differ in shape ({e})") from None
    return arr


def _table_clients(df, client_column: str, x_columns, y_column: str, split: str) -> dict:
    for col in [client_column, y_column, *(x_columns or [])]:
        if col not in df.columns:
            raise ValueError(f"{split} table has no column {col!r} (columns: {', '.join(map(str, df.columns))})")
    xs = list(x_columns) if x_columns else [c for c in df.columns if c not in (client_column, y_column)]
    if not xs:
        raise ValueError(f"{split} table has no feature column besides {client_column!r} and {y_column!r}")
    out = {}
    for cid, rows in df.groupby(client_column, sort=False):
        x = _stack(rows[xs[0]].tolist(), xs[0]) if len(xs) == 1 else rows[xs].to_numpy()
        if len(xs) == 1 and x.ndim == 1:
            x = x[:, None]
        y = _stack(rows[y_column].tolist(), y_column)
        out[cid.item() if isinstance(cid, np.generic) else cid] = {"x": x, "y": _narrow(y)}
    if not out:
        raise ValueError(f"the {split} table has no rows")
    return out


def _narrow(y: np.ndarray) -> np.ndarray:
    return y.astype(np.float32) if y.dtype == np.float64 else y


def _read_table(path) -> "object":
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise ValueError(f"data file {p} does not exist")
    if p.suffix in (".parquet", ".pq") or p.is_dir():
        return pd.read_parquet(p)
    if p.suffix in (".csv", ".tsv"):
        return pd.read_csv(p, sep="\t" if p.suffix == ".tsv" else ",")
    raise ValueError(f"data file {p}: unknown table format {p.suffix!r} (allowed: .parquet, .pq, .csv, .tsv)")


def _leaf_clients(src, split: str) -> dict:
    if isinstance(src, Mapping):
        blobs = [("<dict>", src)]
    else:
        p = Path(src)
        files = sorted(p.glob("*.json")) if p.is_dir() else [p]
        if not files or not all(f.exists() for f in files):
            raise ValueError(f"LEAF {split} data: no JSON file at {p}")
        blobs = [(str(f), json.loads(f.read_text())) for f in files]
    out = {}
    for where, blob in blobs:
        missing = [k for k in ("users", "user_data") if k not in blob]
        if missing:
            raise ValueError(f"LEAF {split} data {where}: missing key(s) {', '.join(missing)} "
                             "(expected users, num_samples, user_data)")
        counts = blob.get("num_samples", [None] * len(blob["users"]))
        for user, n in zip(blob["users"], counts):
            d = blob["user_data"].get(user)
            if d is None:
                raise ValueError(f"LEAF {split} data {where}: user {user!r} has no user_data")
            x, y = _stack(d["x"], "x"), _narrow(_stack(d["y"], "y"))
            if n is not None and int(n) != len(y):
                raise ValueError(f"LEAF {split} data {where}: user {user!r} has num_samples {n} but {len(y)} examples")
            out[user] = {"x": x, "y": y}
    return out


def _tff_clients(client_data, x_key: str, y_key: str, split: str) -> dict:
    out = {}
    for cid in client_data.client_ids:
        xs, ys = [], []
        for el in client_data.create_tf_dataset_for_client(cid).as_numpy_iterator():
            if isinstance(el, Mapping):
                if x_key not in el or y_key not in el:
                    raise ValueError(f"TFF {split} data, client {cid!r}: an element has keys {sorted(el)}, not "
                                     f"{x_key!r} and {y_key!r} (set x_key / y_key)")
                xs.append(el[x_key])
                ys.append(el[y_key])
            else:
                xs.append(el[0])
                ys.append(el[1])
        if xs:
            out[cid] = {"x": np.stack(xs), "y": _narrow(np.stack(ys))}
        else:
            out[cid] = None
    if split == "train":
        empty = [c for c, d in out.items() if d is None]
        if empty:
            raise ValueError(f"TFF train data: client {empty[0]!r} has no examples")
    return {c: d for c, d in out.items() if d is not None}


def _complete(train: dict, ev: dict | None) -> dict | None:
    """The eval mapping with an empty split for every training client it lacks."""
    if ev is None:
        return None
    return {cid: ev.get(cid) or {k: np.asarray(v)[:0] for k, v in d.items()} for cid, d in train.items()}


def _import(path: str):
    """The loader ``"module:function"`` names (a ValueError naming it if it cannot be found)."""
    from fl.registry import import_path

    return import_path(path, "data loader")
