"""A lazy population of simulated phones: every trait is a pure function of (seed, device id).

Nothing is stored per device.  A device's locale, time zone, compute speed, bandwidths,
example count, availability window, eligibility probability and dropout hazard are drawn
when asked for, vectorized over the ids asked, from a counter-based hash of
(seed, trait, device id) (`fl.seeding.stream_uniform`) pushed through the trait's inverse
CDF.  Building a population is O(1) and its memory does not depend on its size, so a
billion devices cost what a thousand do; cohort selection (fl/cohort.py) draws ids and
checks eligibility on the fly (rejection sampling), so a round costs O(cohort).  Gboard
samples a few thousand phones out of hundreds of millions (Bonawitz et al. 2019,
"Towards Federated Learning at Scale"); this is how the simulator gets there.

Population-wide figures come from closed forms over the trait laws, never from a pass over
the devices: `eligible_fraction` (eligible share at a simulated time), `eligible_count`
(the pool a fixed-size cohort is accounted with, a conservative lower bound),
`mean_examples` / `total_examples`.  `frame()` returns every device for populations up to
`FRAME_SAMPLE` devices and an evenly spaced sample of that many ids beyond (the traits are
i.i.d. over ids by construction, so a fixed id set is a simple random sample in law).

A user's dataset (``num_examples``, fl/data.py) keeps its explicit client list: its size
and per-client example counts are the data's, the other traits stay simulated.

Two availability models (``population.availability``):

- phone (Bonawitz et al. 2019): devices check in when idle, charging and on an unmetered
  network, mostly during the local night, so the eligible population follows the sun;
  devices drop out at a per-device hazard;
- always: every device is eligible at every moment and never drops out (a user's own
  dataset, where every client is expected to take part; the default for one).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from fl.config import PopulationSection
from fl.seeding import hash_uniform, stream_uniform

# (name, UTC offset in hours, share of the population)
LOCALES = (
    ("en_US", -6.0, 0.30), ("en_GB", 0.0, 0.10), ("de_DE", 1.0, 0.10), ("fr_FR", 1.0, 0.08),
    ("hi_IN", 5.5, 0.15), ("ja_JP", 9.0, 0.09), ("pt_BR", -3.0, 0.10), ("en_AU", 10.0, 0.08),
)
_SHARES = np.array([s for _, _, s in LOCALES]) / sum(s for _, _, s in LOCALES)
_LOCALE_CDF = np.cumsum(_SHARES)
_TZ = np.array([o for _, o, _ in LOCALES], np.float32)

TRAITS = ("locale", "tz_offset_h", "compute_speed", "down_bps", "up_bps", "num_examples", "night_start_h",
          "eligible_prob", "dropout_per_hour")
# frame() of a larger population is an evenly spaced sample of this many devices
FRAME_SAMPLE = 1_000_000
# np.asarray(population.columns[name]) materializes a whole column: refused beyond this size
MATERIALIZE_MAX = 50_000_000


class Population:
    """Device traits computed on demand from (seed, device id); ids are 0 .. size-1."""

    def __init__(self, config: PopulationSection, seed: int, size: int | None = None,
                 num_examples: np.ndarray | None = None, always_available: bool = False):
        self.config = config
        self.seed = int(seed)
        self._examples = None if num_examples is None else np.asarray(num_examples).astype(np.int32)
        self.size = int(len(self._examples) if self._examples is not None else
                        (config.size if size is None else size))
        self.always_available = always_available
        p = float(config.eligible_prob)
        self._beta = (8 * p + 1e-3, 8 * (1 - p) + 1e-3)
        self.columns = Columns(self)

    @property
    def availability(self) -> str:
        """The model in force: "always" or "phone" (``population.availability`` "auto" resolved)."""
        return "always" if self.always_available else "phone"

    @classmethod
    def build(cls, config: PopulationSection, seed: int, num_examples: np.ndarray | None = None) -> "Population":
        """Simulated devices (O(1): nothing is drawn until asked for); ``num_examples`` (a
        user's federated dataset's client sizes, fl/data.py) fixes the device count and
        example counts, the rest stays simulated.  ``config.availability`` "auto" is
        "always" with ``num_examples``, else "phone"."""
        mode = getattr(config, "availability", "phone")
        always = mode == "always" or (mode == "auto" and num_examples is not None)
        return cls(config, seed, num_examples=num_examples, always_available=always)

    def __len__(self) -> int:
        return self.size

    # -- per-device traits -------------------------------------------------------------
    def _u(self, name: str, ids: np.ndarray) -> np.ndarray:
        return stream_uniform(self.seed, "population/" + name, ids)

    def _lognormal(self, name: str, ids: np.ndarray, median: float, sigma: float) -> np.ndarray:
        from scipy.special import ndtri

        return np.exp(math.log(median) + sigma * ndtri(self._u(name, ids)))

    def trait(self, name: str, ids: np.ndarray) -> np.ndarray:
        """One trait for ``ids`` (an int array), vectorized; O(len(ids))."""
        from scipy.special import betaincinv, gammaincinv, ndtri

        ids = self._check_ids(ids)
        c = self.config
        if name == "locale":
            u = self._u("locale", ids)
            return np.minimum(np.searchsorted(_LOCALE_CDF, u, side="right"), len(LOCALES) - 1).astype(np.uint8)
        if name == "tz_offset_h":
            return _TZ[self.trait("locale", ids)]
        if name == "compute_speed":  # examples processed per second on device (a step costs ~ an inference)
            return self._lognormal(name, ids, 40.0, 0.6).astype(np.float32)
        if name == "down_bps":
            return self._lognormal(name, ids, 2.0e6, 0.8).astype(np.float32)
        if name == "up_bps":
            return self._lognormal(name, ids, 0.6e6, 0.8).astype(np.float32)
        if name == "num_examples":
            if self._examples is not None:
                return self._examples[ids]
            ex = self._lognormal(name, ids, c.examples_median, c.examples_sigma)
            return np.clip(np.rint(ex), c.examples_min, c.examples_max).astype(np.int32)
        if name == "night_start_h":
            return ((c.night_start_hour + ndtri(self._u(name, ids))) % 24.0).astype(np.float32)
        if name == "eligible_prob":
            return np.clip(betaincinv(*self._beta, self._u(name, ids)), 0, 1).astype(np.float32)
        if name == "dropout_per_hour":  # Gamma(shape 2, mean dropout_per_hour)
            return (gammaincinv(2.0, self._u(name, ids)) * (c.dropout_per_hour / 2.0)).astype(np.float32)
        raise KeyError(f"unknown device trait {name!r} (known: {', '.join(TRAITS)})")

    def traits(self, ids: np.ndarray, names=TRAITS) -> dict[str, np.ndarray]:
        ids = self._check_ids(ids)
        return {k: self.trait(k, ids) for k in names}

    def _check_ids(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if ids.dtype == bool:
            ids = np.flatnonzero(ids)
        ids = ids.astype(np.int64, copy=False)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise IndexError(f"device ids must be in [0, {self.size}), got [{ids.min()}, {ids.max()}]")
        return ids

    # -- availability --------------------------------------------------------------------
    def eligible(self, device_ids: np.ndarray, t_sim: float) -> np.ndarray:
        """Whether devices are idle, charging and unmetered at simulated time t (seconds)
        (always true when the population is always available).  A device is in its nightly
        window, and on that night (a per-(device, day) coin) it checks in with its own
        ``eligible_prob``; the costlier trait is drawn only for devices in their window."""
        ids = self._check_ids(device_ids)
        if self.always_available:
            return np.ones(len(ids), bool)
        hours = t_sim / 3600.0 + self.trait("tz_offset_h", ids) - self.trait("night_start_h", ids)
        out = (hours % 24.0) < self.config.night_hours
        w = np.flatnonzero(out)
        day = np.floor(hours[w] / 24.0).astype(np.int64)
        out[w] = hash_uniform(self.seed, ids[w], day) < self.trait("eligible_prob", ids[w])
        return out

    def window_fraction(self, t_sim: float) -> float:
        """Share of devices inside their nightly window at t (closed form): a device of time
        zone o is inside when ((t + o - s) mod 24) < H, s = night_start_hour + z, z ~ N(0, 1),
        so P = sum_k Phi(d + 24k) - Phi(d - H + 24k), d = (t + o - night_start_hour) mod 24."""
        from scipy.special import ndtr

        h = float(self.config.night_hours)
        if h >= 24.0:
            return 1.0
        k = np.arange(-3, 4) * 24.0
        total = 0.0
        for share, (_, tz, _) in zip(_SHARES, LOCALES):
            d = (t_sim / 3600.0 + tz - self.config.night_start_hour) % 24.0
            total += share * float(np.sum(ndtr(d + k) - ndtr(d - h + k)))
        return min(max(total, 0.0), 1.0)

    def eligible_fraction(self, t_sim: float) -> float:
        """Expected share of the population eligible at t (closed form): every device's
        eligibility is an independent Bernoulli of this mean, since its window, its nightly
        coin and its Beta(a, b) ``eligible_prob`` (mean a / (a + b)) are independent streams."""
        if self.always_available:
            return 1.0
        a, b = self._beta
        return self.window_fraction(t_sim) * a / (a + b)

    def eligible_count(self, t_sim: float) -> int:
        """The eligible pool at t for privacy accounting, never optimistic: the count is
        Binomial(size, f) with f = `eligible_fraction`, and this is its mean less three
        standard deviations (a smaller pool is a larger sampling rate, so a larger ε).  At
        a billion devices the margin is ~1e-4 relative; the exact count would need a pass
        over every device."""
        if self.always_available:
            return self.size
        f = self.eligible_fraction(t_sim)
        mean = self.size * f
        return max(int(math.floor(mean - 3.0 * math.sqrt(mean * (1.0 - f)))), 0)

    # -- population-wide figures ----------------------------------------------------------
    def mean_examples(self) -> float:
        """E[num_examples] (closed form over the clipped, rounded log-normal; exact mean of
        the explicit counts of a user's dataset)."""
        if self._examples is not None:
            return float(self._examples.mean()) if self.size else 0.0
        from scipy.special import ndtr

        c = self.config
        lo, hi = int(c.examples_min), int(c.examples_max)
        mu, s = math.log(c.examples_median), max(float(c.examples_sigma), 1e-12)
        k = np.arange(lo, hi + 1, dtype=np.float64)
        upper = np.where(k == hi, np.inf, np.log(k + 0.5))
        lower = np.where(k == lo, -np.inf, np.log(np.maximum(k - 0.5, 1e-300)))
        p = ndtr((upper - mu) / s) - ndtr((lower - mu) / s)
        return float(np.sum(k * p))

    def total_examples(self) -> float:
        return self.size * self.mean_examples()

    def sample_ids(self, n: int) -> np.ndarray:
        """``min(n, size)`` evenly spaced device ids (all ids when n >= size): a documented
        sample for population-wide tables (traits are i.i.d. over ids by construction)."""
        n = min(int(n), self.size)
        if n >= self.size:
            return np.arange(self.size, dtype=np.int64)
        return (np.arange(n, dtype=np.int64) * self.size) // n

    def frame(self, device_ids: np.ndarray | None = None) -> pd.DataFrame:
        """Traits of ``device_ids`` as a table; without ids, every device up to
        `FRAME_SAMPLE` devices and an evenly spaced sample of that many beyond (then
        ``df.attrs["sample"]`` says so)."""
        ids = self.sample_ids(FRAME_SAMPLE) if device_ids is None else self._check_ids(device_ids)
        df = pd.DataFrame(self.traits(ids))
        df.insert(0, "device_id", ids)
        df["locale"] = pd.Categorical.from_codes(df["locale"], [name for name, _, _ in LOCALES])
        if device_ids is None and len(ids) < self.size:
            df.attrs["sample"] = f"{len(ids):,} evenly spaced devices of {self.size:,}"
        return df

    def nbytes(self) -> int:
        """Bytes the population holds: none per simulated device (only a dataset's example counts)."""
        return 0 if self._examples is None else int(self._examples.nbytes)


class Column:
    """One trait as an array-like: ``column[ids]`` computes it for those ids; ``np.asarray``
    materializes every device (refused beyond `MATERIALIZE_MAX`)."""

    def __init__(self, pop: Population, name: str):
        self.pop, self.name = pop, name

    def __len__(self) -> int:
        return self.pop.size

    def __getitem__(self, key):
        if isinstance(key, slice):
            return self.pop.trait(self.name, np.arange(*key.indices(self.pop.size)))
        if np.ndim(key) == 0:
            return self.pop.trait(self.name, np.array([int(key)]))[0]
        return self.pop.trait(self.name, key)

    def __array__(self, dtype=None, copy=None):
        if self.pop.size > MATERIALIZE_MAX:
            raise MemoryError(f"population.columns[{self.name!r}] of {self.pop.size:,} devices is computed per id: "
                              "index it with the ids needed")
        out = self.pop.trait(self.name, np.arange(self.pop.size))
        return out if dtype is None else out.astype(dtype)


class Columns(Mapping):
    """``population.columns[name]``: a lazy `Column` per trait."""

    def __init__(self, pop: Population):
        self._pop = pop

    def __getitem__(self, name: str) -> Column:
        if name not in TRAITS:
            raise KeyError(f"unknown device trait {name!r} (known: {', '.join(TRAITS)})")
        return Column(self._pop, name)

    def __iter__(self):
        return iter(TRAITS)

    def __len__(self) -> int:
        return len(TRAITS)
