"""Drive a training run: Ray, population, worker pool, process, checkpoints, outputs."""
from __future__ import annotations

import dataclasses
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import ray
import yaml

from fl import checkpoint
from fl.callbacks import Checkpointer, ProgressBar, Recorder, TensorBoard, run_rounds
from fl.config import Config, ConfigError, load_config
from fl.pool import WorkerPool, start_ray, stop_ray
from fl.population import Population
from fl.process import FederatedProcess, ServerState
from fl.results import RunRecorder

log = logging.getLogger("fedpop")


@contextmanager
def engine(cfg: Config, task: type | None = None, data=None, algorithm=None, aggregator=None):
    """Ray + population + worker pool + process; tears down what it started.

    ``task``: the task class when given from Python (else ``experiment.task`` names it);
    ``data``: a user's `fl.data.FederatedData` (else the config's ``data`` section, if any),
    which then defines the population; ``algorithm`` / ``aggregator``: a `fl.algorithms.Algorithm`
    and an aggregator chain given from Python (else the config names them).  The task and the
    data are checked before anything starts; the process's ``cfg`` has the population size and
    example range of the data."""
    from fl.data import FederatedData
    from fl.task import TaskError, check_task, resolve_task

    if data is None and cfg.data.format != "none":
        try:
            data = FederatedData.from_config(cfg.data, cfg.experiment.seed)
        except (ValueError, OSError) as e:
            raise ConfigError(f"bad value for 'data': {e}") from None
        cfg = dataclasses.replace(cfg, population=dataclasses.replace(cfg.population, **data.population_overrides()))
    try:
        check_task(resolve_task(task or cfg.experiment.task), needs_data=data is None)
    except TaskError as e:
        raise ConfigError(f"bad value for 'experiment.task': {e}") from None
    if data is not None and len(data) != cfg.population.size:
        raise ConfigError(f"bad value for 'population.size': {cfg.population.size}, but the federated dataset "
                          f"has {len(data)} clients (allowed: {len(data)})")
    started = not ray.is_initialized()
    start_ray(cfg.workers.ray_address, cfg.workers.object_store_mb)
    pool, process = None, None
    try:
        t = time.perf_counter()
        population = Population.build(cfg.population, cfg.experiment.seed,
                                      num_examples=None if data is None else data.sizes)
        build_s = time.perf_counter() - t
        pool = WorkerPool(cfg.to_dict(), cfg.workers.num, cfg.workers.cpus_per_worker, task_cls=task, data=data,
                          retry_crashed=cfg.workers.retry_crashed, algorithm=algorithm, aggregator=aggregator)
        process = FederatedProcess(cfg, pool, population, algorithm=algorithm, aggregator=aggregator)
        process.population_build_s = build_s
        process.data = data
        yield process
    finally:
        if process is not None:
            process.close()
        if pool is not None:
            pool.shutdown()
        if started:
            stop_ray()


def resolve_resume(out_dir: Path, overrides: list[str] | None) -> Config:
    """The config a resumed run continues with: the saved one plus new overrides."""
    saved = out_dir / "config.yaml"
    if not saved.exists():
        raise ConfigError(f"cannot resume: {saved} does not exist")
    return load_config(yaml.safe_load(saved.read_text()), overrides)


def train(process: FederatedProcess, out_dir: str | Path, progress: bool = True,
          initial_weights=None, callbacks=()) -> tuple[ServerState, RunRecorder]:
    """Run rounds until `experiment.rounds`, continuing from a checkpoint in out_dir if present
    (else from `initial_weights`: an array, or a callable run only when starting fresh;
    None = the task model's own initialization).  Each round is recorded, written to
    TensorBoard, checkpointed and shown on a progress bar by callbacks (fl/callbacks.py); ``callbacks`` adds the caller's
    own after those (e.g. `EarlyStopping`).  Device state (stateful algorithms) lives in
    ``out_dir/device_state`` and resumes with the checkpoint."""
    cfg = process.cfg
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = checkpoint.load(out_dir)
    process.use_state_dir(out_dir / "device_state", fresh=state is None)
    if state is None:
        state = process.initialize(initial_weights() if callable(initial_weights) else initial_weights)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    else:
        log.info("resuming %s from round %d", out_dir, state.round)
    recorder = Recorder(out_dir)
    standard = [recorder, TensorBoard(out_dir / "tensorboard"), Checkpointer(out_dir)]
    if progress:
        standard.append(ProgressBar(cfg.experiment.rounds, cfg.experiment.name))
    state = run_rounds(process, state, cfg.experiment.rounds, standard + list(callbacks))
    return state, recorder.history
