"""A hand-made study directory with every kind of output a run can leave (no engine needed)."""
import json

import numpy as np
import pandas as pd
import pytest

SCRIPT = "<script>alert('x')</script>"
N_EVAL = 12  # devices in the federated evaluation after the last round
PNG_NAMES = ["training_curve.png", "writer_cer_cdf.png", "runs/points/training_curve.png"]


def _png(path, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4, 2.5))
    ax.plot(np.random.default_rng(seed).random(10).cumsum(), "o-")
    ax.set_title(path.stem)
    fig.savefig(path, dpi=60)
    plt.close(fig)


@pytest.fixture(scope="session")
def study_dir(tmp_path_factory):
    """config.yaml (a ditto run), summary.json with targets, rounds, a partitioned clients.parquet
    (120 training rows over 30 devices, then 12 eval rows with personal models), writers and speakers, a CSV, three PNGs, and one nested run in runs/points/."""
    d = tmp_path_factory.mktemp("study")
    (d / "config.yaml").write_text("experiment:\n  name: hand-made-study\n  task: mlp\n  seed: 7\n  rounds: 3\n"
                                   "cohort:\n  goal: 10\n  min_reports: 5\nclient:\n  algorithm: ditto\n"
                                   "server:\n  optimizer: adam\n  lr: 0.01\naggregator:\n  clip_norm: 1.0\n"
                                   "population:\n  size: 30\n  availability: always\n")
    summary = {
        "experiment": "hand-made-study", "rounds": 3, "wall_s": 12.5, "note": SCRIPT,
        "configurations": {"points_bilstm": {"cer": 0.31, "wer": 0.62}, "bezier_biqrnn": {"cer": 0.12, "wer": 0.3}},
        "personalization": {"best_strategy": "all", "strategies": {"all": {"median_cer_before": 0.2}}},
        "targets": {
            "cer_low": {"value": 0.12, "target": "<= 0.20", "met": True},
            "study_wall_s": {"value": 4000.0, "target": "<= 3600", "met": False},
            "exact_counts": True,
            "wall_seconds": 12.5,
        },
    }
    (d / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"round": [0, 1, 2], "train_loss": [2.0, 1.5, 1.2], "selected": [10, 10, 10],
                  "accepted": [9, 8, 10], "dropped": [1, 2, 0], "stragglers": [0, 0, 0], "failed": [0, 0, 0],
                  "rejected": [0, 0, 0], "update_norm": [0.9, 0.5, 0.3], "wall_s": [1.5, 0.8, 0.7],
                  "eval_accuracy": [np.nan, np.nan, 0.7], "clients_trained": [9, 15, 22]}
                 ).to_parquet(d / "rounds.parquet", index=False)
    (d / "clients.parquet").mkdir()
    for r in range(3):
        n = 40
        pd.DataFrame({"round": r, "device_id": np.arange(n) % 30, "status": ["accepted"] * 35 + ["dropped"] * 5,
                      "examples": 10, "loss": np.linspace(1, 2, n), "accuracy": 0.5, "phase": "train",
                      "personalized_loss": np.nan, "personalized_accuracy": np.nan}
                     ).to_parquet(d / "clients.parquet" / f"round-{r:06d}.parquet", index=False)
    # the federated evaluation after the last round: global and personal model per device
    rng = np.random.default_rng(0)
    glob = rng.uniform(0.4, 0.8, N_EVAL)
    pd.DataFrame({"round": 2, "device_id": np.arange(N_EVAL), "status": "accepted", "examples": 5,
                  "loss": 1.0 - glob, "accuracy": glob, "phase": "eval", "personalized_loss": 0.5,
                  "personalized_accuracy": np.clip(glob + rng.normal(0.1, 0.05, N_EVAL), 0, 1)}
                 ).to_parquet(d / "clients.parquet" / "round-000002-eval.parquet", index=False)
    pd.DataFrame({"writer": np.arange(6), "role": ["train"] * 4 + ["heldout"] * 2,
                  "font": ["scripts", "futural", "scripts", "futural", "scripts", SCRIPT],
                  "cer_before": [np.nan] * 4 + [0.3, 0.25], "cer_after": [np.nan] * 4 + [0.2, 0.1]}
                 ).to_parquet(d / "writers.parquet", index=False)
    pd.DataFrame({"speaker": [0, 0, 1, 1], "strategy": ["bottom5", "all"] * 2, "domain": "all",
                  "wer_before": [0.7, 0.7, 0.9, 0.9], "wer_after": [0.4, 0.5, 0.6, 0.7]}
                 ).to_parquet(d / "speakers.parquet", index=False)
    pd.DataFrame({"lm_weight": [0.0, 0.5], "bonus": [0, 1], "cer": [0.2, 0.15]}).to_csv(d / "lm_tuning.csv",
                                                                                        index=False)
    nested = d / "runs" / "points"
    nested.mkdir(parents=True)
    (nested / "summary.json").write_text(json.dumps({"rounds": 2, "final_train_loss": 0.9}))
    pd.DataFrame({"round": [0, 1], "train_loss": [1.0, 0.9]}).to_parquet(nested / "rounds.parquet", index=False)
    (d / "tensorboard").mkdir()  # holds no figures: not looked into
    for i, name in enumerate(PNG_NAMES):
        _png(d / name, i)
    return d
