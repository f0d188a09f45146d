import numpy as np
import pytest
import tensorflow as tf

from clients.speech.decoding import (BLANK, VOCAB, VOCAB_SIZE, beam_search, compiled_greedy_decode, greedy_decode,
                                     ids_to_text, text_to_ids)
from clients.speech.rnnt import RNNT, RNNTConfig

ID = {c: i for i, c in enumerate(VOCAB)}


class TableDecoder:
    """Stub: the joint's log-probs depend only on (frame, last emitted label).
    Encoder frame t is the one-hot vector e_t; the prediction output is one-hot(last label)."""

    def __init__(self, table):
        self.table = np.asarray(table, np.float32)          # [T, V(context), V]

    def prediction_initial_state(self, n):
        return tf.zeros([n], tf.int32)

    def prediction_step(self, labels, state):
        labels = tf.cast(labels, tf.int32)
        return tf.one_hot(labels, VOCAB_SIZE), labels

    def joint_step(self, enc, pred):
        t = np.argmax(np.asarray(enc), axis=1)
        ctx = np.argmax(np.asarray(pred), axis=1)
        return self.table[t, ctx]


def table_from(T, rules, default_blank=2.0):
    """rules: {(t, ctx_char or None): {char or None(blank): prob}}; others favour blank."""
    table = np.zeros([T, VOCAB_SIZE, VOCAB_SIZE], np.float32)
    table[:, :, BLANK] = default_blank
    for (t, ctx), probs in rules.items():
        row = np.full(VOCAB_SIZE, -30.0, np.float32)
        for ch, p in probs.items():
            row[BLANK if ch is None else ID[ch]] = np.log(p)
        table[t, BLANK if ctx is None else ID[ctx]] = row
    return table


def test_text_ids_roundtrip():
    ids = text_to_ids("Don't  stop")
    assert ids[0] == ID["d"] and ID["'"] in ids and BLANK not in ids
    assert ids_to_text(ids) == "don't stop"
    assert ids_to_text([0, ID["h"], 0, ID["i"]]) == "hi"
    assert VOCAB_SIZE == 29 and VOCAB[1] == " " and VOCAB[2] == "'"


def test_greedy_on_stub_joint():
    rules = {(0, None): {"h": 0.9, None: 0.1}, (0, "h"): {"i": 0.8, None: 0.2},
             (2, "i"): {" ": 0.7, None: 0.3}, (2, " "): {"a": 0.6, None: 0.4}}
    dec = TableDecoder(table_from(3, rules))
    enc = np.eye(3, dtype=np.float32)
    hyp = greedy_decode(dec, enc)
    assert hyp.text == "hi a"
    # path: h i <b> | <b> | ' ' a <b>   (non-rule rows: blank prob = e^2 / (e^2 + 28))
    p_blank = np.exp(2.0) / (np.exp(2.0) + 28)
    expected = np.log([0.9, 0.8, p_blank, p_blank, 0.7, 0.6, p_blank]).sum()
    assert hyp.score == pytest.approx(expected, abs=1e-4)
    assert greedy_decode(dec, enc, max_symbols_per_frame=1).text == "h"
    batch = greedy_decode(dec, np.stack([enc, enc]), lengths=[3, 1])
    assert [h.text for h in batch] == ["hi a", "hi"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_width_one_equals_greedy(seed):
    rng = np.random.default_rng(seed)
    T = 6
    dec = TableDecoder(rng.normal(size=(T, VOCAB_SIZE, VOCAB_SIZE)) * 3)
    enc = np.eye(T, dtype=np.float32)
    g = greedy_decode(dec, enc, max_symbols_per_frame=1)
    b = beam_search(dec, enc, beam=1)
    assert len(g.tokens) > 0
    assert b.tokens == g.tokens and b.score == pytest.approx(g.score, abs=1e-6)


def test_wider_beam_beats_greedy():
    rules = {(0, None): {"a": 0.4, "b": 0.35, None: 0.25},
             (1, "a"): {None: 0.4, "a": 0.3, "b": 0.3},
             (1, "b"): {None: 0.99, "a": 0.01},
             (1, None): {None: 0.5, "a": 0.5}}
    dec = TableDecoder(table_from(2, rules))
    enc = np.eye(2, dtype=np.float32)
    g = greedy_decode(dec, enc, max_symbols_per_frame=1)
    b = beam_search(dec, enc, beam=3)
    assert g.text == "a" and g.score == pytest.approx(np.log(0.4 * 0.4), abs=1e-5)
    assert b.text == "b" and b.score == pytest.approx(np.log(0.35 * 0.99), abs=1e-5)
    assert b.score > g.score
    assert beam_search(dec, enc, beam=1).text == "a"


def test_beam_merges_paths_with_equal_labels():
    # "a" = (a, <b>) + (<b>, a) = 0.16 + 0.175 = 0.335 beats "b" = 0.35 * 0.8 = 0.28,
    # although each single path of "a" is below 0.28
    rules = {(0, None): {"a": 0.4, "b": 0.35, None: 0.25},
             (1, "a"): {None: 0.4, "a": 0.3, "b": 0.3},
             (1, "b"): {None: 0.8, "a": 0.2},
             (1, None): {None: 0.3, "a": 0.7}}
    dec = TableDecoder(table_from(2, rules))
    b = beam_search(dec, np.eye(2, dtype=np.float32), beam=4)
    assert b.text == "a" and b.score == pytest.approx(np.log(0.16 + 0.175), abs=1e-5)


def test_decoders_on_real_model_batch():
    cfg = RNNTConfig(n_mels=6, encoder_layers=3, encoder_units=8, reduction_after=2,
                     pred_layers=2, pred_units=8, embed_dim=4, joint_units=8)
    tf.keras.utils.set_random_seed(3)
    model = RNNT(cfg)
    feats = tf.random.normal([2, 9, 6])
    enc, lengths = model.encode(feats, [9, 5])
    g1 = greedy_decode(model, enc, lengths, max_symbols_per_frame=1)
    b1 = beam_search(model, enc, lengths, beam=1)
    assert [h.tokens for h in g1] == [h.tokens for h in b1]
    np.testing.assert_allclose([h.score for h in g1], [h.score for h in b1], atol=1e-4)
    b3 = beam_search(model, enc, lengths, beam=3)
    assert len(b3) == 2 and all(len(h.tokens) <= int(n) for h, n in zip(b3, lengths))
    assert all(0 < k < VOCAB_SIZE for h in b3 for k in h.tokens)


@pytest.mark.parametrize("max_symbols", [1, 3])
def test_compiled_greedy_matches_python_greedy(max_symbols):
    cfg = RNNTConfig(n_mels=6, encoder_layers=2, encoder_units=8, reduction_after=0,
                     pred_layers=2, pred_units=8, embed_dim=4, joint_units=8)
    tf.keras.utils.set_random_seed(5)
    model = RNNT(cfg)
    # a strong joint bias towards one label makes the search emit several symbols per frame
    model.encode(tf.zeros([1, 3, 6]), [3])
    model.joint_step(tf.zeros([1, model.encoder_layers[-1].output_dim]), tf.zeros([1, 8]))
    model.joint_out.bias.assign(np.r_[0.0, 0.0, 0.0, 3.0, np.zeros(VOCAB_SIZE - 4)].astype(np.float32))
    for seed in range(3):
        enc, lengths = model.encode(tf.random.stateless_normal([1, 12, 6], [seed, 0]), [12])
        e = enc.numpy()[0, : int(lengths[0])]
        want = greedy_decode(model, e, max_symbols_per_frame=max_symbols)
        got = compiled_greedy_decode(model, e, max_symbols_per_frame=max_symbols)
        assert got.tokens == want.tokens and len(got.tokens) > 0
        assert got.score == pytest.approx(want.score, abs=1e-4)
    assert compiled_greedy_decode(model, np.zeros((0, e.shape[1]), np.float32)).tokens == ()
