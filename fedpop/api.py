"""`build_process`: a task, a config and optionally a user's federated dataset become a
process with ``initialize()`` / ``next(state)`` / ``evaluate(state)`` (``tff.learning``'s
shape), running on a pool of Ray workers that a ``with`` block starts and stops."""
from __future__ import annotations

import inspect
from pathlib import Path

import pandas as pd
import yaml

from fl.config import Config, ConfigError, load_config


def _nested(flat: dict) -> dict:
    """{"cohort.goal": 10, "client": {"lr": 0.1}} -> {"cohort": {"goal": 10}, "client": {"lr": 0.1}}."""
    out: dict = {}
    for key, value in flat.items():
        parts = str(key).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config key {key!r} conflicts with a value given for {p!r}")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return out


def make_config(task=None, config=None, data=None, algorithm=None) -> Config:
    """A validated `Config` from None, a dict (nested sections and/or dotted keys), a YAML
    path or a `Config`; ``task`` (a class, registered name or import path), ``data``
    (a `FederatedData`: it fixes the population's size and example counts) and ``algorithm``
    (a `fedpop.Algorithm`, or a name) are folded in."""
    if config is None:
        raw = {}
    elif isinstance(config, Config):
        raw = config.to_dict()
    elif isinstance(config, (str, Path)):
        from fl.config import read_yaml, resolve_data_paths

        raw = resolve_data_paths(read_yaml(config), Path(config).parent)
    elif isinstance(config, dict):
        raw = _nested(config)
    else:
        raise ConfigError(f"config must be a dict, a YAML path or a fedpop.Config, not {type(config).__name__}")
    raw = {k: dict(v) if isinstance(v, dict) else v for k, v in raw.items()}
    if isinstance(task, str):
        raw.setdefault("experiment", {})["task"] = task
    if data is not None:
        raw.setdefault("population", {}).update(data.population_overrides())
    if isinstance(algorithm, str):
        raw.setdefault("client", {})["algorithm"] = algorithm
    return load_config(raw, task=task if inspect.isclass(task) else None,
                       algorithm=None if isinstance(algorithm, str) else algorithm)


def _algorithm(algorithm):
    """An `Algorithm` instance (a class is instantiated), a name, or None."""
    from fl.algorithms import Algorithm

    if inspect.isclass(algorithm) and issubclass(algorithm, Algorithm):
        return algorithm()
    if algorithm is None or isinstance(algorithm, (str, Algorithm)):
        return algorithm
    raise ConfigError(f"algorithm must be a fedpop.Algorithm, its class or a name, not {type(algorithm).__name__}")


def _chain(aggregator):
    """A chain of aggregator pieces (a tuple) from one piece or a list of them; None stays None."""
    if aggregator is None:
        return None
    chain = tuple(aggregator) if isinstance(aggregator, (list, tuple)) and not hasattr(aggregator, "_fields") \
        else (aggregator,)
    from fl.aggregators import check_chain

    try:
        check_chain(chain)
    except ValueError as e:
        raise ConfigError(f"bad value for 'aggregator': {e}") from None
    return chain


def build_process(task, config=None, *, data=None, algorithm=None, aggregator=None, callbacks=(),
                  progress: bool = True) -> "Process":
    """The federated training process for ``task`` (a `fedpop.Task` subclass, a registered
    name such as "charlm", or "package.module:Class") under ``config``.

    ``data``: a `fedpop.FederatedData`, or what `FederatedData` reads (a pandas DataFrame with
    a ``client_id`` column, a TFF ``ClientData``, LEAF JSON, a parquet/CSV path); else the
    config's ``data`` section, if any. It defines the population (one device per client).
    ``algorithm``: a `fedpop.Algorithm` (or its class, or a registered name) in place of
    ``client.algorithm``. ``aggregator``: a chain of aggregator pieces in place of the
    ``aggregator`` section's chain: wrappers (``inner -> Aggregator``) in the order an update
    meets them, then a reduction (an `Aggregator`); registered names may be mixed in.
    ``callbacks``: `fedpop.Callback` objects called after every ``next``.  ``progress``: a
    progress bar over ``experiment.rounds`` (`tqdm.auto`: a widget in notebooks), as the CLI
    shows; pass False to turn it off.
    Use it as a context manager (``with build_process(...) as process:``) or call
    ``start()`` / ``close()``.  Bad config keys or a task missing a required method raise
    `fedpop.ConfigError` here, before anything starts."""
    from fl.callbacks import ProgressBar
    from fl.data import FederatedData, as_federated_data
    from fl.task import TaskError, check_task, resolve_task

    if data is not None:
        try:
            data = as_federated_data(data)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bad data: {e}") from None
    algorithm, chain = _algorithm(algorithm), _chain(aggregator)
    cfg = make_config(task, config, data, algorithm)
    if data is None and cfg.data.format != "none":  # read here: a bad file fails before anything starts
        try:
            data = FederatedData.from_config(cfg.data, cfg.experiment.seed)
        except (ValueError, OSError) as e:
            raise ConfigError(f"bad value for 'data': {e}") from None
        cfg = make_config(task, cfg, data, algorithm)
    try:
        check_task(resolve_task(task if task is not None else cfg.experiment.task), needs_data=data is None)
    except TaskError as e:
        raise ConfigError(f"bad value for 'experiment.task': {e}") from None
    if progress and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks = (*callbacks, ProgressBar(cfg.experiment.rounds))
    algorithm = None if isinstance(algorithm, str) else algorithm  # (a name is in cfg)
    return Process(cfg, task if inspect.isclass(task) else None, data, callbacks, algorithm, chain)


class Process:
    """``initialize()`` -> state; ``next(state)`` -> (state, round metrics); ``evaluate(state)``
    -> federated-evaluation metrics.  ``rounds`` and ``clients`` hold every round so far as the
    DataFrames the CLI writes (rounds.parquet, clients.parquet)."""

    def __init__(self, cfg: Config, task_cls, data, callbacks=(), algorithm=None, aggregator=None):
        from fl.callbacks import Recorder

        self.cfg, self._task_cls, self.data = cfg, task_cls, data
        self._algorithm, self._aggregator = algorithm, aggregator
        self._recorder = Recorder()
        self.callbacks = [self._recorder, *callbacks]
        self._engine = self._process = None
        self._begun, self._last_state = False, None
        self.should_stop = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "Process":
        from fl.runner import engine

        if self._process is None:
            self._engine = engine(self.cfg, self._task_cls, self.data, self._algorithm, self._aggregator)
            self._process = self._engine.__enter__()
        return self

    def close(self) -> None:
        if self._process is not None:
            try:
                for cb in self.callbacks if self._begun else ():
                    cb.on_train_end(self, self._last_state)
            finally:
                self._engine.__exit__(None, None, None)
                self._engine = self._process = None

    def __enter__(self) -> "Process":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def engine(self):
        """The underlying `fl.process.FederatedProcess` (started on first use)."""
        return self.start()._process

    # -- tff.learning-shaped process ------------------------------------------------------
    def initialize(self, weights=None):
        """Round-0 server state: the task model's initial weights, or ``weights`` (flat float32)."""
        return self.engine.initialize(weights)

    def next(self, state):
        """Run one round: returns (new state, the round's metrics dict)."""
        if not self._begun:
            self._begun = True
            for cb in self.callbacks:
                cb.on_train_begin(self, state)
        new_state, output = self.engine.next(state)
        self._last_state = new_state
        if any([cb.on_round_end(self, new_state, output) for cb in self.callbacks]):
            self.should_stop = True
        return new_state, output.metrics

    def evaluate(self, state) -> dict:
        """Federated evaluation of ``state`` on a fresh cohort's held-out data."""
        return self.engine.evaluate(state)

    def run(self, rounds: int | None = None, state=None):
        """``initialize`` (unless ``state`` is given) and ``next`` until ``experiment.rounds``
        (or ``rounds``) or until a callback asks to stop; returns the final state."""
        state = self.initialize() if state is None else state
        total = self.cfg.experiment.rounds if rounds is None else rounds
        while state.round < total and not self.should_stop:
            state, _ = self.next(state)
        return state

    # -- results ---------------------------------------------------------------------------
    @property
    def rounds(self) -> pd.DataFrame:
        h = self._recorder.history
        return h.rounds_frame() if h is not None else pd.DataFrame()

    @property
    def clients(self) -> pd.DataFrame:
        h = self._recorder.history
        df = h.clients if h is not None else pd.DataFrame()
        if self.data is not None and len(df):
            df = df.assign(client_id=[self.data.client_ids[int(d)] for d in df["device_id"]])
        return df

    def status_summary(self) -> str:
        """What the CLI prints at the end of a run: rounds with and without an update, devices per
        status, and the first error of each kind with its device id and the last traceback frames
        (the full tracebacks are in ``clients["traceback"]``)."""
        from fl.results import console_summary

        return console_summary(self.clients, self.rounds)

    @property
    def coverage(self) -> pd.DataFrame:
        """One row per device trained so far (its report accepted in a round that updated the
        model): ``device_id``, ``rounds`` (how many such rounds), and ``client_id`` with a
        federated dataset. ``process.rounds["clients_trained"]`` counts them round by round."""
        h = self._recorder.history
        df = h.coverage() if h is not None else pd.DataFrame({"device_id": [], "rounds": []})
        if self.data is not None and len(df):
            df = df.assign(client_id=[self.data.client_ids[int(d)] for d in df["device_id"]])
        return df

    @property
    def population(self) -> pd.DataFrame:
        """The simulated devices' traits (one row per device). Built from the config when no
        engine runs (e.g. after the ``with`` block), so reading it starts nothing.  Traits are
        computed per device id (fl/population.py): up to 1,000,000 devices every device is
        listed; a larger population gives an evenly spaced sample of 1,000,000 device ids
        (``df.attrs["sample"]`` says so)."""
        if self._process is not None:
            return self._process.population.frame()
        from fl.population import Population

        sizes = None if self.data is None else self.data.sizes
        return Population.build(self.cfg.population, self.cfg.experiment.seed, num_examples=sizes).frame()

    def model(self, state):
        """The task's Keras model holding ``state``'s weights (built in this process)."""
        from fl.task import make_task, model_with_weights

        task = make_task(self._task_cls or self.cfg.experiment.task, self.cfg.task, self.cfg.experiment.seed)
        return model_with_weights(task, state.weights)
