"""Writer population and ink: determinism, held-out words and writers, device sampling, and
named errors for bad ink."""
import dataclasses

import numpy as np
import pytest

from clients.handwriting.ink import (EmptyStrokeError, InkError, NonMonotonicTimestampError, OutOfAlphabetError,
                                     WriterStyle, num_points, render_word, validate_ink, validate_word)
from clients.handwriting.writers import PopulationConfig, WriterPopulation

SMALL = PopulationConfig(n_writers=6, heldout_writers=2, words_per_writer=20, vocab_size=800)


def test_same_seed_same_population_and_ink():
    a, b, c = WriterPopulation(5, SMALL), WriterPopulation(5, SMALL), WriterPopulation(6, SMALL)
    for w in (0, 7):
        assert a.style(w) == b.style(w)
        assert a.words(w) == b.words(w) and a.words(w, "test") == b.words(w, "test")
        sa, sb = a.samples(w, "test"), b.samples(w, "test")
        assert [x for x, _ in sa] == [x for x, _ in sb]
        for (_, ia), (_, ib) in zip(sa, sb):
            assert len(ia) == len(ib) and all(np.array_equal(p, q) for p, q in zip(ia, ib))
    assert a.style(0) != c.style(0) and a.words(0) != c.words(0)
    assert a.vocab.test_words != c.vocab.test_words


def test_heldout_words_never_reach_training():
    pop = WriterPopulation(1, SMALL)
    test_vocab = pop.vocab.test_words
    assert test_vocab and not (test_vocab & pop.vocab.train_words)
    assert not {w for w, _ in pop.vocab.lm_text()} & test_vocab  # the LM's text excludes them
    for w in range(pop.num_writers):
        train, test = pop.words(w, "train"), pop.words(w, "test")
        assert len(set(train)) == len(train) == 18 and len(set(test)) == len(test) == 2  # 10% of 20 distinct
        assert not set(train) & test_vocab and set(test) <= test_vocab
        assert all(word not in test_vocab for word, _ in pop.samples(w, "train"))


def test_heldout_writers_and_bounds():
    pop = WriterPopulation(1, SMALL)
    assert [pop.is_heldout(w) for w in range(8)] == [False] * 6 + [True] * 2
    with pytest.raises(ValueError, match="does not exist"):
        pop.style(8)
    table = pop.style_table()
    assert len(table) == 8 and table["heldout"].sum() == 2
    assert table["sample_rate_hz"].nunique() > 1 and table["slant_deg"].std() > 0


def test_topic_skew_makes_writers_use_different_words():
    pop = WriterPopulation(2, dataclasses.replace(SMALL, n_writers=4, heldout_writers=0, words_per_writer=40))
    sets = [set(pop.words(w)) for w in range(4)]
    overlaps = [len(sets[i] & sets[j]) / len(sets[i] | sets[j]) for i in range(4) for j in range(i + 1, 4)]
    assert max(overlaps) < 0.8  # not everyone writes the same top words


def test_device_sampling_rate_changes_point_counts():
    slow = WriterStyle(sample_rate_hz=60.0, noise_px=0.0)
    fast = dataclasses.replace(slow, sample_rate_hz=240.0)
    a = render_word("handwriting", slow, np.random.default_rng(0))
    b = render_word("handwriting", fast, np.random.default_rng(0))
    assert len(a) == len(b)
    assert 3.0 < num_points(b) / num_points(a) < 5.0
    for ink in (a, b):
        t = np.concatenate([s[:, 2] for s in ink])
        assert (np.diff(t) > 0).all()  # strictly increasing across the whole word


def test_rendering_follows_style():
    base = WriterStyle(noise_px=0.0, jitter=0.0, slant_deg=0.0)
    wide = render_word("mum", dataclasses.replace(base, aspect=1.5), np.random.default_rng(0))
    narrow = render_word("mum", base, np.random.default_rng(0))
    width = lambda ink: np.ptp(np.concatenate(ink)[:, 0])  # noqa: E731
    assert width(wide) > 1.3 * width(narrow)
    big = render_word("mum", dataclasses.replace(base, x_height_px=80.0), np.random.default_rng(0))
    height = lambda ink: np.ptp(np.concatenate(ink)[:, 1])  # noqa: E731
    assert 1.7 < height(big) / height(narrow) < 2.3


def test_bad_ink_raises_named_errors():
    ok = np.array([[0, 0, 0.0], [1, 1, 0.01], [2, 1, 0.02]])
    assert len(validate_ink([ok])) == 1
    with pytest.raises(EmptyStrokeError, match="no strokes"):
        validate_ink([])
    with pytest.raises(EmptyStrokeError, match="stroke 1"):
        validate_ink([ok, np.zeros((0, 3))])
    back = ok.copy()
    back[2, 2] = 0.005
    with pytest.raises(NonMonotonicTimestampError, match="stroke 0: timestamp of point 2"):
        validate_ink([back])
    with pytest.raises(NonMonotonicTimestampError, match="stroke 1 starts"):
        validate_ink([ok, ok])  # the second stroke starts before the first ends
    with pytest.raises(InkError, match="shape"):
        validate_ink([ok[:, :2]])
    for word in ("Hello", "café", "two words", ""):
        with pytest.raises(OutOfAlphabetError):
            validate_word(word)
    with pytest.raises(OutOfAlphabetError, match="'H'"):
        render_word("Hi", WriterStyle(), np.random.default_rng(0))
    assert issubclass(OutOfAlphabetError, ValueError)
