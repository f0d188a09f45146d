"""The handwriting task: packing, held-out words and writers at the task level, the loss and
metric, and federated rounds through the public API (`fedpop.build_process`)."""
import numpy as np
import pytest
import tensorflow as tf

from clients.handwriting.decoding import ctc_loss, decode_ids
from clients.handwriting.task import HandwritingTask, ctc_feasible

TINY = {"n_writers": 2, "heldout_writers": 1, "words_per_writer": 10, "vocab_size": 300, "max_word_len": 6,
        "max_steps": 48, "max_label_len": 6, "layers": 1, "units": 8}


def _task(**kw):
    return HandwritingTask(HandwritingTask.Config(**{**TINY, **kw}), seed=3)


def test_packing_and_heldout_words_and_writers():
    task = _task()
    train, test = task.device_data(0, 5, "train"), task.device_data(0, 5, "eval")
    vocab = task.population.vocab
    for d in (train, test):
        n = len(d["y"])
        assert d["x"].shape == (n, 48, 11) and d["y"].shape == (n, 6) and d["y"].dtype == np.int32
        steps = d["x"][..., -1].sum(1)
        np.testing.assert_array_equal(steps, d["steps"])
        assert (d["x"][..., -1][:, :-1] >= d["x"][..., -1][:, 1:]).all()  # the mask is a prefix
        for row, wid, s in zip(d["y"], d["word_id"], steps):
            labels = row[row > 0]
            assert decode_ids(labels) == vocab.words[wid] and ctc_feasible(int(s), labels)
            assert (row[len(labels):] == 0).all()
    assert len(train["y"]) >= 6 and len(test["y"]) >= 1
    train_words = {vocab.words[i] for i in train["word_id"]}
    assert not train_words & vocab.test_words  # held-out words never reach training
    assert {vocab.words[i] for i in test["word_id"]} <= vocab.test_words
    with pytest.raises(ValueError, match="held out"):
        task.device_data(2, 5, "train")
    assert len(task.device_data(2, 5, "eval")["y"]) >= 1  # a held-out writer can be evaluated
    assert len(task.writer_data(2, "train")["y"]) >= 1  # ... and personalized (writer_data)
    # the same seed gives the same data; the points baseline has its own width
    np.testing.assert_array_equal(_task().device_data(0, 5, "train")["x"], train["x"])
    pts = _task(representation="points", max_steps=400).device_data(0, 5, "train")
    assert pts["x"].shape[2] == 5 and np.median(pts["steps"]) > np.median(train["steps"])


def test_loss_metric_and_padding_rows():
    task = _task()
    model = task.build_model()
    d = task.device_data(0, 5, "train")
    x = np.concatenate([d["x"][:3], np.zeros_like(d["x"][:1])])  # plus one all-padding row
    y = np.concatenate([d["y"][:3], np.zeros_like(d["y"][:1])])
    loss, acc = task.batch_loss(model, tf.constant(x), tf.constant(y), training=False)
    assert loss.shape == (4,) and np.isfinite(loss.numpy()).all()
    # the loss is CTC over each word's own steps and labels
    n, u = int(d["steps"][0]), int((d["y"][0] > 0).sum())
    logits = model(tf.constant(d["x"][:1, :n, :-1]), lengths=tf.constant([n]))
    ref = ctc_loss(tf.constant(d["y"][:1, :u]), logits, tf.constant([u]), tf.constant([n]))
    assert loss.numpy()[0] == pytest.approx(float(ref.numpy()[0]), rel=1e-4)
    assert (acc.numpy()[:3] <= 1.0).all()
    with pytest.raises(Exception, match="representation"):
        _task(representation="pixels")


def test_federated_rounds_through_the_public_api(tmp_path):
    import ray

    import fedpop
    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    config = {"experiment.task": "handwriting", "experiment.rounds": 2, "experiment.seed": 3,
              "population.size": 2, "population.eligible_prob": 1.0, "population.night_hours": 24,
              "population.dropout_per_hour": 0.0, "cohort.goal": 2, "cohort.over_selection": 1.0,
              "cohort.min_reports": 1, "cohort.deadline_s": 1e6, "client.lr": 0.05, "client.batch_size": 4,
              "client.optimizer": "adam", "eval.every": 2, "eval.cohort": 2, "workers.num": 1,
              "workers.cache_dir": str(tmp_path / "cache"), **{f"task.{k}": v for k, v in TINY.items()}}
    with fedpop.build_process("handwriting", config) as process:
        init = process.initialize()
        state = process.run()
        weights = process.model(state).trainable_variables
    rounds = process.rounds
    assert len(rounds) == 2 and rounds["updated"].all() and (rounds["accepted"] == 2).all()
    assert np.isfinite(rounds["train_loss"]).all() and np.isfinite(rounds["eval_loss"].dropna()).all()
    assert rounds["train_loss"].iloc[-1] < rounds["train_loss"].iloc[0]
    start = process.model(init).trainable_variables
    assert max(float(np.abs(a.numpy() - b.numpy()).max()) for a, b in zip(weights, start)) > 0
    ray.shutdown()
