"""FRILL students: MobileNetV3 networks distilled from TRILL by MSE, measured as TFLite models.

Peplinski et al. 2021, "FRILL: A Non-Semantic Speech Embedding for Mobile Devices": a
MobileNetV3 (Howard et al. 2019, "Searching for MobileNetV3"; ``tf.keras.applications``,
``weights=None``, ``include_top=False``) on a [96, 64] log-mel window, then global average
pooling (or flattening), an optional bottleneck Dense layer (optionally quantization-aware
trained, the only QAT layer in FRILL's code, via tensorflow-model-optimization) and a Dense
head that regresses the teacher's embedding with a mean-squared-error loss (Adam, lr 1e-3).
The chosen FRILL is `FRILL` (MobileNetV3-Small, alpha 2.0, pooled, 2048-d output).

Students are trained centrally here (`distill`), on windows of pooled audio; `tflite_model`
converts a Keras model to float or int8 TFLite bytes and `tflite_latency_ms` times one
window on one thread.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from fl.config import ConfigError

from . import frontend as FE

ARCHITECTURES = ("small", "large")
# Keras's MobileNetV3 keeps batch-norm moving statistics with momentum 0.999, made for long
# ImageNet training; 0.99 lets them follow the weights during distillation. They are still
# re-estimated after it (`recalibrate_batch_norm`): after 300 steps even 0.99 leaves 5 % of the
# initial variance of 1 in them, which dwarfs layers whose inputs vary by ~1e-3.
BN_MOMENTUM = 0.99


class FrillConfigError(ConfigError):
    """A student configuration that cannot be built; the message names the key."""


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    architecture: str = "small"     # MobileNetV3 "small" or "large"
    alpha: float = 1.0              # width multiplier
    average_pool: bool = True       # global average pooling (else flatten the last feature map)
    bottleneck_dim: int = 0         # Dense bottleneck before the head (0: none)
    qat: bool = False               # quantization-aware training of the bottleneck
    output_dim: int = 64            # the teacher's embedding size (FRILL: 2048)

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise FrillConfigError(f"bad value for 'frill.architecture': {self.architecture!r} "
                                   f"(allowed: {', '.join(ARCHITECTURES)})")
        if not self.alpha > 0:
            raise FrillConfigError(f"bad value for 'frill.alpha': {self.alpha!r} (allowed: > 0)")
        if self.bottleneck_dim < 0 or self.output_dim < 1:
            raise FrillConfigError(f"bad value for 'frill.bottleneck_dim' / 'frill.output_dim': "
                                   f"{self.bottleneck_dim}, {self.output_dim} (allowed: >= 0, >= 1)")
        if self.qat and not self.bottleneck_dim:
            raise FrillConfigError("bad value for 'frill.qat': quantization-aware training applies to the "
                                   "bottleneck, so it needs frill.bottleneck_dim > 0")


FRILL = StudentConfig("small", 2.0, True, 0, False, 2048)  # the published FRILL (Peplinski et al. 2021)


def build_student(config: StudentConfig = StudentConfig(), window_frames: int = FE.WINDOW_FRAMES,
                  n_mels: int = FE.N_MELS):
    """Keras model [B, window_frames, n_mels] -> [B, output_dim] (QAT-wrapped when ``config.qat``)."""
    import tensorflow as tf

    c = config
    L = tf.keras.layers
    inputs = tf.keras.Input((window_frames, n_mels), name="log_mel")
    x = L.Reshape((window_frames, n_mels, 1), name="add_channel")(inputs)
    make = tf.keras.applications.MobileNetV3Small if c.architecture == "small" else tf.keras.applications.MobileNetV3Large
    base = make(input_tensor=x, alpha=c.alpha, include_top=False, weights=None, include_preprocessing=False)
    for layer in base.layers:  # (read at call time, and copied when QAT clones the layers)
        if isinstance(layer, L.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    x = base.output  # the backbone's layers join this model (no nested model, so QAT can clone it)
    x = L.GlobalAveragePooling2D(name="pool")(x) if c.average_pool else L.Flatten(name="flatten")(x)
    if c.bottleneck_dim:
        bottleneck = L.Dense(c.bottleneck_dim, name="bottleneck")
        if c.qat:
            import tensorflow_model_optimization as tfmot

            bottleneck = tfmot.quantization.keras.quantize_annotate_layer(bottleneck)
        x = bottleneck(x)
    out = L.Dense(c.output_dim, name="distilled")(x)
    model = tf.keras.Model(inputs, out, name=f"frill_{c.architecture}")
    if c.qat:
        import tensorflow_model_optimization as tfmot

        model = tfmot.quantization.keras.quantize_apply(model)
    return model


def distillation_loss(teacher, student):
    """Per-example mean squared error between the teacher's and the student's embeddings."""
    import tensorflow as tf

    return tf.reduce_mean(tf.square(tf.cast(teacher, tf.float32) - student), axis=-1)


def distill(student, windows: np.ndarray, targets: np.ndarray, steps: int, batch: int = 32, lr: float = 1e-3,
            seed: int = 0) -> list[float]:
    """Adam steps of the MSE between ``student(windows)`` and the teacher's ``targets``, then the
    student's batch-norm statistics recalibrated on 4 batches of 256 of the windows
    (`recalibrate_batch_norm`); the losses.
    Targets wider than the student's output (e.g. TRILL's layer19) are regressed through a Dense
    head on the student's output that is used only here, as FRILL's code does: the student
    itself, its output the embedding, is what is measured and evaluated."""
    import tensorflow as tf

    opt = tf.keras.optimizers.Adam(lr)
    rng = np.random.default_rng(seed)
    trained = student
    if targets.shape[-1] != student.output_shape[-1]:
        head = tf.keras.layers.Dense(targets.shape[-1], name="to_target")
        trained = tf.keras.Model(student.inputs, head(student.outputs[0]), name=f"{student.name}_to_target")

    @tf.function(reduce_retracing=True)
    def step(x, t):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(distillation_loss(t, trained(x, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, trained.trainable_variables), trained.trainable_variables))
        return loss

    losses = []
    for _ in range(steps):
        idx = rng.choice(len(windows), size=min(batch, len(windows)), replace=False)
        losses.append(float(step(tf.constant(windows[idx]), tf.constant(targets[idx], tf.float32))))
    recalibrate_batch_norm(student, windows, batches=4, batch=256, seed=seed)  # (4 eager calls, not 64)
    return losses


def batch_norm_layers(model) -> list:
    """Every batch-norm layer of a model, including those inside QAT wrappers."""
    import tensorflow as tf

    return [m for m in model.submodules if isinstance(m, tf.keras.layers.BatchNormalization)]


def recalibrate_batch_norm(model, windows: np.ndarray, batches: int = 4, batch: int = 256, seed: int = 0) -> int:
    """Re-estimate every batch-norm layer's moving mean and variance as the plain average of their
    batch statistics over ``batches`` random batches of ``windows`` (precise BN: Wu & Johnson 2021,
    "Rethinking 'Batch' in BatchNorm"); the weights are untouched. The number of layers.

    Needed after a short distillation: a moving variance still holds a share of its initial 1
    (0.99**300 = 0.05 after 300 steps at momentum 0.99) while some depthwise layers' inputs vary
    by ~1e-3, so at inference (and as TFLite, where the statistics are folded in) those layers
    would shrink their signal ~60x and a student's output would be nearly the same for every
    window."""
    import tensorflow as tf

    layers = batch_norm_layers(model)
    if not layers or not len(windows):
        return len(layers)
    saved = [layer.momentum for layer in layers]
    rng = np.random.default_rng(seed)
    try:
        for i in range(batches):  # eager calls read the momentum each time: moving = mean of batch stats
            for layer in layers:
                layer.momentum = i / (i + 1)
            idx = rng.choice(len(windows), size=min(batch, len(windows)), replace=False)
            model(tf.constant(windows[idx], tf.float32), training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return len(layers)


def tflite_model(model, quantization: str = "float", representative: np.ndarray | None = None) -> bytes:
    """TFLite flatbuffer of a Keras model: "float" (float32) or "int8" (weights and activations,
    calibrated on ``representative`` windows; float inputs and outputs)."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization == "int8":
        if representative is None or not len(representative):
            raise ValueError("int8 quantization needs representative windows for calibration")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([r[None].astype(np.float32)] for r in representative)
    elif quantization != "float":
        raise ValueError(f"quantization must be 'float' or 'int8', not {quantization!r}")
    return conv.convert()


def tflite_latency_ms(flatbuffer: bytes, invocations: int = 50, warmup: int = 5, threads: int = 1
                      ) -> dict[str, float]:
    """Per-invocation wall time of one window on ``threads`` threads: median, p10, p90 (ms)."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=flatbuffer, num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    x = np.random.default_rng(0).normal(-5, 2, size=inp["shape"]).astype(inp["dtype"])
    interp.set_tensor(inp["index"], x)
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(invocations):
        t0 = time.perf_counter()
        interp.invoke()
        times.append((time.perf_counter() - t0) * 1000)
    t = np.array(times)
    return {"median_ms": float(np.median(t)), "p10_ms": float(np.percentile(t, 10)),
            "p90_ms": float(np.percentile(t, 90)), "invocations": invocations}


def tflite_run(flatbuffer: bytes, windows: np.ndarray) -> np.ndarray:
    """The TFLite model's outputs for windows [N, frames, mels], one invocation per window."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_content=flatbuffer, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    res = []
    for w in windows:
        interp.set_tensor(inp["index"], w[None].astype(inp["dtype"]))
        interp.invoke()
        res.append(interp.get_tensor(out["index"])[0].copy())
    return np.stack(res)
