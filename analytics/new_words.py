"""Devices holding *new words* (outside the global dictionary), for discovery studies.

The vocabulary, its Zipf popularity and the number of new words per device
come from :class:`clients.typing_data.TypingPopulation` (the typing histories
the engine's char-LM task trains on: each device types its new words among
dictionary words).  ``TypingPopulation.device_new_words`` draws a device's
words with a per-device numpy Generator (~80 us per device, too slow for
1,000,000 devices and for exact ground truth over all of them), so this
sampler draws the *same distribution* vectorised: successive sampling without
replacement proportional to ``new_word_p`` (what ``Generator.choice(replace=False,
p=...)`` does), driven by a stateless hash of (seed, device id, slot).  A
device's words are therefore a pure function of (seed, device id), as cheap
for one device as for a million; they differ from ``device_new_words(d)`` for
the same ``d`` but have the same law (checked in the tests).

Ground truth (:meth:`NewWordDevices.device_counts`) is how many devices hold
each word; only the simulator knows it.
"""
from __future__ import annotations

import numpy as np

from fl.seeding import hash_uniform


class NewWordDevices:
    """New words per device, vectorised; vocabulary and law from a TypingPopulation."""

    def __init__(self, typing, seed: int):
        self.typing = typing
        self.seed = int(seed)
        self.vocab = list(typing.new_words)
        self.p = np.asarray(typing.new_word_p, np.float64)
        self.k = min(int(typing.new_words_per_device), len(self.vocab))
        self._cdf = np.cumsum(self.p)
        self._cdf[-1] = 1.0
        self._start = self._cdf - self.p

    @classmethod
    def build(cls, seed: int, *, dictionary_size: int = 3000, new_words: int = 1000, new_words_per_device: int = 2,
              new_word_zipf: float = 1.0) -> "NewWordDevices":
        from clients.typing_data import TypingPopulation

        tp = TypingPopulation(seed, dictionary_size=dictionary_size, new_words=new_words,
                              new_words_per_device=new_words_per_device, new_word_zipf=new_word_zipf)
        return cls(tp, seed)

    def items(self, device_ids: np.ndarray) -> np.ndarray:
        """(n, k) vocabulary indices of each device's new words (distinct per row)."""
        ids = np.asarray(device_ids, np.int64)
        n = len(ids)
        out = np.full((n, self.k), -1, np.int64)
        removed = np.zeros(n)  # probability mass already taken
        for j in range(self.k):
            u = hash_uniform(self.seed ^ 0x5EED, ids, 7919 * (j + 1))
            x = u * (1.0 - removed)
            # map x from the compressed line (chosen words removed) to the full cdf line
            chosen = np.sort(out[:, :j], axis=1)
            for c in range(j):
                idx = chosen[:, c]
                x = np.where(x >= self._start[idx], x + self.p[idx], x)
            w = np.minimum(np.searchsorted(self._cdf, x, side="right"), len(self.p) - 1)
            clash = (out[:, :j] == w[:, None]).any(axis=1)
            while clash.any():  # floating-point edge: never repeat a word
                w[clash] = (w[clash] + 1) % len(self.p)
                clash = (out[:, :j] == w[:, None]).any(axis=1)
            out[:, j] = w
            removed += self.p[w]
        return out

    def device_words(self, device_id: int) -> list[str]:
        return [self.vocab[i] for i in self.items(np.array([device_id]))[0]]

    def device_counts(self, device_ids: np.ndarray, chunk: int = 250_000) -> np.ndarray:
        """Ground truth: number of devices among ``device_ids`` holding each vocabulary word."""
        ids = np.asarray(device_ids, np.int64)
        counts = np.zeros(len(self.vocab), np.int64)
        for a in range(0, len(ids), chunk):
            it = self.items(ids[a:a + chunk]).ravel()
            counts += np.bincount(it[it >= 0], minlength=len(self.vocab))
        return counts
