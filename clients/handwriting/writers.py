"""The writer population: each device is one writer with a persistent style and device, and
its own words drawn from `wordfreq` with a topic skew.

Held-out words.  The vocabulary (the most frequent ``vocab_size`` words of ``wordfreq`` that
use only the alphabet) is split once, from the seed, into training words and test words
(``test_fraction`` of them).  Each writer's distinct words are exactly 90% training words and
10% test words (``round(test_fraction * words_per_writer)``, at least one), so 10% of every
writer's distinct words are held out, and no test word of any writer ever reaches any
writer's training split or the language model's text (`Vocabulary.lm_text`).

Held-out writers.  Writer ids ``[0, n_writers)`` train; ``[n_writers, n_writers +
heldout_writers)`` are held out entirely: they never enter federated training
(`HandwritingTask` refuses them) and exist for evaluation and personalization.

Topic skew.  ``wordfreq`` has no topics, so every vocabulary word gets one of ``n_topics``
synthetic topics from the seed; a writer's Dirichlet weights over topics multiply the words'
frequencies, so writers differ in which words they use, not only in how they write.

Everything is a pure function of ``(seed, writer id)`` and the config.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass

import numpy as np

from clients.handwriting.ink import ALPHABET, FAMILIES, WriterStyle, render_word, validate_word
from fl.seeding import rng_for


@dataclass(frozen=True)
class PopulationConfig:
    n_writers: int = 20
    heldout_writers: int = 4
    words_per_writer: int = 40  # distinct words per writer (train + test)
    writes_per_word: int = 1  # realizations of each training word (each one written anew)
    test_fraction: float = 0.1
    vocab_size: int = 3000
    max_word_len: int = 12
    n_topics: int = 8
    topic_concentration: float = 0.3  # Dirichlet alpha of a writer's topic weights (low = skewed)
    families: tuple = FAMILIES
    family_weights: tuple = (0.7, 0.3)


@functools.lru_cache(maxsize=8)
def _wordfreq_words(size: int, max_len: int) -> tuple[tuple[str, ...], np.ndarray]:
    import wordfreq

    pattern = re.compile(f"^[{re.escape(ALPHABET)}]{{1,{max_len}}}$")
    words = [w for w in wordfreq.top_n_list("en", size * 3) if pattern.match(w)][:size]
    freq = np.array([wordfreq.word_frequency(w, "en") for w in words], np.float64)
    return tuple(words), freq / freq.sum()


class Vocabulary:
    """The word list with its frequencies, its seeded train/test split and topics."""

    def __init__(self, seed: int, config: PopulationConfig):
        self.words, self.freq = _wordfreq_words(config.vocab_size, config.max_word_len)
        n = len(self.words)
        rng = rng_for(seed, "handwriting-vocab")
        test = np.zeros(n, bool)
        test[rng.permutation(n)[: max(1, int(round(config.test_fraction * n)))]] = True
        self.is_test = test
        self.topic = rng.integers(0, config.n_topics, n)
        self.test_words = frozenset(w for w, t in zip(self.words, test) if t)
        self.train_words = frozenset(w for w, t in zip(self.words, test) if not t)

    def lm_text(self) -> list[tuple[str, float]]:
        """(word, relative frequency) of the training words only: the character LM's corpus."""
        return [(w, float(f)) for w, f, t in zip(self.words, self.freq, self.is_test) if not t]


def draw_style(seed: int, writer: int, config: PopulationConfig) -> WriterStyle:
    """A writer's persistent style and device, from (seed, writer id)."""
    r = rng_for(seed, "handwriting-style", writer)
    p = np.asarray(config.family_weights, float)
    return WriterStyle(
        family=str(config.families[r.choice(len(config.families), p=p / p.sum())]),
        slant_deg=float(np.clip(r.normal(8, 8), -15, 30)),
        x_height_px=float(r.uniform(18, 60)),
        aspect=float(r.lognormal(0, 0.12)),
        baseline_slope_deg=float(r.normal(0, 2.5)),
        baseline_wave=float(abs(r.normal(0, 0.06))),
        letter_spacing=float(r.uniform(-0.1, 0.4)),
        join_gap=float(r.uniform(0.0, 0.6)),
        delayed_dots=bool(r.random() < 0.5),
        jitter=float(r.uniform(0.0, 0.06)),
        speed=float(r.uniform(3.5, 9.0)),
        speed_peak=float(r.uniform(1.0, 3.0)),
        pen_up_s=float(r.uniform(0.08, 0.35)),
        sample_rate_hz=float(r.choice([60.0, 90.0, 100.0, 120.0, 133.0, 200.0, 240.0])),
        noise_px=float(r.uniform(0.0, 0.5)),
        pixel_px=float(r.choice([0.5, 1.0, 1.0, 2.0])),
    )


class WriterPopulation:
    """Writers, their words and their ink.  ``samples(w, split)`` -> list of (word, strokes)."""

    def __init__(self, seed: int, config: PopulationConfig | None = None):
        self.seed, self.config = seed, config or PopulationConfig()
        c = self.config
        if c.words_per_writer < 2:
            raise ValueError(f"words_per_writer must be >= 2 (one test word and one training word), "
                             f"not {c.words_per_writer}")
        self.vocab = Vocabulary(seed, c)
        self.n_test = min(max(1, int(round(c.test_fraction * c.words_per_writer))), c.words_per_writer - 1)
        self.n_train = c.words_per_writer - self.n_test

    @property
    def num_writers(self) -> int:
        return self.config.n_writers + self.config.heldout_writers

    def is_heldout(self, writer: int) -> bool:
        return writer >= self.config.n_writers

    def _check(self, writer: int) -> int:
        if not 0 <= int(writer) < self.num_writers:
            raise ValueError(f"writer {writer} does not exist: the population has {self.num_writers} "
                             f"({self.config.n_writers} training, {self.config.heldout_writers} held out)")
        return int(writer)

    def style(self, writer: int) -> WriterStyle:
        return draw_style(self.seed, self._check(writer), self.config)

    def topic_weights(self, writer: int) -> np.ndarray:
        c = self.config
        return rng_for(self.seed, "handwriting-topics", self._check(writer)).dirichlet([c.topic_concentration]
                                                                                        * c.n_topics)

    def words(self, writer: int, split: str = "train") -> list[str]:
        """The writer's distinct words of a split ("train", or "test"/"eval"), in a fixed order."""
        v, r = self.vocab, rng_for(self.seed, "handwriting-words", self._check(writer))
        weight = v.freq * self.topic_weights(writer)[v.topic]
        out = {}
        for name, pool, k in (("train", ~v.is_test, self.n_train), ("test", v.is_test, self.n_test)):
            idx = np.flatnonzero(pool)
            p = weight[idx] / weight[idx].sum()
            k = min(k, int((p > 0).sum()))
            out[name] = [v.words[i] for i in r.choice(idx, size=k, replace=False, p=p)]
        return out["test" if split in ("test", "eval") else "train"]

    def samples(self, writer: int, split: str = "train") -> list[tuple[str, list[np.ndarray]]]:
        """(word, ink) for every realization of the writer's words in a split: each training word
        written ``writes_per_word`` times, each test word once."""
        style, test = self.style(writer), split in ("test", "eval")
        reps = 1 if test else self.config.writes_per_word
        out = []
        for i, w in enumerate(self.words(writer, split)):
            for k in range(reps):
                ink = render_word(validate_word(w), style,
                                  rng_for(self.seed, "handwriting-ink", writer, int(test), i, k))
                out.append((w, ink))
        return out

    def style_table(self):
        """Every writer's style as a pandas DataFrame (one row per writer)."""
        import pandas as pd

        rows = [{"writer": w, "heldout": self.is_heldout(w), **dataclasses.asdict(self.style(w))}
                for w in range(self.num_writers)]
        return pd.DataFrame(rows)
