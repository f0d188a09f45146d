"""Per-device typing histories made from `wordfreq` (no downloads).

Each device types words from the global Zipf-like English distribution, re-weighted
by its own topic mix (Dirichlet), plus a few *new words*: real but rare words that are
outside the global dictionary and spread over devices with Zipf popularity. This is
the setting of Gboard's new-word discovery (Hard et al. 2018; Chen et al. 2019,
"Federated Learning of Out-of-Vocabulary Words").
"""
from __future__ import annotations

import functools
import zlib

import numpy as np

from fl.seeding import rng_for

ALPHABET = " abcdefghijklmnopqrstuvwxyz"  # id 0 (space) separates words
CHAR_TO_ID = {ch: i for i, ch in enumerate(ALPHABET)}


@functools.lru_cache(maxsize=8)
def _english_words(n: int) -> tuple[str, ...]:
    import wordfreq

    return tuple(w for w in wordfreq.top_n_list("en", n) if w.isascii() and w.isalpha() and w.islower())


class TypingPopulation:
    """Deterministic typing histories: `device_words(device_id, n)`; ground truth for studies."""

    def __init__(self, seed: int, dictionary_size: int = 3000, new_words: int = 40,
                 new_words_per_device: int = 2, new_word_rate: float = 0.08, topics: int = 8,
                 topic_alpha: float = 0.3, topic_skew: float = 3.0, new_word_zipf: float = 1.0):
        import wordfreq

        self.seed = seed
        words = _english_words(60000)
        self.dictionary = words[:dictionary_size]
        freq = np.array([wordfreq.word_frequency(w, "en") for w in self.dictionary])
        self.base_p = freq / freq.sum()
        self.topic_of = np.array([zlib.crc32(w.encode()) % topics for w in self.dictionary])
        self.topics, self.topic_alpha, self.topic_skew = topics, topic_alpha, topic_skew
        rare = [w for w in words[20000:] if 5 <= len(w) <= 10]
        pick = rng_for(seed, "new-words").choice(len(rare), size=new_words, replace=False)
        self.new_words = tuple(rare[i] for i in sorted(pick))
        pop = 1.0 / np.arange(1, new_words + 1) ** new_word_zipf
        self.new_word_p = pop / pop.sum()
        self.new_words_per_device = new_words_per_device
        self.new_word_rate = new_word_rate

    def device_new_words(self, device_id: int) -> list[str]:
        rng = rng_for(self.seed, "device-new-words", device_id)
        k = min(self.new_words_per_device, len(self.new_words))
        idx = rng.choice(len(self.new_words), size=k, replace=False, p=self.new_word_p)
        return [self.new_words[i] for i in idx]

    def device_words(self, device_id: int, n_words: int, split: str = "train") -> list[str]:
        rng = rng_for(self.seed, "device-topics", device_id)
        mix = rng.dirichlet(np.full(self.topics, self.topic_alpha))
        p = self.base_p * (1.0 + self.topic_skew * self.topics * mix[self.topic_of])
        p /= p.sum()
        own = self.device_new_words(device_id)
        rng = rng_for(self.seed, "device-typing", device_id, split)
        words = [self.dictionary[i] for i in rng.choice(len(self.dictionary), size=n_words, p=p)]
        if own:
            for pos in np.flatnonzero(rng.random(n_words) < self.new_word_rate):
                words[pos] = own[rng.integers(len(own))]
        return words

    def new_word_device_counts(self, device_ids: np.ndarray) -> dict[str, int]:
        """Ground truth known to the simulator only: how many devices hold each new word."""
        counts = dict.fromkeys(self.new_words, 0)
        for d in np.asarray(device_ids).tolist():
            for w in self.device_new_words(d):
                counts[w] += 1
        return counts


def encode(text: str) -> np.ndarray:
    return np.fromiter((CHAR_TO_ID[c] for c in text), dtype=np.int32, count=len(text))


def decode(ids) -> str:
    return "".join(ALPHABET[int(i)] for i in ids)
