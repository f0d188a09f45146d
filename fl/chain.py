"""The vocabulary of aggregator chains, apart from the pieces themselves (fl/aggregators.py):
what an `Aggregator` is, what a chain piece may be, how names resolve (the
``fedpop.aggregators`` entry-point group or an import path, through fl/registry.py) and
which chains can run.  The config loader checks a chain with this module alone, so it
imports no aggregator and no secure-aggregation code.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from fl.registry import RegistryError, lookup, names

if TYPE_CHECKING:
    from fl.config import AggregatorSection

ENTRY_POINT_GROUP = "fedpop.aggregators"


def _no_broadcast(state: dict) -> dict:
    return {}


class Aggregator(NamedTuple):
    init: Callable[[], dict]
    # (delta, examples, broadcast=None) -> (contribution, weight, info)
    client: Callable[..., tuple[np.ndarray, float, dict]]
    # (state, accumulated, weight_sum, reports, round_seed, round_info=None) -> (mean, state, metrics)
    finalize: Callable[..., tuple[np.ndarray, dict, dict]]
    broadcast: Callable[[dict], dict] = _no_broadcast  # server state -> the client half's state
    accumulate: str = "sum"  # "sum" | "stack" | "secure"
    summation: object = None  # accumulate="secure": the fl.secure_sum.SecureSum that runs it
    # (client, weight_of): this client is linear, client(delta, examples) == (delta * w, w, {})
    # with w = weight_of(examples), so a worker may sum updates inside its training call; it
    # holds only while `client` is that same function (a wrapper that replaces it turns it off)
    linear: tuple | None = None


class ChainContext(NamedTuple):
    """What a configured piece may read besides the aggregator section."""
    cohort_goal: int
    population_size: int
    chain: tuple = ()  # the names of the chain's pieces (a piece may depend on its neighbours)


class Configured(NamedTuple):
    """A chain piece built from the ``aggregator`` config section: ``build(settings, context)``
    returns a reduction (an `Aggregator`) or a wrapper (``inner -> Aggregator``); ``role`` says
    which, so a chain is checked before anything is built."""
    name: str
    role: str  # "reduction" | "wrapper"
    build: Callable


def resolve_piece(piece):
    """A chain piece: a registered name or an import path is looked up; objects pass through."""
    return lookup(ENTRY_POINT_GROUP, piece, "aggregator") if isinstance(piece, str) else piece


def role_of(piece) -> str:
    """"reduction" (an `Aggregator`, or a `Configured` reduction) or "wrapper" (a callable
    ``inner -> Aggregator``); ValueError for anything else."""
    obj = resolve_piece(piece)
    if isinstance(obj, Configured):
        return obj.role
    if isinstance(obj, Aggregator):
        return "reduction"
    if callable(obj):
        return "wrapper"
    raise ValueError(f"aggregator {piece!r} is neither an Aggregator nor a wrapper (inner -> Aggregator)")


def piece_name(piece) -> str:
    obj = piece if isinstance(piece, str) else getattr(piece, "name", None) or getattr(piece, "__qualname__", "")
    return obj if isinstance(obj, str) else repr(piece)


def default_chain(c: AggregatorSection) -> tuple[str, ...]:
    """The chain the flat keys stand for when ``aggregator.chain`` is not given."""
    if c.kind == "secagg":
        return ("clip", "distributed_dp", "secure_sum", "mean") if c.secagg_dp_noise_multiplier > 0 else \
            ("clip", "secure_sum", "mean")
    if c.dp_noise_multiplier > 0:
        return ("dp_mean",)
    return ("clip", "mean") if c.clip_norm > 0 else ("mean",)


def check_chain(chain, kind: str = "mean") -> None:
    """Raise ValueError naming what is wrong with an aggregator chain (registered names,
    import paths or objects: the wrappers in the order a device's update meets them, then one
    reduction).  The built-ins' own constraints are checked by name."""
    pieces = list(chain)
    try:
        roles = [role_of(p) for p in pieces]
    except RegistryError as e:
        if " is not a registered " not in str(e):  # an import path that does not resolve
            raise ValueError(str(e)) from None
        raise ValueError(f"unknown aggregator {str(e).split(' is not')[0]} (allowed: "
                         f"{', '.join(names(ENTRY_POINT_GROUP))}, or an import path 'package.module:attr')") from None
    chain = [piece_name(p) for p in pieces]
    if not roles or roles[-1] != "reduction":
        raise ValueError("the chain must end with one reduction (e.g. mean, median, trimmed_mean, dp_mean)")
    if "reduction" in roles[:-1]:
        raise ValueError(f"a reduction ({', '.join(c for c, r in zip(chain[:-1], roles) if r == 'reduction')}) "
                         "must be last")
    if sum(c in ("clip", "adaptive_clip") for c in chain) > 1:
        raise ValueError("at most one of clip, adaptive_clip")
    if len(set(chain)) != len(chain):
        raise ValueError("an aggregator appears twice in the chain")
    if chain[-1] == "dp_mean" and "adaptive_clip" in chain:
        raise ValueError("adaptive_clip with dp_mean is not supported (the clip count would need its own noise)")
    if "secure_sum" in chain:
        if chain[-2] != "secure_sum":
            raise ValueError("secure_sum must come right before the reduction (it is how the contributions "
                             "are summed)")
        if chain[-1] not in ("mean", "dp_mean"):
            raise ValueError(f"secure_sum reveals only the sum: the reduction must be mean or dp_mean, not "
                             f"{chain[-1]} (it needs every update)")
        if "clip" not in chain:
            raise ValueError("secure_sum needs a fixed clip earlier in the chain (the clip norm bounds the "
                             "quantization range; adaptive_clip would reveal each device's clip bit)")
    elif kind == "secagg":
        raise ValueError("aggregator.kind=secagg but the chain has no secure_sum (put secure_sum right before "
                         "the reduction, e.g. [clip, secure_sum, mean])")
    if "distributed_dp" in chain:
        if "secure_sum" not in chain or chain.index("distributed_dp") != chain.index("secure_sum") - 1:
            raise ValueError("distributed_dp must come right before secure_sum (the devices' noise is only "
                             "private inside a secure sum)")
        if chain[-1] != "mean":
            raise ValueError("distributed_dp with dp_mean would add noise twice: end the chain with mean")


def check_section(cfg) -> tuple:
    """The ``aggregator`` section's chain (given, or the one the flat keys stand for), checked:
    it must be one that can run, with the keys its pieces read; ValueError naming the key."""
    agg = cfg.aggregator
    chain = tuple(agg.chain) or default_chain(agg)
    key = "aggregator.chain" if agg.chain else "aggregator.kind"
    try:
        check_chain(chain, agg.kind)
    except ValueError as e:
        raise ValueError(f"bad value for '{key}': {list(chain)}: {e}") from None
    if "zeroing" in chain and agg.zeroing_norm <= 0:
        raise ValueError("bad value for 'aggregator.zeroing_norm': the chain has zeroing, so it must be > 0")
    if ("clip" in chain or "dp_mean" in chain) and agg.clip_norm <= 0:
        raise ValueError(f"bad value for 'aggregator.clip_norm': the chain {list(chain)} needs clip_norm > 0")
    if "dp_mean" in chain and agg.dp_noise_multiplier <= 0:
        raise ValueError("bad value for 'aggregator.dp_noise_multiplier': dp_mean needs a noise multiplier > 0")
    if agg.dp_noise_multiplier > 0 and chain[-1] != "dp_mean":
        raise ValueError("bad value for 'aggregator.chain': dp_noise_multiplier > 0 but the chain does not end "
                          "with dp_mean (noise would silently be left out)")
    if "distributed_dp" in chain and agg.secagg_dp_noise_multiplier <= 0:
        raise ValueError("bad value for 'aggregator.secagg_dp_noise_multiplier': the chain has distributed_dp, "
                          "so it must be > 0")
    if agg.secagg_dp_noise_multiplier > 0 and "distributed_dp" not in chain:
        raise ValueError("bad value for 'aggregator.chain': secagg_dp_noise_multiplier > 0 but the chain has no "
                          "distributed_dp (noise would silently be left out)")
    if ("dp_mean" in chain or "distributed_dp" in chain) and agg.weighting != "uniform":
        what = "distributed DP" if "distributed_dp" in chain else "dp_noise_multiplier > 0"
        raise ValueError(f"bad value for 'aggregator.weighting': {agg.weighting!r} with {what} (DP-FedAvg "
                          "weights every report equally, with a fixed denominator; allowed: uniform)")
    if "secure_sum" in chain:
        _check_secagg(cfg)
    return chain


def _check_secagg(cfg) -> None:
    """Fail before any work when the cohort cannot get a safe SecAgg threshold."""
    # start-up time: the SecAgg graph code (and `cryptography`) loads only for a secure chain
    from secagg.errors import ConfigError as SecAggConfigError
    from secagg.graph import choose_k_t, threshold_for

    agg, n = cfg.aggregator, max(cfg.cohort.goal, 2)
    try:
        if agg.secagg_mode == "secagg":
            threshold_for(n, n - 1, agg.secagg_dropout_rate, agg.secagg_corrupt_fraction, 40.0, agg.secagg_malicious)
        else:
            choose_k_t(n, agg.secagg_dropout_rate, agg.secagg_corrupt_fraction, 40.0, agg.secagg_malicious)
    except SecAggConfigError as e:
        raise ValueError(f"bad value for 'aggregator.secagg_corrupt_fraction' / 'secagg_dropout_rate' with "
                          f"cohort.goal={cfg.cohort.goal}: {e}") from None
