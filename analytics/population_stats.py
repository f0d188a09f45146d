"""Population-level summaries of a per-device metric via secure histograms.

"Federated Analytics" (Ramage & Mazzocchi 2020) and Bonawitz et al. 2019
(federated evaluation) summarise on-device model quality across the
population without collecting per-device values.  Each device clips its
metric to ``[lo, hi]`` and sends one vector: a one-hot over ``bins``
equal-width bins, followed by its value in fixed point
(``round((v - lo) / (hi - lo) * scale)``).  The vectors are summed with
SecAgg (:func:`analytics.secure_histogram.secure_sum`), so the server learns
only the histogram and the sum:

* count and mean (exact up to the fixed-point step ``(hi - lo) / scale``),
* quantiles by linear interpolation inside the histogram's bins (error at
  most one bin width, ``(hi - lo) / bins``),
* the histogram itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .secure_histogram import SecAggSettings, secure_sum


@dataclass
class PopulationStats:
    count: int
    mean: float
    quantiles: dict  # q -> value
    histogram: np.ndarray
    bin_edges: np.ndarray
    secagg: dict

    def as_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean,
                **{f"q{int(round(q * 100)):02d}": v for q, v in self.quantiles.items()},
                "bins": len(self.histogram), "lo": float(self.bin_edges[0]), "hi": float(self.bin_edges[-1])}


@dataclass(frozen=True)
class StatsEncoder:
    """Device-side encoding and server-side decoding of one clipped metric.

    A study may append :meth:`encode`'s columns to a larger per-device vector
    (e.g. a histogram it sums anyway) and :meth:`decode` its slice of the sum.
    """
    lo: float
    hi: float
    bins: int = 50
    scale: int = 1 << 16

    def __post_init__(self):
        if not self.hi > self.lo:
            raise ValueError(f"need hi > lo, got [{self.lo}, {self.hi}]")
        if self.bins < 1 or self.scale < 1:
            raise ValueError("bins and scale must be >= 1")

    @property
    def width(self) -> int:
        return self.bins + 1

    def encode(self, values: np.ndarray) -> np.ndarray:
        """What each device sends: one-hot bin of its clipped value, then the value in fixed point."""
        v = np.asarray(values, np.float64)
        if not np.all(np.isfinite(v)):
            raise ValueError("values must be finite")
        v = np.clip(v, self.lo, self.hi)
        idx = np.minimum(((v - self.lo) / (self.hi - self.lo) * self.bins).astype(np.int64), self.bins - 1)
        out = np.zeros((len(v), self.width), np.uint32)
        out[np.arange(len(v)), idx] = 1
        out[:, self.bins] = np.rint((v - self.lo) / (self.hi - self.lo) * self.scale).astype(np.uint32)
        return out

    def decode(self, total: np.ndarray, quantiles=(0.1, 0.25, 0.5, 0.75, 0.9), secagg: dict | None = None):
        total = np.asarray(total)
        hist = total[: self.bins].astype(np.int64)
        count = int(hist.sum())
        edges = np.linspace(self.lo, self.hi, self.bins + 1)
        mean = (float(self.lo + (self.hi - self.lo) * float(total[self.bins]) / self.scale / count)
                if count else float("nan"))
        qs = {float(q): histogram_quantile(hist, edges, q) for q in quantiles}
        return PopulationStats(count=count, mean=mean, quantiles=qs, histogram=hist, bin_edges=edges,
                               secagg=secagg or {})


def histogram_quantile(hist: np.ndarray, edges: np.ndarray, q: float) -> float:
    """Quantile from bin counts, linear inside the bin (error <= one bin width)."""
    total = hist.sum()
    if total == 0:
        return float("nan")
    cum = np.cumsum(hist)
    target = q * total
    i = int(np.searchsorted(cum, target, side="left"))
    i = min(i, len(hist) - 1)
    before = cum[i - 1] if i > 0 else 0
    frac = 0.0 if hist[i] == 0 else (target - before) / hist[i]
    return float(edges[i] + frac * (edges[i + 1] - edges[i]))


def population_stats(values: np.ndarray, *, lo: float, hi: float, bins: int = 50,
                     quantiles=(0.1, 0.25, 0.5, 0.75, 0.9), scale: int = 1 << 16,
                     settings: SecAggSettings = SecAggSettings(), seed: int = 0, tag=(), pool=None) -> PopulationStats:
    """Securely summarise one value per device (``values[i]`` lives on device i)."""
    values = np.asarray(values, np.float64)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"need one value per device for at least 2 devices, got shape {values.shape}")
    enc = StatsEncoder(lo, hi, bins, scale)
    group = max(min(settings.group_size, len(values)), 2)
    res = secure_sum(enc.encode(values), settings=settings, seed=seed, tag=("popstats", *tag), pool=pool,
                     max_total=scale * 2 * group)
    return enc.decode(res.total, quantiles, res.summary())
