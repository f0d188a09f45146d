"""A population of simulated phones stored as numpy columns (1M devices in ~40 MB).

Two availability models (``population.availability``):

- phone (Bonawitz et al. 2019, "Towards Federated Learning at Scale"): devices check in
  when idle, charging and on an unmetered network, mostly during the local night, so the
  eligible population follows the sun; devices drop out at a per-device hazard;
- always: every device is eligible at every moment and never drops out (a user's own
  dataset, where every client is expected to take part; the default for one).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from fl.config import PopulationSection
from fl.seeding import hash_uniform, rng_for

# (name, UTC offset in hours, share of the population)
LOCALES = (
    ("en_US", -6.0, 0.30), ("en_GB", 0.0, 0.10), ("de_DE", 1.0, 0.10), ("fr_FR", 1.0, 0.08),
    ("hi_IN", 5.5, 0.15), ("ja_JP", 9.0, 0.09), ("pt_BR", -3.0, 0.10), ("en_AU", 10.0, 0.08),
)


class Population:
    """Device traits as columns; index = device id. Built vectorized from (seed, config)."""

    def __init__(self, columns: dict[str, np.ndarray], config: PopulationSection, seed: int,
                 always_available: bool = False):
        self.columns = columns
        self.config = config
        self.seed = seed
        self.size = len(columns["locale"])
        self.always_available = always_available

    @property
    def availability(self) -> str:
        """The model in force: "always" or "phone" (``population.availability`` "auto" resolved)."""
        return "always" if self.always_available else "phone"

    @classmethod
    def build(cls, config: PopulationSection, seed: int, num_examples: np.ndarray | None = None) -> "Population":
        """Simulated devices; ``num_examples`` (a user's federated dataset's client sizes,
        fl/data.py) fixes the device count and example counts, the rest stays simulated.
        ``config.availability`` "auto" is "always" with ``num_examples``, else "phone"."""
        n = config.size if num_examples is None else len(num_examples)
        rng = rng_for(seed, "population")
        shares = np.array([s for _, _, s in LOCALES])
        locale = rng.choice(len(LOCALES), size=n, p=shares / shares.sum()).astype(np.uint8)
        examples = np.exp(rng.normal(np.log(config.examples_median), config.examples_sigma, n))
        cols = {
            "locale": locale,
            "tz_offset_h": np.array([o for _, o, _ in LOCALES], np.float32)[locale],
            # examples processed per second on device (a training step costs ~ an inference)
            "compute_speed": np.exp(rng.normal(np.log(40.0), 0.6, n)).astype(np.float32),
            "down_bps": np.exp(rng.normal(np.log(2.0e6), 0.8, n)).astype(np.float32),
            "up_bps": np.exp(rng.normal(np.log(0.6e6), 0.8, n)).astype(np.float32),
            "num_examples": (np.clip(np.rint(examples), config.examples_min, config.examples_max)
                             if num_examples is None else np.asarray(num_examples)).astype(np.int32),
            "night_start_h": (config.night_start_hour + rng.normal(0, 1.0, n)).astype(np.float32) % 24,
            "eligible_prob": np.clip(rng.beta(8 * config.eligible_prob + 1e-3,
                                              8 * (1 - config.eligible_prob) + 1e-3, n), 0, 1).astype(np.float32),
            "dropout_per_hour": rng.gamma(2.0, config.dropout_per_hour / 2.0, n).astype(np.float32),
        }
        mode = getattr(config, "availability", "phone")
        always = mode == "always" or (mode == "auto" and num_examples is not None)
        return cls(cols, config, seed, always_available=always)

    def __len__(self) -> int:
        return self.size

    def eligible(self, device_ids: np.ndarray, t_sim: float) -> np.ndarray:
        """Whether devices are idle, charging and unmetered at simulated time t (seconds)
        (always true when the population is always available)."""
        if self.always_available:
            return np.ones(len(device_ids), bool)
        c = self.columns
        local_h = (t_sim / 3600.0 + c["tz_offset_h"][device_ids]) % 24.0
        since_start = (local_h - c["night_start_h"][device_ids]) % 24.0
        in_window = since_start < self.config.night_hours
        day = np.floor((t_sim / 3600.0 + c["tz_offset_h"][device_ids]
                        - c["night_start_h"][device_ids]) / 24.0).astype(np.int64)
        coin = hash_uniform(self.seed, device_ids.astype(np.int64), day)
        return in_window & (coin < c["eligible_prob"][device_ids])

    def frame(self, device_ids: np.ndarray | None = None) -> pd.DataFrame:
        ids = np.arange(self.size) if device_ids is None else np.asarray(device_ids)
        df = pd.DataFrame({k: v[ids] for k, v in self.columns.items()})
        df.insert(0, "device_id", ids)
        df["locale"] = pd.Categorical.from_codes(df["locale"], [name for name, _, _ in LOCALES])
        return df

    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.columns.values())
