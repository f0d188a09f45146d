"""Shared builders for the engine tests (a module name no other conftest shadows)."""


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
