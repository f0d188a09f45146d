"""TRILL trained federatedly: each device is one phone that learns the embedding by self-supervision
on its own recordings (Shor et al. 2020, "Towards Learning a Universal Non-Semantic
Representation of Speech"; here with FedAvg across devices instead of AudioSet in one place).

A device is an owner (clients.speech.speakers.make_speaker; a fraction ``atypical_fraction``
are atypical speakers) with ``clips_per_device`` training and ``eval_clips`` evaluation
recording sessions.  A session is the owner, in one random recording condition
(speakers.recording_condition: rate, SNR, muffling), saying ``utterances_per_clip`` prompts
in a row, synthesized by clients.speech.synth and turned into TRILL log-mel frames
(frontend.log_mel).  Training and evaluation sessions use different prompts.

Engine batches are dense arrays, so a device's data are triplets mined from its own clips
only (trill.sample_triplets): x = [n, 3, window_frames, 64] (anchor, positive, negative) and
y = [n, 2] int32 global clip ids (anchor's clip, negative's clip); device d's clips are
numbered d * K .. d * K + K - 1 (K = clips_per_device + eval_clips).  The engine batches
one device at a time, so the semi-hard negatives that `batch_loss` mines inside a batch come
from the same device too.  `pooled_triplets` is the central variant: triplets mined over
many devices' clips at once (negatives may come from other devices).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from clients.speech import synth
from clients.speech.prompts import sample_prompts
from clients.speech.speakers import make_speaker, recording_condition
from fl.config import ConfigError, bounded
from fl.seeding import rng_for
from fl.task import Task

from . import frontend as FE
from .noss import FRONTEND_VERSION, MIN_WINDOW_S
from .trill import TrillConfig, build_trill, sample_triplets, triplet_batch_loss


class TrillTask(Task):
    @dataclass
    class Config:
        n_devices: int = bounded(32, 1)          # phones; device ids 0 .. n_devices - 1
        atypical_fraction: float = bounded(0.2, 0.0, 1.0)
        clips_per_device: int = bounded(6, 2)    # training recording sessions
        eval_clips: int = bounded(2, 2)          # evaluation sessions (other prompts)
        utterances_per_clip: int = bounded(3, 1)
        triplets_per_device: int = bounded(32, 1)
        eval_triplets: int = bounded(16, 1)
        window_s: float = bounded(MIN_WINDOW_S, MIN_WINDOW_S)   # model input (>= 0.96 s)
        max_positive_gap_s: float = bounded(10.0, 0.01)         # anchor-positive distance
        margin: float = bounded(0.2, 0.0)
        semi_hard: bool = True
        width: int = bounded(8, 1)               # stage s has width * 2**s channels (TRILL-sized: 64)
        stages: int = bounded(3, 1)              # (TRILL-sized: 4)
        blocks_per_stage: int = bounded(1, 1)    # (TRILL-sized: 2)
        embedding_dim: int = bounded(64, 1)      # (TRILL: 512)
        layer19_stage: int = -2                  # stage whose flattened output is "layer19"
        noise: bool = True

    name = "trill"

    def __init__(self, config: "TrillTask.Config | None" = None, seed: int = 0):
        config = config or self.Config()
        self.config, self.seed = config, seed
        c = config
        if not c.window_s >= MIN_WINDOW_S - 1e-9:
            raise ConfigError(f"bad value for 'task.window_s': {c.window_s!r} (allowed: >= {MIN_WINDOW_S} s, "
                              f"one TRILL window of 96 frames)")
        if not -c.stages <= c.layer19_stage < c.stages:
            raise ConfigError(f"bad value for 'task.layer19_stage': {c.layer19_stage} (allowed: "
                              f"{-c.stages} .. {c.stages - 1})")
        self.window_frames = int(round(c.window_s * 1000 / FE.HOP_MS))
        self.model_config = TrillConfig(window_frames=self.window_frames, stem_width=c.width,
                                        widths=tuple(c.width * 2 ** s for s in range(c.stages)),
                                        blocks_per_stage=c.blocks_per_stage, embedding_dim=c.embedding_dim,
                                        layer19_stage=c.layer19_stage)
        self.clips_total = c.clips_per_device + c.eval_clips

    # -- model -------------------------------------------------------------------------
    def build_model(self):
        import tensorflow as tf

        tf.keras.utils.set_random_seed(self.seed)  # same initial weights in every process
        return build_trill(self.model_config)

    def example_spec(self):
        import tensorflow as tf

        return (tf.TensorSpec([None, 3, self.window_frames, FE.N_MELS], tf.float32),
                tf.TensorSpec([None, 2], tf.int32))

    @property
    def cache_namespace(self) -> str:
        return f"{super().cache_namespace}-synth{synth.SYNTH_VERSION}-fe{FRONTEND_VERSION}"

    # -- data --------------------------------------------------------------------------
    def _check_device(self, device_id: int) -> int:
        d = int(device_id)
        if not 0 <= d < self.config.n_devices:
            raise ValueError(f"device {device_id} does not exist: task.n_devices is {self.config.n_devices} "
                             f"(set population.size <= task.n_devices)")
        return d

    def owner(self, device_id: int):
        """The device owner's voice (a clients.speech Speaker)."""
        d = self._check_device(device_id)
        atypical = rng_for(self.seed, "trill-kind", d).random() < self.config.atypical_fraction
        return make_speaker(self.seed, f"trill-d{d:06d}", "atypical" if atypical else "typical")

    def clip_ids(self, device_id: int, split: str = "train") -> np.ndarray:
        d, c = self._check_device(device_id), self.config
        first = d * self.clips_total + (0 if split == "train" else c.clips_per_device)
        return np.arange(first, first + (c.clips_per_device if split == "train" else c.eval_clips), dtype=np.int32)

    def device_clips(self, device_id: int, split: str = "train") -> list[np.ndarray]:
        """The device's recording sessions of a split as TRILL log-mel frames [T_i, 64]."""
        d, c = self._check_device(device_id), self.config
        split = "train" if split == "train" else "eval"
        owner = self.owner(d)
        n = c.clips_per_device if split == "train" else c.eval_clips
        prompts = sample_prompts(self.seed, f"{owner.speaker_id}-{split}", n * c.utterances_per_clip)
        out = []
        for k in range(n):
            said = prompts[k * c.utterances_per_clip:(k + 1) * c.utterances_per_clip] or prompts[-1:]
            who = recording_condition(owner, rng_for(self.seed, "trill-session", d, split, k))
            wave = synth.synthesize(who, ", ".join(p for p, _ in said), self.seed, f"trill-{split}-{k}",
                                    noise=c.noise)
            out.append(FE.log_mel(wave))
        return out

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """Triplets mined from this device's own clips (num_examples, the clock's estimate, is
        not used: a device mines ``triplets_per_device``, or ``eval_triplets`` for eval)."""
        c = self.config
        split = "train" if split == "train" else "eval"
        n = c.triplets_per_device if split == "train" else c.eval_triplets
        rng = rng_for(self.seed, "trill-triplets", int(device_id), split)
        x, y = sample_triplets(self.device_clips(device_id, split), self.clip_ids(device_id, split), n, rng,
                               self.window_frames, c.max_positive_gap_s)
        return {"x": x, "y": y.astype(np.int32)}

    def pooled_triplets(self, device_ids, n: int, split: str = "train") -> dict[str, np.ndarray]:
        """The central variant: n triplets mined over the pooled clips of all ``device_ids``."""
        c = self.config
        feats, ids = [], []
        for d in device_ids:
            feats += self.device_clips(d, split)
            ids.append(self.clip_ids(d, split))
        rng = rng_for(self.seed, "trill-pooled-triplets", split, len(feats))
        x, y = sample_triplets(feats, np.concatenate(ids), n, rng, self.window_frames, c.max_positive_gap_s)
        return {"x": x, "y": y.astype(np.int32)}

    # -- loss --------------------------------------------------------------------------
    def batch_loss(self, model, x, y, training):
        """Per-triplet loss (semi-hard negatives mined inside this batch, i.e. this device's
        windows) and triplet accuracy (positive closer than the sampled negative)."""
        c = self.config
        return triplet_batch_loss(model, x, y, margin=c.margin, semi_hard=c.semi_hard, training=training)


def paper_config(**overrides) -> "TrillTask.Config":
    """TRILL-sized network (512-d embedding, 4 stages from 64 channels, 2 blocks each)."""
    return dataclasses.replace(TrillTask.Config(width=64, stages=4, blocks_per_stage=2, embedding_dim=512),
                               **overrides)
