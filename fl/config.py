"""Experiment configuration: typed sections, YAML files, `--set key=value` overrides.

Every key is validated before any work starts: an unknown key or a bad value raises
`ConfigError` naming the dotted key and what is allowed.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the allowed values."""


def choice(default, *allowed):
    return field(default=default, metadata={"choices": allowed})


def bounded(default, lo=None, hi=None):
    return field(default=default, metadata={"min": lo, "max": hi})


@dataclass
class ExperimentSection:
    name: str = "fedavg-charlm"
    task: str = "charlm"  # a registered task name or an import path "package.module:Class" (fl.task)
    seed: int = 0
    rounds: int = bounded(30, 1)


@dataclass
class PopulationSection:
    # who can be picked for a round. phone: the phone-like model of Bonawitz et al. 2019 --
    # devices check in at local night with probability eligible_prob, drop out at
    # dropout_per_hour, and the cohort is over-selected and cut at the report deadline.
    # always: every device is available in every round and reports; each round samples
    # cohort.goal devices uniformly without replacement (over_selection, deadline_s and the
    # keys below the examples_* ones apply only to phone). auto: always for a population
    # built from a user's dataset (fedpop.FederatedData, the data section), phone for a
    # simulated one
    availability: str = choice("auto", "auto", "always", "phone")
    size: int = bounded(2000, 1)
    examples_median: float = bounded(60.0, 1)
    examples_sigma: float = bounded(0.5, 0)
    examples_min: int = bounded(20, 1)
    examples_max: int = bounded(200, 1)
    eligible_prob: float = bounded(0.6, 0, 1)  # idle & charging & unmetered on a given night
    night_start_hour: float = bounded(22.0, 0, 24)
    night_hours: float = bounded(8.0, 0, 24)
    dropout_per_hour: float = bounded(0.3, 0)


@dataclass
class CohortSection:
    goal: int = bounded(20, 1)
    over_selection: float = bounded(1.3, 1)
    deadline_s: float = bounded(600.0, 1)
    min_reports: int = bounded(10, 1)
    round_interval_s: float = bounded(900.0, 0)
    start_hour_utc: float = bounded(2.0, 0, 24)


@dataclass
class ClientSection:
    # fedavg (McMahan et al. 2017), fedsgd, fedprox (Li et al. 2020), scaffold (Karimireddy et al.
    # 2020), and the personalization algorithms ditto (Li et al. 2021) and fedper (Arivazhagan et
    # al. 2019), whose devices keep state across rounds (fl/device_state.py); or a user's
    # fedpop.Algorithm (fl/algorithms.py)
    # a registered name (the fedpop.algorithms entry points) or an import path "package.module:Class"
    algorithm: str = "fedavg"
    epochs: int = bounded(1, 1)
    batch_size: int = bounded(10, 1)
    max_batches: int = bounded(0, 0)  # 0: all batches
    lr: float = bounded(0.5, 0)
    prox_mu: float = bounded(0.0, 0)
    ditto_lambda: float = bounded(0.1, 0)  # ditto: the personal model's pull toward the global one
    shuffle: bool = True
    # local optimizer: plain SGD (FedAvg) or Adam restarted on every device (fine-tuning, e.g.
    # per-speaker personalization); clip_norm > 0 clips each local gradient's global norm
    optimizer: str = choice("sgd", "sgd", "adam")
    clip_norm: float = bounded(0.0, 0)
    # personalization: this fraction of a device's distinct training targets is held back; a
    # fine-tuned model replaces the starting one only if it lowers the loss on them (0 = always)
    validation_fraction: float = bounded(0.0, 0, 0.5)
    # batch examples of similar length together (tasks with ``example_lengths``, e.g. speech):
    # each shuffled epoch is sorted by length within pools of this many batches (0 = off)
    bucket_pool: int = bounded(0, 0)
    # compile the device-training function with XLA (fused kernels, cheap loops): for small
    # models, where per-op dispatch is most of a device's cost. Inputs are padded to a few sizes
    # (fl.trainer.padded_size), so a handful of shapes are compiled per worker; results equal
    # the plain path's to float rounding, not bit for bit
    jit_compile: bool = False


@dataclass
class ServerSection:
    optimizer: str = choice("sgd", "sgd", "momentum", "adam", "yogi")
    lr: float = bounded(1.0, 0)
    momentum: float = bounded(0.9, 0, 1)
    beta1: float = bounded(0.9, 0, 1)
    beta2: float = bounded(0.99, 0, 1)
    eps: float = bounded(1e-3, 0)


@dataclass
class AggregatorSection:
    kind: str = choice("mean", "mean", "secagg")
    weighting: str = choice("examples", "examples", "uniform")
    clip_norm: float = bounded(0.0, 0)  # 0 disables clipping
    dp_noise_multiplier: float = bounded(0.0, 0)  # 0 disables central DP
    dp_delta: float = bounded(1e-6, 0, 1)
    # kind: secagg -> updates are clipped to clip_norm, quantized and summed with SecAgg(+)
    secagg_mode: str = choice("secagg+", "secagg+", "secagg")
    secagg_bits: int = bounded(32, 16, 62)
    secagg_dropout_rate: float = bounded(0.1, 0, 0.9)  # dropouts the (k, t) choice must survive
    secagg_corrupt_fraction: float = bounded(0.05, 0, 0.5)  # colluding devices the threshold must tolerate
    secagg_malicious: bool = False  # active-security mode: signed messages + ConsistencyCheck round
    # distributed DP (Kairouz et al. 2021): each device adds discrete Gaussian noise to its quantized
    # update so the sum of the SecAgg threshold's noises has std z x sensitivity; the server sees only that
    secagg_dp_noise_multiplier: float = bounded(0.0, 0)
    # an explicit chain (fl/aggregators.py): wrappers in the order an update meets them, then one
    # reduction, e.g. [zeroing, adaptive_clip, mean], [clip, trimmed_mean] or
    # [clip, distributed_dp, secure_sum, mean]; () = the chain the keys above stand for
    chain: tuple[str, ...] = ()
    clip_target_quantile: float = bounded(0.5, 0, 1)  # adaptive_clip (Andrew et al. 2021); starts at clip_norm
    clip_lr: float = bounded(0.2, 0)
    zeroing_norm: float = bounded(0.0, 0)  # zeroing: updates with a larger L2 norm count as zero
    trim_fraction: float = bounded(0.1, 0, 0.49)  # trimmed_mean: dropped at each end, per coordinate


@dataclass
class EvalSection:
    every: int = bounded(5, 0)  # 0 disables federated evaluation
    cohort: int = bounded(20, 1)


@dataclass
class WorkersSection:
    num: int = bounded(0, 0)  # 0: available CPUs // cpus_per_worker
    cpus_per_worker: int = bounded(1, 1)
    ray_address: str = ""  # "" starts a local Ray; "auto" joins a running cluster
    object_store_mb: int = bounded(512, 64)
    cache_dir: str = ""  # "" -> ~/.cache/fedpop
    cache_memory_mb: float = bounded(256.0, 0)  # each worker's in-memory LRU of device data, in front of the disk
    # a worker process that dies mid-round is replaced; its devices are re-run on the replacement
    # this many times (the simulator failed, not the devices: the round comes out as if nothing
    # happened); 0 or still failing: they count as dropouts of that round
    retry_crashed: int = bounded(1, 0)


@dataclass
class FaultsSection:
    """Fault injection, for robustness studies and tests (all off by default)."""
    device_error_rate: float = bounded(0.0, 0, 1)
    nan_rate: float = bounded(0.0, 0, 1)
    byzantine_rate: float = bounded(0.0, 0, 1)  # devices that send a large arbitrary update instead of theirs
    kill_worker_round: int = -1  # the first worker crashes mid-round in this round
    kill_worker_every: int = bounded(0, 0)  # ... and in every round r with (r + 1) % every == 0 (0: off)


@dataclass
class DataSection:
    """A user's federated dataset read from files (fl/data.py); it defines the population:
    one device per client, each with that client's training-set size."""
    # none: the task makes each device's data (Task.device_data). table: a parquet or CSV file
    # with one row per example and a client-id column. leaf: LEAF's JSON layout (users,
    # num_samples, user_data), one file or a directory of them. tff: a TFF ClientData that the
    # function named by ``loader`` returns
    format: str = choice("none", "none", "table", "leaf", "tff")
    path: str = ""  # table/leaf: the training file (leaf: or a directory of .json files)
    eval_path: str = ""  # the held-out split in the same format; "" holds out eval_fraction of each client
    eval_fraction: float = bounded(0.2, 0, 0.9)
    client_column: str = "client_id"  # table: the column naming each example's client
    x_columns: tuple[str, ...] = ()  # table: feature columns (() = every column but client and label)
    y_column: str = "y"  # table: the label column
    x_key: str = "x"  # tff: the feature and label keys of a ClientData element
    y_key: str = "y"
    loader: str = ""  # tff: "package.module:function" returning a ClientData, or a (train, eval) pair


@dataclass
class Config:
    experiment: ExperimentSection = field(default_factory=ExperimentSection)
    population: PopulationSection = field(default_factory=PopulationSection)
    cohort: CohortSection = field(default_factory=CohortSection)
    client: ClientSection = field(default_factory=ClientSection)
    server: ServerSection = field(default_factory=ServerSection)
    aggregator: AggregatorSection = field(default_factory=AggregatorSection)
    eval: EvalSection = field(default_factory=EvalSection)
    workers: WorkersSection = field(default_factory=WorkersSection)
    faults: FaultsSection = field(default_factory=FaultsSection)
    data: DataSection = field(default_factory=DataSection)
    task: Any = None  # the task's own dataclass, chosen by experiment.task

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(key: str, value: Any, typ: Any, meta) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"bad value for '{key}': {value!r} (allowed: true, false)")
    if typing.get_origin(typ) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"bad value for '{key}': {value!r} (expected a list)")
        (inner, _) = typing.get_args(typ)
        return tuple(_coerce(key, v, inner, {}) for v in value)
    try:
        if typ is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError
        out = typ(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for '{key}': {value!r} (expected {typ.__name__})") from None
    allowed = meta.get("choices")
    if allowed and out not in allowed:
        raise ConfigError(f"bad value for '{key}': {out!r} (allowed: {', '.join(map(str, allowed))})")
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ConfigError(f"bad value for '{key}': {out!r} (allowed range {rng})")
    return out


def build_section(cls, values: dict | None, prefix: str):
    """Build dataclass `cls` from a dict, rejecting unknown keys and bad values."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown key '{prefix}{key}' (allowed: {', '.join(names)})")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in values:
            kwargs[f.name] = _coerce(prefix + f.name, values[f.name], hints[f.name], f.metadata)
    return cls(**kwargs)


def merge(base: dict, extra: dict) -> dict:
    """Nested dicts merged, ``extra`` winning (YAML file + ``--set`` overrides)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out



def build_sections(cls, data: dict, skip: tuple = ()) -> dict:
    """Every section of the config dataclass ``cls`` from ``data``: an unknown section or
    key, or a bad value, raises `ConfigError` naming the dotted key and what is allowed.
    A section's defaults are those of ``cls()`` (a study may change a section's defaults).
    Sections in ``skip`` are left to the caller. Shared by the engine's `load_config` and
    the analytics studies (analytics/config.py): one machinery, one error form."""
    if not isinstance(data, dict):
        raise ConfigError("config top level must be a mapping of sections")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key '{key}' (allowed: {', '.join(names)})")
    defaults = cls()
    kwargs = {}
    for name in names:
        if name in skip:
            continue
        vals = data.get(name) or {}
        if not isinstance(vals, dict):
            raise ConfigError(f"bad value for '{name}': expected a mapping of keys")
        base = dataclasses.asdict(getattr(defaults, name))
        for key in vals:  # unknown keys first, with build_section's message
            if key not in base:
                build_section(hints[name], {key: vals[key]}, name + ".")
        kwargs[name] = build_section(hints[name], {**base, **vals}, name + ".")
    return kwargs


def parse_overrides(items: list[str]) -> dict:
    """['cohort.goal=50', 'server.optimizer=adam'] -> nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def load_config(raw: dict | None = None, overrides: list[str] | None = None, task: type | None = None,
                algorithm=None) -> Config:
    """Validate a nested dict (from YAML) plus overrides into a `Config`.

    The task (``experiment.task``: a registered name or ``module:Class``; or ``task``, a
    class given from Python) decides the keys of the ``task`` section; the algorithm
    (``client.algorithm``, or ``algorithm``, a `fl.algorithms.Algorithm` given from Python)
    checks the keys it depends on."""
    from fl.algorithms import algorithm_name, resolve_algorithm
    from fl.chain import check_section
    from fl.registry import RegistryError
    from fl.task import TaskError, resolve_task, task_path

    data = merge(raw or {}, parse_overrides(overrides or []))
    if task is not None:
        data = merge(data, {"experiment": {"task": task_path(task)}})
    if algorithm is not None:
        data = merge(data, {"client": {"algorithm": algorithm_name(algorithm)}})
    kwargs = build_sections(Config, data, skip=("task",))
    try:
        task_cls = resolve_task(task if task is not None else kwargs["experiment"].task)
    except TaskError as e:
        raise ConfigError(f"bad value for 'experiment.task': {e}") from None
    task_config = getattr(task_cls, "Config", None)  # (the task contract: no Config = no keys)
    if task_config is None:
        if data.get("task"):
            raise ConfigError(f"unknown key 'task.{next(iter(data['task']))}' (task "
                              f"{kwargs['experiment'].task} has no config keys)")
        kwargs["task"] = None
    else:
        kwargs["task"] = build_section(task_config, data.get("task"), "task.")
    cfg = Config(**kwargs)
    if cfg.cohort.min_reports > cfg.cohort.goal:
        raise ConfigError(f"bad value for 'cohort.min_reports': {cfg.cohort.min_reports} "
                          f"(allowed range [1, cohort.goal={cfg.cohort.goal}])")
    if cfg.population.examples_min > cfg.population.examples_max:
        raise ConfigError("bad value for 'population.examples_min': must be <= population.examples_max")
    _check_data(cfg.data)
    try:
        algo = resolve_algorithm(algorithm if algorithm is not None else cfg.client.algorithm)
    except RegistryError as e:
        raise ConfigError(f"bad value for 'client.algorithm': {e}") from None
    agg = cfg.aggregator
    if agg.kind == "secagg" and agg.clip_norm <= 0:
        raise ConfigError("bad value for 'aggregator.clip_norm': aggregator.kind=secagg needs clip_norm > 0 "
                          "(the clipping bound sets the quantization range)")
    if agg.secagg_dp_noise_multiplier > 0 and agg.kind != "secagg" and not agg.chain:
        raise ConfigError("bad value for 'aggregator.secagg_dp_noise_multiplier': distributed DP runs inside the "
                          "secure sum (needs aggregator.kind=secagg, or distributed_dp in aggregator.chain)")
    if agg.kind == "secagg" and agg.dp_noise_multiplier > 0 and not agg.chain:
        raise ConfigError("bad value for 'aggregator.dp_noise_multiplier': central DP is not combined with "
                          "aggregator.kind=secagg by the flat keys (allowed: 0; use "
                          "aggregator.secagg_dp_noise_multiplier for distributed DP, or the chain "
                          "[clip, secure_sum, dp_mean] for central DP on the secure sum)")
    try:  # each component validates its own section: the aggregator chain, then the algorithm
        chain = check_section(cfg)
        algo.check(cfg, chain)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return cfg


def _check_data(data: DataSection) -> None:
    """The data section names what its format needs."""
    if data.format in ("table", "leaf") and not data.path:
        raise ConfigError(f"bad value for 'data.path': data.format={data.format} needs a file to read")
    if data.format == "tff" and ":" not in data.loader:
        raise ConfigError(f"bad value for 'data.loader': {data.loader!r} (data.format=tff needs an import path "
                          "'package.module:function' returning a TFF ClientData)")
    if data.format == "none" and (data.path or data.eval_path or data.loader):
        raise ConfigError("bad value for 'data.format': 'none' with data.path/eval_path/loader set "
                          "(allowed: table, leaf, tff)")


def resolve_data_paths(raw: dict, base_dir) -> dict:
    """``raw`` with its relative ``data.path`` / ``data.eval_path`` made absolute against
    ``base_dir`` (a YAML file's folder: a file names its data relative to itself)."""
    from pathlib import Path

    data = raw.get("data")
    if not isinstance(data, dict):
        return raw
    fixed = dict(data)
    for key in ("path", "eval_path"):
        value = fixed.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            fixed[key] = str((Path(base_dir) / value).resolve())
    return {**raw, "data": fixed}


def read_yaml(path) -> dict:
    """A config file's sections (a missing file or a non-mapping top level is a `ConfigError`)."""
    try:
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return raw


def load_yaml(path: str, overrides: list[str] | None = None) -> Config:
    return load_config(read_yaml(path), overrides)
