"""A synthetic speaker population: typical and atypical (disordered) speakers with voice parameters.

Modelled on the Project Euphonia corpus (MacDonald et al. 2021, "Disordered Speech Data Collection:
Lessons Learned at 1 Million Utterances from Project Euphonia"; Green et al. 2021, "Automatic Speech
Recognition of Disordered Speech: Personalized Models Outperforming Human Listeners on Short
Phrases"; Tobin & Tomanek 2022, "Personalized Automatic Speech Recognition Trained on Small Disordered
Speech Datasets"): speakers carry a condition (ALS, Parkinson's, cerebral palsy, Down syndrome,
stroke, hearing loss, other) and a severity (mild / moderate / severe); each reads prompts from home
automation, caregiver and conversation domains, and 10% of each speaker's distinct phrases are held
out for test. Disorder is simulated in the synthesizer with effects that grow with severity: slow and
irregular rate, repetitions, imprecise articulation (text substitutions, so the audio differs from the
transcript), muffling (low-pass) and low SNR. Articulation errors are consistent within a speaker, as in
dysarthria (unlike apraxia; Duffy, "Motor Speech Disorders"): each atypical speaker has a fixed set of
substitution rules, more of them with severity, applied wherever a word allows with a per-speaker
consistency `subst_p`.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from fl.seeding import rng_for

from .prompts import sample_prompts

SEVERITIES = ("mild", "moderate", "severe")
CONDITIONS = ("ALS", "Parkinson's", "cerebral palsy", "Down syndrome", "stroke", "hearing loss", "other")
_CONDITION_P = (0.30, 0.15, 0.12, 0.10, 0.10, 0.08, 0.15)  # ALS is the largest Euphonia group
_SEVERITY_P = (0.45, 0.35, 0.20)
# espeak-ng 1.52 voice names (espeak_SetVoiceByName); "en" is British English.
VOICES = ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
          "en-gb-x-gbcwmd")
_VOICE_P = (0.40, 0.15, 0.08, 0.10, 0.07, 0.08, 0.06, 0.06)
MALE_VARIANTS = tuple(f"m{i}" for i in range(1, 8))
FEMALE_VARIANTS = tuple(f"f{i}" for i in range(1, 6))

# Per-severity effect strengths (index 0 = typical, then mild, moderate, severe).
_LEVEL = {"none": 0, "mild": 1, "moderate": 2, "severe": 3}
_RATE_SCALE = (1.0, 0.85, 0.68, 0.52)        # x typical words/min
_RATE_JITTER = (0.0, 0.10, 0.22, 0.35)       # std of per-chunk log-rate (irregular rate)
_REPEAT_P = (0.0, 0.04, 0.10, 0.20)          # per word: repeat the word or its first syllable
_N_RULES = (0, 2, 4, 6)                      # the speaker's own substitution rules (imprecise articulation)
_SUBST_P = (0.0, 0.6, 0.75, 0.9)             # consistency: P(a rule applies where a word allows it)
_PAUSE_P = (0.0, 0.08, 0.18, 0.30)           # per word gap: an extra pause (comma)
_LOWPASS_HZ = (None, 5200.0, 3600.0, 2400.0)  # muffling cut-off
_SNR_DB = ((20.0, 40.0), (15.0, 30.0), (10.0, 25.0), (5.0, 18.0))

# Imprecise articulation: letter-level substitutions seen in dysarthric speech (fronting, gliding,
# stopping, devoicing, cluster reduction, final-consonant weakening). Applied to the text sent to the
# synthesizer only; the transcript stays the prompt.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    ("th", "d"), ("sh", "s"), ("ch", "sh"), ("st", "s"), ("str", "st"), ("pl", "p"), ("bl", "b"),
    ("r", "w"), ("l", "w"), ("s", "th"), ("k", "t"), ("g", "d"), ("v", "b"), ("z", "s"), ("f", "p"),
    ("j", "d"), ("ck", "t"), ("p", "b"), ("t", "d"),
)
FINAL_WEAKENING = ("$", "")  # rule: drop a word's final consonant


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One speaker's voice and disorder parameters (all fixed by the population seed)."""

    speaker_id: str
    kind: str            # "typical" | "atypical"
    severity: str        # "none" | "mild" | "moderate" | "severe"
    condition: str       # "none" or one of CONDITIONS
    voice: str           # espeak-ng base voice / accent
    variant: str         # espeak-ng variant, m1..m7 / f1..f5
    pitch: int           # espeak pitch 0..99
    pitch_range: int     # espeak range 0..99 (low = monotone)
    rate: int            # words per minute (espeak rate)
    warp: float          # vocal-tract warp factor (>1 shorter tract, higher formants)
    snr_db: float        # room / noise SNR
    lowpass_hz: float | None  # muffling cut-off, None = none
    rate_jitter: float
    repeat_p: float
    subst_p: float
    pause_p: float
    articulation: tuple[tuple[str, str], ...] = ()  # the speaker's substitution rules (pattern, said as)

    @property
    def espeak_voice(self) -> str:
        return f"{self.voice}+{self.variant}"

    @property
    def level(self) -> int:
        return _LEVEL[self.severity]


def make_speaker(seed: int, speaker_id: str, kind: str) -> Speaker:
    rng = rng_for(seed, "speaker", speaker_id)
    female = rng.random() < 0.5
    variant = str(rng.choice(FEMALE_VARIANTS if female else MALE_VARIANTS))
    voice = str(rng.choice(VOICES, p=_VOICE_P))
    if kind == "typical":
        severity, condition = "none", "none"
    else:
        severity = str(rng.choice(SEVERITIES, p=_SEVERITY_P))
        condition = str(rng.choice(CONDITIONS, p=_CONDITION_P))
    lv = _LEVEL[severity]
    pitch = int(np.clip(rng.normal(55 if female else 42, 8), 10, 90))
    # Flattened prosody (monopitch) grows with severity, as in hypokinetic / flaccid dysarthria.
    pitch_range = int(np.clip(rng.normal(55 - 10 * lv, 10), 5, 95))
    rate = int(np.clip(rng.normal(170, 18) * _RATE_SCALE[lv], 70, 240))
    warp = float(np.clip(rng.normal(1.06 if female else 0.96, 0.04), 0.85, 1.18))
    lo, hi = _SNR_DB[lv]
    snr = float(rng.uniform(lo, hi))
    lp = _LOWPASS_HZ[lv]
    lowpass = None if lp is None else float(lp * rng.uniform(0.85, 1.15))
    jit = float(rng.uniform(0.8, 1.2))
    rules = (*SUBSTITUTIONS, FINAL_WEAKENING)
    articulation = tuple(rules[int(i)] for i in sorted(rng.choice(len(rules), _N_RULES[lv], replace=False)))
    return Speaker(speaker_id, kind, severity, condition, voice, variant, pitch, pitch_range, rate,
                   round(warp, 3), round(snr, 2), None if lowpass is None else round(lowpass, 1),
                   _RATE_JITTER[lv] * jit, _REPEAT_P[lv] * jit, min(_SUBST_P[lv] * jit, 1.0), _PAUSE_P[lv] * jit,
                   articulation)


def articulate(word: str, rules: tuple[tuple[str, str], ...]) -> str:
    """`word` as said by a speaker with these substitution rules (all that apply, in order;
    FINAL_WEAKENING drops a final consonant of a word longer than 3 letters)."""
    for a, b in rules:
        if (a, b) == FINAL_WEAKENING:
            if len(word) > 3 and word[-1] not in "aeiouy'":
                word = word[:-1]
        elif a in word:
            word = word.replace(a, b)
    return word


def _first_syllable(word: str) -> str:
    m = re.match(r"[^aeiouy]*[aeiouy]+", word)
    return m.group(0) if m and len(m.group(0)) < len(word) else word


def render(speaker: Speaker, phrase: str, rng: np.random.Generator) -> list[tuple[str, float]]:
    """What the speaker actually says: chunks of (text for the synthesizer, rate multiplier).

    Typical speakers say the phrase as one chunk. Atypical ones get imprecise articulation
    (their own substitution rules, each word with probability subst_p), repetitions of a word or
    its first syllable, extra pauses, and a rate that changes from chunk to chunk (irregular rate)."""
    words = phrase.split()
    if speaker.kind == "typical":
        return [(phrase, 1.0)]
    spoken: list[str] = []
    breaks: list[bool] = []
    for w in words:
        said = articulate(w, speaker.articulation) if rng.random() < speaker.subst_p else w
        if rng.random() < speaker.repeat_p:
            rep = _first_syllable(said) if rng.random() < 0.5 else said
            spoken.append(rep)
            breaks.append(rng.random() < 0.5)
        spoken.append(said)
        breaks.append(rng.random() < speaker.pause_p)
    chunks, cur = [], []
    for w, brk in zip(spoken, breaks):
        cur.append(w)
        if brk:
            chunks.append(" ".join(cur))
            cur = []
    if cur:
        chunks.append(" ".join(cur))
    mult = np.exp(rng.normal(0.0, speaker.rate_jitter, size=len(chunks))) if speaker.rate_jitter else np.ones(len(chunks))
    return [(c, float(m)) for c, m in zip(chunks, mult)]


def recording_condition(speaker: Speaker, rng: np.random.Generator) -> Speaker:
    """Multi-condition training (MTR, as in He et al. 2019's on-device RNN-T): the speaker recorded in
    a random condition: speaking rate x0.5..x1.15 (log-uniform), SNR 5..40 dB, and half the time a
    muffled channel (low-pass 2..6 kHz). Voice and articulation stay the speaker's."""
    rate = int(np.clip(speaker.rate * np.exp(rng.uniform(np.log(0.5), np.log(1.15))), 70, 240))
    lowpass = float(rng.uniform(2000.0, 6000.0)) if rng.random() < 0.5 else None
    return dataclasses.replace(speaker, rate=rate, snr_db=float(rng.uniform(5.0, 40.0)), lowpass_hz=lowpass)


def split_phrases(seed: int, speaker_id: str, utterances: list[tuple[str, str]], test_fraction: float = 0.1
                  ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Hold out `test_fraction` of the speaker's *distinct phrases* (at least one when there are two or
    more); every utterance of a held-out phrase goes to test, so train and test share no phrase."""
    distinct = sorted({p for p, _ in utterances})
    n_test = int(round(test_fraction * len(distinct)))
    if len(distinct) >= 2:
        n_test = max(1, n_test)
    order = rng_for(seed, "holdout", speaker_id).permutation(len(distinct))
    held = {distinct[i] for i in order[:n_test]}
    train = [u for u in utterances if u[0] not in held]
    test = [u for u in utterances if u[0] in held]
    return train, test


class SpeakerPopulation:
    """Speakers `t0000..` (typical) and `a0000..` (atypical), their utterances and train/test splits.

    `utterances_per_speaker` is an int or a (low, high) range, `atypical_utterances` the same for
    atypical speakers when given (None: the same as typical ones); speakers repeat a fraction
    `repeat_fraction` of their phrases (Euphonia participants often record a phrase more than once)."""

    def __init__(self, seed: int, n_typical: int = 20, n_atypical: int = 80,
                 utterances_per_speaker: int | tuple[int, int] = (40, 120), test_fraction: float = 0.1,
                 repeat_fraction: float = 0.1, atypical_utterances: int | tuple[int, int] | None = None):
        self.seed = seed
        self.test_fraction = test_fraction
        ids = [(f"t{i:04d}", "typical") for i in range(n_typical)] + \
              [(f"a{i:04d}", "atypical") for i in range(n_atypical)]
        self.speakers: dict[str, Speaker] = {sid: make_speaker(seed, sid, kind) for sid, kind in ids}
        self._utts: dict[str, list[tuple[str, str]]] = {}
        self._splits: dict[str, tuple[list, list]] = {}
        for sid, s in self.speakers.items():
            rng = rng_for(seed, "n-utterances", sid)
            count = utterances_per_speaker
            if s.kind != "typical" and atypical_utterances is not None:
                count = atypical_utterances
            if isinstance(count, int):
                n = count
            else:
                n = int(rng.integers(count[0], count[1] + 1))
            n_distinct = max(1, n - int(round(repeat_fraction * n)))
            phrases = sample_prompts(seed, sid, n_distinct)
            extra = [phrases[int(i)] for i in rng.integers(0, len(phrases), n - len(phrases))] if n > len(phrases) else []
            utts = phrases + extra
            self._utts[sid] = [utts[i] for i in rng.permutation(len(utts))]
            self._splits[sid] = split_phrases(seed, sid, self._utts[sid], test_fraction)

    @property
    def ids(self) -> list[str]:
        return list(self.speakers)

    def speaker(self, speaker_id: str) -> Speaker:
        return self.speakers[speaker_id]

    def utterances(self, speaker_id: str, split: str | None = None) -> list[tuple[str, str]]:
        """(phrase, domain) pairs of a speaker; split is None (all), "train" or "test"."""
        if split is None:
            return list(self._utts[speaker_id])
        train, test = self._splits[speaker_id]
        return list({"train": train, "test": test}[split])

    def table(self):
        """Speaker metadata as a pandas DataFrame, one row per speaker."""
        import pandas as pd

        rows = []
        for sid, s in self.speakers.items():
            row = dataclasses.asdict(s)
            row["espeak_voice"] = s.espeak_voice
            row["articulation"] = ", ".join(f"{a}>{b}" for a, b in s.articulation)  # "$>" = final weakening
            row["n_train"] = len(self._splits[sid][0])
            row["n_test"] = len(self._splits[sid][1])
            row["n_phrases"] = len({p for p, _ in self._utts[sid]})
            rows.append(row)
        return pd.DataFrame(rows).set_index("speaker_id", drop=False)
