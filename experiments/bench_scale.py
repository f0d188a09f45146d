"""`fedpop bench scale`: the coordinator's cost at population scale.

1,000,000 devices by default (``--population 1000000000`` for Gboard scale), cohort 1,000
(over-selected 1.3x), a tiny model, full round outputs (parquet tables rewritten every
round). `coordinator_overhead_s_per_round` is the round's wall time minus device compute
(the busiest worker's time inside `DeviceWorker.run`).  The population is lazy
(fl/population.py): `build_s`, the overhead and the peak RSS should not grow with the
population; `population_mb` (bytes it holds) is 0.
"""
from __future__ import annotations

import resource
import statistics
import tempfile
import time
from pathlib import Path

from fl.results import write_json

# the figures at any population size, up to a billion devices (a lazy population)
TARGETS = {"build_s_max": 1.0, "coordinator_overhead_s_per_round_max": 0.1, "coordinator_peak_rss_mb_max": 1024}


def run_bench(out: str, quick: bool = False, cache_dir: str | None = None, population: int | None = None,
              repeats: int = 1) -> dict:
    """``population``: devices (default 1,000,000; 100,000 with ``quick``).  ``repeats`` > 1:
    that many whole runs, each in a fresh process (peak RSS is per process), and the
    figures are their medians with the spread [min, max]; each run is kept under ``runs``."""
    if repeats > 1:
        return _repeated(out, quick, cache_dir, population, repeats)
    from fl.config import load_config
    from fl.population import Population
    from fl.results import RunRecorder
    from fl.runner import engine

    size, goal, rounds = (100_000, 200, 3) if quick else (1_000_000, 1000, 5)
    size = int(population or size)
    raw = {
        "experiment": {"name": "bench-scale", "task": "mlp", "rounds": rounds},
        "population": {"size": size, "examples_min": 20, "examples_max": 20},
        "cohort": {"goal": goal, "over_selection": 1.3, "min_reports": goal // 2, "deadline_s": 600},
        "client": {"batch_size": 10, "lr": 0.05},
        "eval": {"every": 0},
        "task": {"input_dim": 8, "hidden": [4], "classes": 2},
        "workers": {"cache_dir": cache_dir or ""},
    }
    cfg = load_config(raw)
    t = time.perf_counter()
    population_mb = Population.build(cfg.population, cfg.experiment.seed).nbytes() / 2**20
    build_s = time.perf_counter() - t
    print(f"[bench scale] population of {size:,} built in {build_s:.2f}s", flush=True)
    rows = []
    with engine(cfg) as process, tempfile.TemporaryDirectory() as tmp:
        recorder = RunRecorder(Path(tmp))
        state = process.initialize()
        for r in range(rounds):
            t = time.perf_counter()
            state, output = process.next(state)
            recorder.add_round(output.metrics, output.clients)
            wall = time.perf_counter() - t
            m = output.metrics
            rows.append({"round": r, "wall_s": wall, "device_compute_s": m["device_compute_s"],
                         "overhead_s": wall - m["device_compute_s"], "selected": m["selected"],
                         "accepted": m["accepted"]})
            print(f"[bench scale] round {r}: wall {wall:.2f}s, device compute {m['device_compute_s']:.2f}s, "
                  f"accepted {m['accepted']}/{m['selected']}", flush=True)
        workers = len(process.pool)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    import sys
    result = {
        "population": size, "cohort_goal": goal, "rounds": rounds, "workers": workers,
        "build_s": build_s,
        "coordinator_overhead_s_per_round": statistics.median(r["overhead_s"] for r in rows),
        "coordinator_peak_rss_mb": peak_mb,
        "round_wall_s_median": statistics.median(r["wall_s"] for r in rows),
        "population_mb": population_mb,
        "tensorflow_in_coordinator": "tensorflow" in sys.modules,
        "targets": TARGETS,
        "per_round": rows,
    }
    result["headline"] = {k: result[k] for k in ("population", "build_s", "coordinator_overhead_s_per_round",
                                                 "coordinator_peak_rss_mb")}
    result["met"] = _met(result)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result


def _met(result: dict) -> dict:
    t = result["targets"]
    return {"build_s": result["build_s"] <= t["build_s_max"],
            "coordinator_overhead_s_per_round": result["coordinator_overhead_s_per_round"]
            <= t["coordinator_overhead_s_per_round_max"],
            "coordinator_peak_rss_mb": result["coordinator_peak_rss_mb"] <= t["coordinator_peak_rss_mb_max"]}


def _repeated(out: str, quick: bool, cache_dir: str | None, population: int | None, repeats: int) -> dict:
    """(Each run uses the default device-data cache: the bench CLI has no cache option.)"""
    import json
    import os
    import subprocess
    import sys

    from experiments.bench_engine import _median_and_spread

    runs = []
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + (os.pathsep + os.environ["PYTHONPATH"]
                                               if os.environ.get("PYTHONPATH") else "")}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            print(f"[bench scale] run {i + 1} of {repeats} (a fresh process)", flush=True)
            path = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, "-m", "experiments.cli", "bench", "scale", "--out", str(path)]
            cmd += (["--quick"] if quick else []) + (["--population", str(population)] if population else [])
            subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
            runs.append(json.loads(path.read_text()))
    result = {k: runs[0][k] for k in ("population", "cohort_goal", "rounds", "workers", "population_mb",
                                      "tensorflow_in_coordinator", "targets")}
    result["repeats"], result["spread"] = repeats, {}
    for k in ("build_s", "coordinator_overhead_s_per_round", "coordinator_peak_rss_mb", "round_wall_s_median"):
        result[k], result["spread"][k] = _median_and_spread([r[k] for r in runs])
    result["headline"] = {k: result[k] for k in ("population", "build_s", "coordinator_overhead_s_per_round",
                                                 "coordinator_peak_rss_mb")}
    result["met"] = _met(result)
    result["runs"] = runs
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result
