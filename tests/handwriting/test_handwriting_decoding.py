"""CTC decoding on hand-made cases: greedy, beam search against exhaustive search, the
character LM as a weighted acceptor, and the LM changing the best path."""
import math

import numpy as np
import pytest

from clients.handwriting.charlm_fst import EOW, CharNgramFst
from clients.handwriting.decoding import (best_labelling, beam_search, cer, decode_ids, edit_distance, encode,
                                          greedy_decode, log_softmax)
from clients.handwriting.ink import OutOfAlphabetError


def frames(rows, alphabet="abc"):
    """[T, 1 + len(alphabet)] log-probabilities from per-step {symbol: prob} (rest shared)."""
    out = np.zeros((len(rows), 1 + len(alphabet)))
    for t, row in enumerate(rows):
        rest = (1.0 - sum(row.values())) / (out.shape[1] - len(row))
        out[t] = rest
        for sym, p in row.items():
            out[t, 0 if sym == "-" else alphabet.index(sym) + 1] = p
    with np.errstate(divide="ignore"):
        return np.log(out)


def test_greedy_collapses_repeats_and_blanks():
    lp = frames([{"a": .9}, {"a": .9}, {"-": .9}, {"a": .9}, {"b": .9}, {"b": .9}, {"-": .9}])
    assert decode_ids(greedy_decode(lp), "abc") == "aab"
    assert encode("cab").tolist() == [3, 1, 2] and decode_ids([3, 0, 1, 2]) == "cab"
    with pytest.raises(OutOfAlphabetError):
        encode("Cab")


def test_beam_without_lm_equals_greedy_on_peaked_cases():
    cases = [
        [{"c": .8}, {"-": .7}, {"a": .6}, {"a": .6}, {"b": .9}],
        [{"a": .9}, {"-": .9}, {"a": .9}, {"-": .6}, {"c": .7}],
        [{"-": .9}, {"b": .55}, {"-": .8}, {"c": .9}, {"c": .5}],
    ]
    for rows in cases:
        lp = frames(rows)
        greedy = greedy_decode(lp)
        assert beam_search(lp, beam=8, alphabet="abc")[0][0] == greedy
        assert best_labelling(lp, alphabet="abc")[0] == greedy
    rng, checked = np.random.default_rng(0), 0
    for _ in range(60):
        lp = log_softmax(rng.normal(size=(6, 4)) * 6)
        if lp.max(1).sum() > np.log(0.5):  # the best path has P > 1/2, so its labelling is the best
            assert beam_search(lp, beam=8, alphabet="abc")[0][0] == greedy_decode(lp)
            checked += 1
    assert checked >= 20


def test_beam_finds_the_most_probable_labelling_not_the_best_path():
    # best path "- - -" (0.6^3 = 0.216) but "a" collects more probability over its 7 paths
    lp = frames([{"-": .6, "a": .4}] * 3)
    assert greedy_decode(lp) == ()
    assert beam_search(lp, beam=4, alphabet="abc")[0][0] == (1,) == best_labelling(lp, alphabet="abc")[0]
    rng = np.random.default_rng(1)
    for _ in range(15):
        lp = log_softmax(rng.normal(size=(5, 4)) * 1.5)
        (lab, score), = [beam_search(lp, beam=64, alphabet="abc", prune=-np.inf)[0]]
        ref_lab, ref_score = best_labelling(lp, alphabet="abc")
        assert lab == ref_lab and score == pytest.approx(ref_score, abs=1e-9)


def test_lm_is_a_normalized_acceptor():
    lm = CharNgramFst([("cat", 5), ("cab", 2), ("bat", 1)], order=3, alphabet="abct")
    for h in ["", "^", "^c", "ca", "zz", "tt"]:
        assert sum(lm.prob(w, h) for w in lm.symbols) == pytest.approx(1.0)
    for state in range(len(lm.states)):  # every state's outgoing mass (after failure arcs) is 1
        assert sum(math.exp(-lm.step(state, w)[0]) for w in lm.symbols) == pytest.approx(1.0)
    # a word's cost is the sum of arc costs along its path, ending with the end symbol
    assert lm.cost("cat") == pytest.approx(-sum(math.log(lm.prob(w, h)) for w, h in
                                                 [("c", "^"), ("a", "^c"), ("t", "ca"), (EOW, "at")]))
    assert lm.cost("cat") < lm.cost("cab") < lm.cost("tac")
    labels = {w for _, _, w, _ in lm.arcs()}
    assert None in labels and EOW in labels  # failure arcs and end-of-word arcs exist


def test_lm_changes_the_best_path_and_matches_exhaustive_search():
    # the ink says "cot" slightly more than "cat"; the LM knows "cat" and not "cot"
    alphabet = "acot"
    lm = CharNgramFst([("cat", 10), ("at", 3), ("to", 1)], order=3, alphabet=alphabet)
    lp = frames([{"c": .9}, {"o": .5, "a": .4}, {"t": .9}], alphabet)
    assert decode_ids(greedy_decode(lp), alphabet) == "cot"
    assert decode_ids(beam_search(lp, beam=8, alphabet=alphabet)[0][0], alphabet) == "cot"
    with_lm = beam_search(lp, beam=8, lm=lm, lm_weight=1.0, alphabet=alphabet)
    assert decode_ids(with_lm[0][0], alphabet) == "cat"
    ref_lab, ref_score = best_labelling(lp, lm=lm, lm_weight=1.0, alphabet=alphabet)
    assert with_lm[0][0] == ref_lab and with_lm[0][1] == pytest.approx(ref_score, abs=1e-9)
    # the switch happens where the LM's cost gap outweighs the ink's: "cot" and "cat" each have
    # exactly one path over three steps, so their acoustic gap is log(0.5 / 0.4)
    switch = np.log(0.5 / 0.4) / (lm.cost("cot") - lm.cost("cat"))
    for weight, word in [(0.9 * switch, "cot"), (1.1 * switch, "cat")]:
        assert decode_ids(beam_search(lp, beam=8, lm=lm, lm_weight=weight, alphabet=alphabet)[0][0],
                          alphabet) == word
    # the insertion bonus trades against deletions: a large one keeps an uncertain letter
    lp2 = frames([{"c": .9}, {"-": .55, "a": .4}, {"t": .9}], alphabet)
    assert decode_ids(beam_search(lp2, beam=8, alphabet=alphabet)[0][0], alphabet) == "ct"
    assert decode_ids(beam_search(lp2, beam=8, insertion_bonus=1.0, alphabet=alphabet)[0][0], alphabet) == "cat"


def test_edit_distance_and_cer():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3
    assert cer(["cat", "dog"], ["cot", "dog"]) == pytest.approx(1 / 6)
