import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("device-cache"))


@pytest.fixture
def ray_local():
    """One local Ray per test session (started lazily; a cluster test may replace it)."""
    import ray

    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    yield ray


def tiny_config(cache_dir, **sections):
    """A small, fast MLP configuration; `sections` override whole-section keys."""
    from fl.config import load_config

    raw = {
        "experiment": {"task": "mlp", "rounds": 3, "seed": 7},
        "population": {"size": 300, "examples_min": 20, "examples_max": 20, "dropout_per_hour": 0.0,
                       "eligible_prob": 1.0, "night_hours": 24},
        "cohort": {"goal": 8, "over_selection": 1.0, "min_reports": 4, "deadline_s": 1e6},
        "client": {"lr": 0.05, "batch_size": 5, "shuffle": False},
        "eval": {"every": 0},
        "workers": {"num": 2, "cache_dir": cache_dir},
        "task": {"input_dim": 12, "hidden": [8], "classes": 3},
    }
    if sections.get("experiment", {}).get("task", "mlp") != "mlp":
        raw["task"] = {}  # another task: its own keys only
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return load_config(raw)
