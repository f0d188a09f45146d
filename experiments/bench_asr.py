"""`fedpop bench asr`: on-device RNN-T training throughput in utterance-epochs per second.

Two workloads, each one device's local training exactly as the studies run it (the engine's
`DeviceTrainer`, the recipe read from the study's config file):

* ``personalize``: euphonia-personalization's fine-tuning step (bottom 5 of 8 encoder layers,
  Adam, batches of 8, SpecAugment, auxiliary CTC; Green et al. 2021);
* ``base``: a fedavg-asr client update (all variables, SGD, batches of 8).

Data: fixed synthetic utterances (random log-mel frames, random transcripts) whose lengths
follow the synthetic atypical speakers' (median 320 frames, 10 ms each); the timed pass
includes making the batches. Medians of ``repeats`` timed passes after one warm-up (tracing).

The figure before the speed-up is measured by running this same file against an older
checkout (``--reference-tree DIR``, e.g. a `git worktree` of the commit before), and is kept
in the JSON's ``reference`` block once recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "experiments" / "configs"
WORKLOADS = {"personalize": ("euphonia-personalization.yaml", "bottom5"), "base": ("fedavg-asr.yaml", "all")}


def synthetic_device(task, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n`` packed utterances (as ``ASRTask.device_data`` packs them) with realistic lengths."""
    c = task.config
    rng = np.random.default_rng(seed)
    frames = np.clip(rng.lognormal(np.log(320), 0.3, n), 60, c.max_frames).astype(int)
    chars = np.clip(frames // 13, 4, c.max_label_len)
    n_mels = task.corpus.config.n_mels
    x = np.zeros((n, c.max_frames, n_mels + 1), np.float32)
    y = np.zeros((n, c.max_label_len), np.int32)
    for i, (t, u) in enumerate(zip(frames, chars)):
        x[i, :t, :-1] = rng.normal(size=(t, n_mels))
        x[i, :t, -1] = 1.0
        y[i, :u] = rng.integers(1, 29, u)
    return {"x": x, "y": y}


def _known(cls, values: dict) -> dict:
    """The keys of ``values`` that the dataclass ``cls`` has (an older checkout may lack some)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def measure_workload(name: str, utterances: int, epochs: int, repeats: int) -> dict:
    import tensorflow as tf
    import yaml

    from fl.config import ClientSection
    from fl.task import make_task
    from fl.trainer import DeviceTrainer

    config_file, strategy = WORKLOADS[name]
    raw = yaml.safe_load((CONFIGS / config_file).read_text())
    from clients.speech.task import ASRTask

    task = make_task("asr", ASRTask.Config(**_known(ASRTask.Config, raw["task"])), 0)
    client_values = {**raw["client"], "epochs": epochs, "validation_fraction": 0.0}
    client = ClientSection(**_known(ClientSection, client_values))
    trainer = DeviceTrainer(task, client)
    trainer.set_trainable(task.trainable_mask(trainer.model, strategy))
    data = synthetic_device(task, utterances)
    start = tf.constant(trainer.get_weights())
    t = time.perf_counter()
    trainer.train(start, trainer.batches({k: v[:client.batch_size] for k, v in data.items()}, 0, 0, 0))
    trace_s = time.perf_counter() - t
    seconds = []
    for r in range(repeats):
        t = time.perf_counter()
        trainer.train(start, trainer.batches(data, 0, r + 1, 0))
        seconds.append(time.perf_counter() - t)
    rates = [utterances * epochs / s for s in seconds]
    return {"config": config_file, "strategy": strategy, "utterances": utterances, "epochs": epochs,
            "batch_size": client.batch_size, "bucket_pool": getattr(client, "bucket_pool", None),
            "trace_s": trace_s, "seconds": seconds, "utterance_epochs_per_s_runs": rates,
            "utterance_epochs_per_s": float(np.median(rates)), "spread": [float(min(rates)), float(max(rates))]}


def measure(repeats: int, quick: bool) -> dict:
    n, epochs = (16, 1) if quick else (96, 2)
    return {name: measure_workload(name, n, epochs, repeats) for name in WORKLOADS}


def _git_commit(tree: Path) -> str:
    out = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def _measure_in(tree: Path, repeats: int, quick: bool) -> dict:
    """This file's measurement with the code of ``tree`` (a fresh process, ``tree`` first on the path)."""
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"fedpop-bench-asr-{os.getpid()}.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(out), "--repeats", str(repeats)]
    subprocess.run(cmd + (["--quick"] if quick else []), check=True, env=env, cwd=str(tree))
    result = json.loads(out.read_text())
    out.unlink()
    return result


def assemble(current: dict, reference: dict | None, repeats: int, quick: bool, commit: str) -> dict:
    """The JSON: both measurements, and the speed-up over the reference per workload as targets."""
    result = {"commit": commit, "repeats": repeats, "quick": quick, "current": current, "reference": reference,
              "targets": {}}
    for name in WORKLOADS:
        if reference and name in reference and name in current:
            ratio = current[name]["utterance_epochs_per_s"] / reference[name]["utterance_epochs_per_s"]
            result["targets"][f"{name}_speedup"] = {"value": ratio, "target": ">= 2.0", "met": bool(ratio >= 2.0)}
    result["headline"] = {f"{k}_utterance_epochs_per_s": v["utterance_epochs_per_s"] for k, v in current.items()}
    result["headline"].update({k: v["value"] for k, v in result["targets"].items()})
    return result


def run_bench(out: str, quick: bool = False, repeats: int = 3, reference_tree: str | None = None) -> dict:
    from fl.results import write_json

    current = _measure_in(ROOT, repeats, quick)
    path = Path(out)
    previous = json.loads(path.read_text()) if path.exists() else {}
    if reference_tree:
        reference = {"commit": _git_commit(Path(reference_tree)), **_measure_in(Path(reference_tree), repeats, quick)}
    else:
        reference = previous.get("reference")
    result = assemble(current, reference, repeats, quick, _git_commit(ROOT))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(result, path)
    return result


if __name__ == "__main__":
    p = argparse.ArgumentParser(description="measure RNN-T training throughput with the code on PYTHONPATH")
    p.add_argument("--measure", required=True, help="JSON file to write")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    Path(a.measure).write_text(json.dumps(measure(a.repeats, a.quick), indent=2))
