"""How the devices' contributions reach the server: the aggregator's summation step.

A summation has two server-side calls that `fl.process` makes every round, whatever the
aggregator is:

- ``plan(device_ids, num_params, max_weight, seed, round_num)``: the round's public
  parameters, shipped to the workers with the round (``None``: nothing to ship).  Raises
  `RoundNotPossible` when this cohort cannot be summed (the round then makes no update).
- ``collect(pool, results, planned, device_ids, clients, num_params)``: the accumulated value
  and the weight sum from the workers' results (``planned``: what ``plan`` returned) -> ``(total, weight, metrics, error)``.  It may mark
  devices in ``clients`` as dropped (a secure sum's non-survivors).

`PlainSum` adds the workers' float64 partial sums in worker order, `StackedUpdates` keeps
every update (robust aggregators), and `fl.secure_sum.SecureSum` runs SecAgg(+) on the
devices, so the server only ever sees masked vectors.
"""
from __future__ import annotations

import numpy as np


class RoundNotPossible(ValueError):
    """This round's cohort cannot be summed this way (e.g. too few devices for a safe
    SecAgg threshold)."""


class PlainSum:
    """Float64 partial sums per worker, added in fixed worker order (same bits for the same
    worker count)."""

    def plan(self, device_ids, num_params, max_weight, seed, round_num):
        return None

    def collect(self, pool, results, planned, device_ids, clients, num_params):
        total, weight = np.zeros(num_params, np.float64), 0.0
        for res in results:
            if res["sum"] is not None:
                total += res["sum"]
                weight += res["weight"]
        return total, weight, {}, ""


class StackedUpdates(PlainSum):
    """Every accepted update, in worker (= device-id) order: reports x parameters x 4 bytes
    on the coordinator (the robust aggregators need them all)."""

    def collect(self, pool, results, planned, device_ids, clients, num_params):
        parts = [res["sum"] for res in results if res["sum"] is not None]
        weight = float(sum(res["weight"] for res in results if res["sum"] is not None))
        total = np.concatenate(parts) if parts else np.zeros((0, num_params), np.float32)
        return total, weight, {}, ""


def summation_of(aggregator):
    """The summation an aggregator asks for (its ``accumulate`` field)."""
    if aggregator.accumulate == "secure":
        return aggregator.summation
    return StackedUpdates() if aggregator.accumulate == "stack" else PlainSum()
