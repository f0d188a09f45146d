"""Named, reproducible studies that `fedpop run NAME` knows."""
from __future__ import annotations

import importlib
from pathlib import Path

CONFIGS = Path(__file__).parent / "configs"

# name -> (module with run(cfg, out_dir, progress) -> summary, default config file).
# A module with load(raw, overrides) validates its own config (the analytics studies);
# the others use the federated-training sections of fl.config.
EXPERIMENTS = {
    "fedavg": ("experiments.fedavg_train", "fedavg.yaml"),  # any task: --set experiment.task=pkg.mod:Class
    "fedavg-charlm": ("experiments.fedavg_charlm", "fedavg-charlm.yaml"),
    "fedavg-mlp": ("experiments.fedavg_train", "mlp.yaml"),
    "fedavg-asr": ("experiments.fedavg_asr", "fedavg-asr.yaml"),
    "euphonia-personalization": ("experiments.euphonia_personalization", "euphonia-personalization.yaml"),
    "euphonia-data-scaling": ("experiments.euphonia_data_scaling", "euphonia-data-scaling.yaml"),
    "gboard-handwriting": ("experiments.gboard_handwriting", "gboard-handwriting.yaml"),
    "new-words": ("experiments.new_words", "new-words.yaml"),
    "now-playing": ("experiments.now_playing", "now-playing.yaml"),
    "trill-frill": ("experiments.trill_frill", "trill-frill.yaml"),
}


def names() -> list[str]:
    return sorted(EXPERIMENTS)


def lookup(name: str):
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment {name!r} (available: {', '.join(names())})")
    module, config = EXPERIMENTS[name]
    return importlib.import_module(module), CONFIGS / config
