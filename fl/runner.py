"""Drive a training run: Ray, population, worker pool, process, checkpoints, outputs."""
from __future__ import annotations

import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import ray
import yaml

from fl import checkpoint
from fl.config import Config, ConfigError, load_config
from fl.pool import WorkerPool, start_ray
from fl.population import Population
from fl.process import FederatedProcess, ServerState
from fl.results import RunRecorder

log = logging.getLogger("fedpop")


@contextmanager
def engine(cfg: Config):
    """Ray + population + worker pool + process; tears down what it started."""
    started = not ray.is_initialized()
    start_ray(cfg.workers.ray_address, cfg.workers.object_store_mb)
    pool = None
    try:
        t = time.perf_counter()
        population = Population.build(cfg.population, cfg.experiment.seed)
        build_s = time.perf_counter() - t
        pool = WorkerPool(cfg.to_dict(), cfg.workers.num, cfg.workers.cpus_per_worker)
        process = FederatedProcess(cfg, pool, population)
        process.population_build_s = build_s
        yield process
    finally:
        if pool is not None:
            pool.shutdown()
        if started:
            ray.shutdown()


def resolve_resume(out_dir: Path, overrides: list[str] | None) -> Config:
    """The config a resumed run continues with: the saved one plus new overrides."""
    saved = out_dir / "config.yaml"
    if not saved.exists():
        raise ConfigError(f"cannot resume: {saved} does not exist")
    return load_config(yaml.safe_load(saved.read_text()), overrides)


def train(process: FederatedProcess, out_dir: str | Path, progress: bool = True,
          initial_weights=None) -> tuple[ServerState, RunRecorder]:
    """Run rounds until `experiment.rounds`, continuing from a checkpoint in out_dir if present
    (else from `initial_weights`: an array, or a callable run only when starting fresh;
    None = the task model's own initialization)."""
    from tqdm import tqdm

    cfg = process.cfg
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = checkpoint.load(out_dir)
    if state is None:
        state = process.initialize(initial_weights() if callable(initial_weights) else initial_weights)
        (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    else:
        log.info("resuming %s from round %d", out_dir, state.round)
    recorder = RunRecorder(out_dir, start_round=state.round)
    bar = tqdm(total=cfg.experiment.rounds, initial=state.round, desc=cfg.experiment.name, unit="round",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    while state.round < cfg.experiment.rounds:
        state, out = process.next(state)
        recorder.add_round(out.metrics, out.clients)
        checkpoint.save(out_dir, state)
        m = out.metrics
        if m["message"]:
            tqdm.write(f"warning: {m['message']}", file=sys.stderr)
        bar.set_postfix(loss=f"{m['train_loss']:.3f}", ok=m["accepted"], drop=m["dropped"])
        bar.update(1)
    bar.close()
    return state, recorder
