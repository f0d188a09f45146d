"""Composable aggregators in the style of `tff.aggregators`: factories that wrap factories.

An aggregator has two halves with state on both.  ``client(delta, examples, broadcast)``
runs in the worker on each device's update (``broadcast``: the client half's state, e.g.
the current adaptive clip norm, sent with the round) and returns (contribution, weight,
info).  Workers either add contributions up in float64 (``accumulate="sum"``), keep
every one (``"stack"``: the robust aggregators, which need all updates; memory
reports x parameters x 4 bytes on the coordinator) or sum them with SecAgg(+) run by
the devices (``"secure"``: the `secure_sum` wrapper; fl/summation.py).  ``finalize`` turns the accumulated
value into the mean update on the server and updates the state; ``round_info`` carries
what the round knows: ``selected`` / ``eligible`` devices (DP accounting) and
``client_info``, the sum of every report's info (e.g. how many were under the clip).

Write a new one by wrapping (see README, "Write an aggregator"): keep ``init``/``finalize``
of the inner aggregator and change ``client``, or the reverse.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from fl.chain import (ENTRY_POINT_GROUP, Aggregator, ChainContext, Configured, _no_broadcast,  # noqa: F401
                      check_chain, default_chain, piece_name, resolve_piece, role_of)
from fl.config import AggregatorSection


def linear_weight(agg: Aggregator) -> Callable[[float], float] | None:
    """``weight_of(examples)`` if the aggregator's client half is a plain weighted sum, else None."""
    return agg.linear[1] if agg.linear is not None and agg.linear[0] is agg.client else None


def mean(weighting: str = "examples") -> Aggregator:
    """Weighted mean; `examples` weighting is FedAvg's (McMahan et al. 2017)."""

    def weight_of(examples):
        return float(examples) if weighting == "examples" else 1.0

    def client(delta, examples, broadcast=None):
        w = weight_of(examples)
        return delta * w, w, {}

    def finalize(state, summed, weight_sum, reports, round_seed, round_info=None):
        return summed / max(weight_sum, 1e-12), state, {}

    return Aggregator(dict, client, finalize, linear=(client, weight_of))


def _scaled_to(delta: np.ndarray, max_norm: float) -> tuple[np.ndarray, float]:
    norm = float(np.linalg.norm(delta))
    return (delta * (max_norm / norm), norm) if norm > max_norm > 0 else (delta, norm)


def clipped(max_norm: float, inner: Aggregator) -> Aggregator:
    """L2-clip each device's delta to `max_norm` before the inner aggregator sees it."""

    def client(delta, examples, broadcast=None):
        out, norm = _scaled_to(delta, max_norm)
        c, w, info = inner.client(out, examples, broadcast)
        return c, w, {**info, "clipped": float(norm > max_norm)}

    return inner._replace(client=client)


def adaptive_clipped(inner: Aggregator, initial_norm: float = 1.0, target_quantile: float = 0.5,
                     lr: float = 0.2) -> Aggregator:
    """Adaptive quantile clipping (Andrew et al. 2021, "Differentially Private Learning with
    Adaptive Clipping"): the clip norm C is state the server sends to the devices; each
    reports whether its update norm was <= C, and the server moves C geometrically,
    C <- C exp(-lr (b - target_quantile)), b the fraction at or under C, so C tracks the
    target quantile of the update norms.  (The non-private estimator: combined with DP,
    b itself would need noise; that combination is refused in config.)"""

    def init():
        return {**inner.init(), "clip_norm": float(initial_norm)}

    def broadcast(state):
        return {**inner.broadcast(state), "clip_norm": float(state["clip_norm"])}

    def client(delta, examples, broadcast=None):
        c_norm = float((broadcast or {}).get("clip_norm", initial_norm))
        out, norm = _scaled_to(delta, c_norm)
        c, w, info = inner.client(out, examples, broadcast)
        return c, w, {**info, "clipped": float(norm > c_norm), "under_clip": float(norm <= c_norm)}

    def finalize(state, acc, weight_sum, reports, round_seed, round_info=None):
        mean_delta, new_state, metrics = inner.finalize(state, acc, weight_sum, reports, round_seed, round_info)
        under = (round_info or {}).get("client_info", {}).get("under_clip", 0.0) / max(reports, 1)
        clip = float(state["clip_norm"] * np.exp(-lr * (under - target_quantile)))
        return mean_delta, {**new_state, "clip_norm": clip}, {**metrics, "clip_norm": float(state["clip_norm"]),
                                                               "under_clip_fraction": under}

    return inner._replace(init=init, client=client, finalize=finalize, broadcast=broadcast)


def zeroing(max_norm: float, inner: Aggregator) -> Aggregator:
    """Zero out (and give no weight to) an update whose L2 norm exceeds ``max_norm`` or is
    not finite, as `tff.aggregators.zeroing_factory` does: one huge update cannot dominate."""

    def client(delta, examples, broadcast=None):
        norm = float(np.linalg.norm(delta))
        if not np.isfinite(norm) or norm > max_norm:
            c, _, info = inner.client(np.zeros_like(delta), examples, broadcast)
            return c * 0.0, 0.0, {**info, "zeroed": 1.0}
        c, w, info = inner.client(delta, examples, broadcast)
        return c, w, {**info, "zeroed": 0.0}

    return inner._replace(client=client)


def _stacked(delta, examples, broadcast=None):
    """Client half of the robust aggregators: the update itself, unweighted, kept whole."""
    return np.asarray(delta, np.float32), 1.0, {}


def median() -> Aggregator:
    """Coordinate-wise median of the reports (Yin et al. 2018, "Byzantine-Robust Distributed
    Learning"): a minority of arbitrary updates cannot move it past the honest range.
    The coordinator holds every update: reports x parameters x 4 bytes."""

    def finalize(state, stacked, weight_sum, reports, round_seed, round_info=None):
        return np.median(np.asarray(stacked, np.float64), axis=0), state, {}

    return Aggregator(dict, _stacked, finalize, _no_broadcast, "stack")


def trimmed_mean(trim_fraction: float = 0.1) -> Aggregator:
    """Coordinate-wise trimmed mean (Yin et al. 2018): per coordinate, drop the
    ``floor(trim_fraction * n)`` largest and smallest values and average the rest."""
    if not 0 <= trim_fraction < 0.5:
        raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")

    def finalize(state, stacked, weight_sum, reports, round_seed, round_info=None):
        x = np.sort(np.asarray(stacked, np.float64), axis=0)
        k = int(np.floor(trim_fraction * len(x)))
        return x[k:len(x) - k].mean(axis=0), state, {"trimmed_per_side": k}

    return Aggregator(dict, _stacked, finalize, _no_broadcast, "stack")


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


def distributed_dp_mean(noise_multiplier: float, expected_reports: int, target_delta: float) -> Aggregator:
    """Server side of distributed DP (Kairouz et al. 2021, "The Distributed Discrete Gaussian
    Mechanism for Federated Learning with Secure Aggregation"): the devices already added
    the noise inside the secure sum (fl/secure_sum.py), so the server only divides by the
    fixed expected report count and records the release in the privacy ledger (the noise
    that reaches the sum is that of at least the SecAgg threshold's devices)."""
    from fl.privacy import Ledger, Sampling

    def client(delta, examples, broadcast=None):
        return delta, 1.0, {}

    def finalize(state, summed, weight_sum, reports, round_seed, round_info=None):
        ledger, info = Ledger(state), round_info or {}
        sampling = (Sampling("fixed", sample=int(info["selected"]), pool=int(info["eligible"]))
                    if info.get("eligible") else Sampling())
        ledger.add(noise_multiplier, sampling)
        return summed / expected_reports, {**state, **ledger.state()}, {
            "dp_epsilon": ledger.epsilon(target_delta),
            "dp_sampling_q": sampling.sample / sampling.pool if sampling.pool else 1.0}

    return Aggregator(lambda: Ledger().state(), client, finalize)


def dp_epsilon(noise_multiplier: float, sampling_prob: float, rounds: int, delta: float) -> float:
    """ε of ``rounds`` Poisson-sampled Gaussian rounds (fl.privacy; kept for callers and tests)."""
    from fl.privacy import Sampling, gaussian_epsilon

    return gaussian_epsilon(noise_multiplier, delta, rounds=rounds, sampling=Sampling("poisson", sampling_prob))


def secure_sum(inner: Aggregator, settings: AggregatorSection, noise_multiplier: float = 0.0) -> Aggregator:
    """Sum the contributions with secure aggregation (Bonawitz et al. 2017; SecAgg+ of Bell
    et al. 2020) run by the devices: the server sees only the sum, which ``inner.finalize``
    turns into the update.  Each device quantizes [contribution, C x weight]
    (fl/secure_sum.py), so an earlier fixed ``clip`` in the chain must bound the update.
    ``noise_multiplier`` > 0: distributed DP, each device adds discrete Gaussian noise
    inside the sum (Kairouz et al. 2021)."""
    from fl.secure_sum import SecureSum

    if inner.accumulate != "sum":
        raise ValueError("secure_sum needs a reduction that only uses the sum (mean or dp_mean)")
    return inner._replace(accumulate="secure", summation=SecureSum(settings, noise_multiplier))


def distributed_dp(inner: Aggregator, noise_multiplier: float, expected_reports: int,
                   target_delta: float) -> Aggregator:
    """``inner`` (a secure sum of a uniform mean) with the server side of distributed DP
    (`distributed_dp_mean`): the devices' noise itself is added inside the secure sum."""
    dd = distributed_dp_mean(noise_multiplier, expected_reports, target_delta)
    return inner._replace(init=dd.init, client=dd.client, finalize=dd.finalize)


# -- chains of pieces: a registry instead of a list of names --------------------------------
# The built-ins, registered under the fedpop.aggregators entry-point group (pyproject.toml).
MEAN = Configured("mean", "reduction", lambda c, ctx: mean(c.weighting))
MEDIAN = Configured("median", "reduction", lambda c, ctx: median())
TRIMMED_MEAN = Configured("trimmed_mean", "reduction", lambda c, ctx: trimmed_mean(c.trim_fraction))
DP_MEAN = Configured("dp_mean", "reduction", lambda c, ctx: gaussian_dp(
    c.dp_noise_multiplier, c.clip_norm, ctx.cohort_goal, c.dp_delta, ctx.population_size))
CLIP = Configured("clip", "wrapper", lambda c, ctx: lambda inner: clipped(c.clip_norm, inner))
ADAPTIVE_CLIP = Configured("adaptive_clip", "wrapper", lambda c, ctx: lambda inner: adaptive_clipped(
    inner, c.clip_norm or 1.0, c.clip_target_quantile, c.clip_lr))
ZEROING = Configured("zeroing", "wrapper", lambda c, ctx: lambda inner: zeroing(c.zeroing_norm, inner))
SECURE_SUM = Configured("secure_sum", "wrapper", lambda c, ctx: lambda inner: secure_sum(
    inner, c, c.secagg_dp_noise_multiplier if "distributed_dp" in ctx.chain else 0.0))
DISTRIBUTED_DP = Configured("distributed_dp", "wrapper", lambda c, ctx: lambda inner: distributed_dp(
    inner, c.secagg_dp_noise_multiplier, ctx.cohort_goal, c.dp_delta))

def compose(pieces, settings: AggregatorSection, context: ChainContext) -> Aggregator:
    """The aggregator a chain stands for: the wrappers, in the order a device's update meets
    them, around the last piece, a reduction."""
    built = []
    for piece in pieces:
        obj = resolve_piece(piece)
        built.append(obj.build(settings, context) if isinstance(obj, Configured) else obj)
    if not built or not isinstance(built[-1], Aggregator):
        raise ValueError("the chain must end with one reduction (an Aggregator)")
    agg = built.pop()
    for wrap in reversed(built):  # the first wrapper sees the raw update: apply it last
        if isinstance(wrap, Aggregator):
            raise ValueError("a reduction must be last in the chain")
        agg = wrap(agg)
        if not isinstance(agg, Aggregator):
            raise ValueError(f"the aggregator wrapper {wrap!r} did not return an Aggregator")
    return agg


def from_config(c: AggregatorSection, cohort_goal: int, population_size: int, chain=None) -> Aggregator:
    """The configured aggregator: ``chain`` (pieces given from Python) if given, else
    ``c.chain``, else the flat keys' `default_chain`; each name resolves through the registry."""
    pieces = tuple(chain if chain is not None else (c.chain or default_chain(c)))
    check_chain(pieces, c.kind)
    return compose(pieces, c, ChainContext(cohort_goal, population_size, tuple(piece_name(p) for p in pieces)))
