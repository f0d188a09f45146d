"""Evaluation of heavy-hitter results against simulator ground truth.

Ground truth (how many devices hold each item) is known only to the
simulator; server-side code never receives it.  For a ranked list of
discovered items ``D`` and the true top-k ``T_k`` (ties broken by name):

* recall@k    = |D ∩ T_k| / k          (all discovered items count)
* precision@k = |D_k ∩ T_k| / |D_k|    (D_k: the first k discovered items)
* F1@k        = harmonic mean of the two (0 when both are 0).

This follows Zhu et al. (AISTATS 2020, §5), who report recall/F1 of the
true top-k.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd


def true_top_k(truth: Mapping[str, int], k: int) -> list:
    items = sorted(((c, w) for w, c in truth.items() if c > 0), key=lambda t: (-t[0], str(t[1])))
    return [w for _, w in items[:k]]


def topk_metrics(discovered: Sequence, truth: Mapping[str, int], k: int) -> dict:
    if k < 1:
        raise ValueError("k must be >= 1")
    top = set(true_top_k(truth, k))
    kk = max(1, len(top))
    found = set(discovered)
    dk = list(discovered)[:k]
    recall = len(found & top) / kk
    precision = (len(set(dk) & top) / len(dk)) if dk else 0.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {f"recall@{k}": recall, f"precision@{k}": precision, f"f1@{k}": f1}


def heavy_hitter_table(discovered: Sequence, estimates: Mapping, truth: Mapping[str, int], *, method: str,
                       epsilon: float | None = None) -> pd.DataFrame:
    """One row per discovered item plus the true top items that were missed."""
    true_rank = {w: i + 1 for i, w in enumerate(true_top_k(truth, len(truth)))}
    rows = [{"method": method, "epsilon": epsilon, "item": str(w), "rank": i + 1, "estimate": estimates.get(w),
             "true_count": int(truth.get(w, 0)), "true_rank": true_rank.get(w), "discovered": True}
            for i, w in enumerate(discovered)]
    seen = set(discovered)
    for w in true_top_k(truth, max(10, len(discovered))):
        if w not in seen:
            rows.append({"method": method, "epsilon": epsilon, "item": str(w), "rank": None, "estimate": None,
                         "true_count": int(truth[w]), "true_rank": true_rank[w], "discovered": False})
    df = pd.DataFrame(rows)
    for col in ("rank", "true_rank", "estimate"):
        df[col] = df[col].astype("Int64")
    df["epsilon"] = df["epsilon"].astype("float64")
    return df


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_f1_vs_epsilon(curve: pd.DataFrame, path: Path, ks: Sequence[int], title: str) -> None:
    """``curve`` has columns epsilon and f1@k for each k."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for k in ks:
        ax.plot(curve["epsilon"], curve[f"f1@{k}"], "o-", label=f"F1@{k}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(curve["epsilon"]))
    ax.set_xticklabels([f"{e:g}" for e in curve["epsilon"]])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("epsilon")
    ax.set_ylabel("F1")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_top_items(labels: Sequence[str], secure: np.ndarray, truth: np.ndarray, path: Path, title: str) -> None:
    plt = _plt()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(7, 0.32 * n + 1.2))
    y = np.arange(n)[::-1]
    ax.barh(y + 0.2, secure, height=0.4, label="secure aggregate")
    ax.barh(y - 0.2, truth, height=0.4, label="ground truth", alpha=0.6)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel("recognitions")
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
