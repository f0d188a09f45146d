"""The NOSS-like corpus: config checks, splits, determinism and caching, and that labels are audible."""
import dataclasses

import numpy as np
import pytest

from clients.embeddings.noss import TASKS, NossConfig, NossConfigError, NossCorpus, clips


def test_default_config_meets_the_issue_minimums():
    c = NossConfig()
    assert c.n_speakers >= 100 and len(c.languages) >= 6 and len(c.command_words) >= 10 and len(c.styles) >= 4
    assert c.window_frames == 96 and c.window_hop == 96
    assert len({cl.speaker.speaker_id for cl in clips("commands", 0, c)}) == c.command_speakers  # many speakers


@pytest.mark.parametrize("key,value", [("window_s", 0.5), ("window_hop_s", 0.0), ("languages", ("en-us", "xx")),
                                       ("styles", ("neutral",)), ("n_speakers", 1), ("test_fraction", 1.0),
                                       ("speaker_clips", 1), ("command_words", ("yes", "no no"))])
def test_bad_config_is_refused_by_name(key, value, tmp_path):
    with pytest.raises(NossConfigError, match=f"noss.{key}"):
        NossCorpus(0, cache_dir=tmp_path, **{key: value})
    with pytest.raises(NossConfigError, match="unknown NOSS task"):
        NossCorpus(0, cache_dir=tmp_path, n_speakers=2).get("emotion")


def test_splits(tiny_noss, tmp_path):
    corpus = NossCorpus(0, tiny_noss, cache_dir=tmp_path)
    for task in TASKS:
        d = corpus.get(task)
        n = len(d["label"])
        assert d["offsets"][-1] == len(d["frames"]) and len(d["offsets"]) == n + 1
        assert set(np.unique(d["label"])) <= set(range(len(corpus.classes(task))))
        for s in np.unique(d["speaker"]):  # every speaker has clips on both sides of the intra split
            rows = d["speaker"] == s
            assert d["intra_test"][rows].any() and not d["intra_test"][rows].all()
        if task == "speaker_id":
            assert set(d["speaker"][d["test"]]) == set(d["speaker"][~d["test"]])
        else:  # speaker-disjoint
            assert d["test"].any() and not set(d["speaker"][d["test"]]) & set(d["speaker"][~d["test"]])
    w, idx = corpus.windows("language_id")
    assert w.shape[1:] == (96, 64) and len(w) == len(idx) and set(idx) == set(range(len(corpus.get("language_id")["label"])))


def test_deterministic_from_the_seed_and_cached(tiny_noss, tmp_path):
    small = dataclasses.replace(tiny_noss, n_speakers=2, speaker_clips=2)
    a = NossCorpus(3, small, cache_dir=tmp_path / "a").get("speaker_id")
    b_corpus = NossCorpus(3, small, cache_dir=tmp_path / "b")
    b = b_corpus.get("speaker_id")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    again = NossCorpus(3, small, cache_dir=tmp_path / "b")
    np.testing.assert_array_equal(again.get("speaker_id")["frames"], a["frames"])
    assert b_corpus.built == 1 and again.built == 0  # read from the disk cache
    other = NossCorpus(4, small, cache_dir=tmp_path / "a").get("speaker_id")
    assert other["frames"].shape != a["frames"].shape or not np.array_equal(other["frames"], a["frames"])


def test_labels_are_audible(tiny_noss, tmp_path):
    corpus = NossCorpus(0, tiny_noss, cache_dir=tmp_path)
    mask = corpus.get("mask")
    feats = corpus.clip_features("mask")
    high = np.array([f[:, 48:].mean() for f in feats])  # mel bins above ~3.5 kHz
    assert high[mask["label"] == 1].max() < high[mask["label"] == 0].min()  # a mask muffles
    style, styles = corpus.get("style"), corpus.classes("style")
    level = np.array([f.mean() for f in corpus.clip_features("style")])
    assert level[style["label"] == styles.index("sad")].max() < level[style["label"] == styles.index("angry")].min()
