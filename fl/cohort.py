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
    """Up to n distinct eligible devices, O(n / eligible fraction) work, never O(population)."""
    chosen: list[np.ndarray] = []
    have = 0
    seen = set() if exclude is None else set(exclude.tolist())
    for _ in range(64):
        cand = rng.integers(0, pop.size, size=max(4 * (n - have), 64))
        cand = cand[pop.eligible(cand, t_sim)]
        fresh = [c for c in dict.fromkeys(cand.tolist()) if c not in seen]
        fresh = fresh[: n - have]
        seen.update(fresh)
        chosen.append(np.asarray(fresh, np.int64))
        have += len(fresh)
        if have >= n:
            break
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def plan_round(pop: Population, cfg: CohortSection, round_num: int, seed: int, epochs: int,
               model_bytes: int) -> RoundPlan:
    """Select an over-sized cohort and run the simulated clock for it."""
    t_start = cfg.start_hour_utc * 3600.0 + round_num * cfg.round_interval_s
    rng = rng_for(seed, "cohort", round_num)
    c = pop.columns
    if pop.always_available:
        ids = np.sort(rng.choice(pop.size, size=min(cfg.goal, pop.size), replace=False)).astype(np.int64)
        duration = _duration(c, ids, epochs, model_bytes)
        status = np.full(len(ids), ACCEPTED, dtype=object)
        return RoundPlan(round_num, t_start, ids, status, duration, float(duration.max(initial=0.0)))
    want = int(np.ceil(cfg.goal * cfg.over_selection))
    ids = select_cohort(pop, want, t_start, rng)
    duration = _duration(c, ids, epochs, model_bytes)
    hazard = c["dropout_per_hour"][ids] / 3600.0
    leave_at = rng.exponential(1.0, len(ids)) / np.maximum(hazard, 1e-12)
    finish = np.where(leave_at < duration, np.inf, duration)
    status = np.full(len(ids), STRAGGLER, dtype=object)
    status[np.isinf(finish)] = DROPPED
    on_time = np.flatnonzero(finish <= cfg.deadline_s)
    first = on_time[np.argsort(finish[on_time], kind="stable")][: cfg.goal]
    status[first] = ACCEPTED
    sim_seconds = float(finish[first].max()) if len(first) == cfg.goal else cfg.deadline_s
    return RoundPlan(round_num, t_start, ids, status, finish, sim_seconds)


def _duration(c: dict, ids: np.ndarray, epochs: int, model_bytes: int) -> np.ndarray:
    """Seconds each device needs: download + compute (examples x epochs / speed) + upload."""
    compute = epochs * c["num_examples"][ids] / c["compute_speed"][ids]
    return model_bytes / c["down_bps"][ids] + compute + model_bytes / c["up_bps"][ids]
