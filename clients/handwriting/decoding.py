"""CTC (Graves et al. 2006, "Connectionist temporal classification: labelling unsegmented
sequence data with recurrent neural networks"): the loss, best-path (greedy) decoding, and
prefix beam search with a character language model applied as a weighted finite-state
acceptor (charlm_fst.py), as Carbune et al. 2020 decode.

Class 0 is the blank; character c is class ``ALPHABET.index(c) + 1``.  The beam search
keeps, per prefix, the CTC probability of all surviving paths ending in blank and in
non-blank (Graves 2012, Sec. 7.5; Hannun et al. 2014) and ranks prefixes by

    score(l) = log P_ctc(l | x) - lm_weight * cost_lm(l) + insertion_bonus * |l|,

where cost_lm(l) is the acceptor's cost of the prefix (and, for finished words, of the end
symbol).  With ``lm=None`` and no bonus it searches for the most probable labelling, which
is the best path's labelling when one path dominates, but not always (`best_labelling` is
the exhaustive reference for tests).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from clients.handwriting.ink import ALPHABET, validate_word

BLANK = 0


def encode(word: str, alphabet: str = ALPHABET) -> np.ndarray:
    validate_word(word, alphabet)
    return np.array([alphabet.index(c) + 1 for c in word], np.int32)


def decode_ids(ids, alphabet: str = ALPHABET) -> str:
    return "".join(alphabet[int(i) - 1] for i in ids if int(i) != BLANK)


def ctc_loss(labels, logits, label_lengths, logit_lengths):
    """Per-example -log P(labels | x) for logits [B, T, C] (blank 0) and labels [B, U]."""
    import tensorflow as tf

    return tf.nn.ctc_loss(labels=labels, logits=logits, label_length=label_lengths,
                          logit_length=logit_lengths, logits_time_major=False, blank_index=BLANK)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def collapse(path) -> tuple[int, ...]:
    """The labelling of a CTC path: merge repeats, then drop blanks."""
    return tuple(int(k) for k, _ in itertools.groupby(path) if k != BLANK)


def greedy_decode(log_probs: np.ndarray) -> tuple[int, ...]:
    """Best-path decoding of [T, C] scores: the labelling of the per-step argmax."""
    return collapse(np.argmax(log_probs, axis=-1))


@dataclass
class _Beam:
    p_b: float  # log P(prefix, path ends in blank)
    p_nb: float  # log P(prefix, path ends in its last label)
    lm_state: int
    lm_cost: float

    @property
    def p(self) -> float:
        return float(np.logaddexp(self.p_b, self.p_nb))


def beam_search(log_probs: np.ndarray, beam: int = 8, lm=None, lm_weight: float = 0.0,
                insertion_bonus: float = 0.0, alphabet: str = ALPHABET, prune: float = -12.0,
                ) -> list[tuple[tuple[int, ...], float]]:
    """CTC prefix beam search over [T, C] log-probabilities; returns up to ``beam``
    (labelling, score) pairs, best first, scores as in the module docstring (finished words:
    the LM's end cost included).  ``prune``: labels with a log-probability under this at a
    step are not extended there."""
    lp = np.asarray(log_probs, np.float64)
    use_lm = lm is not None and lm_weight != 0.0
    start = lm.start if use_lm else 0
    beams = {(): _Beam(0.0, -np.inf, start, 0.0)}

    def rank(prefix, b: _Beam, final: bool = False) -> float:
        lm_cost = b.lm_cost + (lm.final(b.lm_state) if final and use_lm else 0.0)
        return b.p - lm_weight * lm_cost + insertion_bonus * len(prefix)

    for t in range(lp.shape[0]):
        row = lp[t]
        labels = [k for k in range(1, lp.shape[1]) if row[k] >= prune] or [int(np.argmax(row[1:])) + 1]
        nxt: dict[tuple, _Beam] = {}

        def get(prefix, parent: _Beam, label: int | None):
            b = nxt.get(prefix)
            if b is None:
                if label is None:
                    b = _Beam(-np.inf, -np.inf, parent.lm_state, parent.lm_cost)
                elif use_lm:
                    cost, state = lm.step(parent.lm_state, alphabet[label - 1])
                    b = _Beam(-np.inf, -np.inf, state, parent.lm_cost + cost)
                else:
                    b = _Beam(-np.inf, -np.inf, 0, 0.0)
                nxt[prefix] = b
            return b

        for prefix, b in beams.items():
            total = b.p
            same = get(prefix, b, None)
            same.p_b = np.logaddexp(same.p_b, total + row[BLANK])
            if prefix:  # repeat of the last label without a blank: the same prefix
                same.p_nb = np.logaddexp(same.p_nb, b.p_nb + row[prefix[-1]])
            for k in labels:
                ext = get(prefix + (k,), b, k)
                via = b.p_b if prefix and prefix[-1] == k else total  # a repeat needs a blank between
                ext.p_nb = np.logaddexp(ext.p_nb, via + row[k])
        beams = dict(sorted(nxt.items(), key=lambda kv: rank(*kv), reverse=True)[:beam])
    done = sorted(((p, rank(p, b, final=True)) for p, b in beams.items()), key=lambda x: x[1], reverse=True)
    return done


def best_labelling(log_probs: np.ndarray, lm=None, lm_weight: float = 0.0, insertion_bonus: float = 0.0,
                   alphabet: str = ALPHABET) -> tuple[tuple[int, ...], float]:
    """Exhaustive reference: sum every path's probability per labelling, add the LM and bonus
    terms, return the best (labelling, score).  C^T paths: tiny inputs only."""
    lp = np.asarray(log_probs, np.float64)
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(lp.shape[1]), repeat=lp.shape[0]):
        s = float(lp[np.arange(lp.shape[0]), path].sum())
        lab = collapse(path)
        totals[lab] = np.logaddexp(totals.get(lab, -np.inf), s)
    scored = {}
    for lab, p in totals.items():
        lm_cost = lm.cost(decode_ids(lab, alphabet)) if (lm is not None and lm_weight) else 0.0
        scored[lab] = p - lm_weight * lm_cost + insertion_bonus * len(lab)
    best = max(scored, key=scored.get)
    return best, scored[best]


def edit_distance(a, b) -> int:
    """Levenshtein distance between two sequences."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def cer(references, hypotheses) -> float:
    """Character error rate: total edits / total reference characters."""
    edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    return edits / max(sum(len(r) for r in references), 1)
