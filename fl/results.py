"""Run outputs: rounds.parquet, clients.parquet, summary.json, a PNG curve (and the
TensorBoard event writer that the `fl.callbacks.TensorBoard` callback uses).

`rounds.parquet` is rewritten atomically after every round (one row per round);
`clients.parquet` is a parquet dataset directory with one part file per round, so each
round writes O(cohort) rows however long the run. Both load straight into pandas
(`pd.read_parquet(DIR / "clients.parquet")`) and always match the checkpoint.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

# phase: "train" (a training round's cohort) or "eval" (federated evaluation after that round);
# status: accepted, dropped, straggler, failed, rejected (a non-finite update), nonfinite (an
# evaluation with a NaN/Inf loss or metric, left out of the round's evaluation);
# error: one line; traceback: the failing device's Python traceback ("" when none);
# personalized_*: the device's own model (ditto, fedper) on its held-out data, eval rows only
CLIENT_COLUMNS = ["round", "device_id", "status", "examples", "loss", "accuracy", "error", "compute_s", "phase",
                  "personalized_loss", "personalized_accuracy", "traceback"]


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.parent / f".{path.name}.tmp"  # hidden: parquet dataset readers skip it
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def write_json(obj, path: Path) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=2, sort_keys=True))
    os.replace(tmp, path)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


class TensorBoardWriter:
    """Scalar events in TensorBoard's event-file format, written with TensorBoard's record
    writer and protos only: TensorBoard's own EventFileWriter imports TensorFlow when it is
    installed (~600 MB in the coordinator), this does not."""

    def __init__(self, log_dir: Path):
        import os
        import socket

        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{id(self)}"
        self._writer = RecordWriter(open(log_dir / name, "wb"))
        self._writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())

    def scalars(self, step: int, values: dict) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        vals = [summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()
                if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and math.isfinite(float(v))]
        self._writer.write(event_pb2.Event(wall_time=time.time(), step=step,
                                           summary=summary_pb2.Summary(value=vals)).SerializeToString())
        self._writer.flush()

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()


class History:
    """Rounds and client rows in memory, as the DataFrames the CLI writes to parquet.

    Coverage: a device counts as trained in a round when its report was accepted in a round
    that updated the model; each round's ``clients_trained`` is the number of distinct
    devices trained so far, and `coverage` gives the rounds each device was trained in."""

    def __init__(self):
        self.rounds: list[dict] = []
        self._client_parts: list[pd.DataFrame] = []
        self._clients: pd.DataFrame | None = None
        self._trained: Counter = Counter()

    def add_round(self, metrics: dict, clients: list[dict]) -> pd.DataFrame:
        new = pd.DataFrame(clients).reindex(columns=CLIENT_COLUMNS)
        new["traceback"] = new["traceback"].fillna("").astype(str)
        self._tally(new, bool(metrics.get("updated", True)))
        metrics["clients_trained"] = len(self._trained)
        self.rounds.append(metrics)
        self._client_parts.append(new)
        self._clients = None
        return new

    def _tally(self, part: pd.DataFrame, updated: bool) -> None:
        if updated and len(part):
            trained = part[(part["phase"] == "train") & (part["status"] == "accepted")]
            self._trained.update(int(d) for d in trained["device_id"])

    def coverage(self) -> pd.DataFrame:
        """One row per device trained at least once: ``device_id`` and ``rounds`` (how many
        updating rounds accepted its report), by device id."""
        ids = sorted(self._trained)
        return pd.DataFrame({"device_id": np.asarray(ids, np.int64),
                             "rounds": np.asarray([self._trained[d] for d in ids], np.int64)})

    def coverage_summary(self, population: int) -> dict:
        """Distinct devices trained, their share of the population, and rounds per trained device."""
        rounds = np.asarray(list(self._trained.values()), np.float64)
        per = ({"min": int(rounds.min()), "median": float(np.median(rounds)), "mean": float(rounds.mean()),
                "max": int(rounds.max())} if len(rounds) else {"min": 0, "median": 0.0, "mean": 0.0, "max": 0})
        return {"clients_trained": len(self._trained), "population": int(population),
                "fraction_trained": len(self._trained) / max(int(population), 1), "rounds_per_client": per}

    @property
    def clients(self) -> pd.DataFrame:
        """All client rows so far (concatenated lazily)."""
        if self._clients is None:
            parts = [p for p in self._client_parts if not p.empty]
            self._clients = (pd.concat(parts, ignore_index=True) if parts
                             else pd.DataFrame(columns=CLIENT_COLUMNS))
        return self._clients

    def rounds_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rounds)


class RunRecorder(History):
    """`History` that also writes the run directory after every round."""

    def __init__(self, out_dir: str | os.PathLike, start_round: int = 0):
        super().__init__()
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clients_dir = self.dir / "clients.parquet"
        self.clients_dir.mkdir(exist_ok=True)
        if start_round > 0:  # resuming: keep exactly the rounds the checkpoint covers
            self.rounds = [r for r in pd.read_parquet(self.dir / "rounds.parquet").to_dict("records")
                           if r["round"] < start_round]
        updated = {int(r["round"]): bool(r.get("updated", True)) for r in self.rounds}
        for part in sorted(self.clients_dir.glob("round-*.parquet")):
            r = int(part.stem.split("-")[1])
            if r >= start_round:
                part.unlink()  # written after the checkpoint: the resumed run redoes that round
            else:
                df = pd.read_parquet(part)
                self._client_parts.append(df)
                self._tally(df, updated.get(r, True))

    def add_round(self, metrics: dict, clients: list[dict]) -> pd.DataFrame:
        new = super().add_round(metrics, clients)
        _write_parquet(new, self.clients_dir / f"round-{int(metrics['round']):06d}.parquet")
        _write_parquet(self.rounds_frame(), self.dir / "rounds.parquet")
        return new

    def finish(self, summary: dict) -> None:
        write_json(summary, self.dir / "summary.json")
        plot_training_curve(self.rounds_frame(), self.dir / "training_curve.png")


def plot_training_curve(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for col, ax, label in (("loss", axes[0], "loss"), ("accuracy", axes[1], "accuracy")):
        for split, style in (("train", "-"), ("eval", "o-")):
            name = f"{split}_{col}"
            if name in df and df[name].notna().any():
                d = df[df[name].notna()]
                ax.plot(d["round"], d[name], style, label=split)  # rounds numbered as in the tables
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle("federated training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def error_kind(error: str) -> str:
    """Errors of one kind share their text up to numbers (device ids, shapes, rounds)."""
    import re

    return re.sub(r"\d+", "N", str(error).splitlines()[0] if error else "")[:200]


def last_frames(tb: str, frames: int = 3, message_lines: int = 5) -> str:
    """A traceback's innermost ``frames`` (file, line, code) and the first lines of its exception."""
    rows = [r for r in str(tb or "").rstrip().splitlines() if r.strip() and set(r.strip()) - set("^~")]
    starts = [i for i, r in enumerate(rows) if r.lstrip().startswith("Traceback (most recent call last)")]
    rows = rows[starts[-1] + 1:] if starts else rows
    frame_at = [i for i, r in enumerate(rows) if r.startswith("  File ")]
    if not frame_at:
        return "\n".join(rows[:message_lines])
    end = next((i for i in range(frame_at[-1] + 1, len(rows)) if not rows[i].startswith(" ")), len(rows))
    kept = rows[frame_at[max(len(frame_at) - frames, 0)]:end]
    return "\n".join(kept + rows[end:end + message_lines])


def console_summary(clients: pd.DataFrame, rounds: pd.DataFrame | None = None, frames: int = 3) -> str:
    """What a run's console shows at its end: devices per status (training and evaluation),
    rounds without an update, and the first error of each distinct kind with its device id,
    round and the last frames of its traceback."""
    out = []
    if rounds is not None and len(rounds) and "updated" in rounds:
        updated = rounds["updated"].astype(bool)
        out.append(f"rounds: {len(rounds)}, with an update: {int(updated.sum())}, without: {int((~updated).sum())}")
    if clients is None or not len(clients):
        out.append("devices: none ran")
        return "\n".join(out)
    for phase in ("train", "eval"):
        rows = clients[clients["phase"] == phase] if "phase" in clients else clients
        if len(rows):
            counts = rows["status"].value_counts()
            out.append(f"{phase} devices per status: " + ", ".join(f"{s} {int(n)}" for s, n in counts.items()))
    errs = clients[clients["error"].fillna("").astype(str) != ""] if "error" in clients else clients.iloc[:0]
    if len(errs):
        kinds = errs.assign(kind=errs["error"].map(error_kind))
        out.append("errors (the first of each kind):")
        for kind, group in kinds.groupby("kind", sort=False):
            first = group.sort_values(["round", "device_id"], kind="stable").iloc[0]
            out.append(f"- {first['status']} x{len(group)}, first: device {int(first['device_id'])} in round "
                       f"{int(first['round'])} ({first.get('phase', 'train')}): {str(first['error']).splitlines()[0]}")
            tb = first.get("traceback", "")
            if isinstance(tb, str) and tb:
                out.append("    " + last_frames(tb, frames).replace("\n", "\n    "))
    return "\n".join(out)
