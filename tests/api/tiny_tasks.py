"""Small tasks for the public-API tests, importable by path (``tiny_tasks:LabelSkew``) on workers."""
import numpy as np

import fedpop


class LabelSkew(fedpop.Task):
    """4 classes with weakly informative features; each device's labels are 85% its own
    class (device_id % 4): a global model cannot know a device's prior, a personal one can."""
    classes = 4

    def build_model(self):
        import tensorflow as tf

        init = tf.keras.initializers.GlorotUniform(seed=self.seed)
        return tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(8, activation="relu",
                                                                                 kernel_initializer=init),
                                    tf.keras.layers.Dense(self.classes, kernel_initializer=init)])

    def device_data(self, device_id, num_examples, split="train"):
        rng = np.random.default_rng([self.seed, device_id, split == "eval"])
        own = device_id % self.classes
        y = np.where(rng.random(num_examples) < 0.85, own, rng.integers(0, self.classes, num_examples))
        x = 0.5 * np.eye(self.classes)[y] + rng.normal(size=(num_examples, self.classes))
        return {"x": x.astype(np.float32), "y": y.astype(np.int32)}


class Quadratic(fedpop.Task):
    """Least squares with a different optimum and curvature on every device: the
    heterogeneous quadratic on which FedAvg's local steps drift (Karimireddy et al. 2020)."""
    dim = 5

    def build_model(self):
        import tensorflow as tf

        return tf.keras.Sequential([tf.keras.Input((self.dim,)),
                                    tf.keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])

    def device_data(self, device_id, num_examples, split="train"):
        rng = np.random.default_rng([self.seed, device_id])
        scale = np.exp(rng.uniform(-1.2, 1.2, self.dim))  # per-device curvature
        w_star = rng.normal(0, 2.0, self.dim)  # per-device optimum
        rng = np.random.default_rng([self.seed, device_id, split == "eval"])
        x = rng.normal(size=(num_examples, self.dim)) * scale
        return {"x": x.astype(np.float32), "y": (x @ w_star).astype(np.float32)}

    def batch_loss(self, model, x, y, training):
        import tensorflow as tf

        err = tf.reshape(model(x, training=training), [-1]) - y
        return 0.5 * tf.square(err), tf.zeros_like(err)


class NoData(fedpop.Task):
    """Has a model but no device_data: usable only with a federated dataset."""

    def build_model(self):
        import tensorflow as tf

        return tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])


class NotATask:
    """Missing every required method."""
