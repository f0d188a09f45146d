"""The NOSS evaluation protocol: time-averaged clip embeddings -> logistic regression, per task.

As in the NOSS code (Shor et al. 2020, "Towards Learning a Universal Non-Semantic
Representation of Speech"; ``eval_embedding/sklearn``): a clip's embedding is the mean of its
0.96 s window embeddings; a scikit-learn logistic regression (lbfgs, multinomial; features
standardized here so lbfgs converges at NOSS's C = 1e5) is trained on the task's training
clips and scored on its test clips, with and without L2 normalization of each clip's
embedding and with and without per-speaker normalization (each speaker's features minus that
speaker's mean, divided by its std, a std of 0 read as 1); NOSS reports the best of these.
The baseline is the time-averaged log-mel frames themselves (`log_mel_features`).

Intra-speaker tasks (NOSS's personalization tasks, commands and style) fit one classifier per
speaker on the speaker's own clips and score it on the speaker's held-out clips
(`intra_speaker_accuracies`); the result is a distribution over speakers.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .noss import INTRA_SPEAKER_TASKS, TASKS, NossCorpus

Embedder = Callable[[np.ndarray], np.ndarray]  # windows [W, frames, mels] -> [W, D]


def speaker_normalize(features: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Per-speaker standardization (NOSS): (x - speaker mean) / speaker std, std 0 -> 1."""
    x = np.asarray(features, np.float64)
    out = np.empty_like(x)
    for s in np.unique(speakers):
        rows = speakers == s
        mean, std = x[rows].mean(0), x[rows].std(0)
        out[rows] = (x[rows] - mean) / np.where(std == 0, 1.0, std)
    return out.astype(np.float32)


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Each row divided by its Euclidean norm (a zero row stays zero)."""
    x = np.asarray(features, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(n == 0, 1.0, n)).astype(np.float32)


def mean_by_clip(values: np.ndarray, clip_index: np.ndarray, n_clips: int) -> np.ndarray:
    """[n_clips, D] mean of the rows of values [W, D] that belong to each clip."""
    sums = np.zeros((n_clips, values.shape[1]), np.float64)
    np.add.at(sums, clip_index, values)
    counts = np.bincount(clip_index, minlength=n_clips)[:, None]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def log_mel_features(corpus: NossCorpus, task: str) -> np.ndarray:
    """Baseline: each clip's log-mel frames averaged over time, [N, 64]."""
    d = corpus.get(task)
    clip = np.repeat(np.arange(len(d["offsets"]) - 1), np.diff(d["offsets"]))
    return mean_by_clip(d["frames"], clip, len(d["offsets"]) - 1)


def embedding_features(embed: Embedder, corpus: NossCorpus, task: str, batch: int = 256) -> np.ndarray:
    """Each clip's window embeddings averaged over time, [N, D]."""
    windows, clip = corpus.windows(task)
    out = np.concatenate([np.asarray(embed(windows[i:i + batch]), np.float32)
                          for i in range(0, len(windows), batch)])
    return mean_by_clip(out.reshape(len(out), -1), clip, len(corpus.get(task)["label"]))


def keras_embedder(model) -> Embedder:
    """A Keras model (e.g. trill.build_trill, or trill.embedding_and_layer19 with ``output``) as an Embedder."""
    import tensorflow as tf

    fn = tf.function(lambda x: model(x, training=False), reduce_retracing=True)

    def embed(windows):
        out = fn(tf.constant(windows, tf.float32))
        return (out[-1] if isinstance(out, (list, tuple)) else out).numpy()  # layer19 of a two-output model
    return embed


def classifier(C: float = 1e5, max_iter: int = 2000):
    """NOSS's logistic regression (lbfgs, multinomial) on standardized features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))


def fit_score(x_train, y_train, x_test, y_test, C: float = 1e5) -> float:
    """Test accuracy of the classifier; a training set with one class predicts that class."""
    if len(np.unique(y_train)) < 2:
        return float(np.mean(np.asarray(y_test) == np.asarray(y_train)[0]))
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(classifier(C).fit(x_train, y_train).score(x_test, y_test))


def task_accuracy(features: np.ndarray, data: dict, speaker_norm: bool, C: float = 1e5,
                  l2_norm: bool = False) -> float:
    """Accuracy on the task's ``test`` split (train on the rest); ``l2_norm`` scales each clip's
    features to unit length first, ``speaker_norm`` then standardizes them per speaker."""
    x = l2_normalize(features) if l2_norm else features
    x = speaker_normalize(x, data["speaker"]) if speaker_norm else x
    test = data["test"]
    return fit_score(x[~test], data["label"][~test], x[test], data["label"][test], C)


def intra_speaker_accuracies(features: np.ndarray, data: dict, speaker_norm: bool = False, C: float = 1e5
                             ) -> dict[int, float]:
    """Per speaker: a classifier fit on the speaker's own clips, scored on their held-out clips."""
    x = speaker_normalize(features, data["speaker"]) if speaker_norm else features
    out = {}
    for s in np.unique(data["speaker"]):
        rows, test = data["speaker"] == s, data["intra_test"]
        out[int(s)] = fit_score(x[rows & ~test], data["label"][rows & ~test], x[rows & test],
                                data["label"][rows & test], C)
    return out


def evaluate(featurizers: dict[str, Embedder | None], corpus: NossCorpus, tasks=TASKS, C: float = 1e5,
             intra: bool = True):
    """(tasks table, speakers table) as pandas DataFrames.

    ``featurizers`` maps a model name to an Embedder, or None for the log-mel baseline.
    tasks table: model, task, speaker_norm, l2_norm, accuracy (the best of the four is the NOSS number);
    speakers table: model, task, speaker, accuracy for the intra-speaker tasks, in this process
    (``intra=False``: empty; personalize.intra_speaker_on_pool runs them on devices)."""
    import pandas as pd

    rows, speakers = [], []
    for name, embed in featurizers.items():
        for task in tasks:
            data = corpus.get(task)
            feats = log_mel_features(corpus, task) if embed is None else embedding_features(embed, corpus, task)
            for norm in (False, True):
                for l2 in (False, True):
                    rows.append({"model": name, "task": task, "speaker_norm": norm, "l2_norm": l2,
                                 "accuracy": task_accuracy(feats, data, norm, C, l2)})
            if intra and task in INTRA_SPEAKER_TASKS:
                for s, acc in intra_speaker_accuracies(feats, data, C=C).items():
                    speakers.append({"model": name, "task": task, "speaker": s, "accuracy": acc})
    return pd.DataFrame(rows), pd.DataFrame(speakers, columns=["model", "task", "speaker", "accuracy"])
