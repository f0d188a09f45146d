"""A NOSS-like benchmark of non-semantic speech tasks, synthesized offline with the speech stack.

NOSS (Shor et al. 2020, "Towards Learning a Universal Non-Semantic Representation of Speech")
gathers speaker, language, keyword, emotion and medical-speech tasks; FRILL (Peplinski et al.
2021) adds masked-speech detection. Each task here plays one dataset's role, spoken by
clients.speech.synth (espeak-ng) with speakers from clients.speech.speakers:

=============  ========================================================  ===================
task           labels                                                    role of
=============  ========================================================  ===================
speaker_id     which of ``n_speakers`` typical speakers                  VoxCeleb1
language_id    espeak-ng language of everyday phrases and numbers        VoxForge
commands       which of ``command_words`` (one word per clip)            Speech Commands
style          prosody class from rate, pitch, range and loudness        CREMA-D / SAVEE
mask           speech through a mask (low-pass + attenuation) or not     ComParE 2020 Mask
severity       none / mild / moderate / severe (the atypical speakers)   Euphonia
=============  ========================================================  ===================

Splits: ``test`` is speaker-disjoint (a ``test_fraction`` of the task's speakers) except for
speaker_id, where it holds out a fraction of every speaker's clips; ``intra_test`` holds out
clips *within* each speaker (per label where a speaker has every label more than once), for
the intra-speaker (personalization) tasks of NOSS (commands and style).

Clips are 16 kHz waveforms -> the TRILL front end (frontend.log_mel) and are stored as one
frame matrix per task (``frames`` [sum T, 64], ``offsets`` [N + 1]) in fl.cache.DeviceCache,
keyed by the seed and a digest of the task's config.  Everything is deterministic in the seed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import numpy as np

from fl.cache import DeviceCache
from fl.config import ConfigError
from fl.seeding import rng_for
from clients.speech import synth
from clients.speech.prompts import sample_prompts
from clients.speech.speakers import SEVERITIES, Speaker, make_speaker

from . import frontend as FE

FRONTEND_VERSION = "1"  # bump when frontend.log_mel changes (part of the cache key)
TASKS = ("speaker_id", "language_id", "commands", "style", "mask", "severity")
INTRA_SPEAKER_TASKS = ("commands", "style")
MIN_WINDOW_S = FE.WINDOW_FRAMES * FE.HOP_MS / 1000  # 0.96 s, one model input

# Everyday phrases per espeak-ng language (clips add a number, which espeak-ng reads in the language).
PHRASES: dict[str, tuple[str, ...]] = {
    "en-us": ("good morning how are you", "the weather is nice today", "I would like a cup of coffee",
              "where is the train station", "please call me tomorrow", "my name is"),
    "de": ("guten morgen wie geht es dir", "das wetter ist heute schön", "ich hätte gern einen kaffee",
           "wo ist der bahnhof", "bitte ruf mich morgen an", "ich heiße"),
    "fr": ("bonjour comment allez vous", "il fait beau aujourd'hui", "je voudrais un café",
           "où est la gare", "appelle moi demain s'il te plaît", "je m'appelle"),
    "es": ("buenos días cómo estás", "hace buen tiempo hoy", "quisiera un café",
           "dónde está la estación", "llámame mañana por favor", "me llamo"),
    "it": ("buongiorno come stai", "oggi fa bel tempo", "vorrei un caffè",
           "dov'è la stazione", "chiamami domani per favore", "mi chiamo"),
    "pt": ("bom dia como vai você", "hoje está um dia bonito", "eu queria um café",
           "onde fica a estação", "liga-me amanhã por favor", "o meu nome é"),
    "nl": ("goedemorgen hoe gaat het", "het weer is mooi vandaag", "ik wil graag een kopje koffie",
           "waar is het station", "bel me morgen alsjeblieft", "mijn naam is"),
    "pl": ("dzień dobry jak się masz", "dzisiaj jest ładna pogoda", "poproszę kawę",
           "gdzie jest dworzec", "zadzwoń do mnie jutro", "nazywam się"),
}
LANGUAGES = tuple(PHRASES)
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")  # Speech Commands' ten
# Prosody classes (acted-emotion stand-ins): x rate, + pitch, x pitch range, x recording level.
STYLES: dict[str, tuple[float, int, float, float]] = {
    "neutral": (1.0, 0, 1.0, 1.0),
    "happy": (1.15, 14, 1.7, 1.2),
    "sad": (0.75, -12, 0.35, 0.35),
    "angry": (1.25, 6, 1.3, 2.0),
    "calm": (0.88, -4, 0.6, 0.7),
}
MASK_LOWPASS_HZ = (1000.0, 2500.0)  # a mask muffles: low-pass cut-off range
MASK_GAIN = 0.6                     # and attenuates


class NossConfigError(ConfigError):
    """A NOSS corpus configuration that cannot be used; the message names the key."""


@dataclasses.dataclass(frozen=True)
class NossConfig:
    n_speakers: int = 100            # speaker_id classes
    speaker_clips: int = 8           # clips per speaker_id speaker
    languages: tuple[str, ...] = ("en-us", "de", "fr", "es", "it", "pl")
    language_speakers: int = 20      # per language
    language_clips: int = 4          # per language speaker
    command_words: tuple[str, ...] = COMMANDS
    command_speakers: int = 30
    command_repeats: int = 2         # each speaker says each word this many times
    styles: tuple[str, ...] = ("neutral", "happy", "sad", "angry")
    style_speakers: int = 24
    style_repeats: int = 3           # clips per style per speaker
    mask_speakers: int = 40
    mask_clips: int = 4              # per speaker, half of them masked
    severity_speakers: int = 40      # a quarter typical ("none"), the rest atypical
    severity_clips: int = 4
    test_fraction: float = 0.25
    window_s: float = MIN_WINDOW_S   # model input length (>= 0.96 s)
    window_hop_s: float = MIN_WINDOW_S
    noise: bool = True

    def __post_init__(self):
        validate(self)

    @property
    def window_frames(self) -> int:
        return int(round(self.window_s * 1000 / FE.HOP_MS))

    @property
    def window_hop(self) -> int:
        return int(round(self.window_hop_s * 1000 / FE.HOP_MS))

    def task_digest(self, task: str) -> str:
        keys = {"speaker_id": ("n_speakers", "speaker_clips"),
                "language_id": ("languages", "language_speakers", "language_clips"),
                "commands": ("command_words", "command_speakers", "command_repeats"),
                "style": ("styles", "style_speakers", "style_repeats"),
                "mask": ("mask_speakers", "mask_clips"),
                "severity": ("severity_speakers", "severity_clips")}[task]
        d = {k: getattr(self, k) for k in (*keys, "test_fraction", "noise")}
        d.update(task=task, synth=synth.SYNTH_VERSION, frontend=FRONTEND_VERSION)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=list).encode()).hexdigest()[:12]


def _bad(key: str, value, allowed: str) -> NossConfigError:
    return NossConfigError(f"bad value for 'noss.{key}': {value!r} (allowed: {allowed})")


def validate(c: NossConfig) -> None:
    """Raise `NossConfigError` naming the first bad key (before any synthesis)."""
    if not c.window_s >= MIN_WINDOW_S - 1e-9:
        raise _bad("window_s", c.window_s, f">= {MIN_WINDOW_S} s: shorter than one TRILL window of 96 frames")
    if not c.window_hop_s >= FE.HOP_MS / 1000 - 1e-9:
        raise _bad("window_hop_s", c.window_hop_s, ">= 0.01 s (one frame)")
    if c.n_speakers < 2:
        raise _bad("n_speakers", c.n_speakers, ">= 2")
    for key in ("speaker_clips", "language_clips", "mask_clips", "severity_clips"):
        if getattr(c, key) < 2:
            raise _bad(key, getattr(c, key), ">= 2 (one to train, one to test)")
    for key in ("language_speakers", "command_speakers", "style_speakers", "mask_speakers", "severity_speakers"):
        if getattr(c, key) < 2:
            raise _bad(key, getattr(c, key), ">= 2 (speaker-disjoint train and test)")
    for key in ("command_repeats", "style_repeats"):
        if getattr(c, key) < 1:
            raise _bad(key, getattr(c, key), ">= 1")
    unknown = [x for x in c.languages if x not in PHRASES]
    if unknown or len(set(c.languages)) < 2:
        raise _bad("languages", c.languages, f"two or more of {', '.join(LANGUAGES)}")
    if len(set(c.command_words)) < 2 or not all(isinstance(w, str) and w.isalpha() for w in c.command_words):
        raise _bad("command_words", c.command_words, "two or more distinct alphabetic words")
    unknown = [x for x in c.styles if x not in STYLES]
    if unknown or len(set(c.styles)) < 2:
        raise _bad("styles", c.styles, f"two or more of {', '.join(STYLES)}")
    if not 0.0 < c.test_fraction < 1.0:
        raise _bad("test_fraction", c.test_fraction, "0 < fraction < 1")


@dataclasses.dataclass(frozen=True)
class Clip:
    """One clip to synthesize: who says what, its label, and a recording gain."""

    speaker: Speaker
    text: str
    label: int
    speaker_index: int
    key: str
    gain: float = 1.0


def class_names(task: str, config: NossConfig) -> tuple[str, ...]:
    c = config
    return {"speaker_id": tuple(f"v{i:04d}" for i in range(c.n_speakers)), "language_id": tuple(c.languages),
            "commands": tuple(c.command_words), "style": tuple(c.styles), "mask": ("clear", "masked"),
            "severity": ("none", *SEVERITIES)}[task]


def _speakers(seed: int, prefix: str, n: int, kind: str = "typical") -> list[Speaker]:
    return [make_speaker(seed, f"noss-{prefix}{i:04d}", kind) for i in range(n)]


def clips(task: str, seed: int, config: NossConfig) -> list[Clip]:
    """The task's clips in a fixed order (deterministic in seed and config; nothing is synthesized)."""
    c = config
    out: list[Clip] = []
    if task == "speaker_id":
        for i, s in enumerate(_speakers(seed, "v", c.n_speakers)):
            for j, (phrase, _) in enumerate(sample_prompts(seed, s.speaker_id, c.speaker_clips)):
                out.append(Clip(s, phrase, i, i, f"{j}"))
    elif task == "language_id":
        for li, lang in enumerate(c.languages):
            for k, s in enumerate(_speakers(seed, f"l{lang}-", c.language_speakers)):
                s = dataclasses.replace(s, voice=lang)
                rng = rng_for(seed, "noss-language", lang, k)
                for j in range(c.language_clips):
                    text = f"{PHRASES[lang][int(rng.integers(len(PHRASES[lang])))]} {int(rng.integers(2, 1000))}"
                    out.append(Clip(s, text, li, li * c.language_speakers + k, f"{j}"))
    elif task == "commands":
        for i, s in enumerate(_speakers(seed, "c", c.command_speakers)):
            for r in range(c.command_repeats):
                for wi, word in enumerate(c.command_words):
                    out.append(Clip(s, word, wi, i, f"{r}"))
    elif task == "style":
        for i, s in enumerate(_speakers(seed, "e", c.style_speakers)):
            phrases = sample_prompts(seed, s.speaker_id, c.style_repeats * len(c.styles))
            for si, style in enumerate(c.styles):
                rate, dpitch, rng_scale, gain = STYLES[style]
                for r in range(c.style_repeats):
                    jit = rng_for(seed, "noss-style", s.speaker_id, style, r)
                    styled = dataclasses.replace(
                        s, rate=int(np.clip(s.rate * rate * np.exp(jit.normal(0, 0.05)), 70, 300)),
                        pitch=int(np.clip(s.pitch + dpitch + jit.normal(0, 3), 0, 99)),
                        pitch_range=int(np.clip(s.pitch_range * rng_scale + jit.normal(0, 3), 0, 99)))
                    phrase = phrases[si * c.style_repeats + r][0]
                    out.append(Clip(styled, phrase, si, i, f"{style}{r}", gain * float(np.exp(jit.normal(0, 0.1)))))
    elif task == "mask":
        for i, s in enumerate(_speakers(seed, "m", c.mask_speakers)):
            phrases = sample_prompts(seed, s.speaker_id, c.mask_clips)
            for j, (phrase, _) in enumerate(phrases):
                masked = j % 2 == 1
                who, gain = s, 1.0
                if masked:
                    cut = float(rng_for(seed, "noss-mask", s.speaker_id, j).uniform(*MASK_LOWPASS_HZ))
                    who, gain = dataclasses.replace(s, lowpass_hz=cut), MASK_GAIN
                out.append(Clip(who, phrase, int(masked), i, f"{j}", gain))
    elif task == "severity":
        n_typ = max(1, c.severity_speakers // 4)
        speakers = _speakers(seed, "st", n_typ) + _speakers(seed, "sa", c.severity_speakers - n_typ, "atypical")
        for i, s in enumerate(speakers):
            for j, (phrase, _) in enumerate(sample_prompts(seed, s.speaker_id, c.severity_clips)):
                out.append(Clip(s, phrase, s.level, i, f"{j}"))
    else:
        raise NossConfigError(f"unknown NOSS task {task!r} (allowed: {', '.join(TASKS)})")
    return out


def _splits(task: str, seed: int, config: NossConfig, labels: np.ndarray, speakers: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
    """(test, intra_test) masks; see the module docstring."""
    n = len(labels)
    intra = np.zeros(n, bool)
    for s in np.unique(speakers):
        rows = np.flatnonzero(speakers == s)
        rng = rng_for(seed, "noss-intra", task, int(s))
        by_label = [rows[labels[rows] == y] for y in np.unique(labels[rows])]
        if all(len(r) >= 2 for r in by_label):  # one clip of every label held out
            for r in by_label:
                intra[r[int(rng.integers(len(r)))]] = True
        else:  # a fraction of the speaker's clips, at least one, never all
            k = min(max(1, int(round(config.test_fraction * len(rows)))), len(rows) - 1)
            intra[rng.permutation(rows)[:k]] = True
    if task == "speaker_id":
        return intra.copy(), intra
    ids = np.unique(speakers)
    k = min(max(1, int(round(config.test_fraction * len(ids)))), len(ids) - 1)
    held = rng_for(seed, "noss-test-speakers", task).permutation(ids)[:k]
    return np.isin(speakers, held), intra


class NossCorpus:
    """`corpus.get(task)` -> dict: frames [sum T, 64] float32, offsets [N + 1] int64, label [N],
    speaker [N] int32, test [N] bool, intra_test [N] bool (see the module docstring)."""

    def __init__(self, seed: int, config: NossConfig | None = None, cache_dir: str | os.PathLike | None = None,
                 memory_mb: float = 512, **overrides):
        self.seed = seed
        self.config = dataclasses.replace(config or NossConfig(), **overrides)  # validates
        self.cache = DeviceCache(cache_dir, "noss", memory_mb=memory_mb)
        self.built = 0  # tasks synthesized (not read from the cache) by this instance

    def key(self, task: str) -> str:
        return f"s{self.seed}-{task}-{self.config.task_digest(task)}"

    def classes(self, task: str) -> tuple[str, ...]:
        return class_names(task, self.config)

    def get(self, task: str) -> dict[str, np.ndarray]:
        if task not in TASKS:
            raise NossConfigError(f"unknown NOSS task {task!r} (allowed: {', '.join(TASKS)})")
        return self.cache.get_or_make(self.key(task), lambda: self._build(task))

    def _build(self, task: str) -> dict[str, np.ndarray]:
        self.built += 1
        items = clips(task, self.seed, self.config)
        feats = []
        for clip in items:
            wave = synth.synthesize(clip.speaker, clip.text, self.seed, f"noss-{task}-{clip.key}",
                                    noise=self.config.noise)
            feats.append(FE.log_mel(np.clip(wave * clip.gain, -1.0, 1.0)))
        labels = np.array([c.label for c in items], np.int32)
        speakers = np.array([c.speaker_index for c in items], np.int32)
        test, intra = _splits(task, self.seed, self.config, labels, speakers)
        return {"frames": np.concatenate(feats).astype(np.float32),
                "offsets": np.concatenate([[0], np.cumsum([f.shape[0] for f in feats])]).astype(np.int64),
                "label": labels, "speaker": speakers, "test": test, "intra_test": intra}

    def clip_features(self, task: str) -> list[np.ndarray]:
        """Each clip's log-mel frames [T_i, 64]."""
        d = self.get(task)
        o = d["offsets"]
        return [d["frames"][o[i]:o[i + 1]] for i in range(len(o) - 1)]

    def windows(self, task: str) -> tuple[np.ndarray, np.ndarray]:
        """(windows [W, window_frames, 64], clip index [W]) at the config's window length and hop."""
        c = self.config
        per_clip = [FE.windows(f, c.window_hop, c.window_frames) for f in self.clip_features(task)]
        index = np.concatenate([np.full(len(w), i, np.int32) for i, w in enumerate(per_clip)])
        return np.concatenate(per_clip), index
