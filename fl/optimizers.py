"""Server optimizers as pure (init, update) pairs over flat float64 vectors, optax-style.

The server treats the negated mean client delta as a pseudo-gradient (Reddi et al. 2021,
"Adaptive Federated Optimization"): SGD with lr 1 is plain FedAvg; Adam and Yogi are
FedAdam and FedYogi, with the paper's tau as `eps`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from fl.config import ServerSection


class ServerOptimizer(NamedTuple):
    init: Callable[[np.ndarray], dict]
    update: Callable[[dict, np.ndarray], tuple[np.ndarray, dict]]  # (state, grad) -> (step, state)


def sgd(lr: float, momentum: float = 0.0) -> ServerOptimizer:
    def init(params):
        return {"m": np.zeros_like(params)} if momentum else {}

    def update(state, grad):
        if not momentum:
            return -lr * grad, state
        m = momentum * state["m"] + grad
        return -lr * m, {"m": m}

    return ServerOptimizer(init, update)


def _adaptive(lr, b1, b2, eps, second_moment) -> ServerOptimizer:
    def init(params):
        return {"m": np.zeros_like(params), "v": np.full_like(params, eps * eps)}

    def update(state, grad):
        m = b1 * state["m"] + (1 - b1) * grad
        v = second_moment(state["v"], grad * grad)
        return -lr * m / (np.sqrt(v) + eps), {"m": m, "v": v}

    return ServerOptimizer(init, update)


def adam(lr: float, b1: float = 0.9, b2: float = 0.99, eps: float = 1e-3) -> ServerOptimizer:
    return _adaptive(lr, b1, b2, eps, lambda v, g2: b2 * v + (1 - b2) * g2)


def yogi(lr: float, b1: float = 0.9, b2: float = 0.99, eps: float = 1e-3) -> ServerOptimizer:
    """Yogi's additive second moment: v <- v - (1-b2) g^2 sign(v - g^2) (Zaheer et al. 2018)."""
    return _adaptive(lr, b1, b2, eps, lambda v, g2: v - (1 - b2) * g2 * np.sign(v - g2))


def from_config(c: ServerSection) -> ServerOptimizer:
    if c.optimizer == "sgd":
        return sgd(c.lr)
    if c.optimizer == "momentum":
        return sgd(c.lr, c.momentum)
    if c.optimizer == "adam":
        return adam(c.lr, c.beta1, c.beta2, c.eps)
    return yogi(c.lr, c.beta1, c.beta2, c.eps)
