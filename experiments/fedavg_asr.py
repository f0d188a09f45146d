"""`fedpop run fedavg-asr`: a streaming RNN-T trained by FedAvg across typical speakers,
then WER on speakers that never trained (greedy decoding on their utterances).

The base model of the personalization study (He et al. 2019 recognizer; Euphonia's base
model is trained on typical speech only). CPU-sized by default; the paper's widths are
`RNNTConfig.paper()` and need far more compute than this machine has.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clients.tasks import make_task, model_with_weights
from experiments.fedavg_train import summarize
from fl.runner import engine, train


def heldout_wer(cfg, weights: np.ndarray, trained_devices: int, max_utterances: int = 40) -> tuple[pd.DataFrame, dict]:
    """WER of the global model on the typical speakers that no device trained on."""
    from clients.speech.decoding import greedy_decode, ids_to_text
    from clients.speech.wer import corpus_wer

    task = make_task("asr", cfg.task, cfg.experiment.seed)
    model = model_with_weights(task, weights)
    rows = []
    for speaker in task.speakers[trained_devices:]:
        for split in ("test", "train"):  # an unseen speaker: every utterance is held out
            d = task.corpus.get(speaker, split)
            for feats, n, ref in zip(d["features"], d["feature_lengths"], d["transcripts"]):
                if len(rows) >= max_utterances:
                    break
                enc, enc_len = model.encode(feats[None, :n], np.array([n]))
                hyp = ids_to_text(greedy_decode(model, enc.numpy()[0, : int(enc_len[0])]).tokens)
                rows.append({"speaker": speaker, "reference": str(ref), "hypothesis": hyp})
    df = pd.DataFrame(rows, columns=["speaker", "reference", "hypothesis"])
    wer = corpus_wer(df["reference"].tolist(), df["hypothesis"].tolist()) if len(df) else float("nan")
    return df, {"heldout_speakers": len(task.speakers) - trained_devices, "heldout_utterances": len(df),
                "heldout_wer": wer}


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    with engine(cfg) as process:
        state, recorder = train(process, out_dir, progress)
        summary = summarize(process, state, recorder)
        trained = min(process.population.size, cfg.task.n_typical)
    table, wer = heldout_wer(cfg, state.weights, trained)
    table.to_parquet(Path(out_dir) / "heldout_decodes.parquet", index=False)
    summary.update(wer)
    recorder.finish(summary)
    return summary
