"""A study's config: the engine's sections (fl.config) plus the study's own ``study`` section,
validated before any work. Studies with extra keys (gboard-handwriting, euphonia-data-scaling)
define a ``StudySection`` dataclass and a ``check`` and load through `load_study`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable


@dataclass
class StudyConfig:
    engine: object  # fl.config.Config of the federated training
    study: object   # the study's own section (a dataclass)

    def to_dict(self) -> dict:
        return {**self.engine.to_dict(), "study": dataclasses.asdict(self.study)}


def load_study(raw: dict, overrides: list[str], section: type, check: Callable[[StudyConfig], None]) -> StudyConfig:
    """The engine's config plus the ``study`` section built as ``section``, then ``check``ed."""
    from fl.config import build_section, load_config, merge, parse_overrides

    data = merge(raw or {}, parse_overrides(overrides or []))
    study = build_section(section, data.pop("study", None), "study.")
    workers = (data.pop("secagg", None) or {}).get("workers")  # the CLI's --workers for studies with load()
    if workers is not None:
        data = merge(data, {"workers": {"num": workers}})
    cfg = StudyConfig(load_config(data), study)
    check(cfg)
    return cfg
