"""On-device training and evaluation loops, traced once per worker and reused for every device.

A worker trains a chunk of devices per call of one traced function: for each device
the global weights are assigned, its batches run in a `tf.while_loop`, and its delta is
written out. Inputs have `None` leading dimensions, so nothing retraces; Python and
dispatch costs are paid once per chunk, not once per device.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fl.algorithms import resolve_algorithm
from fl.config import ClientSection
from fl.seeding import rng_for
from fl.task import correct_fraction, sparse_ce  # noqa: F401 (the default batch loss; bench_engine uses it)


@dataclass
class Batches:
    """A device's examples ``x``, ``y`` (each once) and its batches as rows of ``index``
    [num_batches, batch] into them, with a 0/1 weight ``w`` (0: padding). Epochs are index
    rows, not copies of the data."""
    x: np.ndarray
    y: np.ndarray
    index: np.ndarray
    w: np.ndarray


def make_batches(data: dict[str, np.ndarray], batch_size: int, epochs: int = 1, max_batches: int = 0,
                 shuffle_rng: np.random.Generator | None = None, lengths: np.ndarray | None = None,
                 bucket_pool: int = 0) -> Batches:
    """Batches of ``batch_size`` over ``epochs`` (each shuffled with ``shuffle_rng``).

    With ``lengths`` (e.g. frames per utterance) and ``bucket_pool`` > 0, examples of similar
    length share a batch: each epoch's shuffled order is cut into pools of ``bucket_pool``
    batches, every pool is sorted by length and cut into batches, and the batches are
    shuffled (the pooled "bucket iterator" of torchtext; with batches trimmed to their
    longest example, less compute is spent on padding)."""
    n = len(data["y"])
    if lengths is not None and bucket_pool > 0:
        index, w = _batch_index(n, batch_size, epochs, max_batches, shuffle_rng, lengths, bucket_pool)
    elif shuffle_rng is not None:
        index, w = _batch_index(n, batch_size, epochs, max_batches, shuffle_rng)
    else:  # the same batches for every device of n examples
        index, w = _unshuffled_index(n, batch_size, epochs, max_batches)
    return Batches(np.asarray(data["x"]), np.asarray(data["y"]), index, w)


def _batch_index(n: int, batch_size: int, epochs: int, max_batches: int, shuffle_rng=None, lengths=None,
                 bucket_pool: int = 0) -> tuple[np.ndarray, np.ndarray]:
    nb = -(-n // batch_size)
    idx = []
    for _ in range(epochs):
        order = shuffle_rng.permutation(n) if shuffle_rng is not None else np.arange(n)
        if lengths is not None and bucket_pool > 0:
            pool = bucket_pool * batch_size
            order = np.concatenate([p[np.argsort(lengths[p], kind="stable")]
                                    for p in np.split(order, range(pool, n, pool))])
        pad = np.full(nb * batch_size - n, -1)
        order = np.concatenate([order, pad]).reshape(nb, batch_size)
        if lengths is not None and bucket_pool > 0 and shuffle_rng is not None:
            order = order[shuffle_rng.permutation(nb)]
        idx.append(order[:max_batches] if max_batches else order)
    idx = np.concatenate(idx)
    valid = idx >= 0
    return np.where(valid, idx, 0).astype(np.int32), valid.astype(np.float32)


@functools.lru_cache(maxsize=1024)
def _unshuffled_index(n: int, batch_size: int, epochs: int, max_batches: int) -> tuple[np.ndarray, np.ndarray]:
    """`_batch_index` without shuffling, made once per size (read-only: devices share it)."""
    index, w = _batch_index(n, batch_size, epochs, max_batches)
    index.setflags(write=False)
    w.setflags(write=False)
    return index, w


def hold_out_validation(data: dict[str, np.ndarray], fraction: float, rng: np.random.Generator
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(train, validation): `fraction` of the device's distinct targets (e.g. phrases: rows of
    data["y"]) with every example of them go to validation, so the two share no target; at least one
    when fraction > 0 and there are two or more, none when fraction is 0."""
    n = len(data["y"])
    rows = np.asarray(data["y"]).reshape(n, -1)
    _, phrase = np.unique(rows, axis=0, return_inverse=True)
    phrase = phrase.reshape(-1)
    n_phrases = int(phrase.max()) + 1 if n else 0
    k = int(round(fraction * n_phrases))
    if fraction > 0 and n_phrases >= 2:
        k = min(max(k, 1), n_phrases - 1)
    held = np.isin(phrase, rng.permutation(n_phrases)[:k])
    return {key: v[~held] for key, v in data.items()}, {key: v[held] for key, v in data.items()}


class DeviceTrainer:
    """Builds the task's model once; `train(global_flat, batches)` -> (new_flat, metrics)."""

    def __init__(self, task, client: ClientSection, algorithm=None):
        """``algorithm``: the bound `fl.algorithms.Algorithm` whose client step this trainer
        traces (default: the one ``client.algorithm`` names)."""
        self.task, self.client = task, client
        self.algorithm = algorithm if algorithm is not None else resolve_algorithm(client.algorithm).bind(client)
        self.model = task.build_model()
        self.variables = self.model.trainable_variables
        self.shapes = [v.shape for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.num_params = int(sum(self.sizes))
        # which variables train (personalization fine-tunes a subset): one trace per mask, so
        # frozen variables get no gradient computed at all
        self._mask = (True,) * len(self.variables)
        self._trains: dict[tuple, object] = {}
        self._lr = tf.constant(client.lr, tf.float32)
        self._mu = tf.constant(self.algorithm.mu, tf.float32)
        xs, ys = task.example_spec()
        bx = tf.TensorSpec([None, *xs.shape[1:]], xs.dtype)
        by = tf.TensorSpec([None, *ys.shape[1:]], ys.dtype)
        bi = tf.TensorSpec([None, None], tf.int32)
        bw = tf.TensorSpec([None, None], tf.float32)
        flat = tf.TensorSpec([self.num_params], tf.float32)
        scalar = tf.TensorSpec([], tf.float32)
        self._get = tf.function(self._get_impl, input_signature=[])
        self._assign = tf.function(self._assign_impl, input_signature=[flat])
        # the algorithm's client step (fl/algorithms.py): its local steps, loss term and gradient
        # correction are traced in; the proximal centre and the correction are passed in only
        # for algorithms that read them
        self._prox = self.algorithm.uses_anchor
        self._corrected = self.algorithm.uses_correction
        bounds = tf.TensorSpec([None], tf.int32)
        # concrete functions: traced once, called without tf.function's dispatch cost
        self._train_specs = (flat, bx, by, bi, bw, bounds, scalar, scalar, flat, flat)
        self._eval = tf.function(self._eval_impl).get_concrete_function(flat, bx, by, bi, bw, bounds)
        # devices per call: bounded so the stacked deltas stay under ~64 MB; with XLA, where a
        # call's fixed cost is a larger share, up to 256
        self._jit = client.jit_compile
        self._staging = {} if self._jit else None
        self.chunk = max(1, min(256 if self._jit else 32, (64 << 20) // (4 * self.num_params)))

    @property
    def _train(self):
        """The traced training function (per-device deltas) for the current trainable mask."""
        return self._traced(self._train_impl, self._train_specs)

    @property
    def _train_sum(self):
        """The traced training function that sums weighted deltas, for the current mask."""
        wide = tf.TensorSpec([self.num_params], tf.float64)
        return self._traced(self._train_sum_impl, self._train_specs + (wide, tf.TensorSpec([None], tf.float64)))

    def _traced(self, impl, specs):
        key = (self._mask, impl.__name__)
        if key not in self._trains:
            self._trains[key] = (tf.function(impl, jit_compile=True)  # traced per (padded) input shape
                                 if self._jit else tf.function(impl).get_concrete_function(*specs))
        return self._trains[key]

    def _trained(self, values) -> list:
        """The entries of a per-variable list that belong to trained variables."""
        return [v for v, keep in zip(values, self._mask) if keep]

    # -- traced pieces ---------------------------------------------------------------
    def _assign_impl(self, flat):
        parts = tf.split(flat, self.sizes)
        for v, p, s in zip(self.variables, parts, self.shapes):
            v.assign(tf.reshape(p, s))
        return tf.constant(0)

    def _get_impl(self):
        return tf.concat([tf.reshape(v, [-1]) for v in self.variables], 0)

    def _step(self, *args):
        return self.algorithm.local_steps(self, *args)

    def _per_example(self, x, y, training):
        """(per-example loss, per-example metric): the task's `batch_loss` (by default
        cross-entropy and accuracy of the model's logits; e.g. RNN-T's own loss)."""
        return self.task.batch_loss(self.model, x, y, training)

    def _batch_loss(self, x, y, w, anchor, mu):
        per_ex, correct = self._per_example(x, y, True)
        n = tf.reduce_sum(w)
        loss = tf.reduce_sum(per_ex * w) / tf.maximum(n, 1.0)
        return self.algorithm.regularize(loss, self.variables, anchor, mu), per_ex, correct

    def local_sgd(self, x, y, index, ws, lo, hi, lr, mu, anchor, correction):
        """Local training on batches lo..hi-1: SGD, or Adam (Kingma & Ba 2015) with fresh moments per device.
        ``anchor`` is the centre of the algorithm's loss term; the algorithm's ``correct`` changes
        every gradient (e.g. SCAFFOLD's c - c_i, Karimireddy et al. 2020). Only trained variables move."""
        adam = self.client.optimizer == "adam"
        variables = self._trained(self.variables)
        correction = self._trained(correction) if self._corrected else []
        m = [tf.zeros_like(v) for v in variables] if adam else []
        s = [tf.zeros_like(v) for v in variables] if adam else []
        b1, b2 = 0.9, 0.999
        stats = tf.zeros([3])  # loss sum, correct sum, examples
        i = lo
        while i < hi:  # (a counter, not tf.range(lo, hi): XLA needs no dynamic-size ops)
            w = ws[i]
            with tf.GradientTape() as tape:
                loss, per_ex, correct = self._batch_loss(tf.gather(x, index[i]), tf.gather(y, index[i]), w,
                                                         anchor, mu)
            grads = tape.gradient(loss, variables)
            grads = self.algorithm.correct(grads, correction)
            if self.client.clip_norm > 0:
                grads, _ = tf.clip_by_global_norm(grads, self.client.clip_norm)
            if adam:
                grads = [tf.convert_to_tensor(g) for g in grads]  # embedding gradients are sparse
                t = tf.cast(i - lo + 1, tf.float32)
                m = [b1 * a + (1 - b1) * g for a, g in zip(m, grads)]
                s = [b2 * a + (1 - b2) * tf.square(g) for a, g in zip(s, grads)]
                scale = tf.sqrt(1 - b2 ** t) / (1 - b1 ** t)
                grads = [scale * a / (tf.sqrt(b) + 1e-7) for a, b in zip(m, s)]
            for v, g in zip(variables, grads):
                v.assign_sub(lr * g)
            stats += tf.stack([tf.reduce_sum(per_ex * w), tf.reduce_sum(correct * w), tf.reduce_sum(w)])
            i += 1
        return stats

    def full_gradient(self, x, y, index, ws, lo, hi, lr, mu, anchor, correction):
        """FedSGD (McMahan et al. 2017): one gradient over all local data; delta = -gradient."""
        variables = self._trained(self.variables)
        acc = [tf.zeros_like(v) for v in variables]
        stats = tf.zeros([3])
        rows = tf.range(tf.shape(ws)[0])
        mine = tf.cast((rows >= lo) & (rows < hi), tf.float32)[:, None]
        total = tf.reduce_sum(ws * mine)  # this device's examples (0/1 weights: the sum is exact)
        i = lo
        while i < hi:
            w = ws[i]
            with tf.GradientTape() as tape:
                per_ex, correct = self._per_example(tf.gather(x, index[i]), tf.gather(y, index[i]), True)
                loss = tf.reduce_sum(per_ex * w) / tf.maximum(total, 1.0)
            grads = tape.gradient(loss, variables)
            acc = [a + g for a, g in zip(acc, grads)]
            stats += tf.stack([tf.reduce_sum(per_ex * w), tf.reduce_sum(correct * w), tf.reduce_sum(w)])
            i += 1
        for v, a in zip(variables, acc):
            v.assign_sub(a)
        return stats

    def _unflat(self, anchor, correction):
        """The proximal centre and SCAFFOLD's correction per variable (only where used)."""
        unflat = lambda f: [tf.reshape(p, s) for p, s in zip(tf.split(f, self.sizes), self.shapes)]  # noqa: E731
        return unflat(anchor) if self._prox else [], unflat(correction) if self._corrected else []

    def _device_delta(self, flat, x, y, index, ws, bounds, d, lr, mu, parts):
        """Device d (batches bounds[d]:bounds[d+1]): set the start weights, train locally;
        (delta, stats)."""
        self._assign_impl(flat)
        stats = self._step(x, y, index, ws, bounds[d], bounds[d + 1], lr, mu, *parts)
        return self._get_impl() - flat, stats

    def _train_impl(self, flat, x, y, index, ws, bounds, lr, mu, anchor, correction):
        """Each device's delta and stats: ([D, P] deltas, [D, 3] stats)."""
        n = tf.shape(bounds)[0] - 1
        deltas = tf.TensorArray(tf.float32, size=n)
        stats = tf.TensorArray(tf.float32, size=n)
        parts = self._unflat(anchor, correction)
        for d in tf.range(n):
            delta, s = self._device_delta(flat, x, y, index, ws, bounds, d, lr, mu, parts)
            stats = stats.write(d, s)
            deltas = deltas.write(d, delta)
        return deltas.stack(), stats.stack()

    def _train_sum_impl(self, flat, x, y, index, ws, bounds, lr, mu, anchor, correction, total, weights):
        """As `_train_impl`, but each device's delta, times ``weights[d]``, is added to the
        float64 ``total`` in device order (the same operations as numpy's ``total += delta *
        w``), and a delta that is not all finite is left out: the client half of a linear
        aggregator (FedAvg's weighted sum) inside the call, with no [D, P] deltas out.
        Returns (total, [D, 3] stats, [D] finite)."""
        n = tf.shape(bounds)[0] - 1
        stats = tf.TensorArray(tf.float32, size=n)
        finite = tf.TensorArray(tf.bool, size=n)
        parts = self._unflat(anchor, correction)
        for d in tf.range(n):
            delta, s = self._device_delta(flat, x, y, index, ws, bounds, d, lr, mu, parts)
            ok = tf.reduce_all(tf.math.is_finite(delta))
            total = tf.where(ok, total + tf.cast(delta, tf.float64) * weights[d], total)
            stats = stats.write(d, s)
            finite = finite.write(d, ok)
        return total, stats.stack(), finite.stack()

    def _eval_impl(self, flat, x, y, index, ws, bounds):
        self._assign_impl(flat)
        n = tf.shape(bounds)[0] - 1
        out = tf.TensorArray(tf.float32, size=n)
        for d in tf.range(n):
            stats = tf.zeros([3])
            for i in tf.range(bounds[d], bounds[d + 1]):
                per_ex, correct = self._per_example(tf.gather(x, index[i]), tf.gather(y, index[i]), False)
                stats += tf.stack([tf.reduce_sum(per_ex * ws[i]), tf.reduce_sum(correct * ws[i]),
                                   tf.reduce_sum(ws[i])])
            out = out.write(d, stats)
        return out.stack()

    # -- python API --------------------------------------------------------------------
    def set_weights(self, flat) -> None:
        self._assign(flat)

    def set_trainable(self, mask) -> None:
        """Freeze variables where mask is False (None: train all)."""
        self._mask = (True,) * len(self.variables) if mask is None else tuple(bool(m) for m in mask)
        if len(self._mask) != len(self.variables):
            raise ValueError(f"trainable mask has {len(self._mask)} entries for {len(self.variables)} variables")

    def get_weights(self) -> np.ndarray:
        return self._get().numpy()

    def batches(self, data, seed: int, round_num: int, device_id: int, train: bool = True) -> Batches:
        c = self.client
        if not train:
            return make_batches(data, c.batch_size)
        rng = rng_for(seed, "shuffle", round_num, device_id) if c.shuffle else None
        lengths = self.task.example_lengths(data) if c.bucket_pool else None
        return make_batches(data, c.batch_size, c.epochs, c.max_batches, rng, lengths, c.bucket_pool)

    def train_many(self, global_flat, devices: list[Batches], mu: float | None = None, anchor=None,
                   correction=None) -> tuple[np.ndarray, list[dict]]:
        """Local training of each device from `global_flat` (a tf.Tensor, made once per round):
        returns [D, P] float32 deltas and per-device metric sums.  ``mu``/``anchor``: the
        proximal term's weight and centre (default client.prox_mu and the start weights);
        ``correction``: SCAFFOLD's gradient correction (flat; algorithm scaffold only)."""
        x, y, index, w, bounds = _concat(devices, self._staging)
        mu = self._mu if mu is None else tf.constant(mu, tf.float32)
        anchor = global_flat if anchor is None else anchor
        correction = global_flat if correction is None else correction  # unused unless scaffold
        deltas, stats = self._train(global_flat, x, y, index, w, bounds, self._lr, mu, anchor, correction)
        n = len(devices)  # (XLA: padded devices, with no batches, come last)
        return deltas.numpy()[:n], [_stats(s) for s in stats.numpy()[:n]]

    def train_sum(self, global_flat, devices: list[Batches], weights, total: np.ndarray
                  ) -> tuple[np.ndarray, list[dict], list[bool]]:
        """Train each device as `train_many` does and add ``weights[d]`` times its delta to
        ``total`` (float64), in device order, leaving out non-finite deltas: returns the new
        total, each device's metric sums and whether its delta was finite."""
        x, y, index, w, bounds = _concat(devices, self._staging)
        weights64 = np.zeros(len(bounds) - 1, np.float64)  # (padded devices: weight 0)
        weights64[:len(devices)] = weights
        out, stats, finite = self._train_sum(global_flat, x, y, index, w, bounds, self._lr, self._mu, global_flat,
                                             global_flat, tf.constant(total, tf.float64), tf.constant(weights64))
        n = len(devices)
        return out.numpy(), [_stats(s) for s in stats.numpy()[:n]], finite.numpy()[:n].tolist()

    def train(self, global_flat, b: Batches, **kw) -> tuple[np.ndarray, dict]:
        deltas, stats = self.train_many(global_flat, [b], **kw)
        return deltas[0], stats[0]

    def evaluate_many(self, global_flat, devices: list[Batches]) -> list[dict]:
        x, y, index, w, bounds = _concat(devices)
        return [_stats(s) for s in self._eval(global_flat, x, y, index, w, bounds).numpy()]

    def evaluate(self, global_flat, b: Batches) -> dict:
        return self.evaluate_many(global_flat, [b])[0]


def padded_size(n: int) -> int:
    """The smallest m * 2^e >= n with m in 4..8 (n itself up to 8): sizes that waste at most
    a quarter, four per octave, so XLA compiles few shapes."""
    if n <= 8:
        return max(int(n), 1)
    step = 1 << (int(n).bit_length() - 3)
    return -(-int(n) // step) * step


def _aligned_zeros(shape: tuple, dtype) -> np.ndarray:
    """Zeros whose data starts on a 64-byte boundary, as a TensorFlow tensor sharing its
    memory requires."""
    dtype = np.dtype(dtype)
    raw = np.zeros(int(np.prod(shape)) * dtype.itemsize + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + int(np.prod(shape)) * dtype.itemsize].view(dtype).reshape(shape)


def _concat(devices: list[Batches], staging: dict | None = None):
    """Several devices' batches as one set: examples concatenated, indices offset.
    ``staging`` (XLA): examples, batches and devices are each padded to `padded_size` (zero
    examples, zero-weight batches, devices without batches) and assembled in reused buffers
    kept in this dict (fresh large arrays cost page faults on every call)."""
    n = len(devices)
    bounds = np.zeros((padded_size(n) if staging is not None else n) + 1, np.int32)
    bounds[1:n + 1] = np.cumsum([len(b.w) for b in devices])
    bounds[n + 1:] = bounds[n]
    offsets = np.cumsum([0] + [len(b.y) for b in devices[:-1]]).astype(np.int32)

    def cat(role, xs):
        if staging is None:
            return tf.constant(np.concatenate(xs)) if len(xs) > 1 else tf.constant(xs[0])
        rows = sum(len(a) for a in xs)
        shape = (padded_size(rows), *xs[0].shape[1:])
        buf = staging.get(role)
        if buf is None or buf.dtype != xs[0].dtype or buf.shape[1:] != shape[1:] or len(buf) < shape[0]:
            buf = staging[role] = _aligned_zeros((max(shape[0], 2 * len(buf) if buf is not None else 0),
                                                  *shape[1:]), xs[0].dtype)
        np.concatenate(xs, out=buf[:rows])
        buf[rows:shape[0]] = 0
        # zero-copy: the tensor shares the buffer, which is rewritten only by the next call,
        # after this call's results were read
        return tf.experimental.dlpack.from_dlpack(buf[:shape[0]].__dlpack__())

    return (cat("x", [b.x for b in devices]), cat("y", [b.y for b in devices]),
            cat("index", [b.index + o for b, o in zip(devices, offsets)]), cat("w", [b.w for b in devices]),
            tf.constant(bounds))


def _stats(s) -> dict:
    return {"loss_sum": float(s[0]), "correct_sum": float(s[1]), "examples": float(s[2])}
