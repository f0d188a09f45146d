"""`fedpop bench soak`: a long run under faults, checked against an undisturbed one.

Default: 1,000,000 devices (``--population 1000000000``: the population is lazy, so a
billion costs the coordinator what a million does), 500 rounds, cohort 200 (with the
population's dropouts), a tiny model, the CLI's full outputs.  Two runs of `fedpop run fedavg` in subprocesses:

  (a) undisturbed;
  (b) disturbed: a worker killed mid-round every ``kill_every`` rounds
      (`faults.kill_worker_every`; the pool replaces it and re-runs its devices) and the
      coordinator SIGKILLed at a random round (seeded), then `fedpop run --resume`.

Each worker's in-memory device-data LRU is set to 8 MB (`workers.cache_memory_mb`; 256 by
default), which fills within the first rounds: a bounded cache filling is growth by design,
and at the default size it would still be filling after 500 rounds of new devices.

Checks: (b)'s final weights and its rounds / clients tables equal (a)'s (every column that
is not a time or a memory reading); the coordinator's and the workers' resident memory,
recorded every round (`coordinator_rss_mb`, `worker_rss_mb` in rounds.parquet), has a
slope over the last 400 rounds of (a) under 5 MB per 100 rounds; no Ray process started by
a run outlives it by more than 10 s (after the SIGKILL too).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fl.results import write_json

# columns that measure time or memory: they differ between any two runs
VOLATILE = ("wall_s", "compute_s", "device_compute_s", "aggregate_s", "secagg_server_s", "rss_mb",
            "coordinator_rss_mb", "worker_rss_mb")


def soak_config(population: int, rounds: int, cohort: int, kill_every: int, seed: int = 0) -> dict:
    return {
        "experiment": {"name": "fedavg", "task": "mlp", "seed": seed, "rounds": rounds},
        "population": {"size": population, "examples_median": 20, "examples_min": 10, "examples_max": 40},
        "cohort": {"goal": cohort, "over_selection": 1.3, "min_reports": max(cohort // 2, 1)},
        "client": {"algorithm": "fedavg", "epochs": 1, "batch_size": 10, "lr": 0.05},
        "server": {"optimizer": "sgd", "lr": 1.0},
        "eval": {"every": 0},
        # a small device-data LRU fills in the first rounds, so growth that is not the cache shows
        "workers": {"num": 2, "cache_memory_mb": 8},
        "faults": {"kill_worker_every": kill_every},
        "task": {"input_dim": 8, "hidden": [4], "classes": 2},
    }


def _ray_pids() -> set[int]:
    """Processes of any Ray cluster on this machine (raylet, GCS, workers, reaper)."""
    import psutil

    out = set()
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            text = " ".join(p.info["cmdline"] or []) + " " + (p.info["name"] or "")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.info["pid"] != os.getpid() and any(k in text for k in ("raylet", "gcs_server", "ray::", "default_worker",
                                                                       "ray/_private", "ray_process_reaper")):
            out.add(p.info["pid"])
    return out


def _wait_gone(pids: set[int], limit_s: float) -> tuple[float, list[int]]:
    """Seconds until every pid in ``pids`` exited (polling up to ``limit_s``), and those left."""
    import psutil

    t = time.perf_counter()
    while True:
        left = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not left or time.perf_counter() - t > limit_s:
            return time.perf_counter() - t, left
        time.sleep(0.2)


def _fedpop(*args: str) -> list[str]:
    return [sys.executable, "-m", "experiments.cli", *args]


def _run_to_end(cmd: list[str], log: Path, before: set[int], limit_s: float = 10.0) -> dict:
    with open(log, "ab") as fh:
        t = time.perf_counter()
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=True, env=_env())
        wall = time.perf_counter() - t
    exit_s, left = _wait_gone(_ray_pids() - before, limit_s + 5)
    return {"wall_s": wall, "ray_exit_s": exit_s, "ray_left": left}


def _env() -> dict:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _rounds_done(out: Path) -> int:
    """Rounds the run in ``out`` has checkpointed (its checkpoint's round)."""
    from fl import checkpoint

    try:
        state = checkpoint.load(out)
    except Exception:  # noqa: BLE001 - a checkpoint being written: try again later
        return 0
    return 0 if state is None else int(state.round)


def _kill_at(cmd: list[str], out: Path, kill_round: int, log: Path, before: set[int], timeout_s: float) -> dict:
    """Start ``cmd``, SIGKILL it once round ``kill_round`` is checkpointed."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=_env())
        t = time.perf_counter()
        while _rounds_done(out) < kill_round:
            if proc.poll() is not None:
                raise RuntimeError(f"the run ended (code {proc.returncode}) before round {kill_round}; see {log}")
            if time.perf_counter() - t > timeout_s:
                proc.kill()
                raise RuntimeError(f"round {kill_round} not reached in {timeout_s:.0f}s; see {log}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = _rounds_done(out)
    exit_s, left = _wait_gone(_ray_pids() - before, 15.0)
    return {"killed_after_round": killed_at, "ray_exit_s": exit_s, "ray_left": left}


def _slope_mb_per_100_rounds(values: np.ndarray) -> float:
    x = np.arange(len(values), dtype=np.float64)
    return float(np.polyfit(x, np.asarray(values, np.float64), 1)[0] * 100.0) if len(values) > 1 else 0.0


def _stable(frame, sort: list[str]):
    cols = [c for c in frame.columns if c not in VOLATILE and not c.endswith("_s")]
    return frame[cols].sort_values(sort).reset_index(drop=True)


def compare_runs(a: Path, b: Path) -> dict:
    """Whether run ``b`` equals run ``a``: final weights, and the rounds and clients tables
    on every column that is not a time or memory reading."""
    import pandas as pd

    from fl import checkpoint

    wa, wb = checkpoint.load(a).weights, checkpoint.load(b).weights
    ra, rb = (_stable(pd.read_parquet(d / "rounds.parquet"), ["round"]) for d in (a, b))
    ca, cb = (_stable(pd.read_parquet(d / "clients.parquet"), ["round", "phase", "device_id"]) for d in (a, b))
    return {"weights_identical": bool(np.array_equal(wa, wb)),
            "rounds_identical": bool(ra.equals(rb)), "clients_identical": bool(ca.equals(cb)),
            "rounds": len(ra), "client_rows": len(ca)}


def run_bench(out: str, quick: bool = False, cache_dir: str | None = None, population: int | None = None,
              rounds: int = 500, cohort: int = 200, kill_every: int = 50, seed: int = 0,
              work_dir: str | None = None, repeats: int = 1) -> dict:
    """``repeats`` > 1: that many soaks with seeds ``seed``, ``seed`` + 1, ... (other data,
    cohorts and kill rounds); a target is met when every soak meets it, and the figures are
    medians with the spread [min, max].  ``population``: devices (default 1,000,000; 20,000
    with ``quick``); the population is lazy (fl/population.py), so ``--population
    1000000000`` costs the coordinator what a million does."""
    if repeats > 1:
        with tempfile.TemporaryDirectory() as tmp:  # each soak's own JSON: kept whole under "soaks"
            soaks = [run_bench(str(Path(tmp) / f"seed{seed + i}.json"), quick, cache_dir, population, rounds,
                               cohort, kill_every, seed + i, None) for i in range(repeats)]
        return _summarize(out, soaks)
    import pandas as pd
    import yaml

    if quick:
        rounds, cohort, kill_every = 30, 20, 10
    population = int(population or (20_000 if quick else 1_000_000))
    work = Path(work_dir or tempfile.mkdtemp(prefix="fedpop-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    cache = cache_dir or str(work / "cache")
    log = work / "soak.log"
    before = _ray_pids()
    t0 = time.perf_counter()
    runs = {}
    for name, every in (("undisturbed", 0), ("disturbed", kill_every)):
        cfg = soak_config(population, rounds, cohort, every, seed)
        cfg["workers"]["cache_dir"] = cache
        path = work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        runs[name] = {"config": str(path), "out": work / name}
    print(f"[bench soak] {population:,} devices, {rounds} rounds, cohort {cohort}: undisturbed run", flush=True)
    a = runs["undisturbed"]
    result = {"population": population, "rounds": rounds, "cohort": cohort, "kill_worker_every": kill_every,
              "seed": seed, "work_dir": str(work)}
    result["undisturbed"] = _run_to_end(_fedpop("run", "fedavg", "--config", a["config"], "--out", str(a["out"]),
                                                 "--quiet"), log, before)
    b = runs["disturbed"]
    kill_round = int(np.random.default_rng([seed, 0x50AC]).integers(max(rounds // 5, 1), max(4 * rounds // 5, 2)))
    print(f"[bench soak] disturbed run: a worker killed every {kill_every} rounds, the coordinator SIGKILLed "
          f"after round {kill_round}, then --resume", flush=True)
    result["kill"] = _kill_at(_fedpop("run", "fedavg", "--config", b["config"], "--out", str(b["out"]), "--quiet"),
                              b["out"], kill_round, log, before, timeout_s=max(600.0, 5.0 * rounds))
    result["resume"] = _run_to_end(_fedpop("run", "--resume", str(b["out"]), "--quiet"), log, before)
    result["comparison"] = compare_runs(a["out"], b["out"])
    ra = pd.read_parquet(a["out"] / "rounds.parquet").sort_values("round")
    rb = pd.read_parquet(b["out"] / "rounds.parquet").sort_values("round")
    tail = min(400, max(rounds - rounds // 5, 2))  # the last 400 rounds (last 80 % when shorter)
    result["memory"] = {
        "tail_rounds": tail,
        "coordinator_mb_per_100_rounds": _slope_mb_per_100_rounds(ra["coordinator_rss_mb"].to_numpy()[-tail:]),
        "worker_mb_per_100_rounds": _slope_mb_per_100_rounds(ra["worker_rss_mb"].to_numpy()[-tail:]),
        "coordinator_rss_mb_first_last": [float(ra["coordinator_rss_mb"].iloc[0]),
                                          float(ra["coordinator_rss_mb"].iloc[-1])],
        "worker_rss_mb_first_last": [float(ra["worker_rss_mb"].iloc[0]), float(ra["worker_rss_mb"].iloc[-1])],
        "disturbed_coordinator_mb_per_100_rounds": _slope_mb_per_100_rounds(
            rb["coordinator_rss_mb"].to_numpy()[-tail:]),
        "per_round": {"undisturbed": ra[["round", "coordinator_rss_mb", "worker_rss_mb"]].to_dict("list"),
                      "disturbed": rb[["round", "coordinator_rss_mb", "worker_rss_mb"]].to_dict("list")},
    }
    # the pool logs each replacement ("worker W died in round R ..."): the kills that really happened
    result["workers_replaced"] = sum("died in round" in line for line in log.read_text(errors="replace").splitlines())
    lingering = [result[k]["ray_exit_s"] for k in ("undisturbed", "kill", "resume")]
    result["ray_exit_s_max"] = max(lingering)
    result["wall_s"] = time.perf_counter() - t0
    m = result["memory"]
    result["targets"] = {
        "identical_to_undisturbed": {"value": result["comparison"], "target": "weights, rounds and clients equal",
                                     "met": all(result["comparison"][k] for k in
                                                ("weights_identical", "rounds_identical", "clients_identical"))},
        "rss_slope_mb_per_100_rounds": {
            "value": {"coordinator": m["coordinator_mb_per_100_rounds"], "workers": m["worker_mb_per_100_rounds"]},
            "target": "<= 5 MB per 100 rounds over the last 400 rounds",
            "met": bool(max(m["coordinator_mb_per_100_rounds"], m["worker_mb_per_100_rounds"]) <= 5.0)},
        "no_ray_process_outlives_a_run_by_10s": {
            "value": {"max_exit_s": result["ray_exit_s_max"],
                      "left": sorted({p for k in ("undisturbed", "kill", "resume") for p in result[k]["ray_left"]})},
            "target": "<= 10 s", "met": bool(result["ray_exit_s_max"] <= 10.0
                                             and not any(result[k]["ray_left"] for k in ("undisturbed", "kill", "resume")))},
        "wall_s": {"value": result["wall_s"], "target": "<= 1800 s (full size)", "met": bool(result["wall_s"] <= 1800)},
    }
    result["headline"] = {k: v["met"] for k, v in result["targets"].items()}
    if work_dir is None:
        result["work_dir"] = None  # temporary: removed below
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    print(json.dumps({k: v["value"] if k != "identical_to_undisturbed" else v["met"]
                      for k, v in result["targets"].items()}, default=str), flush=True)
    if work_dir is None:  # a temporary work directory (runs and a 1M-device data cache: ~400 MB) goes
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    return result


def _summarize(out: str, soaks: list[dict]) -> dict:
    from experiments.bench_engine import _median_and_spread

    result = {k: soaks[0][k] for k in ("population", "rounds", "cohort", "kill_worker_every")}
    result["seeds"] = [s["seed"] for s in soaks]
    result["repeats"], result["spread"] = len(soaks), {}
    figures = {"coordinator_mb_per_100_rounds": [s["memory"]["coordinator_mb_per_100_rounds"] for s in soaks],
               "worker_mb_per_100_rounds": [s["memory"]["worker_mb_per_100_rounds"] for s in soaks],
               "ray_exit_s_max": [s["ray_exit_s_max"] for s in soaks], "wall_s": [s["wall_s"] for s in soaks]}
    for k, v in figures.items():
        result[k], result["spread"][k] = _median_and_spread(v)
    result["targets"] = {name: {"met": all(s["targets"][name]["met"] for s in soaks),
                                "value": [s["targets"][name]["value"] for s in soaks],
                                "target": soaks[0]["targets"][name]["target"]} for name in soaks[0]["targets"]}
    result["headline"] = {k: v["met"] for k, v in result["targets"].items()}
    result["soaks"] = soaks
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result
