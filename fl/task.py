"""The task interface the engine owns: what a model family must provide to train in devices.

The task contract (checked by `check_task` before any work starts):

- ``build_model(self)`` -> a Keras model (required);
- ``device_data(self, device_id, num_examples, split)`` -> ``{"x": array [n, ...], "y":
  array [n, ...]}`` for one device, ``split`` "train" or "eval" (required unless a federated
  dataset, `fedpop.FederatedData` or the ``data`` config section, supplies the data);
- a constructor callable as ``Task(config, seed)`` or ``Task()``.

Everything else has a default, which a class gets whether or not it subclasses `Task` and
whether or not its ``__init__`` calls ``super().__init__``: the engine makes the instance,
sets ``config`` (the task's config section) and ``seed`` when the constructor did not,
and a class that does not subclass `Task` is given `Task`'s defaults behind its own methods:

- ``Config``: a dataclass of the task's own keys (the config section ``task``); ``None`` = no keys;
- ``example_spec()``: the ``(x, y)`` TensorSpecs, read from one device's data by default;
- ``batch_loss(model, x, y, training)``: ``(per-example loss, per-example metric)``; default
  sparse cross-entropy of the model's logits and accuracy;
- ``trainable_mask(model, strategy)``: which variables a personalization strategy fine-tunes
  (default: every variable; `layers_mask` builds one from layers);
- ``evaluate_metrics(model, data)``: the task's own metrics of a model on one device's data,
  reported before and after personalization (default: mean loss and metric of ``batch_loss``);
- ``personalization_record(before, after, tuned, validation)``: the columns one
  personalization run reports (default: ``{metric}_before`` / ``{metric}_after``);
- ``cache_namespace``: where generated device data is cached on disk (``None``: no disk cache);
- ``personal_mask(model)``: which variables stay on the device under FedPer (default: the last layer);
- ``example_lengths(data)``: per-example lengths, so ``client.bucket_pool`` can batch similar lengths together.

Tasks are named in configs three ways: a registered name (``charlm``), an import path
(``my_package.my_module:MyTask``), or, from Python, the class itself.  Packages register
named tasks through the ``fedpop.tasks`` entry-point group (see pyproject.toml); a
notebook can call `register_task`.  The engine lists no task itself.
"""
from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json

import numpy as np

from fl.registry import RegistryError, import_path

ENTRY_POINT_GROUP = "fedpop.tasks"
REQUIRED = ("build_model", "device_data")
_REGISTERED: dict[str, type] = {}


class TaskError(ValueError):
    """A task that cannot be used: names the task and what is missing."""


class Task:
    """Base class with sensible defaults; see the module docstring for the protocol."""

    Config = None
    name = "task"
    # class-level defaults: the engine sets both on every instance it makes, and nothing
    # here depends on __init__ having run
    config = None
    seed = 0

    def __init__(self, config=None, seed: int = 0):
        self.config, self.seed = config, seed

    # -- required ---------------------------------------------------------------------
    def build_model(self):
        raise NotImplementedError

    def device_data(self, device_id: int, num_examples: int, split: str = "train") -> dict[str, np.ndarray]:
        """``{"x": [n, ...], "y": [n, ...]}`` for one device; split is "train" or "eval"."""
        raise NotImplementedError

    # -- optional ---------------------------------------------------------------------
    def example_spec(self):
        import tensorflow as tf

        d = self.device_data(0, 2, "train")
        x, y = np.asarray(d["x"]), np.asarray(d["y"])
        return (tf.TensorSpec([None, *x.shape[1:]], tf.as_dtype(x.dtype)),
                tf.TensorSpec([None, *y.shape[1:]], tf.as_dtype(y.dtype)))

    @property
    def cache_namespace(self) -> str | None:
        """Disk-cache folder for generated device data: the class, seed and config."""
        cfg = dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else repr(self.config)
        key = json.dumps([type(self).__module__, type(self).__qualname__, self.seed, cfg], default=str, sort_keys=True)
        return f"{self.name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"

    def example_lengths(self, data: dict[str, np.ndarray]) -> np.ndarray | None:
        """Per-example lengths (e.g. frames) for batching by length (``client.bucket_pool``);
        None: examples have no length."""
        return None

    def batch_loss(self, model, x, y, training):
        """(per-example loss, per-example metric) of one batch: sparse cross-entropy of the
        model's logits, averaged over any time axis, and accuracy."""
        logits = model(x, training=training)
        return sparse_ce(y, logits), correct_fraction(y, logits)

    def trainable_mask(self, model, strategy: str) -> list[bool] | None:
        """Which variables personalization ``strategy`` fine-tunes; None: all of them."""
        return None

    def evaluate_metrics(self, model, data: dict[str, np.ndarray]) -> dict[str, float]:
        """The task's own metrics of ``model`` on one device's data: {"loss", "metric"}, the
        example means of `batch_loss`."""
        per_ex, metric = self.batch_loss(model, data["x"], data["y"], False)
        n = len(data["y"])
        return {"loss": float(np.mean(per_ex)) if n else float("nan"),
                "metric": float(np.mean(metric)) if n else float("nan")}

    def personalization_record(self, before: dict, after: dict, tuned: dict,
                               validation: tuple[float, float] | None = None) -> dict:
        """The columns one personalization run reports: ``evaluate_metrics`` of the starting
        model (``before``), of the model the device keeps (``after``) and of the fine-tuned one
        (``tuned``; it differs from ``after`` when validation kept the starting model);
        ``validation``: (loss before, loss after) on held-back training examples, if any."""
        rec = {**{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()}}
        if validation is not None:
            rec.update(val_loss_before=validation[0], val_loss_after=validation[1], kept_tuned=after is tuned)
        return rec

    def personal_mask(self, model) -> list[bool]:
        """Variables kept on the device by FedPer (Arivazhagan et al. 2019): the last layer's."""
        last = {id(v) for v in model.layers[-1].trainable_variables}
        return [id(v) in last for v in model.trainable_variables]


def sparse_ce(y, logits):
    """Per-example loss: cross-entropy averaged over any time axis."""
    import tensorflow as tf  # start-up time: the coordinator never loads TensorFlow

    loss = tf.keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    return tf.reshape(tf.reduce_mean(tf.reshape(loss, [tf.shape(loss)[0], -1]), axis=1), [-1])


def correct_fraction(y, logits):
    """Per-example accuracy, averaged over any time axis."""
    import tensorflow as tf  # start-up time: the coordinator never loads TensorFlow

    hit = tf.cast(tf.equal(tf.cast(tf.argmax(logits, -1), y.dtype), y), tf.float32)
    return tf.reduce_mean(tf.reshape(hit, [tf.shape(hit)[0], -1]), axis=1)


def layers_mask(model, strategy: str, choices: dict) -> list[bool]:
    """The trainable-variable mask of a personalization strategy: ``choices`` maps each
    strategy's name to the layers it fine-tunes (None: every variable); an unknown strategy is a
    ValueError naming the allowed ones."""
    if strategy not in choices:
        raise ValueError(f"unknown personalization strategy {strategy!r} (allowed: {', '.join(choices)})")
    if choices[strategy] is None:
        return [True] * len(model.trainable_variables)
    ids = {id(v) for layer in choices[strategy] for v in layer.trainable_variables}
    return [id(v) in ids for v in model.trainable_variables]


def register_task(name: str, cls: type | None = None):
    """Register ``cls`` under ``name`` in this process (also usable as a class decorator).
    Worker processes see registrations made through the ``fedpop.tasks`` entry points;
    for a class defined in a notebook, pass the class itself to `fedpop.build_process`."""
    def add(c):
        _REGISTERED[name] = c
        return c
    return add(cls) if cls is not None else add


def registered_names() -> list[str]:
    from importlib.metadata import entry_points

    return sorted(set(_REGISTERED) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def task_path(cls: type) -> str:
    """The import path that names ``cls`` in a config (``module:QualName``)."""
    for name, c in _REGISTERED.items():
        if c is cls:
            return name
    return f"{cls.__module__}:{cls.__qualname__}"


def resolve_task(spec) -> type:
    """The task class for a registered name, an import path ``module:Class`` or a class.
    Raises `TaskError` naming what is wrong: an unknown name, a module or attribute
    that cannot be imported, or a class missing a required method."""
    if inspect.isclass(spec):
        return check_task(spec)
    if not isinstance(spec, str) or not spec:
        raise TaskError(f"a task is a registered name, 'module:Class' or a class, not {spec!r}")
    if ":" in spec:
        try:
            obj = import_path(spec, "task")
        except RegistryError as e:
            raise TaskError(str(e)) from None
        if not inspect.isclass(obj):
            raise TaskError(f"task {spec!r}: {spec.partition(':')[2]!r} is not a class")
        return check_task(obj)
    if spec in _REGISTERED:
        return check_task(_REGISTERED[spec])
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == spec:
            return check_task(ep.load())
    raise TaskError(f"{spec!r} is not a registered task (allowed: {', '.join(registered_names())}, "
                    f"or an import path 'package.module:Class')")


def check_task(cls: type, needs_data: bool = False) -> type:
    """``cls`` if it provides the required methods, else `TaskError` naming the missing ones.
    ``device_data`` is required only when no federated dataset supplies the data (``needs_data``)."""
    missing = [m for m in REQUIRED if not callable(getattr(cls, m, None)) or getattr(cls, m) is getattr(Task, m, object())]
    if "build_model" in missing or (needs_data and missing):
        raise TaskError(f"task {cls.__module__}:{cls.__qualname__} is missing required "
                        f"method(s): {', '.join(missing)} (a task needs build_model, and device_data "
                        f"unless a federated dataset is given; the other methods have defaults)")
    cfg = getattr(cls, "Config", None)
    if cfg is not None and not dataclasses.is_dataclass(cfg):
        raise TaskError(f"task {cls.__qualname__}: Config must be a dataclass (or None)")
    _constructor(cls)
    return cls


def _constructor(cls: type) -> int:
    """How many arguments the engine passes to ``cls``: 2 (config, seed) or 0; else `TaskError`."""
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):  # a builtin or C-level constructor: assume the protocol's
        return 2
    for args in ((None, 0), ()):
        try:
            sig.bind(*args)
            return len(args)
        except TypeError:
            continue
    raise TaskError(f"task {cls.__module__}:{cls.__qualname__}: its constructor {sig} cannot be called as "
                    f"{cls.__name__}(config, seed) or {cls.__name__}()")


def with_defaults(cls: type) -> type:
    """``cls`` itself if it subclasses `Task`, else a subclass of ``cls`` and `Task`: the class's
    own methods first, `Task`'s defaults for the rest."""
    if issubclass(cls, Task):
        return cls
    return type(cls.__name__, (cls, Task), {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                            "__doc__": cls.__doc__})


def make_task(spec, config, seed: int):
    """Instantiate the task ``spec`` (name, path or class) with its config section: the
    constructor gets ``(config, seed)`` or nothing, and the instance ends up with ``config``
    and ``seed`` set and `Task`'s defaults (see the module docstring)."""
    cls = with_defaults(resolve_task(spec))
    given = _constructor(cls) == 2
    task = cls(config, seed) if given else cls()
    own = getattr(task, "__dict__", {})
    if not given or own.get("config") is None:
        task.config = config
    if not given or "seed" not in own:
        task.seed = seed
    return task


def model_with_weights(task, flat_weights):
    """The task's Keras model holding the engine's flat weight vector (e.g. a checkpoint)."""
    model = task.build_model()
    flat, offset = np.asarray(flat_weights, np.float32), 0
    for v in model.trainable_variables:
        n = int(np.prod(v.shape))
        v.assign(flat[offset:offset + n].reshape(v.shape))
        offset += n
    return model
