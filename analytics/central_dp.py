"""Central DP release of item counts: Gaussian noise plus a release threshold.

For counts where each device adds at most 1 to at most ``max_items`` items
(L0 <= max_items, Linf <= 1, so L2 sensitivity sqrt(max_items)), the server
adds N(0, sigma^2) to every decoded count and releases only items whose noisy
count reaches ``tau`` ("Gaussian thresholding", Wilson et al., "Differentially
Private SQL with Bounded User Contribution", PoPETs 2020; Korolova et al.
2009).  The delta budget is split evenly: ``delta/2`` for the Gaussian
mechanism on the released counts (sigma calibrated with dp_accounting's RDP
accountant via :func:`secagg.dp.epsilon`) and ``delta/2`` for the chance that
an item held by a single device crosses the threshold
(``max_items * P[1 + N(0, sigma^2) >= tau] <= delta/2``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class DPRelease:
    epsilon: float  # the epsilon sigma achieves (<= the target)
    delta: float
    sigma: float
    tau: float
    max_items: int

    def as_dict(self) -> dict:
        return {"dp_epsilon": self.epsilon, "dp_delta": self.delta, "dp_sigma": self.sigma, "dp_tau": self.tau,
                "dp_max_items_per_device": self.max_items}


def gaussian_epsilon(sigma: float, l2_sensitivity: float, delta: float) -> float:
    """ε of one Gaussian release (fl.privacy, the project's one accountant)."""
    from fl.privacy import gaussian_epsilon as epsilon

    return epsilon(sigma / l2_sensitivity, delta)


def calibrate(epsilon: float, delta: float, max_items: int) -> DPRelease:
    """Smallest sigma (bisection) with epsilon(sigma) <= ``epsilon``, and its threshold."""
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    sens = math.sqrt(max_items)
    lo, hi = 1e-3, 1.0
    while gaussian_epsilon(hi, sens, delta / 2) > epsilon:
        hi *= 2
        if hi > 1e7:
            raise ValueError(f"no sigma reaches epsilon={epsilon} at delta={delta}")
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        if gaussian_epsilon(mid, sens, delta / 2) > epsilon:
            lo = mid
        else:
            hi = mid
    sigma = hi
    tau = 1.0 + sigma * NormalDist().inv_cdf(1.0 - delta / (2 * max_items))
    return DPRelease(epsilon=gaussian_epsilon(sigma, sens, delta / 2), delta=delta, sigma=sigma, tau=tau,
                     max_items=max_items)


def release(counts: dict, dp: DPRelease, rng: np.random.Generator) -> dict:
    """Noisy counts of the items whose noisy count reaches ``dp.tau`` (rounded)."""
    keys = sorted(counts)
    noisy = np.array([counts[k] for k in keys], np.float64) + rng.normal(0.0, dp.sigma, len(keys))
    return {k: int(round(v)) for k, v in zip(keys, noisy) if v >= dp.tau}
