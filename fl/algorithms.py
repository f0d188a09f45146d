"""Federated algorithms as objects (`fedpop.Algorithm`), in the spirit of pfl-research's
``FederatedAlgorithm`` and TFF's client work + finalizer: one object owns everything one
algorithm changes in a round, and the engine calls only these methods.

- **Client step** (traced once per worker into the device-training function, fl/trainer.py):
  ``local_steps`` (local SGD, or FedSGD's one full gradient), ``regularize`` (a term added to
  each batch loss, e.g. FedProx's proximal term) and ``correct`` (a change to each gradient,
  e.g. SCAFFOLD's control-variate correction); ``uses_anchor`` / ``uses_correction`` say
  whether the trainer must pass the proximal centre / correction in.
- **Per-device state** (``stateful``): ``device_step`` trains one device from its state
  (fl/device_state.py; ``None`` the first time) and the server's ``broadcast``, and returns
  its reported delta, new state and extra sums.
- **Server update**: ``server_init`` / ``server_update`` keep the server's side (e.g.
  SCAFFOLD's c, a server momentum) and may change the aggregated update before the server
  optimizer applies it.
- **Personal model** (``personalizes``): ``personal_weights`` is what a device evaluates with.

``bind(client)`` returns a copy configured from the ``client`` section (learning rate,
``prox_mu``...) and ``prepare(task, trainer)`` runs on each worker once its model is built.
Built-ins register under the ``fedpop.algorithms`` entry-point group (pyproject.toml); a
config names one by that name or by import path (``client.algorithm: pkg.mod:MyAlgorithm``),
and `fedpop.build_process(..., algorithm=obj)` takes an instance, which reaches the workers
by value (cloudpickle) as a task class does.
"""
from __future__ import annotations

import copy

import numpy as np

from fl.registry import RegistryError, lookup, path_of

ENTRY_POINT_GROUP = "fedpop.algorithms"


class Algorithm:
    """FedAvg (McMahan et al. 2017, "Communication-Efficient Learning of Deep Networks from
    Decentralized Data"): local SGD from the global weights, the aggregated delta applied by the
    server optimizer.  Subclass and override the pieces an algorithm changes."""

    name = "fedavg"
    stateful = False  # devices keep state across rounds (device_step, the state store)
    personalizes = False  # devices hold a model of their own (evaluated as personalized_*)
    uses_anchor = False  # the client step reads the proximal centre (regularize's anchor)
    uses_correction = False  # the client step reads a gradient correction (correct's correction)
    mu = 0.0  # the proximal weight the trainer passes to `regularize` by default

    # -- configuration -----------------------------------------------------------------
    def bind(self, client) -> "Algorithm":
        """A copy configured from the ``client`` config section."""
        return copy.copy(self)

    def check(self, cfg, chain: tuple) -> None:
        """Raise ValueError (its message naming the config key) if ``cfg`` cannot run this
        algorithm; ``chain`` is the aggregator chain the config stands for."""

    def prepare(self, task, trainer) -> None:
        """Worker-side set-up once the task's model is built (e.g. a mask over its weights)."""

    # -- client step (traced; see fl/trainer.py) ------------------------------------------
    def local_steps(self, trainer, *args):
        """Train one device on its batches lo..hi-1; returns [loss sum, correct sum, examples]."""
        return trainer.local_sgd(*args)

    def regularize(self, loss, variables, anchor, mu):
        """The batch loss the gradient is taken of (``anchor``: the proximal centre, per variable)."""
        return loss

    def correct(self, grads, correction):
        """Each local gradient before the step (``correction``: per trained variable)."""
        return grads

    # -- per-device state ------------------------------------------------------------------
    def device_step(self, trainer, global_w, global_t, batches, state, broadcast):
        """(reported delta, stats, new state, extra sums) for one device of a stateful algorithm."""
        delta, stats = trainer.train(global_t, batches)
        return delta, stats, {}, {}

    def personal_weights(self, trainer, global_w, state):
        """The device's own weights, or None (it has none)."""
        return None

    # -- server ----------------------------------------------------------------------------
    def server_init(self, num_params: int) -> dict:
        return {}

    def broadcast(self, state: dict) -> dict:
        """What devices of a stateful algorithm receive with the round."""
        return {}

    def server_update(self, state: dict, mean_delta: np.ndarray, extras: dict, reports: int,
                      population_size: int) -> tuple[np.ndarray, dict]:
        """(the update the server optimizer applies, new server state) from the aggregated
        mean delta and the sum of the reports' ``extras``."""
        return mean_delta, state


FedAvg = Algorithm


class FedSGD(Algorithm):
    """FedSGD (McMahan et al. 2017): one gradient over all of a device's data; delta = -gradient."""

    name = "fedsgd"

    def local_steps(self, trainer, *args):
        return trainer.full_gradient(*args)


def proximal(loss, variables, anchor, mu):
    """loss + mu/2 ||v - anchor||^2 (Li et al. 2020, "Federated Optimization in Heterogeneous Networks")."""
    import tensorflow as tf

    return loss + 0.5 * mu * tf.add_n([tf.reduce_sum(tf.square(v - a)) for v, a in zip(variables, anchor)])


class FedProx(Algorithm):
    """FedProx (Li et al. 2020): local SGD on f(w) + mu/2 ||w - w_global||^2; ``mu`` defaults
    to ``client.prox_mu``."""

    name = "fedprox"
    uses_anchor = True

    def __init__(self, mu: float | None = None):
        self._given_mu = mu

    def bind(self, client):
        out = copy.copy(self)
        out.mu = float(client.prox_mu if self._given_mu is None else self._given_mu)
        return out

    def check(self, cfg, chain):
        if (cfg.client.prox_mu if self._given_mu is None else self._given_mu) <= 0:
            raise ValueError("bad value for 'client.prox_mu': fedprox needs prox_mu > 0")

    def regularize(self, loss, variables, anchor, mu):
        return proximal(loss, variables, anchor, mu)


def _steps(batches) -> int:
    return int(np.count_nonzero(np.asarray(batches.w).sum(axis=1) > 0))


class Scaffold(Algorithm):
    """SCAFFOLD (Karimireddy et al. 2020, "SCAFFOLD: Stochastic Controlled Averaging for
    Federated Learning"), option II: local steps use g(y) - c_i + c; afterwards
    c_i+ = c_i - c + (x - y) / (K lr); the server adds (1/N) sum of (c_i+ - c_i) to c."""

    name = "scaffold"
    stateful = True
    uses_correction = True
    lr = 0.0

    def bind(self, client):
        out = copy.copy(self)
        out.lr = float(client.lr)
        return out

    def check(self, cfg, chain):
        if cfg.client.optimizer != "sgd":
            raise ValueError("bad value for 'client.optimizer': scaffold's control variates assume local SGD "
                             "(allowed: sgd)")
        if "secure_sum" in chain or "dp_mean" in chain:
            raise ValueError("bad value for 'client.algorithm': scaffold sums control variates in the clear, so it "
                             "is not combined with a secure sum or DP (allowed: fedavg, fedsgd, fedprox, ditto, "
                             "fedper)")
        if chain and chain[-1] in ("median", "trimmed_mean"):
            raise ValueError("bad value for 'aggregator.chain': scaffold's control variates assume a mean")

    def correct(self, grads, correction):
        import tensorflow as tf

        return [tf.convert_to_tensor(g) + c for g, c in zip(grads, correction)]

    def device_step(self, trainer, global_w, global_t, batches, state, broadcast):
        import tensorflow as tf

        c = broadcast["control"]
        c_i = state["control"] if state is not None else np.zeros_like(c)
        delta, stats = trainer.train(global_t, batches, correction=tf.constant((c - c_i).astype(np.float32)))
        k = max(_steps(batches), 1)
        c_new = (c_i - c - delta.astype(np.float64) / (k * self.lr)).astype(np.float32)
        return delta, stats, {"control": c_new}, {"control_delta": (c_new - c_i).astype(np.float64)}

    def server_init(self, num_params):
        return {"control": np.zeros(num_params, np.float32)}

    def broadcast(self, state):
        return state

    def server_update(self, state, mean_delta, extras, reports, population_size):
        if "control_delta" not in extras:
            return mean_delta, state
        return mean_delta, {"control": (state["control"] + extras["control_delta"] / population_size
                                        ).astype(np.float32)}


class Ditto(Algorithm):
    """Ditto (Li et al. 2021, "Ditto: Fair and Robust Federated Learning Through
    Personalization"): the device trains the global model as FedAvg does and, on the same
    batches, its personal model v on f(v) + lam/2 ||v - w||^2, w the global weights it got.
    ``lam`` defaults to ``client.ditto_lambda``."""

    name = "ditto"
    stateful = True
    personalizes = True
    uses_anchor = True

    def __init__(self, lam: float | None = None):
        self.lam = lam

    def bind(self, client):
        out = copy.copy(self)
        out.lam = float(client.ditto_lambda if self.lam is None else self.lam)
        return out

    def regularize(self, loss, variables, anchor, mu):
        return proximal(loss, variables, anchor, mu)

    def device_step(self, trainer, global_w, global_t, batches, state, broadcast):
        import tensorflow as tf

        delta, stats = trainer.train(global_t, batches, mu=0.0)
        v = state["personal"] if state is not None else global_w
        dv, _ = trainer.train(tf.constant(v), batches, mu=self.lam, anchor=global_t)
        return delta, stats, {"personal": (v + dv).astype(np.float32)}, {}

    def personal_weights(self, trainer, global_w, state):
        return None if state is None else state["personal"]


def flat_mask(per_variable: list[bool], sizes: list[int]) -> np.ndarray:
    """A per-variable mask expanded to the engine's flat weight vector."""
    return np.concatenate([np.full(n, bool(m)) for m, n in zip(per_variable, sizes)]) if sizes else np.zeros(0, bool)


class FedPer(Algorithm):
    """FedPer (Arivazhagan et al. 2019, "Federated Learning with Personalization Layers"):
    the variables of the task's ``personal_mask`` are a head each device keeps; the shared
    body is trained by FedAvg.  Only body deltas are reported."""

    name = "fedper"
    stateful = True
    personalizes = True
    mask = None

    def prepare(self, task, trainer):
        mask = flat_mask(task.personal_mask(trainer.model), trainer.sizes)
        if not mask.any() or mask.all():
            raise ValueError("fedper: the task's personal_mask must keep some variables local and share others")
        self.mask = mask

    def _start(self, global_w, state):
        w = np.array(global_w, np.float32, copy=True)
        if state is not None:
            w[self.mask] = state["head"]
        return w

    def device_step(self, trainer, global_w, global_t, batches, state, broadcast):
        import tensorflow as tf

        w0 = self._start(global_w, state)
        delta, stats = trainer.train(tf.constant(w0), batches)
        head = (w0 + delta)[self.mask]
        reported = np.where(self.mask, 0.0, delta).astype(np.float32)
        return reported, stats, {"head": head.astype(np.float32)}, {}

    def personal_weights(self, trainer, global_w, state):
        return None if state is None else self._start(global_w, state)


def resolve_algorithm(spec) -> Algorithm:
    """The algorithm an object, a registered name (``fedpop.algorithms`` entry points) or an
    import path ``module:Class`` (a class is instantiated without arguments) names; a
    `RegistryError` naming what is allowed otherwise."""
    obj = spec if isinstance(spec, Algorithm) else lookup(ENTRY_POINT_GROUP, spec, "algorithm")
    if isinstance(obj, type) and issubclass(obj, Algorithm):
        obj = obj()
    if not isinstance(obj, Algorithm):
        raise RegistryError(f"algorithm {spec!r} is not a fedpop.Algorithm (a subclass or an instance of one)")
    return obj


def algorithm_name(algorithm: Algorithm) -> str:
    """How a config names ``algorithm``: its registered name if it is a built-in's instance,
    else its class's import path."""
    cls = type(algorithm)
    try:
        if isinstance(algorithm.name, str) and type(resolve_algorithm(algorithm.name)) is cls:
            return algorithm.name
    except RegistryError:
        pass
    return path_of(cls)
