"""Cohort selection with over-selection and a report deadline, on a simulated clock.

Bonawitz et al. 2019, "Towards Federated Learning at Scale", sec. 2: the server selects
~130% of the goal count among checked-in devices, accepts the first `goal` reports
that arrive before the deadline and ignores the rest (stragglers); devices that go
away mid-round (no longer idle/charging/unmetered) are dropouts.

An always-available population (``population.availability``) has none of that: each
round samples ``goal`` devices uniformly without replacement and all of them report.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl.config import CohortSection
from fl.population import Population
from fl.seeding import rng_for

ACCEPTED, DROPPED, STRAGGLER, FAILED, REJECTED = "accepted", "dropped", "straggler", "failed", "rejected"
# an evaluated device whose loss or metric is NaN/Inf: left out of the round's evaluation
NONFINITE = "nonfinite"


@dataclass
class RoundPlan:
    """Who takes part in a round and what the simulated clock says about each device."""
    round: int
    t_start: float
    device_ids: np.ndarray  # selected devices, sorted
    status: np.ndarray  # ACCEPTED / DROPPED / STRAGGLER, as planned by the clock
    finish_s: np.ndarray  # seconds from round start to report (inf for dropouts)
    sim_seconds: float  # round duration on the simulated clock

    @property
    def accepted_ids(self) -> np.ndarray:
        return self.device_ids[self.status == ACCEPTED]


def select_cohort(pop: Population, n: int, t_sim: float, rng: np.random.Generator,
                  exclude: np.ndarray | None = None) -> np.ndarray:
    """Up to n distinct eligible devices by rejection sampling: draw ids uniformly, keep
    those eligible at ``t_sim`` (traits computed for the drawn ids only) and not in
    ``exclude`` (device ids, any order).  O(n / eligible fraction) work and memory, never
    O(population): the population is lazy (fl/population.py)."""
    excl = np.unique(np.asarray(exclude, np.int64)) if exclude is not None and len(exclude) else None
    chosen = np.zeros(0, np.int64)
    for _ in range(64):
        want = n - len(chosen)
        cand = rng.integers(0, pop.size, size=max(4 * want, 64))
        cand = cand[pop.eligible(cand, t_sim)]
        cand = cand[np.sort(np.unique(cand, return_index=True)[1])]  # first occurrences, draw order
        keep = ~np.isin(cand, chosen)
        if excl is not None:
            pos = np.minimum(np.searchsorted(excl, cand), len(excl) - 1)
            keep &= excl[pos] != cand
        chosen = np.concatenate([chosen, cand[keep][:want]])
        if len(chosen) >= n:
            break
    return np.sort(chosen)


def plan_round(pop: Population, cfg: CohortSection, round_num: int, seed: int, epochs: int,
               model_bytes: int) -> RoundPlan:
    """Select an over-sized cohort and run the simulated clock for it."""
    t_start = cfg.start_hour_utc * 3600.0 + round_num * cfg.round_interval_s
    rng = rng_for(seed, "cohort", round_num)
    if pop.always_available:
        ids = np.sort(rng.choice(pop.size, size=min(cfg.goal, pop.size), replace=False)).astype(np.int64)
        duration = _duration(pop, ids, epochs, model_bytes)
        status = np.full(len(ids), ACCEPTED, dtype=object)
        return RoundPlan(round_num, t_start, ids, status, duration, float(duration.max(initial=0.0)))
    want = int(np.ceil(cfg.goal * cfg.over_selection))
    ids = select_cohort(pop, want, t_start, rng)
    duration = _duration(pop, ids, epochs, model_bytes)
    hazard = pop.trait("dropout_per_hour", ids) / 3600.0
    leave_at = rng.exponential(1.0, len(ids)) / np.maximum(hazard, 1e-12)
    finish = np.where(leave_at < duration, np.inf, duration)
    status = np.full(len(ids), STRAGGLER, dtype=object)
    status[np.isinf(finish)] = DROPPED
    on_time = np.flatnonzero(finish <= cfg.deadline_s)
    first = on_time[np.argsort(finish[on_time], kind="stable")][: cfg.goal]
    status[first] = ACCEPTED
    sim_seconds = float(finish[first].max()) if len(first) == cfg.goal else cfg.deadline_s
    return RoundPlan(round_num, t_start, ids, status, finish, sim_seconds)


def _duration(pop: Population, ids: np.ndarray, epochs: int, model_bytes: int) -> np.ndarray:
    """Seconds each device needs: download + compute (examples x epochs / speed) + upload."""
    c = pop.traits(ids, ("num_examples", "compute_speed", "down_bps", "up_bps"))
    compute = epochs * c["num_examples"] / c["compute_speed"]
    return model_bytes / c["down_bps"] + compute + model_bytes / c["up_bps"]
