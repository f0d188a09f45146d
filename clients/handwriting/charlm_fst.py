"""A character n-gram language model as a weighted finite-state acceptor, the form in which
Carbune et al. 2020 (Sec. 3.3) apply their character LM during CTC beam search.

The model is interpolated Witten-Bell (Witten & Bell 1991) over words written as
``^ c1 c2 ... cn $`` (``^`` only as context, ``$`` the end of the word), with a uniform
distribution below the unigrams.  Interpolated Witten-Bell has an exact backoff form: for a
history h with count c(h) and T(h) distinct followers, a seen symbol gets its interpolated
probability and an unseen one gets alpha(h) * P(w | h') with alpha(h) = T(h) / (c(h) + T(h)).
So the acceptor has

- one state per history (at most n - 1 symbols) seen in training;
- an arc per seen (history, symbol) with weight -log P(symbol | history) to the longest
  suffix state of history + symbol;
- a failure (phi) arc to the next shorter history with weight -log alpha(h), taken only for
  symbols without an arc (the root state has arcs for every symbol);
- the end of a word as the arc on ``$`` (its weight is the state's final weight).

Weights are negative natural logs (the tropical semiring's costs).
"""
from __future__ import annotations

import math
from collections import defaultdict

from clients.handwriting.ink import ALPHABET

BOW, EOW = "^", "$"


class CharNgramFst:
    """``step(state, char) -> (cost, next_state)``, ``final(state) -> cost``; states are ints."""

    def __init__(self, texts, order: int = 4, alphabet: str = ALPHABET, tokens: float = 1e6):
        """``texts``: (word, weight) pairs; the weights are scaled to a corpus of ``tokens`` word
        tokens (Witten-Bell's trust in a history grows with its count, so the scale matters)."""
        if order < 1:
            raise ValueError(f"order must be >= 1, not {order}")
        self.order, self.alphabet = order, alphabet
        self.symbols = list(alphabet) + [EOW]
        texts = [(w, float(c)) for w, c in texts if w and not set(w) - set(alphabet) and c > 0]
        scale = tokens / max(sum(c for _, c in texts), 1e-300)
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for word, weight in texts:
            weight *= scale
            seq = BOW + word + EOW
            for i in range(1, len(seq)):
                for k in range(0, order):  # history lengths 0 .. order-1 ending before seq[i]
                    if i - k < 0:
                        break
                    counts[seq[i - k:i]][seq[i]] += weight
                    if seq[i - k:i].startswith(BOW):
                        break  # nothing precedes the start of a word
        self._prob: dict[str, dict[str, float]] = {}
        self._alpha: dict[str, float] = {}
        uniform = 1.0 / len(self.symbols)
        for h in sorted(counts, key=len):  # lower orders first
            follow = counts[h]
            c, t = sum(follow.values()), len(follow)
            lam = c / (c + t)
            self._alpha[h] = t / (c + t)
            lower = (lambda w: uniform) if h == "" else (lambda w, h=h: self.prob(w, h[1:]))
            syms = self.symbols if h == "" else follow
            self._prob[h] = {w: lam * follow.get(w, 0.0) / c + (1 - lam) * lower(w) for w in syms}
        if "" not in self._prob:  # no training text: uniform
            self._prob[""], self._alpha[""] = {w: uniform for w in self.symbols}, 0.0
        self.states = sorted(self._prob, key=lambda h: (len(h), h))
        self.index = {h: i for i, h in enumerate(self.states)}
        self.start = self.index[self._longest(BOW)]
        self._cache: dict[tuple[int, str], tuple[float, int]] = {}

    def _longest(self, history: str) -> str:
        h = history[-(self.order - 1):] if self.order > 1 else ""
        while h not in self._prob:
            h = h[1:]
        return h

    def prob(self, symbol: str, history: str) -> float:
        """P(symbol | history) of the interpolated model (history: its last order-1 symbols count)."""
        h = self._longest(history)
        p = self._prob[h].get(symbol)
        if p is not None:
            return p
        return self._alpha[h] * self.prob(symbol, h[1:])

    # -- the acceptor --------------------------------------------------------------------
    def arcs(self):
        """Every arc as (source, destination, label, cost); label None is the failure arc."""
        out = []
        for h in self.states:
            s = self.index[h]
            for w, p in self._prob[h].items():
                dest = s if w == EOW else self.index[self._longest(h + w)]
                out.append((s, dest, w, -math.log(p)))
            if h:
                out.append((s, self.index[h[1:]], None, -math.log(self._alpha[h])))
        return out

    def step(self, state: int, symbol: str) -> tuple[float, int]:
        """Cost of reading ``symbol`` from ``state`` (following failure arcs) and the next state."""
        key = (state, symbol)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        h, cost = self.states[state], 0.0
        while symbol not in self._prob[h]:
            cost -= math.log(self._alpha[h])
            h = h[1:]
        cost -= math.log(self._prob[h][symbol])
        out = (cost, self.index[self._longest(h + symbol)] if symbol != EOW else state)
        self._cache[key] = out
        return out

    def final(self, state: int) -> float:
        """The cost of ending the word in ``state`` (reading ``$``)."""
        return self.step(state, EOW)[0]

    def cost(self, word: str) -> float:
        """-log P(word) including its end."""
        s, total = self.start, 0.0
        for ch in word:
            c, s = self.step(s, ch)
            total += c
        return total + self.final(s)

