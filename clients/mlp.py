"""A multilayer perceptron on synthetic non-IID classification data (engine benchmarks).

Each device draws labels from its own Dirichlet(alpha) class mix and features around
shared class prototypes plus a device-specific shift: label and feature skew as in
FEMNIST-style federated benchmarks, made from (seed, device_id) alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl.seeding import rng_for
from fl.task import Task


class MLPTask(Task):
    @dataclass
    class Config:
        input_dim: int = 784
        hidden: tuple[int, ...] = (200, 200)
        classes: int = 10
        label_alpha: float = 0.5
        noise: float = 1.0

    name = "mlp"

    def __init__(self, config: "MLPTask.Config", seed: int):
        self.config, self.seed = config, seed
        c = config
        self.prototypes = rng_for(seed, "mlp-prototypes").normal(0, 1, (c.classes, c.input_dim)).astype(np.float32)

    @property
    def cache_namespace(self) -> str:
        c = self.config
        return f"mlp-{self.seed}-{c.input_dim}-{c.classes}-{c.label_alpha}-{c.noise}"

    def example_spec(self):
        import tensorflow as tf
        return tf.TensorSpec([None, self.config.input_dim], tf.float32), tf.TensorSpec([None], tf.int32)

    def build_model(self):
        import tensorflow as tf
        c = self.config
        init = lambda i: tf.keras.initializers.GlorotUniform(seed=self.seed * 1000 + i)  # noqa: E731
        layers = [tf.keras.layers.Input((c.input_dim,))]
        for i, width in enumerate(c.hidden):
            layers.append(tf.keras.layers.Dense(width, activation="relu", kernel_initializer=init(i)))
        layers.append(tf.keras.layers.Dense(c.classes, kernel_initializer=init(len(c.hidden))))
        return tf.keras.Sequential(layers)

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        c = self.config
        rng = rng_for(self.seed, "mlp-device", device_id)
        mix = rng.dirichlet(np.full(c.classes, c.label_alpha))
        shift = rng.normal(0, 0.3, c.input_dim).astype(np.float32)
        rng = rng_for(self.seed, "mlp-examples", device_id, split)
        y = rng.choice(c.classes, size=num_examples, p=mix).astype(np.int32)
        x = self.prototypes[y] + shift + rng.normal(0, c.noise, (num_examples, c.input_dim)).astype(np.float32)
        return {"x": x.astype(np.float32), "y": y}
