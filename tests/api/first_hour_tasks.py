"""Tasks for the first-hour tests, importable by path on the workers (``first_hour_tasks:Duck``)."""
import numpy as np

import fedpop


def _dense(classes=2, dim=3):
    import tensorflow as tf

    init = tf.keras.initializers.GlorotUniform(seed=0)
    return tf.keras.Sequential([tf.keras.Input((dim,)), tf.keras.layers.Dense(classes, kernel_initializer=init)])


def _data(device_id, n, split):
    rng = np.random.default_rng([device_id, split == "eval"])
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return {"x": x, "y": (x[:, 0] > 0).astype(np.int32)}


class Duck:
    """The protocol as a plain class: no fedpop.Task base, no Config, no example_spec."""

    def build_model(self):
        return _dense()

    def device_data(self, device_id, num_examples, split="train"):
        return _data(device_id, num_examples, split)


class NoSuper(fedpop.Task):
    """A subclass whose __init__ does not call super().__init__; it reads self.config and self.seed."""

    def __init__(self, config=None, seed=0):
        self.width = 2

    def build_model(self):
        assert self.config is None and self.seed == 4
        return _dense(self.width)

    def device_data(self, device_id, num_examples, split="train"):
        return _data(device_id + self.seed, num_examples, split)


class BadModel(fedpop.Task):
    """build_model raises: the error must reach the user, not a dead Ray actor."""

    def build_model(self):
        raise ValueError("this model cannot be built")

    def device_data(self, device_id, num_examples, split="train"):
        return _data(device_id, num_examples, split)


class WrongShape(fedpop.Task):
    """A model expecting 5 features on data with 3: every device fails."""

    def build_model(self):
        return _dense(dim=5)

    def device_data(self, device_id, num_examples, split="train"):
        return _data(device_id, num_examples, split)

    def example_spec(self):  # the model's own (wrong) input spec, so the trace succeeds and devices fail
        import tensorflow as tf

        return tf.TensorSpec([None, 5], tf.float32), tf.TensorSpec([None], tf.int32)


def tff_clients():
    """A small TFF ClientData (the `data.loader` of a YAML config)."""
    import tensorflow_federated as tff

    rng = np.random.default_rng(0)
    per = {"a": 6, "b": 9, "c": 4}
    return tff.simulation.datasets.TestClientData(
        {c: {"x": rng.normal(size=(n, 3)).astype(np.float32), "y": rng.integers(0, 2, n).astype(np.int32)}
         for c, n in per.items()})
