import math

import pytest

from clients.speech.wer import (EditCounts, cer, char_edit_counts, corpus_cer, corpus_wer, wer,
                                word_edit_counts)


def test_reordered_words_one_deletion_one_insertion():
    assert word_edit_counts("turn on the tv", "turn the tv on") == EditCounts(0, 1, 1, 4)
    assert wer("turn on the tv", "turn the tv on") == 0.5


@pytest.mark.parametrize("ref,hyp,counts", [
    ("turn on the tv", "turn on the tv", (0, 0, 0, 4)),
    ("a b c", "a x c d", (1, 0, 1, 3)),
    ("a b c d", "", (0, 4, 0, 4)),
    ("call mom", "call my mom now", (0, 0, 2, 2)),
    ("set an alarm", "set alarm", (0, 1, 0, 3)),
])
def test_word_edit_counts(ref, hyp, counts):
    assert word_edit_counts(ref, hyp) == EditCounts(*counts)


def test_rates_exact():
    assert wer("a b c", "a x c d") == pytest.approx(2 / 3)
    assert wer("a b c d", "") == 1.0
    assert wer("set an alarm", "set  alarm ") == pytest.approx(1 / 3)


def test_empty_reference():
    assert wer("", "") == 0.0
    assert word_edit_counts("", "hello there") == EditCounts(0, 0, 2, 0)
    assert math.isinf(wer("", "hello there"))
    assert cer("", "") == 0.0 and math.isinf(cer("", "x"))
    # corpus level: insertions against an empty reference still count
    assert corpus_wer(["", "a b"], ["x", "a b"]) == 0.5
    assert corpus_wer(["", ""], ["", ""]) == 0.0


def test_corpus_wer_sums_edits_not_rates():
    refs, hyps = ["turn on the tv", "hi"], ["turn the tv on", "ho"]
    assert corpus_wer(refs, hyps) == pytest.approx(3 / 5)          # mean of rates would be 0.75
    with pytest.raises(ValueError):
        corpus_wer(refs, hyps[:1])


def test_cer():
    assert char_edit_counts("kitten", "sitting") == EditCounts(2, 0, 1, 6)
    assert cer("kitten", "sitting") == 0.5
    assert cer("ab c", "abc") == 0.25                                # the space is a character
    assert corpus_cer(["kitten", "ab"], ["sitting", "ab"]) == pytest.approx(3 / 8)
