"""Callbacks the round loop calls (the pfl-research habit): recording, checkpoints, progress,
early stopping, or a user's own logging, instead of a loop that hard-wires them.

A callback overrides any of three hooks.  ``on_round_end`` returning True stops the run
after that round (the state is consistent: it was checkpointed by then if a
`Checkpointer` runs before it in the list).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path


class Callback:
    def on_train_begin(self, process, state) -> None:
        pass

    def on_round_end(self, process, state, output) -> bool | None:
        """After round ``state.round - 1``; ``output.metrics`` / ``output.clients`` describe it."""
        return None

    def on_train_end(self, process, state) -> None:
        pass


class Recorder(Callback):
    """Keeps rounds and client rows (fl.results.History), and with ``out_dir`` writes
    rounds.parquet and clients.parquet after every round."""

    def __init__(self, out_dir: str | Path | None = None):
        self.out_dir, self.history = out_dir, None

    def on_train_begin(self, process, state):
        from fl.results import History, RunRecorder

        if self.history is None:
            self.history = RunRecorder(self.out_dir, start_round=state.round) if self.out_dir else History()

    def on_round_end(self, process, state, output):
        self.history.add_round(output.metrics, output.clients)


class TensorBoard(Callback):
    """Every round's numeric metrics as TensorBoard scalars in ``log_dir``."""

    def __init__(self, log_dir: str | Path):
        self.log_dir, self.writer = Path(log_dir), None

    def on_train_begin(self, process, state):
        from fl.results import TensorBoardWriter

        self.writer = TensorBoardWriter(self.log_dir)

    def on_round_end(self, process, state, output):
        self.writer.scalars(int(output.metrics["round"]), output.metrics)

    def on_train_end(self, process, state):
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Checkpointer(Callback):
    """Saves the server state to ``out_dir/checkpoint.npz`` after every round (atomic)."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)

    def on_round_end(self, process, state, output):
        from fl import checkpoint

        checkpoint.save(self.out_dir, state)


class ProgressBar(Callback):
    """A tqdm bar over the rounds, with the round's loss, report counts and distinct clients
    trained so far (the process itself warns about rounds without an update, once per cause)."""

    def __init__(self, total: int, desc: str = "rounds"):
        self.total, self.desc, self.bar = total, desc, None

    def on_train_begin(self, process, state):
        from tqdm.auto import tqdm  # a widget in notebooks, text in a terminal

        self.bar = tqdm(total=self.total, initial=state.round, desc=self.desc, unit="round", file=sys.stderr,
                        dynamic_ncols=True)

    def on_round_end(self, process, state, output):
        m = output.metrics
        self.bar.set_postfix(loss=f"{m['train_loss']:.3f}", ok=m["accepted"], drop=m["dropped"],
                             **({"clients": m["clients_trained"]} if "clients_trained" in m else {}))
        self.bar.update(1)

    def on_train_end(self, process, state):
        if self.bar is not None:
            self.bar.close()


class EarlyStopping(Callback):
    """Stop when ``monitor`` (a round metric, e.g. eval_loss) has not improved by more than
    ``min_delta`` for ``patience`` of the rounds that report it."""

    def __init__(self, monitor: str = "eval_loss", patience: int = 3, mode: str = "min", min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"EarlyStopping mode must be 'min' or 'max', got {mode!r}")
        self.monitor, self.patience, self.sign, self.min_delta = monitor, patience, (1 if mode == "min" else -1), min_delta
        self.best, self.waited, self.stopped_round = math.inf, 0, None

    def on_round_end(self, process, state, output):
        value = output.metrics.get(self.monitor)
        if value is None or not math.isfinite(value):
            return None
        if self.sign * value < self.best - self.min_delta:
            self.best, self.waited = self.sign * value, 0
            return None
        self.waited += 1
        if self.waited >= self.patience:
            self.stopped_round = state.round - 1
            return True
        return None


class Lambda(Callback):
    """A callback from a function ``fn(process, state, output)`` called after every round."""

    def __init__(self, on_round_end):
        self._fn = on_round_end

    def on_round_end(self, process, state, output):
        return self._fn(process, state, output)


def run_rounds(process, state, rounds: int, callbacks=()):
    """Call ``process.next`` until ``state.round == rounds`` or a callback asks to stop."""
    callbacks = list(callbacks)
    for cb in callbacks:
        cb.on_train_begin(process, state)
    try:
        while state.round < rounds:
            state, output = process.next(state)
            stop = [cb.on_round_end(process, state, output) for cb in callbacks]
            if any(stop):
                break
    finally:
        for cb in callbacks:
            cb.on_train_end(process, state)
    return state
