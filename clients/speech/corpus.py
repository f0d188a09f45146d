"""Per-speaker speech data (log-mel features + character labels), synthesized once and cached on disk.

`SpeechCorpus(seed, ...)[speaker_id, split]` gives padded features, lengths and label ids over the
character vocabulary blank=0, space, apostrophe, a-z (CTC / RNN-T style), for the speaker's train or
held-out test phrases (10% of distinct phrases, as in Euphonia's per-speaker splits; Green et al.
2021). Entries live in fl.cache.DeviceCache keyed by (seed, speaker, split, config hash);
corrupt entries are detected by checksum and rebuilt.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from fl.cache import DeviceCache
from fl.seeding import rng_for

from . import features as F
from . import synth
from .speakers import SpeakerPopulation, recording_condition

VOCAB = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")
BLANK = 0
CHAR_TO_ID = {c: i for i, c in enumerate(VOCAB) if i != BLANK}
SPLITS = ("train", "test")
NORMALIZE = ("global", "utterance", "none")


def encode(text: str) -> np.ndarray:
    """Label ids of a transcript (raises KeyError on characters outside the vocabulary)."""
    return np.array([CHAR_TO_ID[c] for c in text], np.int32)


def decode(ids) -> str:
    return "".join(VOCAB[int(i)] for i in ids if int(i) != BLANK)


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    n_typical: int = 20
    n_atypical: int = 80
    utterances_per_speaker: int | tuple[int, int] = (40, 120)
    atypical_utterances: int | tuple[int, int] | None = None  # None: as utterances_per_speaker
    test_fraction: float = 0.1
    n_mels: int = F.N_MELS
    normalize: str = "global"  # "global" (fixed, streaming-safe) | "utterance" (per-utterance CMVN) | "none"
    noise: bool = True
    mtr: bool = False  # typical speakers' training utterances in random recording conditions (speakers.recording_condition)

    def digest(self) -> str:
        d = dataclasses.asdict(self)
        d["synth_version"] = synth.SYNTH_VERSION
        d["utterances_per_speaker"] = list(np.atleast_1d(self.utterances_per_speaker).tolist())
        if self.atypical_utterances is None:
            del d["atypical_utterances"]  # keys of corpora made before the option existed stay valid
        else:
            d["atypical_utterances"] = list(np.atleast_1d(self.atypical_utterances).tolist())
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


class SpeechCorpus:
    """Speakers' utterances as arrays; `get(speaker_id, split)` -> dict with
    features [N, T, n_mels] float32 (zero-padded), feature_lengths [N] int32, labels [N, L] int32
    (padded with blank=0), label_lengths [N] int32, transcripts [N] str, domains [N] str."""

    def __init__(self, seed: int, cache_dir: str | os.PathLike | None = None, memory_mb: float = 256,
                 config: CorpusConfig | None = None, **overrides):
        self.seed = seed
        self.config = dataclasses.replace(config or CorpusConfig(), **overrides)
        c = self.config
        if c.normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {NORMALIZE}, not {c.normalize!r}")
        self.population = SpeakerPopulation(seed, c.n_typical, c.n_atypical, c.utterances_per_speaker,
                                            c.test_fraction, atypical_utterances=c.atypical_utterances)
        self.cache = DeviceCache(cache_dir, "speech", memory_mb=memory_mb)
        self.built = 0  # entries synthesized (not read from cache) by this instance

    @property
    def speaker_ids(self) -> list[str]:
        return self.population.ids

    def table(self):
        return self.population.table()

    def key(self, speaker_id: str, split: str) -> str:
        return f"s{self.seed}-{speaker_id}-{split}-{self.config.digest()}"

    def get(self, speaker_id: str, split: str) -> dict[str, np.ndarray]:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        if speaker_id not in self.population.speakers:
            raise KeyError(speaker_id)
        return self.cache.get_or_make(self.key(speaker_id, split), lambda: self._build(speaker_id, split))

    def __getitem__(self, key: tuple[str, str]) -> dict[str, np.ndarray]:
        return self.get(*key)

    def _build(self, speaker_id: str, split: str) -> dict[str, np.ndarray]:
        self.built += 1
        c = self.config
        speaker = self.population.speaker(speaker_id)
        utts = self.population.utterances(speaker_id, split)
        feats, labels, seen = [], [], {}
        for phrase, _ in utts:
            k = seen[phrase] = seen.get(phrase, -1) + 1  # repeated recordings get distinct keys
            who = speaker
            if c.mtr and split == "train" and speaker.kind == "typical":
                who = recording_condition(speaker, rng_for(self.seed, "mtr", speaker_id, k, phrase))
            wave = synth.synthesize(who, phrase, self.seed, f"{split}:{k}", noise=c.noise)
            f = F.log_mel(wave, n_mels=c.n_mels, normalize=c.normalize == "utterance")
            feats.append(F.global_normalize(f) if c.normalize == "global" else f)
            labels.append(encode(phrase))
        n = len(utts)
        t_max = max((f.shape[0] for f in feats), default=0)
        l_max = max((len(y) for y in labels), default=0)
        x = np.zeros((n, t_max, c.n_mels), np.float32)
        y = np.zeros((n, l_max), np.int32)
        for i, (f, lab) in enumerate(zip(feats, labels)):
            x[i, : f.shape[0]] = f
            y[i, : len(lab)] = lab
        return {
            "features": x,
            "feature_lengths": np.array([f.shape[0] for f in feats], np.int32),
            "labels": y,
            "label_lengths": np.array([len(lab) for lab in labels], np.int32),
            "transcripts": np.array([p for p, _ in utts], dtype=str) if n else np.zeros(0, "<U1"),
            "domains": np.array([d for _, d in utts], dtype=str) if n else np.zeros(0, "<U1"),
        }
