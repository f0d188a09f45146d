"""Speech devices through the round engine: RNN-T FedAvg rounds and held-out-speaker WER."""
import numpy as np
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
