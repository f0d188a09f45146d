"""FRILL distilled on devices: each phone runs the TRILL teacher on its own recordings and
trains a MobileNetV3 student to regress the teacher's outputs by MSE; FedAvg across phones.

Peplinski et al. 2021, "FRILL: A Non-Semantic Speech Embedding for Mobile Devices", distil
centrally (frill.distill, the study's grid). Here the same student and loss train inside the
engine's devices: a device's examples are random 0.96 s crops of its own recording sessions
(the TRILL task's devices, `TrillTask.device_clips`) and their targets, the teacher's embedding
(or layer19) computed on the device from the teacher's weights (``teacher_weights``, an .npz of
`build_trill`'s weights in order, as ``np.savez(*model.get_weights())`` writes).  No audio and
no teacher output leave the device; only the student's update does.

Batch normalization (HeteroFL's "static batch norm", Diao et al. 2021): the engine averages
trainable variables, and a batch-norm layer's moving mean and variance are not.  Devices train
with batch statistics (``training=True``), as the central students do; after the rounds every
device re-estimates the global student's statistics on its own crops
(`device_batch_norm_statistics`, frill.recalibrate_batch_norm: precise BN) and only those
per-channel averages leave it; the server averages them, weighted by batches
(`federated_batch_norm`), into the student that is measured and shipped.

The per-example metric reported as ``accuracy`` is the cosine similarity of the student's
output to the teacher's target.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl.config import ConfigError, bounded
from fl.seeding import rng_for

from . import frontend as FE
from .frill import StudentConfig, build_student, distillation_loss
from .task import TrillTask
from .trill import build_trill, layer19_dim, layer19_model

TARGETS = ("embedding", "layer19")


class FrillTask(TrillTask):
    @dataclass
    class Config(TrillTask.Config):
        # the teacher: the TRILL network these (inherited) keys describe, with these weights
        teacher_weights: str = ""                # .npz path (the trill-frill study writes OUT/teacher.npz)
        target: str = "embedding"                # what the student regresses: embedding or layer19
        # the student (frill.StudentConfig; its output is as wide as the target)
        architecture: str = "small"
        alpha: float = bounded(0.5, 0.0)
        average_pool: bool = True
        bottleneck_dim: int = bounded(0, 0)
        windows_per_device: int = bounded(128, 1)  # training crops per device
        eval_windows: int = bounded(32, 1)

    name = "frill"

    def __init__(self, config: "FrillTask.Config | None" = None, seed: int = 0):
        config = config or self.Config()
        super().__init__(config, seed)
        c = config
        if c.target not in TARGETS:
            raise ConfigError(f"bad value for 'task.target': {c.target!r} (allowed: {', '.join(TARGETS)})")
        self.target_dim = layer19_dim(self.model_config) if c.target == "layer19" else c.embedding_dim
        try:
            self.student_config = StudentConfig(c.architecture, c.alpha, c.average_pool, c.bottleneck_dim, False,
                                                self.target_dim)
        except ConfigError as e:  # StudentConfig names the study's keys (frill.*); these are task.*
            raise ConfigError(str(e).replace("'frill.", "'task.")) from None
        self._teacher_digest = ""
        if c.teacher_weights:
            path = Path(c.teacher_weights)
            if not path.is_file():
                raise ConfigError(f"bad value for 'task.teacher_weights': {c.teacher_weights!r} (allowed: an "
                                  f"existing .npz of the TRILL teacher's weights)")
            self._teacher_digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self._teacher = None

    # -- model -------------------------------------------------------------------------
    def build_model(self):
        import tensorflow as tf

        tf.keras.utils.set_random_seed(self.seed)  # same initial student in every process
        return build_student(self.student_config, self.window_frames)

    def example_spec(self):
        import tensorflow as tf

        return (tf.TensorSpec([None, self.window_frames, FE.N_MELS], tf.float32),
                tf.TensorSpec([None, self.target_dim], tf.float32))

    @property
    def cache_namespace(self) -> str:
        return f"{super().cache_namespace}-teacher{self._teacher_digest or 'none'}"

    def teacher(self):
        """The TRILL teacher as a Keras model [B, frames, 64] -> [B, target_dim] (built once)."""
        if self._teacher is None:
            if not self._teacher_digest:
                raise ConfigError("bad value for 'task.teacher_weights': '' (allowed: the path of an .npz of the "
                                  "TRILL teacher's weights; on-device distillation needs a teacher)")
            model = build_trill(self.model_config)
            with np.load(self.config.teacher_weights) as z:
                weights = [z[f"arr_{i}"] for i in range(len(z.files))]
            shapes = [tuple(w.shape) for w in model.get_weights()]
            if [tuple(w.shape) for w in weights] != shapes:
                raise ConfigError(f"bad value for 'task.teacher_weights': {self.config.teacher_weights!r} holds "
                                  f"{len(weights)} arrays that do not fit the TRILL network of task.width / "
                                  f"stages / blocks_per_stage / embedding_dim ({len(shapes)} arrays)")
            model.set_weights(weights)
            self._teacher = model if self.config.target == "embedding" else layer19_model(model, self.model_config)
        return self._teacher

    # -- data --------------------------------------------------------------------------
    def device_windows(self, device_id: int, split: str = "train") -> np.ndarray:
        """Random 0.96 s crops [n, frames, 64] of the device's own sessions (``windows_per_device``,
        or ``eval_windows`` from its eval sessions)."""
        c = self.config
        split = "train" if split == "train" else "eval"
        feats = [f if f.shape[0] >= self.window_frames else FE.windows(f, 1, self.window_frames)[0]
                 for f in self.device_clips(device_id, split)]
        n = c.windows_per_device if split == "train" else c.eval_windows
        rng = rng_for(self.seed, "frill-crops", int(device_id), split)
        x = np.empty((n, self.window_frames, FE.N_MELS), np.float32)
        for i in range(n):
            f = feats[int(rng.integers(len(feats)))]
            t = int(rng.integers(f.shape[0] - self.window_frames + 1))
            x[i] = f[t:t + self.window_frames]
        return x

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """The device's crops (`device_windows`) and the teacher's outputs on them, computed here."""
        x = self.device_windows(device_id, split)
        return {"x": x, "y": np.asarray(self.teacher().predict(x, batch_size=256, verbose=0), np.float32)}

    # -- loss --------------------------------------------------------------------------
    def batch_loss(self, model, x, y, training):
        """Per-window MSE to the teacher's output and the cosine similarity of the two (batch
        statistics when training; see the module docstring)."""
        import tensorflow as tf

        out = model(x, training=training)
        cos = tf.reduce_sum(tf.math.l2_normalize(out, -1) * tf.math.l2_normalize(y, -1), -1)
        return distillation_loss(y, out), cos



# -- static batch norm: statistics estimated on the devices -----------------------------------
def device_batch_norm_statistics(task_config, seed: int, weights: np.ndarray, device_ids, batch: int) -> list:
    """On devices (one Ray task may hold several): the global student's batch-norm statistics over
    each device's own training crops, in batches of ``batch`` (frill.recalibrate_batch_norm).
    Per device: (batches, [(moving mean, moving variance) per layer]); nothing else leaves it."""
    from fl.task import model_with_weights

    from .frill import batch_norm_layers, recalibrate_batch_norm

    task = FrillTask(task_config, seed)
    model = model_with_weights(task, weights)
    layers = batch_norm_layers(model)
    out = []
    for d in device_ids:
        x = task.device_windows(int(d))
        n = -(-len(x) // batch)
        recalibrate_batch_norm(model, x, batches=n, batch=min(batch, len(x)), seed=int(d))
        out.append((n, [(b.moving_mean.numpy().copy(), b.moving_variance.numpy().copy()) for b in layers]))
    return out


# The range a device's batch-norm statistics are clipped to before they are averaged, like
# any update (clipping bounds what one device can do to everyone's normalization): moving
# means to [-BN_MEAN_BOUND, BN_MEAN_BOUND], variances to [0, BN_VAR_BOUND], and a device's
# weight (its batch count) to [0, BN_MAX_BATCHES].  The student's pre-normalization
# activations on log-mel crops are far inside these bounds.
BN_MEAN_BOUND = 100.0
BN_VAR_BOUND = 1.0e4
BN_MAX_BATCHES = 64


@dataclass
class BatchNormAverage:
    """The server's average of the devices' statistics: per layer (mean, variance), and how
    many reports were used and rejected (non-finite, or of the wrong shape)."""
    layers: list
    used: int
    rejected: int
    secure: bool = False


def _clipped_report(report, shapes):
    """(weight, [(mean, var)]) clipped to the documented range; None if unusable."""
    try:
        n, stats = report
        n = float(n)
        if not np.isfinite(n) or len(stats) != len(shapes):
            return None
        out = []
        for (mean, var), shape in zip(stats, shapes):
            mean, var = np.asarray(mean, np.float64), np.asarray(var, np.float64)
            if mean.shape != shape or var.shape != shape or not (np.isfinite(mean).all() and np.isfinite(var).all()):
                return None
            out.append((np.clip(mean, -BN_MEAN_BOUND, BN_MEAN_BOUND), np.clip(var, 0.0, BN_VAR_BOUND)))
    except (TypeError, ValueError):
        return None
    return min(max(n, 0.0), BN_MAX_BATCHES), out


def average_batch_norm_statistics(reports, shapes, secure_settings=None, seed: int = 0) -> BatchNormAverage:
    """The devices' statistics under the rules of any update: a report that is not finite
    or not of the model's shapes is rejected (counted), the rest are clipped to the
    documented range (BN_*), and the average is weighted by batches.

    ``secure_settings`` (`analytics.config.SecAggSettings`): the clipped, fixed-point
    statistics are summed with SecAgg instead of in the clear, so the server sees only
    the total (then clipping is the devices' own step: a device that skips it is bounded
    only by the secure sum's word size, as for any secure update)."""
    clean = [c for c in (_clipped_report(r, shapes) for r in reports) if c is not None]
    rejected = len(reports) - len(clean)
    if not clean or sum(n for n, _ in clean) <= 0:
        raise ValueError(f"no usable batch-norm statistics ({rejected} of {len(reports)} reports rejected)")
    if secure_settings is None:
        total = sum(n for n, _ in clean)
        layers = [(sum(n * st[i][0] for n, st in clean) / total, sum(n * st[i][1] for n, st in clean) / total)
                  for i in range(len(shapes))]
        return BatchNormAverage(layers, len(clean), rejected)
    return _secure_average(clean, shapes, secure_settings, seed, rejected)


_BN_SCALE = 2.0 ** 20  # fixed point of the secure sum: 1e-6 resolution


def _secure_average(clean, shapes, settings, seed, rejected) -> BatchNormAverage:
    from analytics.secure_histogram import secure_sum

    rows = []
    for n, stats in clean:  # non-negative fixed point: means offset by their bound, the weight last
        parts = [np.concatenate([(m + BN_MEAN_BOUND).ravel(), v.ravel()]) for m, v in stats]
        rows.append(np.rint(np.concatenate(parts + [np.ones(1)]) * n * _BN_SCALE).astype(np.int64))
    res = secure_sum(np.stack(rows), settings=settings, seed=seed, tag=("batch-norm",))
    total = np.asarray(res.total, np.float64) / _BN_SCALE
    weight = total[-1]
    layers, pos = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        mean = total[pos:pos + size].reshape(shape) / weight - BN_MEAN_BOUND
        var = total[pos + size:pos + 2 * size].reshape(shape) / weight
        layers.append((mean, var))
        pos += 2 * size
    return BatchNormAverage(layers, len(clean), rejected, secure=True)


def federated_batch_norm(model, task_config, seed: int, weights: np.ndarray, device_ids, batch: int,
                         num_workers: int = 0, progress: bool = True, secure_settings=None) -> int:
    """Set ``model``'s batch-norm statistics to the devices' (`device_batch_norm_statistics`, run
    as Ray tasks, two devices' worth of chunks per worker), averaged under the rules of
    `average_batch_norm_statistics` (``secure_settings``: through SecAgg); returns the number
    of devices whose statistics were used."""
    import ray

    from fl.device_map import map_devices, ray_running

    from .frill import batch_norm_layers

    ids = np.asarray(list(device_ids))
    with ray_running(num_workers):
        ref = ray.put(np.asarray(weights, np.float32))
        chunks = [c for c in np.array_split(ids, max(1, min(len(ids), 2 * (num_workers or 2)))) if len(c)]
        results = [r for chunk in map_devices(device_batch_norm_statistics,
                                              [(task_config, seed, ref, chunk, batch) for chunk in chunks],
                                              desc="batch-norm statistics", progress=progress) for r in chunk]
    layers = batch_norm_layers(model)
    avg = average_batch_norm_statistics(results, [tuple(b.moving_mean.shape) for b in layers], secure_settings, seed)
    for layer, (mean, var) in zip(layers, avg.layers):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(var)
    return avg.used
