"""`fedpop run euphonia-data-scaling`: how much of a speaker's own speech personalization needs.

The question of Shor et al. 2019 ("Personalizing ASR for Dysarthric and Accented Speech with
Limited Data"), asked where Green et al. 2021 measured their result (a median of 1,529
utterances per speaker): moderate and severe atypical speakers fine-tune the base RNN-T on
their own devices with the bottom-5 recipe on nested subsets of their training utterances
(60 ... 1,500: each size contains the smaller ones), and with all layers at two sizes for
contrast. Every run is scored on the speaker's fixed held-out phrases, which no subset
contains. The engine runs each speaker's learning curve in one device call
(``personalize`` with ``runs``); nothing but WERs and losses leaves a device.

The study's own keys are the ``study`` section; the rest is euphonia-personalization's config.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.study_config import StudyConfig, load_study
from fl.config import ConfigError, bounded

SEVERITIES = ("mild", "moderate", "severe")
STRATEGIES = ("bottom5", "all", "top3")


@dataclass
class StudySection:
    speakers: int = bounded(8, 1)  # atypical speakers, balanced across `severities` as far as the corpus allows
    severities: tuple[str, ...] = ("moderate", "severe")
    sizes: tuple[int, ...] = (60, 140, 400, 1000)  # training utterances per speaker (nested)
    strategy: str = "bottom5"
    contrast_strategy: str = "all"
    contrast_sizes: tuple[int, ...] = (140, 400)
    target_utterances: int = bounded(1529, 1)  # Green et al. 2021's median per speaker
    target_reduction: float = bounded(0.60, 0.0, 1.0)


def load(raw: dict, overrides: list[str]) -> StudyConfig:
    """The engine's config plus the ``study`` section, validated before any work."""
    return load_study(raw, overrides, StudySection, check)


def check(cfg: StudyConfig) -> None:
    """Named errors for a study that cannot run, before anything starts."""
    e, s = cfg.engine, cfg.study
    if e.experiment.task != "asr":
        raise ConfigError(f"bad value for 'experiment.task': {e.experiment.task!r} (allowed: asr)")
    bad = [v for v in s.severities if v not in SEVERITIES]
    if bad or not s.severities:
        raise ConfigError(f"bad value for 'study.severities': {list(s.severities)} (allowed: a non-empty "
                          f"subset of {', '.join(SEVERITIES)})")
    for key in ("strategy", "contrast_strategy"):
        if getattr(s, key) not in STRATEGIES:
            raise ConfigError(f"bad value for 'study.{key}': {getattr(s, key)!r} (allowed: {', '.join(STRATEGIES)})")
    for key in ("sizes", "contrast_sizes"):
        v = list(getattr(s, key))
        if any(int(n) < 1 for n in v) or v != sorted(set(v)) or (key == "sizes" and not v):
            raise ConfigError(f"bad value for 'study.{key}': {v} (allowed: increasing distinct sizes >= 1)")
    need = max([*s.sizes, *s.contrast_sizes])
    have = e.task.atypical_utterances or e.task.utterances_per_speaker
    if have * 0.85 < need:  # about 10% of phrases (with their repeats) are held out for testing
        raise ConfigError(f"bad value for 'task.atypical_utterances': {have} recordings per speaker leave fewer "
                          f"than the {need} training utterances of the largest size (allowed: >= "
                          f"{int(np.ceil(need / 0.85))})")
    if e.task.n_atypical < s.speakers:
        raise ConfigError(f"bad value for 'study.speakers': {s.speakers} (allowed: <= task.n_atypical = "
                          f"{e.task.n_atypical})")


def choose_speakers(table: pd.DataFrame, severities, count: int) -> list[str]:
    """``count`` atypical speakers of the given severities, taken in turn from each severity
    (in id order), so that the severities are balanced as far as the corpus allows."""
    pools = [list(table[(table["kind"] != "typical") & (table["severity"] == s)].index) for s in severities]
    chosen = []
    while len(chosen) < count and any(pools):
        for pool in pools:
            if pool and len(chosen) < count:
                chosen.append(pool.pop(0))
    if len(chosen) < count:
        raise ConfigError(f"bad value for 'study.speakers': {count} (allowed: <= {len(chosen)}, the atypical "
                          f"speakers of severity {', '.join(severities)} among task.n_atypical)")
    return chosen


def relative_reduction(df: pd.DataFrame) -> pd.Series:
    return (df["wer_before"] - df["wer_after"]) / df["wer_before"].where(df["wer_before"] > 0)


def curve_summary(curve: pd.DataFrame) -> list[dict]:
    """Median relative reduction (and WERs) per strategy and size, overall and per severity."""
    rows = []
    for (strategy, size), g in curve.groupby(["strategy", "size"]):
        row = {"strategy": strategy, "size": int(size), "speakers": int(len(g)),
               "median_utterances": float(g["utterances"].median()),
               "median_wer_before": float(g["wer_before"].median()),
               "median_wer_after": float(g["wer_after"].median()),
               "median_relative_reduction": float(relative_reduction(g).median()),
               "kept_base": int(g["kept_base"].fillna(False).astype(bool).sum()) if "kept_base" in g else 0}
        for sev, h in g.groupby("severity"):
            row[f"median_relative_reduction_{sev}"] = float(relative_reduction(h).median())
        rows.append(row)
    return rows


def targets(cfg: StudyConfig, by_size: list[dict], wall_s: float) -> dict:
    """Median relative reduction of the recipe at the largest size within the target
    utterances, and the study's wall time."""
    s = cfg.study
    ok = [r for r in by_size if r["strategy"] == s.strategy and r["size"] <= s.target_utterances]
    best = max(ok, key=lambda r: r["size"]) if ok else None
    value = best["median_relative_reduction"] if best else float("nan")
    return {
        "median_relative_reduction_within_target_utterances": {
            "value": value, "size": best["size"] if best else None, "target": f">= {s.target_reduction:.2f}",
            "met": bool(value >= s.target_reduction)},
        "study_wall_s": {"value": wall_s, "target": "<= 3600", "met": bool(wall_s <= 3600)},
    }


def plot(curve: pd.DataFrame, cfg: StudyConfig, path: Path) -> None:
    """Median relative WER reduction vs utterances: one line per severity (the recipe), points
    per speaker, and the contrast strategy dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    d = curve.assign(reduction=relative_reduction(curve))
    colors = {"mild": "tab:green", "moderate": "tab:orange", "severe": "tab:red"}
    for strategy, style in ((cfg.study.strategy, "-"), (cfg.study.contrast_strategy, "--")):
        g = d[d["strategy"] == strategy]
        for sev, h in g.groupby("severity"):
            med = h.groupby("size").agg(utterances=("utterances", "median"), reduction=("reduction", "median"))
            ax.plot(med["utterances"], med["reduction"], style, marker="o", color=colors.get(sev, "k"),
                    label=f"{sev}, {strategy} (median)")
            if strategy == cfg.study.strategy:
                ax.scatter(h["utterances"], h["reduction"], s=12, alpha=0.4, color=colors.get(sev, "k"))
    ax.axhline(cfg.study.target_reduction, color="grey", lw=0.8, ls=":", label="target")
    ax.axvline(cfg.study.target_utterances, color="grey", lw=0.8, ls="-.")
    ax.set_xscale("log")
    ax.set_xlabel("training utterances per speaker")
    ax.set_ylabel("relative WER reduction")
    ax.set_title("Personalization vs the speaker's amount of data")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(cfg: StudyConfig, out_dir: Path, progress: bool = True) -> dict:
    from tqdm import tqdm

    from experiments.euphonia_personalization import base_model
    from fl.results import write_json
    from fl.runner import engine
    from fl.task import make_task

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study_config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    e, s = cfg.engine, cfg.study
    weights, base = base_model(e, out, progress)
    t_base = time.perf_counter() - t0
    task = make_task("asr", e.task, e.experiment.seed)
    table = task.corpus.table()
    speakers = choose_speakers(table, s.severities, s.speakers)
    ids = np.array([task.speaker_index(sp) for sp in speakers])
    runs = [(n, s.strategy) for n in s.sizes] + [(n, s.contrast_strategy) for n in s.contrast_sizes]
    records = []
    with engine(e) as process:
        step = 2 * len(process.pool)  # two speakers per worker per call: progress as they finish
        bar = tqdm(total=len(ids), desc="learning curves", unit="speaker", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for lo in range(0, len(ids), step):
            chunk = ids[lo:lo + step]
            for res in process.pool.run(0, weights, chunk, np.ones(len(chunk), np.int32), "personalize",
                                        options={"runs": runs}):
                records += res["records"]
            bar.update(len(chunk))
        bar.close()
    df = pd.DataFrame(records)
    df["speaker"] = [task.speaker_for(d) for d in df["device_id"]]
    df = df.rename(columns={"requested_examples": "size", "train_examples": "utterances"})
    meta = table[["severity", "condition", "n_train", "n_test"]]
    curve = df.join(meta, on="speaker")
    failed = int((curve["status"] != "accepted").sum())
    keep = ["speaker", "severity", "utterances", "size", "strategy", "wer_before", "wer_after", "finetuned_wer",
            "kept_base", "test_words", "train_loss", "compute_s", "status", "error", "device_id", "n_train",
            "condition"]
    curve = curve[[c for c in keep if c in curve]]
    curve.to_parquet(out / "curve.parquet", index=False)
    ok = curve[curve["status"] == "accepted"]
    by_size = curve_summary(ok)
    plot(ok, cfg, out / "learning_curve.png")
    wall_s = time.perf_counter() - t0
    summary = {"speakers": speakers, "severity": {sp: str(table.loc[sp, "severity"]) for sp in speakers},
               "runs": [list(r) for r in runs], "failed": failed, "curve": by_size,
               "base_model": {k: base.get(k) for k in ("heldout_wer", "heldout_utterances", "rounds")},
               "base_s": t_base, "wall_s": wall_s, "targets": targets(cfg, by_size, wall_s)}
    write_json(summary, out / "summary.json")
    return summary
