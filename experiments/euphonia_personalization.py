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

from pathlib import Path

import numpy as np
import pandas as pd

from fl import checkpoint
from fl.results import write_json
from fl.runner import engine

STRATEGIES = ("bottom5", "all", "top3")
TRAITS = ("rate", "pitch", "pitch_range", "snr_db", "lowpass_hz", "repeat_p", "subst_p", "n_train")


MODEL_FIELDS = ("encoder_layers", "encoder_units", "pred_units", "joint_units", "input_stack", "input_stride",
                "reduction_after", "residual")


def base_model(cfg, out_dir: Path, progress: bool) -> tuple[np.ndarray, dict]:
    """The base model and its summary: `task.base_checkpoint`'s weights (a fedavg-asr run
    directory), or else the fedavg-asr recipe (its own config, this seed) trained into
    OUT/base, resumed if interrupted and reused once complete."""
    import json

    from experiments import fedavg_asr
    from experiments.registry import CONFIGS
    from fl.config import ConfigError, load_yaml

    run_dir = Path(cfg.task.base_checkpoint or out_dir / "base")
    base_cfg = load_yaml(str(CONFIGS / "fedavg-asr.yaml"), [f"experiment.seed={cfg.experiment.seed}"])
    saved = run_dir / "config.yaml"
    if saved.exists():
        base_cfg = fedavg_asr_config(saved)
    shape = lambda t: {**{f: getattr(t, f) for f in MODEL_FIELDS}, "ctc_head": t.ctc_weight > 0}  # noqa: E731
    differ = [f for f, v in shape(base_cfg.task).items() if shape(cfg.task)[f] != v]
    if differ:
        raise ConfigError(f"bad value for 'task.{differ[0]}': the base model in {run_dir} has "
                          f"{differ[0]}={shape(base_cfg.task)[differ[0]]} (allowed: the base model's architecture)")
    state, summary_path = checkpoint.load(run_dir), run_dir / "summary.json"
    if cfg.task.base_checkpoint:
        if state is None:
            raise ConfigError(f"bad value for 'task.base_checkpoint': no checkpoint.npz in {run_dir}")
    elif state is None or state.round < base_cfg.experiment.rounds or not summary_path.exists():
        print(f"[euphonia] training the base model (fedavg-asr) into {run_dir}", flush=True)
        fedavg_asr.run(base_cfg, run_dir, progress)
        state = checkpoint.load(run_dir)
    return state.weights, (json.loads(summary_path.read_text()) if summary_path.exists() else {})


def fedavg_asr_config(path: Path):
    import yaml

    from fl.config import load_config

    return load_config(yaml.safe_load(path.read_text()))


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / max(len(a) + len(b) - 2, 1))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def quintile_effects(df: pd.DataFrame) -> pd.DataFrame:
    """HighWER (top quintile of WER before) vs LowWER (bottom quintile): Cohen's d per trait."""
    d = overall(df, STRATEGIES[0])
    hi = d[d["wer_before"] >= d["wer_before"].quantile(0.8)]
    lo = d[d["wer_before"] <= d["wer_before"].quantile(0.2)]
    return pd.DataFrame([{"trait": t, "high_wer_mean": hi[t].mean(), "low_wer_mean": lo[t].mean(),
                          "cohens_d": cohens_d(hi[t], lo[t])} for t in TRAITS if t in d])


def overall(df: pd.DataFrame, strategy: str | None = None) -> pd.DataFrame:
    """One row per speaker (and strategy): the WERs over all of a speaker's held-out phrases."""
    d = df[df["domain"] == "all"]
    return d if strategy is None else d[d["strategy"] == strategy]


def long_rows(records: list[dict]) -> list[dict]:
    """Device records (wer_before, wer_home_before, ...) -> one row per speaker, strategy and
    domain, domain "all" being every held-out phrase of the speaker."""
    from clients.speech.prompts import DOMAINS

    rows = []
    for rec in records:
        base = {k: v for k, v in rec.items() if not k.startswith(("wer_", "test_words"))}
        for dom in ("all", *DOMAINS):
            sfx = "" if dom == "all" else f"_{dom}"
            rows.append({**base, "domain": dom, "wer_before": rec.get(f"wer{sfx}_before", np.nan),
                         "wer_after": rec.get(f"wer{sfx}_after", np.nan), "test_words": rec.get(f"test_words{sfx}", 0)})
    return rows


def _box_plot(path: Path, groups: list[str], frames: list[pd.DataFrame], title: str) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    data = [f[col].dropna() for f in frames for col in ("wer_before", "wer_after")]
    ax.boxplot(data)
    ax.set_xticks(range(1, len(data) + 1), [f"{g}\n{w}" for g in groups for w in ("before", "after")])
    ax.set_ylabel("WER")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(df: pd.DataFrame, effects: pd.DataFrame, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = overall(df, STRATEGIES[0])
    sev = [s for s in ("mild", "moderate", "severe") if s in set(d["severity"])]
    _box_plot(out / "wer_by_severity.png", sev, [d[d["severity"] == s] for s in sev],
              "WER before/after bottom-5 personalization, by severity")
    b5 = df[(df["strategy"] == STRATEGIES[0]) & (df["domain"] != "all") & (df["test_words"] > 0)]
    doms = [x for x in ("home", "caregiver", "conversation") if x in set(b5["domain"])]
    _box_plot(out / "wer_by_domain.png", doms, [b5[b5["domain"] == x] for x in doms],
              "WER before/after bottom-5 personalization, by domain")
    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy in STRATEGIES:
        w = np.sort(overall(df, strategy)["wer_after"].dropna())
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


def relative_reduction(g: pd.DataFrame) -> pd.Series:
    return (g["wer_before"] - g["wer_after"]) / g["wer_before"].where(g["wer_before"] > 0)


def summarize(df: pd.DataFrame) -> dict:
    out = {}
    for strategy, g in overall(df).groupby("strategy"):
        dom = df[(df["strategy"] == strategy) & (df["domain"] != "all") & (df["test_words"] > 0)]
        out[strategy] = {"median_wer_before": float(g["wer_before"].median()),
                         "median_wer_after": float(g["wer_after"].median()),
                         "median_relative_reduction": float(relative_reduction(g).median()),
                         "by_severity": {s: {"speakers": int(len(h)), "median_wer_before": float(h["wer_before"].median()),
                                             "median_wer_after": float(h["wer_after"].median()),
                                             "median_relative_reduction": float(relative_reduction(h).median())}
                                         for s, h in g.groupby("severity")},
                         "by_domain": {x: {"speakers": int(len(h)), "median_wer_before": float(h["wer_before"].median()),
                                           "median_wer_after": float(h["wer_after"].median())}
                                       for x, h in dom.groupby("domain")}}
        if "kept_base" in g:  # client.validation_fraction > 0: devices that kept the base model
            ft = g.assign(wer_after=g["finetuned_wer"])
            out[strategy].update(kept_base=int(g["kept_base"].fillna(False).astype(bool).sum()),
                                 median_finetuned_wer=float(g["finetuned_wer"].median()),
                                 median_relative_reduction_finetuned=float(relative_reduction(ft).median()))
    return out


def targets(strategies: dict, df: pd.DataFrame, base: dict, wall_s: float) -> dict:
    """The study's targets, measured: base WER, moderate/severe reduction, recipe ranking, time."""
    b5 = overall(df, STRATEGIES[0])
    ms = b5[b5["severity"].isin(["moderate", "severe"])]
    red = float(relative_reduction(ms).median()) if len(ms) else float("nan")
    medians = {k: v["median_wer_after"] for k, v in strategies.items()}
    reduction = {"value": red, "target": ">= 0.60", "met": bool(red >= 0.60)}
    if "finetuned_wer" in ms and len(ms):  # the same without the validation fallback
        reduction["finetuned_value"] = float(relative_reduction(ms.assign(wer_after=ms["finetuned_wer"])).median())
    return {
        "base_heldout_wer": {"value": base.get("heldout_wer"), "target": "<= 0.20",
                             "met": bool(base.get("heldout_wer", 1.0) <= 0.20)},
        "moderate_severe_median_relative_reduction": reduction,
        "bottom5_no_worse_than_others": {"value": medians, "target": "bottom5 median <= all, top3",
                                         "met": bool(all(medians[STRATEGIES[0]] <= v for v in medians.values()))},
        "study_wall_s": {"value": wall_s, "target": "<= 3600", "met": bool(wall_s <= 3600)},
    }


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    import sys
    import time

    from tqdm import tqdm

    from fl.task import make_task

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, base = base_model(cfg, out, progress)
    task = make_task("asr", cfg.task, cfg.experiment.seed)
    meta = task.corpus.table()
    ids = np.arange(len(task.speakers), len(task.speakers) + len(task.atypical))
    if len(ids) == 0:
        from fl.config import ConfigError
        raise ConfigError("bad value for 'task.n_atypical': personalization needs atypical speakers (allowed: >= 1)")
    records, t_personalize = [], time.perf_counter()
    with engine(cfg) as process:
        ex = np.full(len(ids), 1, np.int32)
        step = 2 * len(process.pool)  # a few speakers per call, so progress shows as they finish
        bar = tqdm(total=len(ids), desc="personalize", unit="speaker", disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for lo in range(0, len(ids), step):
            for res in process.pool.run(0, weights, ids[lo:lo + step], ex[lo:lo + step], "personalize",
                                        options={"strategies": STRATEGIES}):
                records += res["records"]
            bar.update(len(ids[lo:lo + step]))
        bar.close()
    df = pd.DataFrame(long_rows(records))
    df["speaker"] = [task.speaker_for(d) for d in df["device_id"]]
    df = df.join(meta.drop(columns=["speaker_id"]), on="speaker")
    df.to_parquet(out / "speakers.parquet", index=False)
    effects = quintile_effects(df)
    effects.to_csv(out / "quintile_effects.csv", index=False)
    plots(df, effects, out)
    strategies = summarize(df)
    wall_s = time.perf_counter() - t0
    summary = {"personalization_s": time.perf_counter() - t_personalize, "speakers": int(len(ids)), "strategies": strategies,
               "failed": int((overall(df)["status"] == "failed").sum()),
               "quintile_cohens_d": dict(zip(effects["trait"], effects["cohens_d"])),
               "base_model": {k: base.get(k) for k in ("heldout_wer", "heldout_wer_by_domain", "heldout_speakers",
                                                       "heldout_utterances", "rounds", "warm_start_steps")},
               "wall_s": wall_s, "targets": targets(strategies, df, base, wall_s)}
    write_json(summary, out / "summary.json")
    return summary
