"""Word and character error rate via Levenshtein alignment.

WER = (S + D + I) / N with N the number of reference words, the metric of He et al. 2019
("An All-Neural On-Device Speech Recognizer") and of the personalized disordered-speech
ASR work ("Personalized ASR Models from a Large and Diverse Disordered Speech Dataset").
Corpus-level rates sum the edits and the reference lengths over all utterances (not an
average of per-utterance rates).

Text is split on whitespace as given; normalize (case, punctuation) before calling.

Empty reference (N = 0): the rate is 0.0 when the hypothesis is empty too, and
``float("inf")`` otherwise (every hypothesis token is an insertion, and there is nothing
to divide by). At corpus level, such utterances still add their insertions to the numerator.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class EditCounts:
    """Substitutions, deletions, insertions and reference length of one alignment."""
    substitutions: int
    deletions: int
    insertions: int
    ref_len: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def __add__(self, other: "EditCounts") -> "EditCounts":
        return EditCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                          self.insertions + other.insertions, self.ref_len + other.ref_len)

    @property
    def rate(self) -> float:
        if self.ref_len == 0:
            return 0.0 if self.errors == 0 else float("inf")
        return self.errors / self.ref_len


def edit_counts(ref: Sequence, hyp: Sequence) -> EditCounts:
    """Minimum-edit alignment of two token sequences; among equally short alignments the
    one with fewest substitutions, then fewest deletions, is reported."""
    n, m = len(ref), len(hyp)
    # cell = (total, subs, dels, ins); lexicographic min breaks ties deterministically.
    prev = [(j, 0, 0, j) for j in range(m + 1)]
    for i in range(1, n + 1):
        cur = [(i, 0, i, 0)]
        for j in range(1, m + 1):
            t, s, d, k = prev[j - 1]
            diag = (t, s, d, k) if ref[i - 1] == hyp[j - 1] else (t + 1, s + 1, d, k)
            t, s, d, k = prev[j]
            up = (t + 1, s, d + 1, k)
            t, s, d, k = cur[j - 1]
            left = (t + 1, s, d, k + 1)
            cur.append(min(diag, up, left))
        prev = cur
    _, s, d, k = prev[m]
    return EditCounts(s, d, k, n)


def word_edit_counts(ref: str, hyp: str) -> EditCounts:
    return edit_counts(ref.split(), hyp.split())


def char_edit_counts(ref: str, hyp: str) -> EditCounts:
    """Character alignment; runs of whitespace count as one space, ends are stripped."""
    return edit_counts(" ".join(ref.split()), " ".join(hyp.split()))


def wer(ref: str, hyp: str) -> float:
    """Word error rate of one utterance."""
    return word_edit_counts(ref, hyp).rate


def cer(ref: str, hyp: str) -> float:
    """Character error rate of one utterance (spaces count as characters)."""
    return char_edit_counts(ref, hyp).rate


def _corpus(fn, refs: Sequence[str], hyps: Sequence[str]) -> float:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = EditCounts(0, 0, 0, 0)
    for r, h in zip(refs, hyps):
        total = total + fn(r, h)
    return total.rate


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Sum of word edits / sum of reference words."""
    return _corpus(word_edit_counts, refs, hyps)


def corpus_cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Sum of character edits / sum of reference characters."""
    return _corpus(char_edit_counts, refs, hyps)
