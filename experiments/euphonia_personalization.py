"""`fedpop run euphonia-personalization`: per-speaker fine-tuning of the base RNN-T on
atypical speakers' own devices, before/after WER on their held-out phrases.

Green et al. 2021, "Automatic Speech Recognition of Disordered Speech: Personalized
models outperforming human listeners" / "Personalized ASR Models from a Large and
Diverse Disordered Speech Dataset": fine-tune the bottom 5 of 8 encoder layers with
SpecAugment, keep the rest frozen; compared here with "all layers" and "top 3 layers".
The HighWER/LowWER analysis contrasts the top and bottom quintiles of WER before
personalization with Cohen's d per speaker trait.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from fl import checkpoint
from fl.results import write_json
from fl.runner import engine, train

STRATEGIES = ("bottom5", "all", "top3")
TRAITS = ("rate", "pitch", "pitch_range", "snr_db", "lowpass_hz", "repeat_p", "subst_p", "n_train")


def base_model(cfg, out_dir: Path, progress: bool) -> np.ndarray:
    """The base model: `task.base_checkpoint`'s weights, or else the fedavg-asr recipe on
    the same speakers trained into OUT/base (resumed, and reused once complete)."""
    from experiments.registry import CONFIGS
    from fl.config import ConfigError, load_yaml

    if cfg.task.base_checkpoint:
        state = checkpoint.load(cfg.task.base_checkpoint)
        if state is None:
            raise ConfigError(f"bad value for 'task.base_checkpoint': no checkpoint.npz in {cfg.task.base_checkpoint}")
        return state.weights
    run_dir = out_dir / "base"
    base_cfg = load_yaml(str(CONFIGS / "fedavg-asr.yaml"), [f"experiment.seed={cfg.experiment.seed}"])
    base_cfg = dataclasses.replace(base_cfg, task=dataclasses.replace(cfg.task, specaugment=False))
    state = checkpoint.load(run_dir)
    if state is None or state.round < base_cfg.experiment.rounds:
        with engine(base_cfg) as process:
            state, recorder = train(process, run_dir, progress)
        recorder.finish({"rounds": state.round, "note": "base model for euphonia-personalization"})
    return state.weights


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / max(len(a) + len(b) - 2, 1))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def quintile_effects(df: pd.DataFrame) -> pd.DataFrame:
    """HighWER (top quintile of WER before) vs LowWER (bottom quintile): Cohen's d per trait."""
    d = df[df["strategy"] == STRATEGIES[0]]
    hi = d[d["wer_before"] >= d["wer_before"].quantile(0.8)]
    lo = d[d["wer_before"] <= d["wer_before"].quantile(0.2)]
    return pd.DataFrame([{"trait": t, "high_wer_mean": hi[t].mean(), "low_wer_mean": lo[t].mean(),
                          "cohens_d": cohens_d(hi[t], lo[t])} for t in TRAITS if t in d])


def plots(df: pd.DataFrame, effects: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = df[df["strategy"] == STRATEGIES[0]]
    sev = [s for s in ("mild", "moderate", "severe") if s in set(d["severity"])]
    fig, ax = plt.subplots(figsize=(7, 4))
    data = [d.loc[d["severity"] == s, col].dropna() for s in sev for col in ("wer_before", "wer_after")]
    ax.boxplot(data)
    ax.set_xticks(range(1, len(data) + 1), [f"{s}\n{w}" for s in sev for w in ("before", "after")])
    ax.set_ylabel("WER")
    ax.set_title("WER before/after bottom-5 personalization, by severity")
    fig.tight_layout()
    fig.savefig(out / "wer_by_severity.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in STRATEGIES:
        w = np.sort(df.loc[df["strategy"] == strategy, "wer_after"].dropna())
        ax.step(w, np.arange(1, len(w) + 1) / max(len(w), 1), where="post", label=f"after ({strategy})")
    w = np.sort(d["wer_before"].dropna())
    ax.step(w, np.arange(1, len(w) + 1) / max(len(w), 1), where="post", label="before", color="k")
    ax.set_xlabel("per-speaker WER")
    ax.set_ylabel("fraction of speakers")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "wer_cdf.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.barh(effects["trait"], effects["cohens_d"])
    ax.set_xlabel("Cohen's d (HighWER vs LowWER quintile)")
    fig.tight_layout()
    fig.savefig(out / "quintile_cohens_d.png", dpi=110)
    plt.close(fig)


def summarize(df: pd.DataFrame) -> dict:
    out = {}
    for strategy, g in df.groupby("strategy"):
        rel = (g["wer_before"] - g["wer_after"]) / g["wer_before"].where(g["wer_before"] > 0)
        out[strategy] = {"median_wer_before": float(g["wer_before"].median()),
                         "median_wer_after": float(g["wer_after"].median()),
                         "median_relative_reduction": float(rel.median()),
                         "by_severity": {s: {"speakers": int(len(h)), "median_wer_before": float(h["wer_before"].median()),
                                             "median_wer_after": float(h["wer_after"].median())}
                                         for s, h in g.groupby("severity")}}
    return out


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    from clients.tasks import make_task

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = base_model(cfg, out, progress)
    task = make_task("asr", cfg.task, cfg.experiment.seed)
    meta = task.corpus.table()
    ids = np.arange(len(task.speakers), len(task.speakers) + len(task.atypical))
    if len(ids) == 0:
        from fl.config import ConfigError
        raise ConfigError("bad value for 'task.n_atypical': personalization needs atypical speakers (allowed: >= 1)")
    rows = []
    with engine(cfg) as process:
        ex = np.full(len(ids), 1, np.int32)
        for strategy in STRATEGIES:
            print(f"[euphonia] personalizing {len(ids)} speakers: {strategy}", flush=True)
            for res in process.pool.run(0, weights, ids, ex, "personalize", options={"strategy": strategy}):
                rows += res["records"]
    df = pd.DataFrame(rows)
    df["speaker"] = [task.speaker_for(d) for d in df["device_id"]]
    df = df.join(meta.drop(columns=["speaker_id"]), on="speaker")
    df.to_parquet(out / "speakers.parquet", index=False)
    effects = quintile_effects(df)
    effects.to_csv(out / "quintile_effects.csv", index=False)
    plots(df, effects, out)
    summary = {"speakers": int(len(ids)), "strategies": summarize(df),
               "failed": int((df["status"] == "failed").sum()),
               "quintile_cohens_d": dict(zip(effects["trait"], effects["cohens_d"]))}
    write_json(summary, out / "summary.json")
    return {k: v for k, v in summary.items()}
