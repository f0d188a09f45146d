"""Privacy accounting for Gaussian mechanisms with the sampling a run really used.

Every ε in fedpop comes from here (DP-FedAvg in fl/aggregators.py, distributed DP in
secagg/dp.py, central DP releases in analytics/central_dp.py), computed with
`dp_accounting`'s RDP (Mironov 2017; Mironov, Talwar and Zhang 2019) or PLD accountant.

The sampling assumption is explicit (`Sampling`) and goes into the result's description:

- ``none``: every device reports (add/remove-one neighbouring datasets);
- ``poisson``: each device joins independently with probability q (add/remove-one);
- ``fixed``: a fixed-size cohort drawn without replacement from a pool (the engine's
  cohorts: ``selected`` devices from the devices *eligible* in that round).  Only the
  replace-one relation has an accountant for it (Wang, Balle and Kasiviswanathan 2019, in
  dp_accounting's RDP); replacing one device's clipped update moves a sum by up to 2C, so
  the noise multiplier relative to that sensitivity is half the add/remove one.

A scheme no accountant covers raises `NoAccountantError`; it is never reported as an
optimistic ε.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class NoAccountantError(ValueError):
    """The requested accountant does not cover this sampling scheme."""


@dataclass(frozen=True)
class Sampling:
    kind: str = "none"  # none | poisson | fixed
    q: float = 1.0  # poisson
    sample: int = 0  # fixed: devices drawn ...
    pool: int = 0  # ... without replacement from this many

    def __post_init__(self):
        if self.kind not in ("none", "poisson", "fixed"):
            raise ValueError(f"sampling kind must be none, poisson or fixed, not {self.kind!r}")
        if self.kind == "poisson" and not 0 < self.q <= 1:
            raise ValueError(f"poisson sampling needs 0 < q <= 1, got {self.q}")
        if self.kind == "fixed" and not 0 < self.sample <= self.pool:
            raise ValueError(f"fixed-size sampling needs 0 < sample <= pool, got {self.sample} of {self.pool}")

    @property
    def relation(self) -> str:
        return "replace_one" if self.kind == "fixed" else "add_or_remove_one"

    def describe(self) -> str:
        return {"none": "every device reports (no sampling amplification)",
                "poisson": "Poisson sampling of devices",
                "fixed": "fixed-size cohort drawn without replacement from the devices eligible in each round "
                         "(replace-one neighbouring datasets)"}[self.kind]


def _event(noise_multiplier: float, sampling: Sampling):
    """The DpEvent of one Gaussian release. ``noise_multiplier`` = noise std / add-remove
    sensitivity (C for one clipped update); under replace-one it is halved (sensitivity 2C)."""
    import dp_accounting

    if sampling.kind == "fixed":
        return dp_accounting.SampledWithoutReplacementDpEvent(
            sampling.pool, sampling.sample, dp_accounting.GaussianDpEvent(noise_multiplier / 2.0))
    inner = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling.kind == "poisson" and sampling.q < 1:
        return dp_accounting.PoissonSampledDpEvent(sampling.q, inner)
    return inner


def epsilon_of_events(rounds: list[tuple[float, Sampling]], delta: float, accountant: str = "rdp") -> float:
    """ε at ``delta`` of the composition of Gaussian releases ``(noise_multiplier, sampling)``."""
    import dp_accounting
    from dp_accounting import pld, rdp

    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if not rounds:
        return 0.0
    if any(z <= 0 for z, _ in rounds):
        return math.inf
    relations = {s.relation for _, s in rounds}
    if len(relations) > 1:
        raise NoAccountantError("rounds mix add/remove-one and replace-one sampling; no accountant composes them")
    relation = {"replace_one": dp_accounting.NeighboringRelation.REPLACE_ONE,
                "add_or_remove_one": dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE}[relations.pop()]
    if accountant == "rdp":
        acc = rdp.RdpAccountant(neighboring_relation=relation)
    elif accountant == "pld":
        acc = pld.PLDAccountant(neighboring_relation=relation)
    else:
        raise ValueError(f"accountant must be 'rdp' or 'pld', not {accountant!r}")
    # identical rounds compose as one self-composed event (fast for thousands of rounds)
    groups: dict = {}
    for z, s in rounds:
        groups[(float(z), s)] = groups.get((float(z), s), 0) + 1
    for (z, s), count in groups.items():
        event = _event(z, s)
        if not acc.supports(event):
            raise NoAccountantError(f"the {accountant} accountant does not cover {s.describe()}")
        acc.compose(event, count)
    return float(acc.get_epsilon(delta))


def gaussian_epsilon(noise_multiplier: float, delta: float, *, rounds: int = 1, sampling: Sampling = Sampling(),
                     accountant: str = "rdp") -> float:
    """ε of ``rounds`` identical Gaussian releases."""
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    return epsilon_of_events([(noise_multiplier, sampling)] * rounds, delta, accountant)


def accounted_pool(pool: int) -> int:
    """The pool size a fixed-size round is accounted with: rounded *down* to two significant
    digits (a smaller pool means a larger sampling rate, so never optimistic), so rounds with
    similar pools share one RDP computation."""
    pool = int(pool)
    if pool < 100:
        return pool
    step = 10 ** (len(str(pool)) - 2)
    return pool // step * step


_RDP_CACHE: dict = {}


def _event_rdp(noise_multiplier: float, sampling: Sampling):
    """(orders, RDP vector) of one release; RDP composes by addition (Mironov 2017)."""
    import dp_accounting
    from dp_accounting import rdp

    key = (float(noise_multiplier), sampling)
    if key not in _RDP_CACHE:
        relation = (dp_accounting.NeighboringRelation.REPLACE_ONE if sampling.relation == "replace_one"
                    else dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
        acc = rdp.RdpAccountant(neighboring_relation=relation)
        event = _event(noise_multiplier, sampling)
        if not acc.supports(event):
            raise NoAccountantError(f"the rdp accountant does not cover {sampling.describe()}")
        acc.compose(event)
        _RDP_CACHE[key] = (np.asarray(acc._orders, np.float64), np.asarray(acc._rdp, np.float64))
    return _RDP_CACHE[key]


class Ledger:
    """Every DP release of a run (kept in the aggregator state, so it is saved with
    checkpoints and a resumed run reports the same ε), and their running RDP sum, so
    each round costs one event's RDP, not the whole history's.  Fixed-size rounds are
    accounted with `accounted_pool` (rounded down: conservative)."""

    KINDS = ("none", "poisson", "fixed")
    FIELDS = ("dp_z", "dp_kind", "dp_q", "dp_sample", "dp_pool")

    def __init__(self, state: dict | None = None):
        state = state or {}
        self.z = list(np.asarray(state.get("dp_z", []), np.float64))
        self.kind = list(np.asarray(state.get("dp_kind", []), np.int64))
        self.q = list(np.asarray(state.get("dp_q", []), np.float64))
        self.sample = list(np.asarray(state.get("dp_sample", []), np.int64))
        self.pool = list(np.asarray(state.get("dp_pool", []), np.int64))
        self.rdp = np.asarray(state["dp_rdp"], np.float64) if "dp_rdp" in state else None
        self.orders = np.asarray(state["dp_orders"], np.float64) if "dp_orders" in state else None

    def add(self, noise_multiplier: float, sampling: Sampling) -> None:
        rounds = self.rounds()
        accounted = self._accounted(noise_multiplier, sampling)
        if rounds and self._accounted(*rounds[0])[1].relation != accounted[1].relation:
            raise NoAccountantError("rounds mix add/remove-one and replace-one sampling; no accountant composes them")
        orders, vec = _event_rdp(*accounted)
        self.rdp = vec.copy() if self.rdp is None else self.rdp + vec
        self.orders = orders
        self.z.append(float(noise_multiplier))
        self.kind.append(self.KINDS.index(sampling.kind))
        self.q.append(float(sampling.q))
        self.sample.append(int(sampling.sample))
        self.pool.append(int(sampling.pool))

    @staticmethod
    def _accounted(z: float, s: Sampling) -> tuple[float, Sampling]:
        if s.kind == "fixed":
            return z, Sampling("fixed", sample=s.sample, pool=max(accounted_pool(s.pool), s.sample))
        return z, s

    def rounds(self) -> list[tuple[float, Sampling]]:
        """The releases as recorded (actual pool sizes)."""
        return [(z, Sampling(self.KINDS[k], q, int(m), int(n)))
                for z, k, q, m, n in zip(self.z, self.kind, self.q, self.sample, self.pool)]

    def accounted_rounds(self) -> list[tuple[float, Sampling]]:
        return [self._accounted(z, s) for z, s in self.rounds()]

    def epsilon(self, delta: float) -> float:
        """ε at ``delta`` of everything recorded (RDP, from the running sum)."""
        from dp_accounting.rdp.rdp_privacy_accountant import compute_epsilon

        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        if self.rdp is None:
            return 0.0
        return float(compute_epsilon(self.orders, self.rdp, delta)[0])

    def state(self) -> dict:
        out = {"dp_z": np.asarray(self.z, np.float64), "dp_kind": np.asarray(self.kind, np.int64),
               "dp_q": np.asarray(self.q, np.float64), "dp_sample": np.asarray(self.sample, np.int64),
               "dp_pool": np.asarray(self.pool, np.int64)}
        if self.rdp is not None:
            out.update(dp_rdp=self.rdp.copy(), dp_orders=self.orders.copy())
        return out

    def __len__(self) -> int:
        return len(self.z)
