"""Composable aggregators in the style of `tff.aggregators`: factories that wrap factories.

An aggregator has two halves. `client(delta, examples)` runs in the worker on each
device's update and returns what is summed (weighted delta, weight); workers add these
up in float64 and the server adds the workers' partial sums. `finalize` turns the sum
into the mean update on the server and may keep state (e.g. the DP accountant).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from fl.config import AggregatorSection


class Aggregator(NamedTuple):
    init: Callable[[], dict]
    client: Callable[[np.ndarray, float], tuple[np.ndarray, float, dict]]
    # (state, summed, weight_sum, reports, round_seed[, round_info]) -> (mean, state, metrics);
    # round_info: {"selected", "eligible"} devices of the round (DP accounting needs them)
    finalize: Callable[..., tuple[np.ndarray, dict, dict]]


def mean(weighting: str = "examples") -> Aggregator:
    """Weighted mean; `examples` weighting is FedAvg's (McMahan et al. 2017)."""

    def client(delta, examples):
        w = float(examples) if weighting == "examples" else 1.0
        return delta * w, w, {}

    def finalize(state, summed, weight_sum, reports, round_seed, round_info=None):
        return summed / max(weight_sum, 1e-12), state, {}

    return Aggregator(dict, client, finalize)


def clipped(max_norm: float, inner: Aggregator) -> Aggregator:
    """L2-clip each device's delta to `max_norm` before the inner aggregator sees it."""

    def client(delta, examples):
        norm = float(np.linalg.norm(delta))
        scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
        out, w, info = inner.client(delta * scale, examples)
        return out, w, {**info, "clipped": float(scale < 1.0)}

    return Aggregator(inner.init, client, inner.finalize)


def gaussian_dp(noise_multiplier: float, clip_norm: float, expected_reports: int, target_delta: float,
                population_size: int) -> Aggregator:
    """DP-FedAvg (McMahan et al. 2018, "Learning Differentially Private Recurrent Language
    Models"): clip each update to C, weight reports uniformly with the fixed denominator of
    the expected report count, add N(0, (z C)^2) to the sum.  Every round's release goes into
    a `fl.privacy.Ledger` with the sampling the round really used (``round_info``: a cohort of
    ``selected`` devices drawn from the ``eligible`` ones), and ε is computed from the ledger
    (fl/privacy).  Without round_info (a caller outside the engine) the round is accounted
    as unsampled, which is never optimistic."""
    from fl.privacy import Ledger, Sampling

    base = clipped(clip_norm, mean("uniform"))

    def finalize(state, summed, weight_sum, reports, round_seed, round_info=None):
        rng = np.random.default_rng(np.random.SeedSequence([round_seed, 0xD9]))
        noisy = summed + rng.normal(0.0, noise_multiplier * clip_norm, summed.shape)
        ledger = Ledger(state)
        info = round_info or {}
        sampling = (Sampling("fixed", sample=int(info["selected"]), pool=int(info["eligible"]))
                    if info.get("eligible") else Sampling())
        ledger.add(noise_multiplier, sampling)
        eps = ledger.epsilon(target_delta)
        metrics = {"dp_epsilon": eps, "dp_sampling_q": sampling.sample / sampling.pool if sampling.pool else 1.0}
        return noisy / expected_reports, {**state, **ledger.state()}, metrics

    return Aggregator(lambda: Ledger().state(), base.client, finalize)


def dp_epsilon(noise_multiplier: float, sampling_prob: float, rounds: int, delta: float) -> float:
    """ε of ``rounds`` Poisson-sampled Gaussian rounds (fl.privacy; kept for callers and tests)."""
    from fl.privacy import Sampling, gaussian_epsilon

    return gaussian_epsilon(noise_multiplier, delta, rounds=rounds, sampling=Sampling("poisson", sampling_prob))


def from_config(c: AggregatorSection, cohort_goal: int, population_size: int) -> Aggregator:
    if c.dp_noise_multiplier > 0:
        return gaussian_dp(c.dp_noise_multiplier, c.clip_norm, cohort_goal, c.dp_delta, population_size)
    agg = mean(c.weighting)
    if c.kind == "secagg":  # clipping and weighting happen in fl.secure_sum's encoding
        return agg
    return clipped(c.clip_norm, agg) if c.clip_norm > 0 else agg
