"""Plain federated training of the configured task: curves and tables, no extra report."""
from __future__ import annotations

from pathlib import Path

from fl.runner import engine, train


def summarize(process, state, recorder) -> dict:
    df = recorder.rounds_frame()
    last = df.iloc[-1].to_dict()
    out = {"experiment": process.cfg.experiment.name, "rounds": int(state.round),
           "population": process.population.size, "workers": len(process.pool),
           "final_train_loss": last.get("train_loss"), "final_train_accuracy": last.get("train_accuracy"),
           "sim_hours": float(df["sim_seconds"].sum() / 3600.0),
           "devices_trained": int(recorder.clients["status"].eq("accepted").sum()),
           "dropped": int(df["dropped"].sum()), "stragglers": int(df["stragglers"].sum()),
           "failed": int(df["failed"].sum()), "rejected": int(df["rejected"].sum()),
           "rounds_without_update": int((~df["updated"].astype(bool)).sum()),
           "wall_s_per_round_median": float(df["wall_s"].median())}
    if "eval_loss" in df and df["eval_loss"].notna().any():
        ev = df[df["eval_loss"].notna()].iloc[-1]
        out.update(final_eval_loss=float(ev["eval_loss"]), final_eval_accuracy=float(ev["eval_accuracy"]))
    if "dp_epsilon" in df:
        out["dp_epsilon"] = float(df["dp_epsilon"].dropna().iloc[-1])
    return out


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    with engine(cfg) as process:
        state, recorder = train(process, out_dir, progress)
        summary = summarize(process, state, recorder)
    recorder.finish(summary)
    return summary
