"""`fedpop bench peers`: fedpop, TFF, the floor, Flower and pfl-research side by side.

Two workloads, each measured in every sitting on identical devices, cohorts (one row of
device ids per round, taken from fedpop's run), local SGD steps, learning rates and
initial weights:
  * the engine bench's MLP workload (`experiments.bench_engine`: 784-200-200-10 MLP, cohort
    50, 5 batches of 10 per device, 10 rounds): fedpop (timed warm pass), TFF (native
    runtime) and the floor by bench_engine's own functions, then Flower
    (`peers/flower_mlp.py`: Flower's simulation, a Keras client written as Flower's
    quickstart writes it) and pfl-research (`peers/pfl_mlp.py`: pfl's `SimulatedBackend`
    and `FederatedAveraging`, TF backend) on a workload .npz of the same cohorts, device
    data, initial weights, lr and batch size. pfl runs in one process and in its own
    multi-worker mode with one process per core (``PFL_PROCESSES``); its figure is the faster
    of the two in each sitting, and both are kept (``pfl_Nproc_s_per_round``);
  * `small_compute`, bench_engine's tiny-compute workload (multinomial logistic regression
    784->10, one batch of 10 per device, cohort 1,000, 5 rounds), where the per-device
    overhead is the whole cost: fedpop and pfl-research. Flower and TFF do not run it
    (Flower's simulation at cohort 1,000 with a Keras `fit` per client takes minutes per
    round; TFF's figures at this size are bench_engine's business).
Flower and pfl share their own virtualenv (`make bench-peers` builds `.venv-peers/` from
requirements-peers.lock; its header says why one venv and why pfl's TF backend): they need
a newer TensorFlow than TFF 0.87 allows.

Figures are medians over ``repeats`` sittings with the spread [min, max]; each sitting's
own figures (medians over its rounds) are kept under ``sittings``. Every peer's final
weights are compared with fedpop's (largest absolute difference).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from experiments.bench_engine import _config, _fedpop, _floor, _median_and_spread, _tff
from fl.results import write_json

ROOT = Path(__file__).resolve().parents[1]
PEERS_VENV = ROOT / ".venv-peers"
FLOWER_SCRIPT = ROOT / "peers" / "flower_mlp.py"
PFL_SCRIPT = ROOT / "peers" / "pfl_mlp.py"
PEER_PACKAGES = ("flwr", "pfl")  # what the peers virtualenv must hold
PFL_PROCESSES = (1, 2)  # pfl's worker processes: one, and one per core of this 2-core machine
TARGETS = {"fedpop_vs_flower_min": 25.0, "fedpop_vs_tff_min": 8.0, "fedpop_vs_pfl_min": 1.0,
           "small_compute_fedpop_vs_pfl_min": 1.0}
HEADLINE = ("fedpop_s_per_round", "tff_s_per_round", "flower_s_per_round", "pfl_s_per_round", "floor_s_per_round",
            "fedpop_vs_flower", "fedpop_vs_tff", "fedpop_vs_pfl", "small_compute_fedpop_s_per_round",
            "small_compute_pfl_s_per_round", "small_compute_fedpop_vs_pfl")
SCALARS = HEADLINE + ("overhead_vs_floor", "max_abs_diff_fedpop_vs_flower_weights",
                      "max_abs_diff_fedpop_vs_tff_weights", "max_abs_diff_fedpop_vs_floor_weights",
                      "max_abs_diff_fedpop_vs_pfl_weights", "small_compute_fedpop_device_updates_per_s",
                      "small_compute_pfl_device_updates_per_s", "max_abs_diff_fedpop_vs_pfl_small_compute_weights",
                      *(f"{w}pfl_{n}proc_s_per_round" for w in ("", "small_compute_") for n in PFL_PROCESSES))
# the tiny-compute workload, as bench_engine's `small_compute` defines it (quick: cohort 200)
SMALL_COMPUTE_SETS = ["task.hidden=[]", "population.size=100000", "population.examples_median=10",
                      "population.examples_min=10", "population.examples_max=10", "experiment.rounds=5"]


def flower_python(venv: Path | None = None) -> Path:
    """The peers virtualenv's interpreter (Flower, pfl-research), or an error saying how to build it."""
    venv = Path(venv or PEERS_VENV)
    py = venv / "bin" / "python"
    if not py.exists():
        raise FileNotFoundError(f"the peers virtualenv (Flower, pfl-research) is missing ({py} not found): run "
                                f"`make bench-peers`, which builds {venv.name}/ from requirements-peers.lock")
    return py


peers_python = flower_python


def check_peers_venv(venv: Path | None = None) -> Path:
    """The peers interpreter, once it is known to hold every peer (an older .venv-peers may
    lack pfl): an error naming what is missing and `make bench-peers` otherwise."""
    py = peers_python(venv)
    probe = f"import importlib.util as u; print(' '.join(p for p in {PEER_PACKAGES!r} if u.find_spec(p) is None))"
    proc = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, timeout=120)
    missing = proc.stdout.split() if proc.returncode == 0 else list(PEER_PACKAGES)
    if missing:
        raise FileNotFoundError(f"the peers virtualenv lacks {', '.join(missing)}: run `make bench-peers`, which "
                                f"rebuilds it from requirements-peers.lock")
    return py


def write_workload(path: Path, task, cfg, cohorts, counts, init: np.ndarray,
                   expected_final: np.ndarray | None = None) -> None:
    """The .npz that peers/flower_mlp.py and peers/pfl_mlp.py read: per-device ``x_ID``/``y_ID`` for every device
    in ``cohorts`` (one row of device ids per round), the layer sizes and the initial weights
    split per Keras variable (kernel, bias per Dense layer), lr, batch size, epochs, and
    fedpop's final weights (flat) when given."""
    c = cfg.task
    sizes = [c.input_dim, *c.hidden, c.classes]
    shapes = [s for a, b in zip(sizes, sizes[1:]) for s in ((a, b), (b,))]
    cuts = np.cumsum([int(np.prod(s)) for s in shapes])
    if cuts[-1] != init.size:
        raise ValueError(f"initial weights have {init.size} values, the MLP {sizes} has {cuts[-1]}")
    cohorts = np.asarray([np.asarray(ids, np.int64) for ids in cohorts])
    arrays = {"cohorts": cohorts, "layer_sizes": np.asarray(sizes), "num_weights": np.asarray(len(shapes)),
              "lr": np.asarray(cfg.client.lr), "batch_size": np.asarray(cfg.client.batch_size),
              "epochs": np.asarray(cfg.client.epochs)}
    arrays.update({f"init_{i}": p.reshape(s).astype(np.float32)
                   for i, (p, s) in enumerate(zip(np.split(init, cuts[:-1]), shapes))})
    ids = np.unique(cohorts)
    arrays["device_ids"] = ids
    for d in ids.tolist():
        data = task.device_data(d, int(counts[d]), "train")
        arrays[f"x_{d}"], arrays[f"y_{d}"] = data["x"], data["y"]
    if expected_final is not None:
        arrays["expected_final"] = np.asarray(expected_final, np.float32)
    np.savez(path, **arrays)


def _run_peer(name: str, script: Path, workload: Path, out: Path, timeout_s: float,
              venv: Path | None = None, args: list[str] | None = None) -> dict:
    """A peer's run of the workload in the peers virtualenv; its JSON result."""
    cmd = [str(peers_python(venv)), str(script), str(workload), str(out), *(args or [])]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)  # nothing of fedpop's environment leaks into the peer's
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(Path(out).read_text())


def run_flower(workload: Path, out: Path, timeout_s: float, venv: Path | None = None) -> dict:
    """Flower's run of the workload (peers/flower_mlp.py) in the peers virtualenv."""
    return _run_peer("Flower", FLOWER_SCRIPT, workload, out, timeout_s, venv)


def run_pfl(workload: Path, out: Path, timeout_s: float, venv: Path | None = None, processes: int = 1) -> dict:
    """pfl-research's run of the workload (peers/pfl_mlp.py, ``processes`` worker processes)
    in the peers virtualenv."""
    return _run_peer("pfl-research", PFL_SCRIPT, workload, out, timeout_s, venv, ["--processes", str(processes)])


PFL_META = ("pfl_version", "tensorflow_version", "keras_version", "backend", "processes", "total_s")


def _pfl_sitting(workload: Path, workdir: Path, timeout_s: float, prefix: str = "") -> tuple[dict, dict]:
    """pfl on ``workload`` once per entry of PFL_PROCESSES: the figures (``{prefix}pfl_s_per_round``,
    the faster configuration's median, and each configuration's) and pfl's details (the faster
    run's versions and processes, every run's per-round seconds, the largest weight difference)."""
    runs = {}
    for n in PFL_PROCESSES:
        print(f"[bench peers] pfl-research, {n} process(es) (.venv-peers)", flush=True)
        runs[n] = run_pfl(workload, workdir / f"pfl_{n}.json", timeout_s, processes=n)
    medians = {n: statistics.median(r["per_round_s"]) for n, r in runs.items()}
    best = min(medians, key=medians.get)
    figures = {f"{prefix}pfl_s_per_round": medians[best],
               **{f"{prefix}pfl_{n}proc_s_per_round": m for n, m in medians.items()}}
    details = {**{k: runs[best][k] for k in PFL_META},
               "per_round_s_by_processes": {str(n): r["per_round_s"] for n, r in runs.items()},
               "max_abs_diff_vs_fedpop_weights": max(r["max_abs_diff_vs_fedpop_weights"] for r in runs.values())}
    return figures, details


def small_compute_config(cfg, quick: bool):
    """bench_engine's tiny-compute workload on top of the bench config: logistic regression
    784->10, one batch of 10 per device, cohort 1,000 (200 when quick), 5 rounds."""
    from fl.config import load_config

    return load_config(cfg.to_dict(), SMALL_COMPUTE_SETS + [f"cohort.goal={200 if quick else 1000}"])


def _versions() -> dict:
    import ray
    import tensorflow as tf
    import tensorflow_federated as tff

    return {"tensorflow": tf.__version__, "tensorflow_federated": tff.__version__, "ray": ray.__version__}


def _one_sitting(cfg, small_cfg, workdir: Path, timeout_s: float) -> dict:
    import ray

    from fl.task import make_task

    print(f"[bench peers] fedpop: {cfg.experiment.rounds} rounds, cohort {cfg.cohort.goal}", flush=True)
    fp_times, _, cohorts, init, fp_final, workers, counts = _fedpop(cfg)
    if ray.is_initialized():
        ray.shutdown()
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    peers = {}  # name -> (per-round seconds, final weights), on fedpop's cohorts and initial weights
    for name, measure, what in (("tff", _tff, "TFF native runtime"), ("floor", _floor, "floor: one-process loop")):
        print(f"[bench peers] {what}", flush=True)
        peers[name] = measure(task, cfg, cohorts, counts, init)
    (tff_times, tff_final), (floor_times, floor_final) = peers["tff"], peers["floor"]
    print("[bench peers] Flower simulation (.venv-peers)", flush=True)
    workload = workdir / "workload.npz"
    write_workload(workload, task, cfg, cohorts, counts, init, expected_final=fp_final)
    flower = run_flower(workload, workdir / "flower.json", timeout_s)
    pfl_figures, pfl = _pfl_sitting(workload, workdir, timeout_s)
    workload.unlink()
    fp, tf_, fl, flw = (statistics.median(t) for t in (fp_times, tff_times, floor_times, flower["per_round_s"]))
    pf = pfl_figures["pfl_s_per_round"]
    small = _small_compute_sitting(small_cfg, workdir, timeout_s)
    return {
        "workload": {"model": f"mlp {'-'.join(map(str, [cfg.task.input_dim, *cfg.task.hidden, cfg.task.classes]))}",
                     "cohort": cfg.cohort.goal,
                     "batches_per_device": int(counts[cohorts[0]][0] // cfg.client.batch_size),
                     "batch_size": cfg.client.batch_size, "lr": cfg.client.lr, "rounds": cfg.experiment.rounds,
                     "fedpop_workers": workers},
        "fedpop_s_per_round": fp, "tff_s_per_round": tf_, "flower_s_per_round": flw, **pfl_figures,
        "floor_s_per_round": fl, "fedpop_vs_flower": flw / fp, "fedpop_vs_tff": tf_ / fp, "fedpop_vs_pfl": pf / fp,
        "overhead_vs_floor": fp / fl,
        "max_abs_diff_fedpop_vs_flower_weights": flower["max_abs_diff_vs_fedpop_weights"],
        "max_abs_diff_fedpop_vs_pfl_weights": pfl["max_abs_diff_vs_fedpop_weights"],
        "max_abs_diff_fedpop_vs_tff_weights": float(np.abs(fp_final - tff_final).max()),
        "max_abs_diff_fedpop_vs_floor_weights": float(np.abs(fp_final - floor_final).max()),
        "flower": {k: flower[k] for k in ("flower_version", "tensorflow_version", "keras_version", "api",
                                          "client_num_cpus", "total_s")},
        "pfl": {k: pfl[k] for k in PFL_META},
        "per_round_s": {"fedpop": fp_times, "tff": tff_times, "floor": floor_times, "flower": flower["per_round_s"],
                        **{f"pfl_{n}proc": t for n, t in pfl["per_round_s_by_processes"].items()}},
        **small,
    }


def _small_compute_sitting(cfg, workdir: Path, timeout_s: float) -> dict:
    """fedpop (timed warm pass) and pfl-research on the tiny-compute workload: the sitting's
    ``small_compute_*`` figures, and ``small_compute`` with the workload, pfl's versions and
    the seconds of every round."""
    import ray

    from fl.task import make_task

    print(f"[bench peers] small compute: logistic regression, 1 batch per device, cohort {cfg.cohort.goal}; fedpop",
          flush=True)
    fp_times, _, cohorts, init, fp_final, workers, counts = _fedpop(cfg)
    if ray.is_initialized():
        ray.shutdown()
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    workload = workdir / "small_compute.npz"
    write_workload(workload, task, cfg, cohorts, counts, init, expected_final=fp_final)
    pfl_figures, pfl = _pfl_sitting(workload, workdir, timeout_s, prefix="small_compute_")
    workload.unlink()
    fp, pf = statistics.median(fp_times), pfl_figures["small_compute_pfl_s_per_round"]
    goal = cfg.cohort.goal
    return {
        "small_compute_fedpop_s_per_round": fp, **pfl_figures, "small_compute_fedpop_vs_pfl": pf / fp,
        "small_compute_fedpop_device_updates_per_s": goal / fp, "small_compute_pfl_device_updates_per_s": goal / pf,
        "max_abs_diff_fedpop_vs_pfl_small_compute_weights": pfl["max_abs_diff_vs_fedpop_weights"],
        "small_compute": {
            "workload": {"model": f"logistic regression {cfg.task.input_dim}->{cfg.task.classes}", "cohort": goal,
                         "examples_per_device": int(counts[cohorts[0]][0]), "batch_size": cfg.client.batch_size,
                         "lr": cfg.client.lr, "rounds": cfg.experiment.rounds, "fedpop_workers": workers},
            "pfl": {k: pfl[k] for k in PFL_META},
            "per_round_s": {"fedpop": fp_times,
                            **{f"pfl_{n}proc": t for n, t in pfl["per_round_s_by_processes"].items()}}},
    }


def summarize_sittings(sittings: list[dict], versions: dict | None = None) -> dict:
    """Median of each figure over sittings with its spread [min, max], the targets and
    whether the medians meet them."""
    out = {"repeats": len(sittings), "workload": sittings[0]["workload"], "spread": {}}
    for k in SCALARS:
        out[k], out["spread"][k] = _median_and_spread([s[k] for s in sittings])
    out["targets"] = dict(TARGETS)
    out["met"] = {name: out[name] >= TARGETS[f"{name}_min"]
                  for name in ("fedpop_vs_flower", "fedpop_vs_tff", "fedpop_vs_pfl", "small_compute_fedpop_vs_pfl")}
    out["versions"] = {**(versions or {}), **{f"flower_{k}": v for k, v in sittings[0]["flower"].items()
                                              if k in ("flower_version", "tensorflow_version", "keras_version")},
                       **{f"pfl_{k}": v for k, v in sittings[0]["pfl"].items()
                          if k in ("pfl_version", "tensorflow_version", "keras_version")}}
    out["flower_client"] = {k: sittings[0]["flower"][k] for k in ("api", "client_num_cpus")}
    out["pfl_simulation"] = {"backend": sittings[0]["pfl"]["backend"], "processes_tried": list(PFL_PROCESSES),
                             "processes_faster": [s["pfl"]["processes"] for s in sittings],
                             "small_compute_processes_faster": [s["small_compute"]["pfl"]["processes"]
                                                                for s in sittings]}
    out["small_compute_workload"] = sittings[0]["small_compute"]["workload"]
    out["headline"] = {**{k: out[k] for k in HEADLINE}, "met": out["met"]}
    out["sittings"] = sittings
    return out


def run_bench(out: str, quick: bool = False, cache_dir: str | None = None, repeats: int = 3) -> dict:
    """``repeats`` sittings of every system on both workloads (the machine is noisy); see the module doc."""
    import ray

    check_peers_venv()  # fail before any work if the peers virtualenv is missing or lacks a peer
    cfg = _config(quick, cache_dir)
    small_cfg = small_compute_config(cfg, quick)
    timeout_s = 600.0 if quick else 1800.0
    sittings = []
    with tempfile.TemporaryDirectory(prefix="fedpop-bench-peers-") as tmp:
        for i in range(max(int(repeats), 1)):
            print(f"[bench peers] sitting {i + 1} of {repeats}", flush=True)
            sittings.append(_one_sitting(cfg, small_cfg, Path(tmp), timeout_s))
            if ray.is_initialized():
                ray.shutdown()
    result = summarize_sittings(sittings, _versions())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result
