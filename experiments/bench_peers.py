"""`fedpop bench peers`: fedpop, TFF, the floor and Flower side by side on one workload.

The engine bench's workload (`experiments.bench_engine`: 784-200-200-10 MLP, cohort 50,
5 batches of 10 per device, 10 rounds), measured in each sitting by bench_engine's own
functions for fedpop (timed warm pass), TFF (native runtime) and the floor, then by Flower:
the same cohorts, device data, initial weights, lr and batch size go into a workload .npz,
and `.venv-peers/bin/python peers/flower_mlp.py` runs them in Flower's simulation (Ray
backend, a Keras client written as Flower's quickstart writes it; see that file). Flower
lives in its own virtualenv (`make bench-peers` builds it from requirements-peers.lock): it
needs a newer TensorFlow than TFF 0.87 allows.

Figures are medians over ``repeats`` sittings with the spread [min, max]; each sitting's
own figures (medians over its rounds) are kept under ``sittings``.
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
TARGETS = {"fedpop_vs_flower_min": 25.0, "fedpop_vs_tff_min": 8.0}
HEADLINE = ("fedpop_s_per_round", "tff_s_per_round", "flower_s_per_round", "floor_s_per_round", "fedpop_vs_flower",
            "fedpop_vs_tff")
SCALARS = HEADLINE + ("overhead_vs_floor", "max_abs_diff_fedpop_vs_flower_weights",
                      "max_abs_diff_fedpop_vs_tff_weights", "max_abs_diff_fedpop_vs_floor_weights")


def flower_python(venv: Path | None = None) -> Path:
    """The Flower virtualenv's interpreter, or an error saying how to build it."""
    venv = Path(venv or PEERS_VENV)
    py = venv / "bin" / "python"
    if not py.exists():
        raise FileNotFoundError(f"the Flower virtualenv is missing ({py} not found): run `make bench-peers`, "
                                f"which builds {venv.name}/ from requirements-peers.lock")
    return py


def write_workload(path: Path, task, cfg, cohorts, counts, init: np.ndarray,
                   expected_final: np.ndarray | None = None) -> None:
    """The .npz that peers/flower_mlp.py reads: per-device ``x_ID``/``y_ID`` for every device
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


def run_flower(workload: Path, out: Path, timeout_s: float, venv: Path | None = None) -> dict:
    """Flower's run of the workload in its own virtualenv; its JSON result."""
    cmd = [str(flower_python(venv)), str(FLOWER_SCRIPT), str(workload), str(out)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)  # nothing of fedpop's environment leaks into Flower's
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"Flower did not finish within {timeout_s:.0f} s: {' '.join(cmd)}") from None
    if proc.returncode != 0:
        raise RuntimeError(f"Flower failed (exit {proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-4000:]}")
    return json.loads(Path(out).read_text())


def _versions() -> dict:
    import ray
    import tensorflow as tf
    import tensorflow_federated as tff

    return {"tensorflow": tf.__version__, "tensorflow_federated": tff.__version__, "ray": ray.__version__}


def _one_sitting(cfg, workdir: Path, timeout_s: float) -> dict:
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
    fp, tf_, fl, flw = (statistics.median(t) for t in (fp_times, tff_times, floor_times, flower["per_round_s"]))
    return {
        "workload": {"model": f"mlp {'-'.join(map(str, [cfg.task.input_dim, *cfg.task.hidden, cfg.task.classes]))}",
                     "cohort": cfg.cohort.goal,
                     "batches_per_device": int(counts[cohorts[0]][0] // cfg.client.batch_size),
                     "batch_size": cfg.client.batch_size, "lr": cfg.client.lr, "rounds": cfg.experiment.rounds,
                     "fedpop_workers": workers},
        "fedpop_s_per_round": fp, "tff_s_per_round": tf_, "flower_s_per_round": flw, "floor_s_per_round": fl,
        "fedpop_vs_flower": flw / fp, "fedpop_vs_tff": tf_ / fp, "overhead_vs_floor": fp / fl,
        "max_abs_diff_fedpop_vs_flower_weights": flower["max_abs_diff_vs_fedpop_weights"],
        "max_abs_diff_fedpop_vs_tff_weights": float(np.abs(fp_final - tff_final).max()),
        "max_abs_diff_fedpop_vs_floor_weights": float(np.abs(fp_final - floor_final).max()),
        "flower": {k: flower[k] for k in ("flower_version", "tensorflow_version", "keras_version", "api",
                                          "client_num_cpus", "total_s")},
        "per_round_s": {"fedpop": fp_times, "tff": tff_times, "floor": floor_times, "flower": flower["per_round_s"]},
    }


def summarize_sittings(sittings: list[dict], versions: dict | None = None) -> dict:
    """Median of each figure over sittings with its spread [min, max], the targets and
    whether the medians meet them."""
    out = {"repeats": len(sittings), "workload": sittings[0]["workload"], "spread": {}}
    for k in SCALARS:
        out[k], out["spread"][k] = _median_and_spread([s[k] for s in sittings])
    out["targets"] = dict(TARGETS)
    out["met"] = {"fedpop_vs_flower": out["fedpop_vs_flower"] >= TARGETS["fedpop_vs_flower_min"],
                  "fedpop_vs_tff": out["fedpop_vs_tff"] >= TARGETS["fedpop_vs_tff_min"]}
    out["versions"] = {**(versions or {}), **{f"flower_{k}": v for k, v in sittings[0]["flower"].items()
                                              if k in ("flower_version", "tensorflow_version", "keras_version")}}
    out["flower_client"] = {k: sittings[0]["flower"][k] for k in ("api", "client_num_cpus")}
    out["headline"] = {**{k: out[k] for k in HEADLINE}, "met": out["met"]}
    out["sittings"] = sittings
    return out


def run_bench(out: str, quick: bool = False, cache_dir: str | None = None, repeats: int = 3) -> dict:
    """``repeats`` sittings of all four systems (the machine is noisy); see the module doc."""
    import ray

    flower_python()  # fail before any work if the Flower virtualenv is missing
    cfg = _config(quick, cache_dir)
    timeout_s = 600.0 if quick else 1800.0
    sittings = []
    with tempfile.TemporaryDirectory(prefix="fedpop-bench-peers-") as tmp:
        for i in range(max(int(repeats), 1)):
            print(f"[bench peers] sitting {i + 1} of {repeats}", flush=True)
            sittings.append(_one_sitting(cfg, Path(tmp), timeout_s))
            if ray.is_initialized():
                ray.shutdown()
    result = summarize_sittings(sittings, _versions())
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result
