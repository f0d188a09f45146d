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
from clients.speech.personalization import error_rate_record
from clients.speech.prompts import DOMAINS
from clients.speech.rnnt import RNNT, RNNTConfig
from fl.config import bounded
from fl.task import Task, layers_mask


class ASRTask(Task):
    @dataclass
    class Config:
        n_typical: int = 8
        n_atypical: int = 0
        heldout_typical: int = 0  # the last k typical speakers never train; their test phrases leave all training
        utterances_per_speaker: int = 24
        atypical_utterances: int = bounded(0, 0)  # per atypical speaker (0 = utterances_per_speaker)
        max_frames: int = 300  # 10 ms frames; longer utterances are left out (batches are trimmed to their longest)
        max_label_len: int = 48
        encoder_layers: int = 8
        encoder_units: int = 64
        pred_units: int = 64
        joint_units: int = 64
        input_stack: int = 3  # 30 ms input frames, as in He et al. (stack 4, stride 3 there)
        input_stride: int = 3
        reduction_after: int = 2  # time reduction x2 after this encoder layer (0 = none: 30 ms frames)
        residual: bool = False  # residual + LayerNorm encoder layers
        ctc_weight: float = 0.0  # auxiliary CTC loss on the encoder (training only; 0 = plain RNN-T)
        specaugment: bool = False  # on in training steps only (Park et al. 2019)
        # its policy: time warp W, two frequency masks of width <= F, two time masks of width <= T
        # frames and <= p x the utterance (defaults: a mild policy for 30 ms frames; Park et al.'s
        # LibriSpeech-double policy is W 80, F 27, T 100, p 1.0)
        specaugment_time_warp: int = bounded(10, 0)
        specaugment_freq_width: int = bounded(10, 0)
        specaugment_time_width: int = bounded(20, 0)
        specaugment_time_ratio: float = bounded(0.05, 0.0, 1.0)
        mtr: bool = False  # multi-condition training data for typical speakers (speakers.recording_condition)
        base_checkpoint: str = ""  # personalization: a fedavg-asr run directory ("" = train one)
        warm_start_steps: int = 0  # fedavg-asr: central Adam steps on the training speakers' pooled data first
        warm_start_lr: float = 0.002
        warm_start_batch: int = 32

    name = "asr"

    def __init__(self, config: "ASRTask.Config", seed: int):
        self.config, self.seed = config, seed
        c = config
        self.corpus = SpeechCorpus(seed, config=CorpusConfig(n_typical=c.n_typical, n_atypical=c.n_atypical,
                                                             utterances_per_speaker=c.utterances_per_speaker,
                                                             atypical_utterances=c.atypical_utterances or None,
                                                             mtr=c.mtr))
        kind = lambda s: self.corpus.population.speaker(s).kind  # noqa: E731
        self.speakers = [s for s in self.corpus.speaker_ids if kind(s) == "typical"]
        self.atypical = [s for s in self.corpus.speaker_ids if kind(s) != "typical"]
        if not 0 <= c.heldout_typical < max(len(self.speakers), 1):
            from fl.config import ConfigError
            raise ConfigError(f"bad value for 'task.heldout_typical': {c.heldout_typical} (allowed: 0 .. "
                              f"n_typical - 1 = {len(self.speakers) - 1})")
        cut = len(self.speakers) - c.heldout_typical
        self.train_speakers, self.heldout_speakers = self.speakers[:cut], self.speakers[cut:]
        # phrases held out for the base model: no typical speaker ever trains on them
        self.heldout_phrases = frozenset(p for s in self.heldout_speakers
                                         for p, _ in self.corpus.population.utterances(s, "test"))
        self.model_config = RNNTConfig(encoder_layers=c.encoder_layers, encoder_units=c.encoder_units,
                                       pred_units=c.pred_units, joint_units=c.joint_units,
                                       input_stack=c.input_stack, input_stride=c.input_stride,
                                       reduction_after=min(c.reduction_after, c.encoder_layers),
                                       residual=c.residual, ctc_head=c.ctc_weight > 0)

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

    def speaker_index(self, speaker: str) -> int:
        """The device id of a speaker (inverse of ``speaker_for``)."""
        return (self.speakers + self.atypical).index(speaker)

    def trainable_mask(self, model, strategy: str) -> list[bool]:
        """Which variables a personalization strategy fine-tunes (Green et al. 2021:
        the bottom 5 of 8 encoder layers; the rest, joint and prediction network frozen)."""
        enc = model.encoder_layers
        return layers_mask(model, strategy, {"bottom5": enc[:5], "top3": enc[5:], "all": None})

    def evaluate_metrics(self, model, data: dict) -> dict[str, float]:
        """The metrics personalization reports before and after fine-tuning: `decode_metrics`."""
        return self.decode_metrics(model, data)

    def personalization_record(self, before, after, tuned, validation=None) -> dict:
        """Green et al. 2021's per-speaker columns (clients/speech/personalization.py)."""
        return error_rate_record(before, after, tuned, validation)

    def decode_metrics(self, model, data: dict) -> dict[str, float]:
        """Greedy-decoding WER over a device's packed utterances, overall ("wer", "words") and
        per prompt domain ("wer_home", "words_home", ...)."""
        from clients.speech.decoding import compiled_greedy_decode, ids_to_text
        from clients.speech.wer import word_edit_counts

        errors, words = np.zeros(len(DOMAINS)), np.zeros(len(DOMAINS))
        for x, y, dom in zip(data["x"], data["y"], data["domain"]):
            n = int(x[:, -1].sum())
            enc, enc_len = model.encode(x[None, :n, :-1], np.array([n]))
            hyp = ids_to_text(compiled_greedy_decode(model, enc.numpy()[0, : int(enc_len[0])]).tokens)
            e = word_edit_counts(ids_to_text(y[y > 0]), hyp)
            errors[dom] += e.errors
            words[dom] += e.ref_len
        rate = lambda e, w: float(e / w) if w else float("nan")  # noqa: E731
        out = {"wer": rate(errors.sum(), words.sum()), "words": int(words.sum())}
        for i, d in enumerate(DOMAINS):
            out[f"wer_{d}"], out[f"words_{d}"] = rate(errors[i], words[i]), int(words[i])
        return out

    def utterances(self, device_id: int, split: str = "train") -> dict[str, np.ndarray]:
        """The speaker's utterances of a split that fit max_frames / max_label_len; a typical
        speaker's training split also loses every held-out phrase (``heldout_phrases``)."""
        c = self.config
        speaker = self.speaker_for(device_id)
        d = self.corpus.get(speaker, "test" if split in ("eval", "test") else "train")
        keep = (d["feature_lengths"] <= c.max_frames) & (d["label_lengths"] <= c.max_label_len)
        if split == "train" and speaker in self.speakers and self.heldout_phrases:
            keep &= ~np.isin(d["transcripts"], list(self.heldout_phrases))
        return {k: v[keep] for k, v in d.items()}

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """The speaker's utterances of the split (num_examples is the clock's estimate),
        packed as x = [n, max_frames, n_mels + 1] (last channel: frame is real), y = [n, max_label_len]."""
        c = self.config
        d = self.utterances(device_id, split)
        n, t = len(d["feature_lengths"]), min(c.max_frames, d["features"].shape[1])
        x = np.zeros((n, c.max_frames, d["features"].shape[2] + 1), np.float32)
        x[:, :t, :-1] = d["features"][:, :t]
        x[:, :, -1] = np.arange(c.max_frames)[None, :] < d["feature_lengths"][:, None]
        y = np.zeros((n, c.max_label_len), np.int32)
        u = min(c.max_label_len, d["labels"].shape[1])
        y[:, :u] = d["labels"][:, :u]
        domain = np.array([DOMAINS.index(str(v)) for v in d["domains"]], np.int32)
        return {"x": x, "y": y, "domain": domain}

    def example_lengths(self, data: dict[str, np.ndarray]) -> np.ndarray:
        """Frames per packed utterance (the "frame is real" channel)."""
        return data["x"][:, :, -1].sum(axis=1).astype(np.int32)

    def batch_loss(self, model, x, y, training):
        """Per-utterance RNN-T loss; the second value (accuracy) is not defined here: 0."""
        import tensorflow as tf

        lengths = tf.maximum(tf.cast(tf.reduce_sum(x[..., -1], axis=1), tf.int32), 1)  # padding rows: 1 frame
        label_lengths = tf.math.count_nonzero(y, axis=1, dtype=tf.int32)
        # compute only over the batch's longest utterance, not the packing width
        features = tf.ensure_shape(x[:, : tf.reduce_max(lengths), :-1], [None, None, x.shape[-1] - 1])
        y = y[:, : tf.maximum(tf.reduce_max(label_lengths), 1)]
        if training and self.config.specaugment:
            from clients.speech.specaugment import SpecAugmentConfig, spec_augment

            seed = tf.stack([tf.cast(tf.reduce_sum(lengths), tf.int32), tf.reduce_sum(label_lengths)])
            c = self.config
            policy = SpecAugmentConfig(time_warp=c.specaugment_time_warp, freq_width=c.specaugment_freq_width,
                                       time_width=c.specaugment_time_width, time_ratio=c.specaugment_time_ratio)
            features = spec_augment(features, seed, lengths, training=True, config=policy)
        loss = model.loss(features, lengths, y, label_lengths, training=training,
                          ctc_weight=self.config.ctc_weight if training else 0.0)
        return loss, tf.zeros_like(loss)
