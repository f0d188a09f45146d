"""`fedpop run fedavg-asr`: the base speech recognizer of the personalization study.

A streaming RNN-T (He et al. 2019) trained on typical speakers only (Euphonia's base model,
Green et al. 2021): an optional central warm start on the training speakers' pooled
utterances (`task.warm_start_steps`), then FedAvg rounds through the engine, one speaker
per device. The last `task.heldout_typical` typical speakers never train, and their
held-out phrases are removed from every training speaker's data; the base WER is greedy
decoding of those phrases spoken by those speakers. CPU-sized by default; the paper's
widths are `RNNTConfig.paper()`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fl.task import make_task, model_with_weights
from experiments.fedavg_train import summarize
from fl.config import ConfigError
from fl.runner import engine, train


def decode_table(task, weights: np.ndarray, speakers, split: str = "test") -> pd.DataFrame:
    """Greedy transcripts of the speakers' utterances: speaker, domain, reference, hypothesis,
    word errors and reference words per utterance."""
    from clients.speech.decoding import compiled_greedy_decode, ids_to_text
    from clients.speech.wer import word_edit_counts

    model = model_with_weights(task, weights)
    rows = []
    for speaker in speakers:
        d = task.utterances(task.speaker_index(speaker), split)
        for feats, n, ref, dom in zip(d["features"], d["feature_lengths"], d["transcripts"], d["domains"]):
            enc, enc_len = model.encode(feats[None, :n], np.array([n]))
            hyp = ids_to_text(compiled_greedy_decode(model, enc.numpy()[0, : int(enc_len[0])]).tokens)
            e = word_edit_counts(str(ref), hyp)
            rows.append({"speaker": speaker, "domain": str(dom), "reference": str(ref), "hypothesis": hyp,
                         "word_errors": e.errors, "words": e.ref_len})
    return pd.DataFrame(rows, columns=["speaker", "domain", "reference", "hypothesis", "word_errors", "words"])


def wer_of(df: pd.DataFrame) -> float:
    return float(df["word_errors"].sum() / df["words"].sum()) if len(df) and df["words"].sum() else float("nan")


def heldout_wer(cfg, weights: np.ndarray) -> tuple[pd.DataFrame, dict]:
    """WER of the model on the held-out phrases of the held-out typical speakers."""
    task = make_task("asr", cfg.task, cfg.experiment.seed)
    df = decode_table(task, weights, task.heldout_speakers)
    return df, {"heldout_speakers": len(task.heldout_speakers), "heldout_utterances": int(len(df)),
                "heldout_wer": wer_of(df),
                "heldout_wer_by_domain": {d: wer_of(g) for d, g in df.groupby("domain")}}


def on_device_report(cfg, weights: np.ndarray, out_dir: Path, max_utterances: int | None = None) -> dict:
    """TFLite float and int8 exports of the model into OUT/tflite: sizes, WER change and
    one-thread real-time factor on the held-out utterances (or the first max_utterances)."""
    from clients.speech.tflite_export import evaluate

    task = make_task("asr", cfg.task, cfg.experiment.seed)
    utts = []
    for speaker in task.heldout_speakers:
        d = task.utterances(task.speaker_index(speaker), "test")
        utts += [(f[:n], str(ref)) for f, n, ref in zip(d["features"], d["feature_lengths"], d["transcripts"])]
    return evaluate(model_with_weights(task, weights), utts[:max_utterances], out_dir / "tflite")


def check_population(cfg, task) -> None:
    if cfg.population.size > len(task.train_speakers):
        raise ConfigError(f"bad value for 'population.size': {cfg.population.size} devices but only "
                          f"{len(task.train_speakers)} training speakers (allowed: <= n_typical - heldout_typical)")


def initial_weights(cfg, task, out_dir: Path, progress: bool):
    """The central warm start's weights (cached in OUT/warm_start.npz), or None without one."""
    c = cfg.task
    if c.warm_start_steps <= 0:
        return None
    path = out_dir / "warm_start.npz"
    if path.exists():
        return np.load(path)["weights"]
    from clients.speech.warm_start import intra_op_threads, warm_start

    ids = range(cfg.population.size)
    w, losses = warm_start(task, ids, c.warm_start_steps, c.warm_start_batch, c.warm_start_lr,
                           cfg.experiment.seed, progress=progress, bucket_pool=cfg.client.bucket_pool)
    np.savez(path, weights=w, losses=np.asarray(losses, np.float32), threads=intra_op_threads())
    return w


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    task = make_task("asr", cfg.task, cfg.experiment.seed)
    check_population(cfg, task)
    with engine(cfg) as process:
        state, recorder = train(process, out_dir, progress,
                                initial_weights=lambda: initial_weights(cfg, task, out_dir, progress))
        summary = summarize(process, state, recorder)
    table, wer = heldout_wer(cfg, state.weights)
    table.to_parquet(out_dir / "heldout_decodes.parquet", index=False)
    summary.update(wer, warm_start_steps=cfg.task.warm_start_steps,
                   target_heldout_wer=0.20, meets_target=bool(wer["heldout_wer"] <= 0.20))
    warm = out_dir / "warm_start.npz"
    if warm.exists():  # how much the federated rounds add to (or take from) the warm start
        saved = np.load(warm)
        summary["warm_start_heldout_wer"] = heldout_wer(cfg, saved["weights"])[1]["heldout_wer"]
        if "threads" in saved:  # TensorFlow's intra-op threads: the weights are reproducible for this count
            summary["warm_start_threads"] = int(saved["threads"])
    summary["on_device"] = on_device_report(cfg, state.weights, out_dir)
    recorder.finish(summary)
    return summary
