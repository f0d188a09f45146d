"""The on-device loops: one trace per worker, FedSGD/FedProx semantics, padding weights."""
import numpy as np
import pytest

from clients.mlp import MLPTask
from fl.trainer import DeviceTrainer, make_batches
from fl.config import ClientSection


def _trainer(**client):
    task = MLPTask(MLPTask.Config(input_dim=6, hidden=(5,), classes=3), seed=1)
    return task, DeviceTrainer(task, ClientSection(**{"shuffle": False, "batch_size": 4, **client}))


def test_padding_batches_carry_zero_weight():
    data = {"x": np.arange(10.0)[:, None], "y": np.arange(10)}
    b = make_batches(data, 4, epochs=2)
    assert b.index.shape == (6, 4) and b.w.sum() == 20
    assert b.w[2].tolist() == [1, 1, 0, 0]
    assert b.x.shape == (10, 1)  # the examples once: epochs are rows of indices, not copies
    assert sorted(b.index[b.w > 0].tolist()) == sorted(list(range(10)) * 2)


def test_bucketing_batches_similar_lengths_and_keeps_every_example():
    rng = np.random.default_rng(0)
    n, batch = 200, 8
    lengths = rng.integers(50, 600, n)
    data = {"x": np.arange(n)[:, None], "y": np.arange(n)}
    plain = make_batches(data, batch, epochs=3, shuffle_rng=np.random.default_rng(1))
    bucketed = make_batches(data, batch, epochs=3, shuffle_rng=np.random.default_rng(1), lengths=lengths,
                            bucket_pool=8)
    for b in (plain, bucketed):  # every example once per epoch
        assert sorted(b.index[b.w > 0].tolist()) == sorted(list(range(n)) * 3)
    padded = lambda b: sum(lengths[row[w > 0]].max() * batch for row, w in zip(b.index, b.w))  # noqa: E731
    assert padded(bucketed) < 0.75 * padded(plain)  # frames computed when batches are trimmed to their longest
    # batches are shuffled, not in length order, and differ between epochs
    firsts = [lengths[row[0]] for row in bucketed.index[:25]]
    assert firsts != sorted(firsts)
    assert not np.array_equal(bucketed.index[:25], bucketed.index[25:50])


def test_devices_of_any_size_reuse_one_trace():
    task, tr = _trainer(lr=0.1)
    w0 = tr.get_weights()
    import tensorflow as tf
    fn = tr._train  # a concrete function: a shape it could not take would raise, not retrace
    for dev, n in enumerate([3, 8, 17, 40]):
        b = tr.batches(task.device_data(dev, n), 0, 0, dev)
        delta, stats = tr.train(tf.constant(w0), b)
        assert stats["examples"] == n and np.abs(delta).max() > 0
    assert tr._train is fn


def test_fedsgd_delta_is_negative_mean_gradient():
    import tensorflow as tf

    from fl.trainer import sparse_ce
    task, tr = _trainer(algorithm="fedsgd", lr=1.0)
    data = task.device_data(0, 10)
    w0 = tr.get_weights()
    delta, _ = tr.train(tf.constant(w0), tr.batches(data, 0, 0, 0))
    tr.set_weights(w0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(sparse_ce(data["y"], tr.model(data["x"])))
    grad = np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, tr.variables)])
    np.testing.assert_allclose(delta, -grad, atol=1e-5)


def test_fedprox_stays_closer_to_global_model():
    import tensorflow as tf
    task, plain = _trainer(lr=0.5, epochs=5)
    _, prox = _trainer(lr=0.5, epochs=5, algorithm="fedprox", prox_mu=1.0)
    data = task.device_data(0, 20)
    w0 = plain.get_weights()
    d_plain, _ = plain.train(tf.constant(w0), plain.batches(data, 0, 0, 0))
    d_prox, _ = prox.train(tf.constant(w0), prox.batches(data, 0, 0, 0))
    assert np.linalg.norm(d_prox) < np.linalg.norm(d_plain)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_device_data_is_deterministic(split):
    task = MLPTask(MLPTask.Config(input_dim=6, hidden=(5,), classes=3), seed=1)
    a, b = task.device_data(5, 12, split), task.device_data(5, 12, split)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], task.device_data(6, 12, split)["x"])


def test_typing_histories_hold_new_words_outside_dictionary():
    from clients.typing_data import TypingPopulation
    typing = TypingPopulation(seed=0, dictionary_size=500, new_words=10)
    assert not set(typing.new_words) & set(typing.dictionary)
    words = typing.device_words(3, 2000)
    own = set(typing.device_new_words(3))
    assert own and own <= set(words) and set(words) - own <= set(typing.dictionary)
    counts = typing.new_word_device_counts(np.arange(500))
    assert sum(counts.values()) == 500 * 2 and max(counts.values()) > 500 * 2 / 10


def test_frozen_variables_do_not_move():
    import tensorflow as tf
    task, tr = _trainer(lr=0.5)
    w0 = tr.get_weights()
    mask = [i % 2 == 0 for i in range(len(tr.variables))]  # kernels train, biases frozen
    tr.set_trainable(mask)
    delta, _ = tr.train(tf.constant(w0), tr.batches(task.device_data(0, 12), 0, 0, 0))
    parts = np.split(delta, np.cumsum(tr.sizes)[:-1])
    for keep, part in zip(mask, parts):
        assert (np.abs(part).max() > 0) == keep
    tr.set_trainable(None)
    delta, _ = tr.train(tf.constant(w0), tr.batches(task.device_data(0, 12), 0, 0, 0))
    assert all(np.abs(p).max() > 0 for p in np.split(delta, np.cumsum(tr.sizes)[:-1]))


def test_local_adam_first_step_and_clipping():
    """Adam's first step moves every trained weight by ~lr (|m/sqrt(v)| = 1); frozen
    variables stay put; clip_norm bounds an SGD step's norm by lr * clip_norm."""
    import tensorflow as tf

    task, tr = _trainer(optimizer="adam", lr=0.01, batch_size=10)
    data = task.device_data(0, 10)
    w0 = tr.get_weights()
    mask = [i > 0 for i in range(len(tr.variables))]  # freeze the first variable
    tr.set_trainable(mask)
    delta, _ = tr.train(tf.constant(w0), tr.batches(data, 0, 0, 0))
    tr.set_trainable(None)
    first = tr.sizes[0]
    assert np.all(delta[:first] == 0)
    moved = np.abs(delta[first:])
    np.testing.assert_allclose(moved[moved > 0], 0.01, rtol=1e-2)
    _, clipped = _trainer(lr=1.0, batch_size=10, clip_norm=0.05)
    d, _ = clipped.train(tf.constant(w0), clipped.batches(data, 0, 0, 0))
    assert np.linalg.norm(d) <= 0.05 + 1e-6


def test_hold_out_validation_splits_by_target():
    from fl.trainer import hold_out_validation

    y = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [7, 8], [9, 9], [3, 4], [2, 2], [4, 4], [6, 6]])
    data = {"x": np.arange(len(y)), "y": y}
    train, val = hold_out_validation(data, 0.25, np.random.default_rng(0))
    assert len(train["y"]) + len(val["y"]) == len(y)
    phrases = lambda d: {tuple(r) for r in d["y"]}  # noqa: E731
    assert len(phrases(val)) == 2 and not phrases(train) & phrases(val)  # 8 distinct targets -> 2
    assert sorted(np.concatenate([train["x"], val["x"]])) == list(range(len(y)))  # x travels with its y
    assert all(tuple(data["y"][i]) in phrases(val) for i in val["x"])
    again = hold_out_validation(data, 0.25, np.random.default_rng(0))[1]
    assert np.array_equal(again["x"], val["x"])
    none = hold_out_validation(data, 0.0, np.random.default_rng(0))
    assert len(none[1]["y"]) == 0 and len(none[0]["y"]) == len(y)
    tiny = hold_out_validation({"x": np.arange(2), "y": y[:2]}, 0.01, np.random.default_rng(1))
    assert len(tiny[0]["y"]) == 1 and len(tiny[1]["y"]) == 1  # at least one each side


def test_padded_sizes_waste_at_most_a_quarter():
    from fl.trainer import padded_size

    sizes = [padded_size(n) for n in range(1, 5000)]
    assert all(n <= m <= max(n * 1.25, 8) for n, m in zip(range(1, 5000), sizes))
    assert len(set(sizes)) < 60  # few distinct shapes for XLA to compile


@pytest.mark.parametrize("client", [
    {"algorithm": "fedavg"}, {"algorithm": "fedavg", "optimizer": "adam"}, {"algorithm": "fedsgd"},
    {"algorithm": "fedprox", "prox_mu": 0.5}, {"algorithm": "fedavg", "clip_norm": 0.05, "epochs": 2}])
def test_xla_training_matches_the_plain_path(client):
    """client.jit_compile: the same per-device deltas and metrics (to float rounding) for
    devices of different sizes, chunk sizes that need padding, and a frozen variable."""
    import tensorflow as tf

    task, plain = _trainer(lr=0.1, **client)
    _, jit = _trainer(lr=0.1, jit_compile=True, **client)
    w0 = tf.constant(plain.get_weights())
    devices = [plain.batches(task.device_data(dev, n), 0, 0, dev) for dev, n in enumerate([3, 8, 17, 40, 9])]
    for mask in (None, [i > 0 for i in range(len(plain.variables))]):
        plain.set_trainable(mask)
        jit.set_trainable(mask)
        for chunk in (devices, devices[:3], devices[4:]):
            d_plain, s_plain = plain.train_many(w0, chunk)
            d_jit, s_jit = jit.train_many(w0, chunk)
            assert d_jit.shape == d_plain.shape and len(s_jit) == len(chunk)
            np.testing.assert_allclose(d_jit, d_plain, rtol=1e-4, atol=1e-6)
            for a, b in zip(s_jit, s_plain):
                assert a["examples"] == b["examples"]
                assert a["loss_sum"] == pytest.approx(b["loss_sum"], rel=1e-5)
    assert set(jit._staging) == {"x", "y", "index", "w"} and plain._staging is None  # the padded XLA path ran
    assert all(getattr(fn, "_jit_compile", False) for fn in jit._trains.values())
    d1, _ = jit.train_many(w0, devices)
    d2, _ = jit.train_many(w0, devices)
    np.testing.assert_array_equal(d1, d2)  # deterministic, and the reused input buffers do not leak
