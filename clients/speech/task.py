"""Speech recognition as an engine task: each device is one simulated speaker whose
utterances are synthesized and featurized on the worker, and trains a streaming RNN-T
(He et al. 2019, "Streaming End-to-end Speech Recognition for Mobile Devices").

Engine batches are dense arrays, so an utterance is packed as x = [max_frames, n_mels + 1]
(log-mel frames plus a 0/1 "frame is real" channel) and y = [max_label_len] character ids
padded with blank (labels never contain blank, so the label length is the non-zero count).
Device ids [0, n_typical) are the typical speakers, [n_typical, n_typical + n_atypical)
the atypical ones (personalization).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.speech.corpus import CorpusConfig, SpeechCorpus
from clients.speech.rnnt import RNNT, RNNTConfig


class ASRTask:
    @dataclass
    class Config:
        n_typical: int = 8
        n_atypical: int = 0
        utterances_per_speaker: int = 24
        max_frames: int = 300
        max_label_len: int = 48
        encoder_layers: int = 8
        encoder_units: int = 64
        pred_units: int = 64
        joint_units: int = 64
        input_stack: int = 3  # 30 ms input frames, as in He et al. (stack 4, stride 3 there)
        input_stride: int = 3
        specaugment: bool = False  # on in training steps only (Park et al. 2019)
        base_checkpoint: str = ""  # personalization: a fedavg-asr run directory ("" = train one)

    name = "asr"

    def __init__(self, config: "ASRTask.Config", seed: int):
        self.config, self.seed = config, seed
        c = config
        self.corpus = SpeechCorpus(seed, config=CorpusConfig(n_typical=c.n_typical, n_atypical=c.n_atypical,
                                                             utterances_per_speaker=c.utterances_per_speaker))
        kind = lambda s: self.corpus.population.speaker(s).kind  # noqa: E731
        self.speakers = [s for s in self.corpus.speaker_ids if kind(s) == "typical"]
        self.atypical = [s for s in self.corpus.speaker_ids if kind(s) != "typical"]
        self.model_config = RNNTConfig(encoder_layers=c.encoder_layers, encoder_units=c.encoder_units,
                                       pred_units=c.pred_units, joint_units=c.joint_units,
                                       input_stack=c.input_stack, input_stride=c.input_stride,
                                       reduction_after=min(2, c.encoder_layers))

    @property
    def cache_namespace(self) -> str:
        c = self.config
        return (f"asr-{self.seed}-{self.corpus.config.digest()}-{c.max_frames}-{c.max_label_len}")

    def example_spec(self):
        import tensorflow as tf
        c = self.config
        return (tf.TensorSpec([None, c.max_frames, self.corpus.config.n_mels + 1], tf.float32),
                tf.TensorSpec([None, c.max_label_len], tf.int32))

    def build_model(self):
        import tensorflow as tf

        tf.keras.utils.set_random_seed(self.seed)  # same initial weights in every process
        model = RNNT(self.model_config)
        c = self.config
        model((tf.zeros([1, c.max_frames, self.corpus.config.n_mels]), tf.constant([c.max_frames]),
               tf.zeros([1, 1], tf.int32)))
        return model

    def speaker_for(self, device_id: int) -> str:
        ordered = self.speakers + self.atypical
        if not 0 <= int(device_id) < len(ordered):
            raise ValueError(f"device {device_id} has no speaker: the corpus has {len(ordered)} "
                             f"({len(self.speakers)} typical, {len(self.atypical)} atypical)")
        return ordered[int(device_id)]

    def trainable_mask(self, model, strategy: str) -> list[bool]:
        """Which variables a personalization strategy fine-tunes (Green et al. 2021:
        the bottom 5 of 8 encoder layers; the rest, joint and prediction network frozen)."""
        enc = model.encoder_layers
        chosen = {"bottom5": enc[:5], "top3": enc[5:], "all": None}
        if strategy not in chosen:
            raise ValueError(f"unknown personalization strategy {strategy!r} (allowed: {', '.join(chosen)})")
        if chosen[strategy] is None:
            return [True] * len(model.trainable_variables)
        ids = {id(v) for layer in chosen[strategy] for v in layer.trainable_variables}
        return [id(v) in ids for v in model.trainable_variables]

    def decode_wer(self, model, data: dict) -> tuple[float, int]:
        """Corpus WER of greedy decoding over a device's packed utterances, and word count."""
        from clients.speech.decoding import greedy_decode, ids_to_text
        from clients.speech.wer import word_edit_counts

        errors = words = 0
        for x, y in zip(data["x"], data["y"]):
            n = int(x[:, -1].sum())
            enc, enc_len = model.encode(x[None, :n, :-1], np.array([n]))
            hyp = ids_to_text(greedy_decode(model, enc.numpy()[0, : int(enc_len[0])]).tokens)
            e = word_edit_counts(ids_to_text(y[y > 0]), hyp)
            errors, words = errors + e.errors, words + e.ref_len
        return (errors / words if words else float("nan")), words

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """All of the speaker's utterances of the split (num_examples is the clock's estimate)."""
        c = self.config
        d = self.corpus.get(self.speaker_for(device_id), "test" if split == "eval" else "train")
        n, t = len(d["feature_lengths"]), min(c.max_frames, d["features"].shape[1])
        x = np.zeros((n, c.max_frames, d["features"].shape[2] + 1), np.float32)
        x[:, :t, :-1] = d["features"][:, :t]
        x[:, :, -1] = np.arange(c.max_frames)[None, :] < np.minimum(d["feature_lengths"], c.max_frames)[:, None]
        y = np.zeros((n, c.max_label_len), np.int32)
        u = min(c.max_label_len, d["labels"].shape[1])
        y[:, :u] = d["labels"][:, :u]
        return {"x": x, "y": y}

    def batch_loss(self, model, x, y, training):
        """Per-utterance RNN-T loss; the second value (accuracy) is not defined here: 0."""
        import tensorflow as tf

        lengths = tf.maximum(tf.cast(tf.reduce_sum(x[..., -1], axis=1), tf.int32), 1)  # padding rows: 1 frame
        label_lengths = tf.math.count_nonzero(y, axis=1, dtype=tf.int32)
        features = x[..., :-1]
        if training and self.config.specaugment:
            from clients.speech.specaugment import SpecAugmentConfig, spec_augment

            seed = tf.stack([tf.cast(tf.reduce_sum(lengths), tf.int32), tf.reduce_sum(label_lengths)])
            features = spec_augment(features, seed, lengths, training=True,
                                    config=SpecAugmentConfig(time_warp=20, freq_width=15, time_width=30,
                                                             time_ratio=0.2))
        loss = model.loss(features, lengths, y, label_lengths, training=training)
        return loss, tf.zeros_like(loss)
