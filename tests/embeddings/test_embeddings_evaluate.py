"""NOSS evaluation: per-speaker normalization, the classifier on toy cases, the whole table."""
import numpy as np

from clients.embeddings import evaluate as E
from clients.embeddings.noss import NossCorpus
from clients.embeddings.trill import build_trill, embedding_and_layer19


def test_speaker_normalization_hand_computed():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [10.0, 0.0], [20.0, 4.0], [30.0, 8.0]])
    spk = np.array([7, 7, 2, 2, 2])
    out = E.speaker_normalize(x, spk)
    # speaker 7: mean (2, 5), std (1, 0 -> 1); speaker 2: mean (20, 4), std (8.165, 3.266)
    np.testing.assert_allclose(out[:2], [[-1.0, 0.0], [1.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(out[2:], [[-1.2247449, -1.2247449], [0, 0], [1.2247449, 1.2247449]], atol=1e-6)


def test_classifier_separable_toy_and_chance():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 40)
    x = rng.normal(size=(120, 5)) + 6.0 * np.eye(3, 5)[y]
    train = rng.random(120) < 0.7
    assert E.fit_score(x[train], y[train], x[~train], y[~train]) == 1.0
    shuffled = rng.permutation(y)  # labels unrelated to the features
    assert E.fit_score(x[train], shuffled[train], x[~train], shuffled[~train]) < 0.7
    assert E.fit_score(x[:3], [1, 1, 1], x[3:6], [1, 0, 1]) == 2 / 3  # one class: predicts it


def test_speaker_normalization_helps_when_speakers_shift_features():
    """Speaker offsets hide the label; removing each speaker's mean reveals it (the NOSS motivation)."""
    rng = np.random.default_rng(1)
    spk = np.repeat(np.arange(20), 10)
    y = np.tile([0, 1], 100)
    x = rng.normal(0, 5, size=(20, 4))[spk] + 0.4 * y[:, None] + rng.normal(0, 0.1, size=(200, 4))
    data = {"speaker": spk, "label": y, "test": spk >= 15, "intra_test": np.arange(200) % 10 >= 8}
    assert E.task_accuracy(x, data, speaker_norm=True) > 0.95 > E.task_accuracy(x, data, speaker_norm=False)
    per = E.intra_speaker_accuracies(x, data)
    assert sorted(per) == list(range(20)) and np.mean(list(per.values())) > 0.9


def test_mean_by_clip():
    v = np.array([[1.0], [3.0], [10.0], [5.0]])
    np.testing.assert_allclose(E.mean_by_clip(v, np.array([0, 0, 2, 1]), 3), [[2.0], [5.0], [10.0]])


def test_table_on_the_tiny_corpus(tiny_noss, tmp_path):
    corpus = NossCorpus(0, tiny_noss, cache_dir=tmp_path)
    model = build_trill()
    feats = {"log-mel": None, "trill-init": E.keras_embedder(model),
             "trill-init-layer19": E.keras_embedder(embedding_and_layer19(model))}
    tasks, speakers = E.evaluate(feats, corpus, tasks=("mask", "commands"))
    assert len(tasks) == 3 * 2 * 4 and tasks["accuracy"].between(0, 1).all()
    assert set(map(tuple, tasks[["speaker_norm", "l2_norm"]].drop_duplicates().to_numpy().tolist())) == {
        (False, False), (False, True), (True, False), (True, True)}
    assert set(speakers["task"]) == {"commands"} and len(speakers) == 3 * tiny_noss.command_speakers
    d = corpus.get("mask")
    assert E.log_mel_features(corpus, "mask").shape == (len(d["label"]), 64)
    assert E.embedding_features(E.keras_embedder(model), corpus, "mask").shape == (len(d["label"]), 64)
    assert E.embedding_features(E.keras_embedder(embedding_and_layer19(model)), corpus, "mask").shape[1] == 12 * 8 * 16


def test_l2_normalization_hand_computed_and_helps_when_loudness_scales_features():
    np.testing.assert_allclose(E.l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0.0, 0.0]])
    # the label is a direction (diagonal vs. either axis), each clip scaled by its own level:
    # no line separates the rays, but on the unit circle x1 + x2 does
    rng = np.random.default_rng(0)
    n = 400
    label = rng.integers(0, 2, n)
    axis = np.eye(2)[rng.integers(0, 2, n)]
    direction = np.where(label[:, None] == 1, np.full((n, 2), 2 ** -0.5), axis) + rng.normal(0, 0.02, (n, 2))
    x = (np.abs(direction) * np.exp(rng.normal(0, 1.5, (n, 1)))).astype(np.float32)
    data = {"label": label, "speaker": np.zeros(n, np.int32), "test": np.arange(n) % 4 == 0}
    assert E.task_accuracy(x, data, speaker_norm=False, l2_norm=True) > 0.95
    assert E.task_accuracy(x, data, speaker_norm=False, l2_norm=False) < 0.85
