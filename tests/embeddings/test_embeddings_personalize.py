"""Intra-speaker tasks as on-device personalization on Ray workers: a device holds one speaker's
clips only, runs the TFLite model, and reports the accuracy NOSS's in-process protocol gives."""
import numpy as np
import pytest

from clients.embeddings import evaluate as E
from clients.embeddings import personalize as P
from clients.embeddings.frill import tflite_model
from clients.embeddings.noss import NossCorpus
from clients.embeddings.trill import build_trill


@pytest.fixture
def corpus(tiny_noss, tmp_path):
    return NossCorpus(0, tiny_noss, cache_dir=tmp_path)


def test_a_device_holds_one_speakers_clips_only(corpus):
    d = corpus.get("commands")
    clips = corpus.clip_features("commands")
    shards = P.speaker_shards(corpus, "commands")
    assert sorted(s["speaker"] for s in shards) == sorted(np.unique(d["speaker"]).tolist())
    for s in shards:
        rows = np.flatnonzero(d["speaker"] == s["speaker"])
        np.testing.assert_array_equal(s["frames"], np.concatenate([clips[i] for i in rows]))
        np.testing.assert_array_equal(s["label"], d["label"][rows])
        np.testing.assert_array_equal(s["intra_test"], d["intra_test"][rows])
        assert s["intra_test"].any() and (~s["intra_test"]).any()


def test_a_device_scores_as_the_in_process_protocol(corpus):
    d = corpus.get("commands")
    want = E.intra_speaker_accuracies(E.log_mel_features(corpus, "commands"), d)
    c = corpus.config
    got = {s["speaker"]: P.personalize_device(None, s, c.window_frames, c.window_hop)["accuracy"]
           for s in P.speaker_shards(corpus, "commands")}
    assert got == want
    # with a model: the device's TFLite embeddings, averaged per clip, are the Keras ones
    model = build_trill()
    shard = P.speaker_shards(corpus, "commands")[0]
    windows, clip = P.clip_windows(shard, c.window_frames, c.window_hop)
    from clients.embeddings.frill import tflite_run

    np.testing.assert_allclose(tflite_run(tflite_model(model), windows), model.predict(windows, verbose=0),
                               rtol=1e-4, atol=1e-4)
    assert clip.max() == len(shard["label"]) - 1


@pytest.mark.slow
def test_every_model_and_speaker_on_the_pool(corpus):
    model = build_trill()
    table = P.intra_speaker_on_pool({"log_mel": None, "trill": tflite_model(model)}, corpus,
                                    tasks=("mask", "commands", "style"), num_workers=2, progress=False)
    c = corpus.config
    assert list(table.columns[:4]) == ["model", "task", "speaker", "accuracy"]
    assert set(table["task"]) == {"commands", "style"}  # mask is not an intra-speaker task
    assert len(table) == 2 * (c.command_speakers + c.style_speakers) and table["accuracy"].between(0, 1).all()
    logmel = table[(table["model"] == "log_mel") & (table["task"] == "commands")]
    want = E.intra_speaker_accuracies(E.log_mel_features(corpus, "commands"), corpus.get("commands"))
    assert dict(zip(logmel["speaker"], logmel["accuracy"])) == want
    keras = E.intra_speaker_accuracies(E.embedding_features(E.keras_embedder(model), corpus, "style"),
                                       corpus.get("style"))
    tr = table[(table["model"] == "trill") & (table["task"] == "style")]
    assert np.mean([abs(keras[s] - a) for s, a in zip(tr["speaker"], tr["accuracy"])]) <= 0.1
    assert (table["train_clips"] > 0).all() and (table["test_clips"] > 0).all()
