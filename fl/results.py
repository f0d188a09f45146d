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
from pathlib import Path

import numpy as np
import pandas as pd

# phase: "train" (a training round's cohort) or "eval" (federated evaluation after that round);
# personalized_*: the device's own model (ditto, fedper) on its held-out data, eval rows only
CLIENT_COLUMNS = ["round", "device_id", "status", "examples", "loss", "accuracy", "error", "compute_s", "phase",
                  "personalized_loss", "personalized_accuracy"]


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
    """Rounds and client rows in memory, as the DataFrames the CLI writes to parquet."""

    def __init__(self):
        self.rounds: list[dict] = []
        self._client_parts: list[pd.DataFrame] = []
        self._clients: pd.DataFrame | None = None

    def add_round(self, metrics: dict, clients: list[dict]) -> pd.DataFrame:
        self.rounds.append(metrics)
        new = pd.DataFrame(clients).reindex(columns=CLIENT_COLUMNS)
        self._client_parts.append(new)
        self._clients = None
        return new

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
        for part in sorted(self.clients_dir.glob("round-*.parquet")):
            if int(part.stem.split("-")[1]) >= start_round:
                part.unlink()  # written after the checkpoint: the resumed run redoes that round
            else:
                self._client_parts.append(pd.read_parquet(part))

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
                ax.plot(d["round"] + 1, d[name], style, label=split)
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("federated training")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
