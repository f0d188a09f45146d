"""On-device training and evaluation loops, traced once per worker and reused for every device.

All of a device's local steps run inside one `tf.function` (a `tf.while_loop` over
stacked batches), weights are set with one traced assignment, and inputs have `None`
leading dimensions, so nothing retraces from device to device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fl.config import ClientSection
from fl.seeding import rng_for


def sparse_ce(y, logits):
    """Per-example loss: cross-entropy averaged over any time axis."""
    loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tf.reshape(tf.reduce_mean(tf.reshape(loss, [tf.shape(loss)[0], -1]), axis=1), [-1])


def _correct(y, logits):
    hit = tf.cast(tf.equal(tf.cast(tf.argmax(logits, -1), y.dtype), y), tf.float32)
    return tf.reduce_mean(tf.reshape(hit, [tf.shape(hit)[0], -1]), axis=1)


@dataclass
class Batches:
    """A device's data as [num_batches, batch, ...] plus a 0/1 weight for padding."""
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray


def make_batches(data: dict[str, np.ndarray], batch_size: int, epochs: int = 1, max_batches: int = 0,
                 shuffle_rng: np.random.Generator | None = None) -> Batches:
    n = len(data["y"])
    nb = -(-n // batch_size)
    idx = []
    for _ in range(epochs):
        order = shuffle_rng.permutation(n) if shuffle_rng is not None else np.arange(n)
        pad = np.full(nb * batch_size - n, -1)
        order = np.concatenate([order, pad]).reshape(nb, batch_size)
        idx.append(order[:max_batches] if max_batches else order)
    idx = np.concatenate(idx)
    valid = idx >= 0
    take = np.where(valid, idx, 0)
    return Batches(data["x"][take], data["y"][take], valid.astype(np.float32))


class DeviceTrainer:
    """Builds the task's model once; `train(global_flat, batches)` -> (new_flat, metrics)."""

    def __init__(self, task, client: ClientSection):
        self.task, self.client = task, client
        self.model = task.build_model()
        self.variables = self.model.trainable_variables
        self.shapes = [v.shape for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.num_params = int(sum(self.sizes))
        self._lr = tf.constant(client.lr, tf.float32)
        self._mu = tf.constant(client.prox_mu, tf.float32)
        xs, ys = task.example_spec()
        bx = tf.TensorSpec([None, None, *xs.shape[1:]], xs.dtype)
        by = tf.TensorSpec([None, None, *ys.shape[1:]], ys.dtype)
        bw = tf.TensorSpec([None, None], tf.float32)
        flat = tf.TensorSpec([self.num_params], tf.float32)
        scalar = tf.TensorSpec([], tf.float32)
        self._get = tf.function(self._get_impl, input_signature=[])
        self._assign = tf.function(self._assign_impl, input_signature=[flat])
        step = self._gradient_impl if client.algorithm == "fedsgd" else self._local_sgd_impl
        self._step = step
        # concrete functions: traced once here, called without tf.function's dispatch cost
        self._train = tf.function(self._train_impl).get_concrete_function(flat, bx, by, bw, scalar, scalar)
        self._eval = tf.function(self._eval_impl).get_concrete_function(flat, bx, by, bw)

    # -- traced pieces ---------------------------------------------------------------
    def _assign_impl(self, flat):
        parts = tf.split(flat, self.sizes)
        for v, p, s in zip(self.variables, parts, self.shapes):
            v.assign(tf.reshape(p, s))
        return tf.constant(0)

    def _get_impl(self):
        return tf.concat([tf.reshape(v, [-1]) for v in self.variables], 0)

    def _batch_loss(self, x, y, w, start, mu):
        logits = self.model(x, training=True)
        per_ex = sparse_ce(y, logits)
        n = tf.reduce_sum(w)
        loss = tf.reduce_sum(per_ex * w) / tf.maximum(n, 1.0)
        if self.client.algorithm == "fedprox":  # Li et al. 2020, "Federated Optimization in Heterogeneous Networks"
            loss += 0.5 * mu * tf.add_n([tf.reduce_sum(tf.square(v - s)) for v, s in zip(self.variables, start)])
        return loss, per_ex, logits

    def _local_sgd_impl(self, xs, ys, ws, lr, mu):
        start = [tf.identity(v) for v in self.variables]
        stats = tf.zeros([3])  # loss sum, correct sum, examples
        for i in tf.range(tf.shape(xs)[0]):
            w = ws[i]
            with tf.GradientTape() as tape:
                loss, per_ex, logits = self._batch_loss(xs[i], ys[i], w, start, mu)
            grads = tape.gradient(loss, self.variables)
            for v, g in zip(self.variables, grads):
                v.assign_sub(lr * g)
            stats += tf.stack([tf.reduce_sum(per_ex * w), tf.reduce_sum(_correct(ys[i], logits) * w),
                               tf.reduce_sum(w)])
        return stats

    def _gradient_impl(self, xs, ys, ws, lr, mu):
        """FedSGD (McMahan et al. 2017): one gradient over all local data; delta = -gradient."""
        acc = [tf.zeros_like(v) for v in self.variables]
        stats = tf.zeros([3])
        total = tf.reduce_sum(ws)
        for i in tf.range(tf.shape(xs)[0]):
            w = ws[i]
            with tf.GradientTape() as tape:
                logits = self.model(xs[i], training=True)
                per_ex = sparse_ce(ys[i], logits)
                loss = tf.reduce_sum(per_ex * w) / tf.maximum(total, 1.0)
            grads = tape.gradient(loss, self.variables)
            acc = [a + g for a, g in zip(acc, grads)]
            stats += tf.stack([tf.reduce_sum(per_ex * w), tf.reduce_sum(_correct(ys[i], logits) * w),
                               tf.reduce_sum(w)])
        for v, a in zip(self.variables, acc):
            v.assign_sub(a)
        return stats

    def _train_impl(self, flat, xs, ys, ws, lr, mu):
        """Set the global weights, train locally, return (delta, stats): one call per device."""
        self._assign_impl(flat)
        stats = self._step(xs, ys, ws, lr, mu)
        return self._get_impl() - flat, stats

    def _eval_impl(self, flat, xs, ys, ws):
        self._assign_impl(flat)
        stats = tf.zeros([3])
        for i in tf.range(tf.shape(xs)[0]):
            logits = self.model(xs[i], training=False)
            per_ex = sparse_ce(ys[i], logits)
            stats += tf.stack([tf.reduce_sum(per_ex * ws[i]), tf.reduce_sum(_correct(ys[i], logits) * ws[i]),
                               tf.reduce_sum(ws[i])])
        return stats

    # -- python API --------------------------------------------------------------------
    def set_weights(self, flat) -> None:
        self._assign(flat)

    def get_weights(self) -> np.ndarray:
        return self._get().numpy()

    def batches(self, data, seed: int, round_num: int, device_id: int, train: bool = True) -> Batches:
        c = self.client
        if not train:
            return make_batches(data, c.batch_size)
        rng = rng_for(seed, "shuffle", round_num, device_id) if c.shuffle else None
        return make_batches(data, c.batch_size, c.epochs, c.max_batches, rng)

    def train(self, global_flat, b: Batches) -> tuple[np.ndarray, dict]:
        """Local training from `global_flat` (pass a tf.Tensor to avoid a copy per device);
        returns the model delta (float32) and metric sums."""
        delta, stats = self._train(global_flat, tf.constant(b.x), tf.constant(b.y), tf.constant(b.w),
                                   self._lr, self._mu)
        return delta.numpy(), _stats(stats.numpy())

    def evaluate(self, global_flat, b: Batches) -> dict:
        return _stats(self._eval(global_flat, tf.constant(b.x), tf.constant(b.y), tf.constant(b.w)).numpy())


def _stats(s) -> dict:
    return {"loss_sum": float(s[0]), "correct_sum": float(s[1]), "examples": float(s[2])}
