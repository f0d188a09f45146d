"""Task registry: a task = model + per-device data + loss. Tasks are built once per worker."""
from __future__ import annotations

from fl.config import ConfigError

_TASKS = {
    "charlm": ("clients.charlm", "CharLMTask"),
    "mlp": ("clients.mlp", "MLPTask"),
    "asr": ("clients.speech.task", "ASRTask"),
}


def _task_class(name: str):
    if name not in _TASKS:
        raise ConfigError(f"bad value for 'experiment.task': {name!r} (allowed: {', '.join(_TASKS)})")
    import importlib

    module, cls = _TASKS[name]
    return getattr(importlib.import_module(module), cls)


def task_config_class(name: str):
    return _task_class(name).Config


def make_task(name: str, task_config, seed: int):
    return _task_class(name)(task_config, seed)


def model_with_weights(task, flat_weights):
    """The task's Keras model holding the engine's flat weight vector (e.g. a checkpoint)."""
    import numpy as np

    model = task.build_model()
    flat, offset = np.asarray(flat_weights, np.float32), 0
    for v in model.trainable_variables:
        n = int(np.prod(v.shape))
        v.assign(flat[offset:offset + n].reshape(v.shape))
        offset += n
    return model
