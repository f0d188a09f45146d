"""Named, reproducible studies that `fedpop run NAME` knows.

A study registers under the ``fedpop.studies`` entry-point group (pyproject.toml), as tasks,
algorithms and aggregators do: its name points at a module with ``run(cfg, out_dir, progress)
-> summary`` (and ``load(raw, overrides)`` when it validates its own config, as the analytics
studies do; the others use the federated-training sections of fl.config).  Its default config
is ``configs/<name>.yaml``.
"""
from __future__ import annotations

from pathlib import Path

from fl.registry import RegistryError
from fl.registry import lookup as lookup_entry
from fl.registry import names as entry_names

CONFIGS = Path(__file__).parent / "configs"
ENTRY_POINT_GROUP = "fedpop.studies"


def names() -> list[str]:
    return entry_names(ENTRY_POINT_GROUP)


def config_of(name: str) -> Path:
    return CONFIGS / f"{name}.yaml"


def lookup(name: str):
    """(study module, its default config file)."""
    if ":" in name or name not in names():
        raise KeyError(f"unknown experiment {name!r} (available: {', '.join(names())})")
    try:
        return lookup_entry(ENTRY_POINT_GROUP, name, "study"), config_of(name)
    except RegistryError as e:
        raise KeyError(str(e)) from None
