"""Speech devices through the round engine: RNN-T FedAvg rounds and held-out-speaker WER."""
import numpy as np
import pandas as pd
import ray

from experiments.fedavg_asr import heldout_wer
from fl.config import load_config
from fl.runner import engine, train

TINY = {"n_typical": 3, "utterances_per_speaker": 6, "max_frames": 260, "max_label_len": 40,
        "encoder_layers": 2, "encoder_units": 16, "pred_units": 16, "joint_units": 16}


def test_rnnt_fedavg_rounds_and_heldout_wer(tmp_path):
    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    cfg = load_config({
        "experiment": {"task": "asr", "rounds": 2, "seed": 3},
        "population": {"size": 2, "examples_min": 5, "examples_max": 5, "eligible_prob": 1.0,
                       "night_hours": 24, "dropout_per_hour": 0.0},
        "cohort": {"goal": 2, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
        "client": {"lr": 0.01, "batch_size": 3},
        "server": {"optimizer": "adam", "lr": 0.01},
        "eval": {"every": 2, "cohort": 2},
        "workers": {"num": 1, "cache_dir": str(tmp_path / "cache")},
        "task": TINY,
    })
    with engine(cfg) as process:
        init = process.initialize()
        state, rec = train(process, tmp_path / "run", progress=False)
    rounds = rec.rounds_frame()
    assert rounds["updated"].all() and (rounds["accepted"] == 2).all()
    assert np.isfinite(rounds["train_loss"]).all() and np.isfinite(rounds["eval_loss"].dropna()).all()
    assert np.abs(state.weights - init.weights).max() > 0
    table, summary = heldout_wer(cfg, state.weights, trained_devices=2, max_utterances=3)
    assert summary["heldout_speakers"] == 1 and len(table) == 3
    assert summary["heldout_wer"] >= 0
    ray.shutdown()


def test_padding_rows_give_finite_loss():
    import tensorflow as tf

    from clients.speech.task import ASRTask

    task = ASRTask(ASRTask.Config(**TINY), seed=0)
    model = task.build_model()
    x = np.zeros((2, TINY["max_frames"], 81), np.float32)  # two all-padding rows
    y = np.zeros((2, TINY["max_label_len"]), np.int32)
    loss, _ = task.batch_loss(model, tf.constant(x), tf.constant(y), training=False)
    assert np.isfinite(loss.numpy()).all()


def test_personalization_study_end_to_end(tmp_path):
    """Tiny base model -> per-speaker fine-tuning on atypical devices for all strategies."""
    import json

    from experiments import euphonia_personalization as study
    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    task = dict(TINY, n_typical=1, n_atypical=2, utterances_per_speaker=8, encoder_layers=8, encoder_units=8,
                pred_units=8, joint_units=8, specaugment=True)
    base = load_config({"experiment": {"task": "asr", "rounds": 1, "seed": 1},
                        "population": {"size": 1, "eligible_prob": 1.0, "night_hours": 24, "dropout_per_hour": 0.0},
                        "cohort": {"goal": 1, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
                        "eval": {"every": 0}, "workers": {"num": 1}, "task": task})
    with engine(base) as process:
        train(process, tmp_path / "base", progress=False)
    cfg = load_config({"experiment": {"task": "asr", "rounds": 1, "seed": 1},
                       "client": {"epochs": 1, "batch_size": 4, "lr": 0.01},
                       "eval": {"every": 0}, "workers": {"num": 1},
                       "task": dict(task, base_checkpoint=str(tmp_path / "base"))})
    summary = study.run(cfg, tmp_path / "study", progress=False)
    df = pd.read_parquet(tmp_path / "study" / "speakers.parquet")
    assert len(df) == 2 * 3 and set(df["strategy"]) == set(study.STRATEGIES)
    assert (df["status"] == "accepted").all() and df["wer_before"].notna().all() and df["wer_after"].notna().all()
    assert {"severity", "condition", "snr_db"} <= set(df.columns)
    # the same speaker starts from the same base model whatever the strategy
    assert df.groupby("speaker")["wer_before"].nunique().eq(1).all()
    for png in ("wer_by_severity.png", "wer_cdf.png", "quintile_cohens_d.png"):
        assert (tmp_path / "study" / png).stat().st_size > 1000
    assert json.loads((tmp_path / "study" / "summary.json").read_text())["speakers"] == 2
    assert summary["failed"] == 0
    ray.shutdown()
