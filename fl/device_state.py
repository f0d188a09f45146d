"""Per-device state that persists across rounds: a personal model, a local head, control variates.

Flower keeps such state in ``NodeState``; pfl-research in its user state.  Here it lives
on disk next to the run's checkpoint, one small .npz per device and round that wrote it,
so memory stays bounded however large the population: only devices that trained hold
anything, and nothing is held in memory between rounds.

Versions make resume exact: a round reads, for each device, the newest version written
by an *earlier* round, so the files a crashed or interrupted round left behind are never
read.  Writing round r keeps the version it replaced (the one a resume at round r needs)
and removes older ones, so a device holds at most two versions.  A version whose device
did not report (dropped, failed, its worker crashed) is discarded by the coordinator with
`discard`: state only advances with an accepted report.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

_VERSION = re.compile(r"^r(\d+)\.npz$")


class DeviceStateStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _dir(self, device_id: int) -> Path:
        d = int(device_id)
        return self.root / f"{d // 1000:06d}" / str(d)

    def _versions(self, device_id: int) -> list[int]:
        try:
            names = os.listdir(self._dir(device_id))
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_VERSION.match, names) if m)

    def load(self, device_id: int, round_num: int) -> dict[str, np.ndarray] | None:
        """The newest state written before ``round_num`` (None: the device has none).
        An unreadable version is skipped in favour of the one before it."""
        for v in reversed([v for v in self._versions(device_id) if v < round_num]):
            try:
                with np.load(self._dir(device_id) / f"r{v}.npz", allow_pickle=False) as z:
                    return {k: z[k] for k in z.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile):
                continue
        return None

    def save(self, device_id: int, round_num: int, arrays: dict[str, np.ndarray]) -> None:
        """Write the state produced in ``round_num`` atomically; prune versions that no
        resume can need (all but the newest one older than ``round_num``)."""
        d = self._dir(device_id)
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, d / f"r{round_num}.npz")
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        older = [v for v in self._versions(device_id) if v < round_num]
        for v in older[:-1]:
            (d / f"r{v}.npz").unlink(missing_ok=True)

    def discard(self, device_id: int, round_num: int) -> None:
        """Forget what ``round_num`` wrote for a device whose report was not accepted."""
        (self._dir(device_id) / f"r{round_num}.npz").unlink(missing_ok=True)

    def devices(self) -> int:
        """How many devices hold state (walks the store; for reports and tests)."""
        return sum(1 for group in self.root.iterdir() if group.is_dir() for _ in group.iterdir())

    def clear(self) -> None:
        for p in self.root.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
