"""Central warm start of the RNN-T before federated training: Adam on the pooled training
utterances of the training speakers, as a server holding a public corpus of the same
population would do (the "optional central warm start" of the base-model recipe; the
pretrain-then-federate pattern of e.g. Nguyen et al. 2023, "Where to Begin? On the Impact
of Pre-Training and Initialization in Federated Learning").

Returns flat float32 weights in the order of ``model.trainable_variables``, the layout the
engine uses (``fl.task.model_with_weights`` is the inverse).
"""
from __future__ import annotations

import sys

import numpy as np

from fl.seeding import rng_for


def pooled_utterances(task, device_ids) -> dict[str, np.ndarray]:
    """The packed training utterances (x, y) of the given devices, concatenated."""
    parts = [task.device_data(d, 0, "train") for d in device_ids]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("x", "y")}


def intra_op_threads() -> int:
    """TensorFlow's intra-op thread count in this process: as set, else its default, the CPUs
    this process may run on (so `taskset` changes it)."""
    import os

    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads() or len(os.sched_getaffinity(0))


def warm_start(task, device_ids, steps: int, batch_size: int = 32, lr: float = 0.002, seed: int = 0,
               clip_norm: float = 5.0, progress: bool = True, bucket_pool: int = 0) -> tuple[np.ndarray, list[float]]:
    """``steps`` Adam steps on shuffled batches of the devices' pooled utterances (with
    ``bucket_pool`` > 0, utterances of similar length batched together; `fl.trainer.make_batches`);
    returns (flat weights, per-step mean loss). Deterministic in ``seed`` for one intra-op
    thread count (`intra_op_threads`): TensorFlow splits its float sums by it."""
    import tensorflow as tf
    from tqdm import tqdm

    data = pooled_utterances(task, device_ids)
    if len(data["y"]) == 0:
        raise ValueError("warm start: the training speakers have no utterances")
    model = task.build_model()
    variables = model.trainable_variables
    opt = tf.keras.optimizers.Adam(lr)
    xs, ys = task.example_spec()

    @tf.function(input_signature=[tf.TensorSpec([None, None, xs.shape[-1]], tf.float32),
                                  tf.TensorSpec([None, None], tf.int32)])
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.batch_loss(model, x, y, training=True)[0])
        grads, _ = tf.clip_by_global_norm(tape.gradient(loss, variables), clip_norm)
        opt.apply_gradients(zip(grads, variables))
        return loss

    from fl.trainer import make_batches

    n, losses = len(data["y"]), []
    batch_size = min(batch_size, n)
    # shuffled epochs of the pooled utterances, similar lengths batched together (bucket_pool)
    batches = make_batches(data, batch_size, epochs=-(-steps * batch_size // n) + 1,
                           shuffle_rng=rng_for(seed, "warm-start"), lengths=task.example_lengths(data),
                           bucket_pool=bucket_pool)
    rows = [np.sort(row[w > 0]) for row, w in zip(batches.index, batches.w)]
    bar = tqdm(range(steps), desc="warm start", unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    for i in bar:
        idx = rows[i]
        loss = float(step(data["x"][idx], data["y"][idx]))
        if not np.isfinite(loss):
            raise FloatingPointError(f"warm start diverged at step {i} (loss {loss}); lower task.warm_start_lr")
        losses.append(loss)
        if i % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.2f}")
    bar.close()
    flat = np.concatenate([v.numpy().ravel() for v in variables]).astype(np.float32)
    return flat, losses
