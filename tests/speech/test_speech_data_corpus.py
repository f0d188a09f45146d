import numpy as np
import pytest

from clients.speech.corpus import BLANK, VOCAB, SpeechCorpus, decode, encode

TINY = dict(n_typical=1, n_atypical=2, utterances_per_speaker=5)


def test_vocab():
    assert VOCAB[BLANK] == "<blank>" and VOCAB[1] == " " and VOCAB[2] == "'" and VOCAB[3:] == tuple("abcdefghijklmnopqrstuvwxyz")
    assert decode(encode("i'd like tea")) == "i'd like tea" and BLANK not in encode("a b")
    with pytest.raises(KeyError):
        encode("TV")


def test_tiny_corpus_arrays_and_split(tmp_path):
    corpus = SpeechCorpus(3, cache_dir=tmp_path, **TINY)
    assert len(corpus.speaker_ids) == 3 and len(corpus.table()) == 3
    for sid in corpus.speaker_ids:
        tr, te = corpus.get(sid, "train"), corpus[sid, "test"]
        assert len(te["transcripts"]) >= 1 and len(tr["transcripts"]) + len(te["transcripts"]) == 5
        assert not set(tr["transcripts"]) & set(te["transcripts"])  # held-out phrases never in train
        for d in (tr, te):
            n = len(d["transcripts"])
            assert d["features"].shape[0] == n and d["features"].shape[2] == 80 and d["features"].dtype == np.float32
            assert d["features"].shape[1] == d["feature_lengths"].max()
            assert d["labels"].dtype == np.int32 and d["labels"].shape == (n, d["label_lengths"].max())
            for i in range(n):
                L, T = d["label_lengths"][i], d["feature_lengths"][i]
                assert decode(d["labels"][i, :L]) == d["transcripts"][i] and (d["labels"][i, L:] == BLANK).all()
                assert (d["features"][i, T:] == 0).all() and np.abs(d["features"][i, :T]).sum() > 0
                assert T > 2 * L  # enough frames for CTC
            assert set(d["domains"]) <= {"home", "caregiver", "conversation"}
    with pytest.raises(ValueError):
        corpus.get(corpus.speaker_ids[0], "dev")


def test_cache_hits_determinism_and_corruption(tmp_path):
    first = SpeechCorpus(4, cache_dir=tmp_path / "a", **TINY)
    sid = first.speaker_ids[-1]
    ref = first.get(sid, "train")
    assert first.built == 1
    reread = SpeechCorpus(4, cache_dir=tmp_path / "a", memory_mb=0, **TINY)
    got = reread.get(sid, "train")
    assert reread.built == 0 and reread.cache.rebuilt == 0
    np.testing.assert_array_equal(got["features"], ref["features"])
    # a fresh cache with the same seed synthesizes the same features
    fresh = SpeechCorpus(4, cache_dir=tmp_path / "b", **TINY)
    again = fresh.get(sid, "train")
    assert fresh.built == 1
    for k in ref:
        np.testing.assert_array_equal(again[k], ref[k])
    # corrupt the cached file: detected by checksum, rebuilt, identical
    path = reread.cache.path(reread.key(sid, "train"))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    fixed = reread.get(sid, "train")
    assert reread.cache.rebuilt == 1 and reread.built == 1
    np.testing.assert_array_equal(fixed["features"], ref["features"])
    assert SpeechCorpus(4, cache_dir=tmp_path / "a", memory_mb=0, **TINY).get(sid, "train") is not None
    # key covers seed and config
    other = SpeechCorpus(5, cache_dir=tmp_path / "a", **TINY)
    assert other.key(sid, "train") != reread.key(sid, "train")
    assert SpeechCorpus(4, cache_dir=tmp_path / "a", normalize="none", **TINY).key(sid, "train") != reread.key(sid, "train")
    assert not np.array_equal(other.get(sid, "train")["features"][:1, :10], ref["features"][:1, :10])


def test_mtr_changes_only_typical_training_audio(tmp_path):
    plain = SpeechCorpus(3, cache_dir=tmp_path, **TINY)
    mtr = SpeechCorpus(3, cache_dir=tmp_path, **{**TINY, "mtr": True})
    assert plain.config.digest() != mtr.config.digest()
    for sid in plain.speaker_ids:
        for split in ("train", "test"):
            a, b = plain.get(sid, split), mtr.get(sid, split)
            same = np.array_equal(a["feature_lengths"], b["feature_lengths"]) and np.array_equal(a["features"], b["features"])
            typical_train = split == "train" and plain.population.speaker(sid).kind == "typical"
            assert same != typical_train, (sid, split)
            assert list(a["transcripts"]) == list(b["transcripts"])


def test_atypical_utterances_is_part_of_the_cache_key():
    from clients.speech.corpus import CorpusConfig

    base = CorpusConfig(**TINY)
    assert CorpusConfig(**TINY, atypical_utterances=None).digest() == base.digest()
    assert CorpusConfig(**TINY, atypical_utterances=9).digest() != base.digest()
    assert CorpusConfig(**TINY, atypical_utterances=9).digest() != CorpusConfig(**TINY, atypical_utterances=10).digest()
