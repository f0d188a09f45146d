"""The same task through TensorFlow Federated's `build_weighted_fed_avg`, in this process.

Used to cross-check fedpop's engine (same model, same device data, same cohorts) and
as the TFF baseline of `fedpop bench engine`. TFF's local C++ runtime starts a
`worker_binary` subprocess; `tff_context()` closes it so none outlives the run.
"""
from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import numpy as np


@contextmanager
def tff_context():
    """Install a fresh local C++ execution context; kill its worker_binary on exit."""
    import psutil
    import tensorflow_federated as tff

    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    ctx = tff.backends.native.create_sync_local_cpp_execution_context()
    try:
        with tff.framework.get_context_stack().install(ctx):
            yield ctx
    finally:
        # stop worker_binary before dropping the context: TFF's ServiceManager.__del__ waits
        # for it with no timeout after a SIGINT, which a process started from a background
        # shell job ignores: the caller would hang
        for child in me.children(recursive=True):
            if child.pid not in before and "worker_binary" in " ".join(_cmdline(child)):
                os.kill(child.pid, signal.SIGTERM)  # SIGINT is ignored under a background shell
                try:
                    child.wait(timeout=10)
                except psutil.TimeoutExpired:
                    child.kill()
                    child.wait(timeout=10)
        del ctx


def _cmdline(p) -> list[str]:
    try:
        return p.cmdline()
    except Exception:  # process already gone
        return []


def to_dataset(data: dict, batch_size: int, max_batches: int = 0):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((data["x"], data["y"])).batch(batch_size)
    return ds.take(max_batches) if max_batches else ds


class TFFFedAvg:
    """`tff.learning.algorithms.build_weighted_fed_avg` for a fedpop task (plain SGD on both sides)."""

    def __init__(self, task, client_lr: float, server_lr: float = 1.0):
        import tensorflow as tf
        import tensorflow_federated as tff

        self.task = task
        x_spec, y_spec = task.example_spec()

        def model_fn():
            return tff.learning.models.from_keras_model(
                task.build_model(), loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                input_spec=(x_spec, y_spec))

        self.process = tff.learning.algorithms.build_weighted_fed_avg(
            model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(client_lr),
            server_optimizer_fn=tff.learning.optimizers.build_sgdm(server_lr))
        self._shapes = [v.shape for v in task.build_model().trainable_variables]

    def initialize(self, flat_weights: np.ndarray | None = None):
        import tensorflow_federated as tff

        state = self.process.initialize()
        if flat_weights is not None:
            parts, offset = [], 0
            for s in self._shapes:
                n = int(np.prod(s))
                parts.append(np.asarray(flat_weights[offset:offset + n], np.float32).reshape(s))
                offset += n
            state = self.process.set_model_weights(state, tff.learning.models.ModelWeights(parts, []))
        return state

    def next(self, state, datasets):
        out = self.process.next(state, datasets)
        return out.state, out.metrics

    def weights(self, state) -> np.ndarray:
        mw = self.process.get_model_weights(state)
        return np.concatenate([np.asarray(v).ravel() for v in mw.trainable])
