"""On-disk cache of per-device data shared by workers; corrupt entries are rebuilt.

Each entry is an .npz written atomically (temp file + rename) with a checksum of its
arrays; a file that fails to load or whose checksum differs is regenerated.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fedpop"


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class DeviceCache:
    """get_or_make(key, make) -> dict of arrays, cached under `root/namespace/key.npz`,
    with a bounded in-memory LRU in front (a worker sees the same devices again in later rounds)."""

    def __init__(self, root: str | os.PathLike | None, namespace: str, memory_mb: float = 256):
        self.dir = Path(root or default_cache_dir()) / namespace
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rebuilt = 0
        self._memory: OrderedDict[str, dict] = OrderedDict()
        self._memory_bytes, self._memory_cap = 0, int(memory_mb * 2**20)

    @staticmethod
    def _footprint(key: str, arrays: dict) -> int:
        """Bytes an entry holds: its arrays' data plus the Python objects around them (an
        ndarray header ~112 B, the dict, the key), which dominate for small devices."""
        return sum(a.nbytes + 112 for a in arrays.values()) + 232 + 64 * len(arrays) + len(key) + 49

    def _remember(self, key: str, arrays: dict) -> None:
        size = self._footprint(key, arrays)
        if size > self._memory_cap:
            return
        self._memory[key] = arrays
        self._memory_bytes += size
        while self._memory_bytes > self._memory_cap:
            old_key, old = self._memory.popitem(last=False)
            self._memory_bytes -= self._footprint(old_key, old)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        p = self.path(key)
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "__sha256__"}
                stored = str(z["__sha256__"])
            if stored == _digest(arrays):
                return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            pass
        self.rebuilt += 1  # corrupt or truncated: fall through and rebuild
        return None

    def store(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, __sha256__=np.array(_digest(arrays)), **arrays)
            os.replace(tmp, self.path(key))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def get_or_make(self, key: str, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        arrays = self.load(key)
        if arrays is None:
            arrays = make()
            self.store(key, arrays)
        self._remember(key, arrays)
        return arrays
