"""Plain federated training of the configured task: curves and tables, no extra report."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fl.runner import engine, train


def summarize(process, state, recorder) -> dict:
    """The run's summary.json. ``final_train_*`` come from the last round; ``final_eval_*``
    from the last round whose federated evaluation has a finite result (named by
    ``final_eval_round``; devices with a non-finite loss or metric are left out of an
    evaluation, and ``eval_rounds_without_result`` counts evaluations that kept none).
    ``coverage``: distinct clients trained and rounds per trained client."""
    df = recorder.rounds_frame()
    last = df.iloc[-1].to_dict()
    cov = recorder.coverage_summary(process.population.size)
    out = {"experiment": process.cfg.experiment.name, "rounds": int(state.round),
           "population": process.population.size, "availability": process.population.availability,
           "workers": len(process.pool),
           "final_train_round": int(last["round"]),
           "final_train_loss": last.get("train_loss"), "final_train_accuracy": last.get("train_accuracy"),
           "clients_trained": cov["clients_trained"], "coverage": cov,
           "sim_hours": float(df["sim_seconds"].sum() / 3600.0),
           "devices_trained": int((recorder.clients["status"].eq("accepted")
                                   & recorder.clients["phase"].eq("train")).sum()),
           "dropped": int(df["dropped"].sum()), "stragglers": int(df["stragglers"].sum()),
           "failed": int(df["failed"].sum()), "rejected": int(df["rejected"].sum()),
           "rounds_without_update": int((~df["updated"].astype(bool)).sum()),
           "wall_s_per_round_median": float(df["wall_s"].median())}
    out.update(final_eval(df))
    personal = personalization_summary(recorder.clients)
    if personal:
        out["personalization"] = personal
    if "dp_epsilon" in df:
        from fl.privacy import Sampling

        out["dp_epsilon"] = float(df["dp_epsilon"].dropna().iloc[-1])
        cfg = process.cfg.aggregator
        out["dp"] = {"epsilon": out["dp_epsilon"], "delta": cfg.dp_delta, "noise_multiplier": cfg.dp_noise_multiplier,
                     "clip_norm": cfg.clip_norm, "accountant": "rdp (dp_accounting)",
                     "sampling": Sampling("fixed", sample=1, pool=1).describe(),
                     "sampling_q_per_round": {"min": float(df["dp_sampling_q"].min()),
                                              "max": float(df["dp_sampling_q"].max())},
                     "releases": int(df["dp_epsilon"].notna().sum())}
    return out


def final_eval(df) -> dict:
    """``final_eval_*`` from the last round with a finite federated evaluation, and that round."""
    if "eval_loss" not in df:
        return {}
    evaluated = df[df["eval_devices"].notna()] if "eval_devices" in df else df[df["eval_loss"].notna()]
    ok = evaluated[np.isfinite(evaluated["eval_loss"].astype(float)) & np.isfinite(evaluated["eval_accuracy"].astype(float))]
    out = {"eval_rounds_without_result": int(len(evaluated) - len(ok))}
    if "eval_nonfinite" in df:
        out["eval_nonfinite_devices"] = int(df["eval_nonfinite"].fillna(0).sum())
    if len(ok):
        ev = ok.iloc[-1]
        out.update(final_eval_round=int(ev["round"]), final_eval_loss=float(ev["eval_loss"]),
                   final_eval_accuracy=float(ev["eval_accuracy"]))
        if "eval_devices" in ev:
            out["final_eval_devices"] = int(ev["eval_devices"])
    return out


def write_coverage(process, recorder, out_dir) -> None:
    """coverage.parquet: every trained device, the rounds it was trained in, and its client id
    when a federated dataset defines the population."""
    cov = recorder.coverage()
    data = getattr(process, "data", None)
    if data is not None and len(cov):
        cov["client_id"] = [str(data.client_ids[int(d)]) for d in cov["device_id"]]
    cov.to_parquet(Path(out_dir) / "coverage.parquet", index=False)


def personalization_summary(clients) -> dict:
    """Per-device personalized vs. global accuracy at the last federated evaluation
    (stateful personalization algorithms): the distribution, not just the mean."""
    if "personalized_accuracy" not in clients or not clients["personalized_accuracy"].notna().any():
        return {}
    ev = clients[(clients["phase"] == "eval") & clients["personalized_accuracy"].notna()]
    ev = ev[ev["round"] == ev["round"].max()]
    gain = (ev["personalized_accuracy"] - ev["accuracy"]).to_numpy()
    q = lambda a, p: float(np.quantile(a, p))  # noqa: E731
    return {"round": int(ev["round"].iloc[0]), "devices": int(len(ev)),
            "global_accuracy": {"mean": float(ev["accuracy"].mean()), "p10": q(ev["accuracy"], 0.1),
                                "median": q(ev["accuracy"], 0.5), "p90": q(ev["accuracy"], 0.9)},
            "personalized_accuracy": {"mean": float(ev["personalized_accuracy"].mean()),
                                      "p10": q(ev["personalized_accuracy"], 0.1),
                                      "median": q(ev["personalized_accuracy"], 0.5),
                                      "p90": q(ev["personalized_accuracy"], 0.9)},
            "gain": {"mean": float(gain.mean()), "p10": q(gain, 0.1), "median": q(gain, 0.5), "p90": q(gain, 0.9)},
            "fraction_improved": float((gain > 0).mean())}


def run(cfg, out_dir: Path, progress: bool = True) -> dict:
    with engine(cfg) as process:
        state, recorder = train(process, out_dir, progress)
        summary = summarize(process, state, recorder)
        write_coverage(process, recorder, out_dir)
    recorder.finish(summary)
    return summary
