"""Federated algorithms whose devices keep state across rounds, as small pure pieces.

Each is a `StatefulAlgorithm`: what a device does with the global weights, its own state
(`fl/device_state.py`; ``None`` the first time it trains) and the server's broadcast; what
the server keeps and how it folds the devices' extra sums in; and, for personalization,
which weights a device evaluates with.  The worker runs ``device_step``; the process
runs ``server_update``.  FedAvg, FedSGD and FedProx are stateless and never come here.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np


class StatefulAlgorithm(NamedTuple):
    name: str
    # (trainer, global_w np.float32, global_t tf.Tensor, batches, state | None, broadcast)
    #   -> (reported delta, stats, new state, extra sums)
    device_step: Callable
    # (global_w, state | None) -> the device's personal weights, or None (no personalization)
    personal_weights: Callable
    server_init: Callable[[int], dict]  # num_params -> server state (broadcast to devices)
    # (server state, summed extras, reports, population size) -> new server state
    server_update: Callable
    personalizes: bool = False  # devices hold a model of their own (evaluated as personalized_*)


def _no_personal(global_w, state):
    return None


def _no_server(num_params: int) -> dict:
    return {}


def _keep_server(state, extras, reports, population_size):
    return state


def _steps(batches) -> int:
    return int(np.count_nonzero(np.asarray(batches.w).sum(axis=1) > 0))


def scaffold(lr: float) -> StatefulAlgorithm:
    """SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for
    Federated Learning"), option II: local steps use g(y) - c_i + c; afterwards
    c_i+ = c_i - c + (x - y) / (K lr); the server adds (1/N) sum of (c_i+ - c_i) to c."""
    import tensorflow as tf

    def device_step(trainer, global_w, global_t, batches, state, broadcast):
        c = broadcast["control"]
        c_i = state["control"] if state is not None else np.zeros_like(c)
        delta, stats = trainer.train(global_t, batches, correction=tf.constant((c - c_i).astype(np.float32)))
        k = max(_steps(batches), 1)
        c_new = (c_i - c - delta.astype(np.float64) / (k * lr)).astype(np.float32)
        return delta, stats, {"control": c_new}, {"control_delta": (c_new - c_i).astype(np.float64)}

    def server_init(num_params):
        return {"control": np.zeros(num_params, np.float32)}

    def server_update(state, extras, reports, population_size):
        if "control_delta" not in extras:
            return state
        return {"control": (state["control"] + extras["control_delta"] / population_size).astype(np.float32)}

    return StatefulAlgorithm("scaffold", device_step, _no_personal, server_init, server_update)


def ditto(lam: float) -> StatefulAlgorithm:
    """Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through
    Personalization"): the device trains the global model as FedAvg does and, on the same
    batches, its personal model v on f(v) + lam/2 ||v - w||^2, w the global weights it got."""
    import tensorflow as tf

    def device_step(trainer, global_w, global_t, batches, state, broadcast):
        delta, stats = trainer.train(global_t, batches, mu=0.0)
        v = state["personal"] if state is not None else global_w
        dv, _ = trainer.train(tf.constant(v), batches, mu=lam, anchor=global_t)
        return delta, stats, {"personal": (v + dv).astype(np.float32)}, {}

    def personal_weights(global_w, state):
        return None if state is None else state["personal"]

    return StatefulAlgorithm("ditto", device_step, personal_weights, _no_server, _keep_server, True)


def fedper(mask: np.ndarray) -> StatefulAlgorithm:
    """FedPer (Arivazhagan et al. 2019, "Federated Learning with Personalization Layers"):
    the variables in ``mask`` (flat, bool; the task's ``personal_mask``) are a head each
    device keeps; the shared body is trained by FedAvg.  Only body deltas are reported."""
    import tensorflow as tf

    mask = np.asarray(mask, bool)

    def start(global_w, state):
        w = np.array(global_w, np.float32, copy=True)
        if state is not None:
            w[mask] = state["head"]
        return w

    def device_step(trainer, global_w, global_t, batches, state, broadcast):
        w0 = start(global_w, state)
        delta, stats = trainer.train(tf.constant(w0), batches)
        head = (w0 + delta)[mask]
        reported = np.where(mask, 0.0, delta).astype(np.float32)
        return reported, stats, {"head": head.astype(np.float32)}, {}

    def personal_weights(global_w, state):
        return None if state is None else start(global_w, state)

    return StatefulAlgorithm("fedper", device_step, personal_weights, _no_server, _keep_server, True)


def flat_mask(per_variable: list[bool], sizes: list[int]) -> np.ndarray:
    """A per-variable mask expanded to the engine's flat weight vector."""
    return np.concatenate([np.full(n, bool(m)) for m, n in zip(per_variable, sizes)]) if sizes else np.zeros(0, bool)


def from_config(client, task=None, trainer=None) -> StatefulAlgorithm | None:
    """The stateful algorithm ``client.algorithm`` names, or None for a stateless one.
    FedPer needs the task and trainer (for the personal mask)."""
    if client.algorithm == "scaffold":
        return scaffold(client.lr)
    if client.algorithm == "ditto":
        return ditto(client.ditto_lambda)
    if client.algorithm == "fedper":
        if trainer is None:
            return StatefulAlgorithm("fedper", None, None, _no_server, _keep_server, True)  # server side only
        mask = flat_mask(task.personal_mask(trainer.model), trainer.sizes)
        if not mask.any() or mask.all():
            raise ValueError("fedper: the task's personal_mask must keep some variables local and share others")
        return fedper(mask)
    return None
