"""NOSS's intra-speaker tasks as on-device personalization on a pool of Ray workers.

Shor et al. 2020 ("Towards Learning a Universal Non-Semantic Representation of Speech") score
personalization by training a classifier on one speaker's own clips and testing it on that
speaker's held-out clips (commands and style here).  Each speaker is one device: it receives
its own clips only (`speaker_shards`) and the model as the TFLite flatbuffer a phone would run
(the float model the study measures), embeds its windows with the TFLite interpreter, averages
them per clip, fits NOSS's logistic regression (evaluate.fit_score) on its training clips and
reports the held-out accuracy (`personalize_device`).  Nothing but that accuracy leaves the
device.  `intra_speaker_on_pool` fans the devices out over Ray workers, the flatbuffers going to
the object store once; the log-mel baseline (no model) averages the device's frames instead.
"""
from __future__ import annotations

import time

import numpy as np

from .evaluate import fit_score, mean_by_clip
from .noss import INTRA_SPEAKER_TASKS, NossCorpus


def speaker_shards(corpus: NossCorpus, task: str) -> list[dict]:
    """One device per speaker of ``task``: that speaker's clips only, as frames [sum T, 64] with
    offsets, and their labels and intra-speaker test flags."""
    d = corpus.get(task)
    o = d["offsets"]
    shards = []
    for s in np.unique(d["speaker"]):
        rows = np.flatnonzero(d["speaker"] == s)
        frames = [d["frames"][o[i]:o[i + 1]] for i in rows]
        shards.append({"task": task, "speaker": int(s), "frames": np.concatenate(frames),
                       "offsets": np.concatenate([[0], np.cumsum([len(f) for f in frames])]).astype(np.int64),
                       "label": d["label"][rows], "intra_test": d["intra_test"][rows]})
    return shards


def clip_windows(shard: dict, window_frames: int, window_hop: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows [W, window_frames, 64], clip index [W]) of a device's clips (frontend.windows)."""
    from . import frontend as FE

    o = shard["offsets"]
    per_clip = [FE.windows(shard["frames"][o[i]:o[i + 1]], window_hop, window_frames) for i in range(len(o) - 1)]
    return np.concatenate(per_clip), np.concatenate([np.full(len(w), i, np.int32) for i, w in enumerate(per_clip)])


def personalize_device(flatbuffer: bytes | None, shard: dict, window_frames: int, window_hop: int,
                       C: float = 1e5) -> dict:
    """On one device: clip features from its own audio (the TFLite model's window embeddings
    averaged per clip, or with no model its log-mel frames averaged), a classifier fit on its
    training clips, and its accuracy on its held-out clips."""
    t0 = time.perf_counter()
    n = len(shard["label"])
    if flatbuffer is None:
        clip = np.repeat(np.arange(n), np.diff(shard["offsets"]))
        feats = mean_by_clip(shard["frames"], clip, n)
    else:
        from .frill import tflite_run

        windows, clip = clip_windows(shard, window_frames, window_hop)
        out = tflite_run(flatbuffer, windows)
        feats = mean_by_clip(out.reshape(len(out), -1), clip, n)
    test = shard["intra_test"]
    acc = fit_score(feats[~test], shard["label"][~test], feats[test], shard["label"][test], C)
    return {"task": shard["task"], "speaker": shard["speaker"], "accuracy": acc, "train_clips": int((~test).sum()),
            "test_clips": int(test.sum()), "compute_s": time.perf_counter() - t0}


def intra_speaker_on_pool(models: dict[str, bytes | None], corpus: NossCorpus, tasks=INTRA_SPEAKER_TASKS,
                          C: float = 1e5, num_workers: int = 0, progress: bool = True):
    """speakers table (model, task, speaker, accuracy, train_clips, test_clips, compute_s): every
    model's personalization on every speaker-device of the intra-speaker ``tasks``, run as Ray
    tasks on ``num_workers`` CPUs (0: all); a local Ray is started if none runs (and stopped
    after)."""
    import pandas as pd
    import ray

    from fl.device_map import map_devices, ray_running

    tasks = [t for t in tasks if t in INTRA_SPEAKER_TASKS]
    columns = ["model", "task", "speaker", "accuracy", "train_clips", "test_clips", "compute_s"]
    if not tasks or not models:
        return pd.DataFrame(columns=columns)
    with ray_running(num_workers):
        cfg = corpus.config
        refs = {name: (None if fb is None else ray.put(fb)) for name, fb in models.items()}
        shards = {t: ray.put(speaker_shards(corpus, t)) for t in tasks}
        calls = [(refs[name], shards[t], cfg.window_frames, cfg.window_hop, C) for name in models for t in tasks]
        results = map_devices(_personalize_chunk, calls, desc="intra-speaker", progress=progress)
    names = [name for name in models for _ in tasks]
    return pd.DataFrame([{"model": name, **r} for name, chunk in zip(names, results) for r in chunk], columns=columns)


def _personalize_chunk(flatbuffer, shards, window_frames, window_hop, C):
    """One Ray task: the devices of one (model, task), one after another in one worker process."""
    return [personalize_device(flatbuffer, s, window_frames, window_hop, C) for s in shards]
