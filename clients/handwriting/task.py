"""Online handwriting recognition as an engine task (Carbune et al. 2020, "Fast multi-language
LSTM-based online handwriting recognition"): each device is one writer (writers.py) whose
words are rendered as ink, turned into Bézier-curve features (bezier.py; or resampled
points, the baseline) and recognized by a bidirectional QRNN or LSTM (qrnn.py) trained with
CTC (decoding.py).

Engine batches are dense arrays, so a word is packed as x = [max_steps, features + 1] (curve
or point features plus a 0/1 "step is real" channel) and y = [max_label_len] character ids
padded with the blank 0 (labels never contain blank, so the label length is the non-zero
count).  Device ids [0, n_writers) are the training writers; [n_writers, n_writers +
heldout_writers) are held out entirely: their training split is refused here, so they can
only be evaluated, or personalized on their own device: with ``personalize_heldout`` (set
only for the engine's "personalize" mode) their training split is served too.  A word whose steps exceed
``max_steps``, whose label exceeds ``max_label_len``, or that CTC cannot align (fewer steps
than labels plus repeats) is left out.

The per-example metric the engine reports as "accuracy" is 1 - the word's character error
rate under greedy decoding (so it can go below 0 for long insertions).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.handwriting.bezier import NUM_FEATURES, NUM_POINT_FEATURES, FitConfig, curve_features, fit_ink
from clients.handwriting.bezier import point_features
from clients.handwriting.decoding import BLANK, ctc_loss, encode
from clients.handwriting.ink import num_points
from clients.handwriting.qrnn import Recognizer, RecognizerConfig
from clients.handwriting.writers import PopulationConfig, WriterPopulation
from clients.speech.personalization import error_rate_record
from fl.config import ConfigError, bounded
from fl.task import Task, layers_mask

REPRESENTATIONS = ("bezier", "points")


def ctc_feasible(steps: int, labels) -> bool:
    """CTC needs a step per label plus a blank between equal neighbours."""
    labels = list(labels)
    return steps >= len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


class HandwritingTask(Task):
    @dataclass
    class Config:
        n_writers: int = bounded(20, 1)
        heldout_writers: int = bounded(4, 0)
        words_per_writer: int = bounded(40, 2)  # distinct; 10% of them are test words
        writes_per_word: int = bounded(1, 1)
        vocab_size: int = bounded(3000, 50)
        max_word_len: int = bounded(12, 1)
        representation: str = "bezier"  # "bezier" curves or "points" (resampled deltas, the baseline)
        fit_threshold: float = bounded(0.04, 1e-6)  # Bézier fit error bound (normalized ink heights)
        point_spacing: float = bounded(0.05, 1e-3)  # raw-points baseline resampling step
        max_steps: int = bounded(96, 2)  # curves (or points) per word
        max_label_len: int = bounded(12, 1)
        cell: str = "qrnn"  # "qrnn" or "lstm"
        layers: int = bounded(3, 1)
        units: int = bounded(64, 1)  # per direction (the LSTM is sized to the same parameter count)
        kernel: int = bounded(2, 1)  # QRNN gate convolution width
        # serve held-out writers' training words: only for per-writer personalization on their
        # own device (the engine's "personalize" mode); federated training refuses them
        personalize_heldout: bool = False

    name = "handwriting"

    def __init__(self, config: "HandwritingTask.Config | None" = None, seed: int = 0):
        config = config or self.Config()
        self.config, self.seed = config, seed
        c = self.check_config(config)
        self.population = WriterPopulation(seed, PopulationConfig(
            n_writers=c.n_writers, heldout_writers=c.heldout_writers, words_per_writer=c.words_per_writer,
            writes_per_word=c.writes_per_word, vocab_size=c.vocab_size, max_word_len=c.max_word_len))
        self.num_features = NUM_FEATURES if c.representation == "bezier" else NUM_POINT_FEATURES
        self.model_config = RecognizerConfig(num_features=self.num_features, cell=c.cell, layers=c.layers,
                                             units=c.units, kernel=c.kernel)
        self._word_index = {w: i for i, w in enumerate(self.population.vocab.words)}

    @property
    def cache_namespace(self) -> str:
        """Device data depends on the population and the featurization only (not the model)."""
        import dataclasses
        import hashlib
        import json

        c = dataclasses.asdict(self.config)
        for k in ("cell", "layers", "units", "kernel", "personalize_heldout"):
            c.pop(k)
        key = json.dumps([self.seed, c], sort_keys=True)
        return f"handwriting-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    @staticmethod
    def check_config(c: "HandwritingTask.Config") -> "HandwritingTask.Config":
        """The config, or `ConfigError` naming the bad key (cheap: nothing is built)."""
        if c.representation not in REPRESENTATIONS:
            raise ConfigError(f"bad value for 'task.representation': {c.representation!r} "
                              f"(allowed: {', '.join(REPRESENTATIONS)})")
        if c.cell not in ("qrnn", "lstm"):
            raise ConfigError(f"bad value for 'task.cell': {c.cell!r} (allowed: qrnn, lstm)")
        return c

    # -- model -------------------------------------------------------------------------
    def build_model(self):
        import tensorflow as tf

        tf.keras.utils.set_random_seed(self.seed)  # same initial weights in every process
        model = Recognizer(self.model_config)
        model(tf.zeros([1, 2, self.num_features]), lengths=tf.constant([2]))
        return model

    def example_spec(self):
        import tensorflow as tf

        c = self.config
        return (tf.TensorSpec([None, c.max_steps, self.num_features + 1], tf.float32),
                tf.TensorSpec([None, c.max_label_len], tf.int32))

    def language_model(self, order: int = 5):
        """The character LM acceptor, trained on the training vocabulary only (no test word)."""
        from clients.handwriting.charlm_fst import CharNgramFst

        return CharNgramFst(self.population.vocab.lm_text(), order=order)

    # -- data --------------------------------------------------------------------------
    def featurize(self, strokes) -> np.ndarray:
        c = self.config
        if c.representation == "points":
            return point_features(strokes, c.point_spacing)
        return curve_features(fit_ink(strokes, FitConfig(threshold=c.fit_threshold)))

    def writer_data(self, writer: int, split: str = "train") -> dict[str, np.ndarray]:
        """A writer's packed words of a split (any writer, held-out ones included):
        x, y as in the module docstring, plus word_id (vocabulary index), points (touch points)
        and steps (curves or resampled points) per word."""
        c = self.config
        rows = []
        for word, ink in self.population.samples(writer, split):
            feats = self.featurize(ink)
            labels = encode(word)
            if len(feats) <= c.max_steps and len(labels) <= c.max_label_len and ctc_feasible(len(feats), labels):
                rows.append((feats, labels, self._word_index[word], num_points(ink)))
        n = len(rows)
        x = np.zeros((n, c.max_steps, self.num_features + 1), np.float32)
        y = np.full((n, c.max_label_len), BLANK, np.int32)
        for i, (feats, labels, _, _) in enumerate(rows):
            x[i, :len(feats), :-1] = feats
            x[i, :len(feats), -1] = 1.0
            y[i, :len(labels)] = labels
        return {"x": x, "y": y, "word_id": np.array([r[2] for r in rows], np.int32),
                "points": np.array([r[3] for r in rows], np.int32),
                "steps": np.array([len(r[0]) for r in rows], np.int32)}

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """The writer's words of the split (num_examples, the clock's estimate, is not used: a
        writer has the words they have).  A held-out writer's training split is refused unless
        ``personalize_heldout``."""
        if split == "train" and self.population.is_heldout(int(device_id)) and not self.config.personalize_heldout:
            raise ValueError(f"writer {device_id} is held out: it never trains (training writers are "
                             f"0 .. {self.config.n_writers - 1}; set population.size <= task.n_writers)")
        return self.writer_data(int(device_id), "eval" if split in ("eval", "test") else "train")

    # -- loss --------------------------------------------------------------------------
    def batch_loss(self, model, x, y, training):
        """Per-word CTC loss (Graves et al. 2006) and 1 - the word's greedy-decoding CER."""
        import tensorflow as tf

        lengths = tf.maximum(tf.cast(tf.reduce_sum(x[..., -1], axis=1), tf.int32), 1)  # padding rows: 1 step
        label_lengths = tf.math.count_nonzero(y, axis=1, dtype=tf.int32)
        feats = tf.ensure_shape(x[:, : tf.reduce_max(lengths), :-1], [None, None, x.shape[-1] - 1])
        y = y[:, : tf.maximum(tf.reduce_max(label_lengths), 1)]
        logits = model(feats, lengths=lengths, training=training)
        loss = ctc_loss(y, logits, label_lengths, lengths)
        decoded, _ = tf.nn.ctc_greedy_decoder(tf.transpose(logits, [1, 0, 2]), lengths, blank_index=BLANK)
        truth = tf.sparse.from_dense(tf.cast(y, tf.int64))
        edits = tf.edit_distance(tf.cast(decoded[0], tf.int64), truth, normalize=False)
        accuracy = 1.0 - edits / tf.maximum(tf.cast(label_lengths, tf.float32), 1.0)
        return loss, accuracy

    # -- personalization (the engine's "personalize" mode) -------------------------------
    def trainable_mask(self, model, strategy: str) -> list[bool]:
        """Variables a per-writer fine-tuning strategy updates: "all"; "top" (the last
        bidirectional layer and the softmax); "softmax" (the output layer only)."""
        return layers_mask(model, strategy, {"all": None, "top": [model.rnns[-1], model.head], "softmax": [model.head]})

    def evaluate_metrics(self, model, data: dict) -> dict[str, float]:
        """The metrics personalization reports before and after fine-tuning: `decode_metrics`."""
        return self.decode_metrics(model, data)

    def personalization_record(self, before, after, tuned, validation=None) -> dict:
        """Green et al. 2021's per-speaker columns (clients/speech/personalization.py)."""
        return error_rate_record(before, after, tuned, validation)

    def decode_metrics(self, model, data: dict) -> dict[str, float]:
        """Greedy-decoding character and word error rates over a writer's packed words:
        {"cer", "wer", "words", "chars"} (a word is an error unless recognized exactly)."""
        from clients.handwriting.decoding import cer, decode_ids

        refs = [decode_ids(row[row > 0]) for row in np.asarray(data["y"])]
        hyps = recognize(model, data["x"])
        n = len(refs)
        return {"cer": cer(refs, hyps) if n else float("nan"),
                "wer": float(np.mean([r != h for r, h in zip(refs, hyps)])) if n else float("nan"),
                "words": n, "chars": int(sum(len(r) for r in refs))}


def log_probs(model, x: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Per-word [steps, classes] log-probabilities of packed words x [n, max_steps, F + 1]."""
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    out = []
    for lo in range(0, len(x), batch):
        xb = x[lo:lo + batch]
        lengths = np.maximum(xb[..., -1].sum(1).astype(np.int32), 1)
        logits = model(tf.constant(xb[:, : lengths.max(), :-1]), lengths=tf.constant(lengths))
        lp = tf.nn.log_softmax(logits).numpy()
        out += [lp[i, : lengths[i]] for i in range(len(xb))]
    return out


def recognize(model, x: np.ndarray) -> list[str]:
    """Greedy (best-path) transcripts of packed words."""
    from clients.handwriting.decoding import decode_ids, greedy_decode

    return [decode_ids(greedy_decode(lp)) for lp in log_probs(model, x)]
