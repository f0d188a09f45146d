"""A user's own federated dataset, the way TFF's ``ClientData`` holds one.

`FederatedData` defines the population when it is given: device ``i`` is client
``client_ids[i]``, its example count is that client's training-set size, and the
simulated availability, dropout and clock still apply on top (fl/population.py).

Two constructors:

- `FederatedData.from_clients` -- a mapping ``client id -> {"x": array, "y": array}``
  (plus an optional mapping for evaluation, else a deterministic held-out fraction);
- `FederatedData.from_function` -- ``fn(client_id, split) -> {"x", "y"}`` and the clients'
  training sizes, for datasets too large to hold in memory (the function runs on the workers).
"""
from __future__ import annotations

from dataclasses import dataclass
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
