"""Speech devices through the round engine: RNN-T FedAvg rounds and held-out-speaker WER."""
import os

import numpy as np
import pandas as pd
import pytest
import ray

from experiments.fedavg_asr import heldout_wer
from fl.config import load_config
from fl.runner import engine, train

TINY = {"n_typical": 3, "heldout_typical": 1, "utterances_per_speaker": 6, "max_frames": 300,
        "max_label_len": 48, "encoder_layers": 2, "encoder_units": 16, "pred_units": 16, "joint_units": 16}


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
    table, summary = heldout_wer(cfg, state.weights)
    assert summary["heldout_speakers"] == 1 and len(table) == summary["heldout_utterances"] >= 1
    from clients.speech.wer import word_edit_counts

    for row in table.itertuples():  # each row's errors are the word alignment of its own texts
        e = word_edit_counts(row.reference, row.hypothesis)
        assert (row.word_errors, row.words) == (e.errors, e.ref_len) and row.words > 0
    assert summary["heldout_wer"] == table["word_errors"].sum() / table["words"].sum()
    by_domain = table.groupby("domain").apply(lambda g: g["word_errors"].sum() / g["words"].sum()).to_dict()
    assert summary["heldout_wer_by_domain"] == by_domain and set(by_domain) <= {"home", "caregiver", "conversation"}
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


@pytest.mark.slow  # an end-to-end study: `make test-all`
def test_personalization_study_end_to_end(tmp_path):
    """Tiny base model -> per-speaker fine-tuning on atypical devices for all strategies."""
    import json

    from experiments import euphonia_personalization as study
    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    task = dict(TINY, n_typical=1, heldout_typical=0, n_atypical=2, utterances_per_speaker=8, max_frames=500,
                encoder_layers=8, encoder_units=8,
                pred_units=8, joint_units=8, specaugment=True)
    base = load_config({"experiment": {"task": "asr", "rounds": 1, "seed": 1},
                        "population": {"size": 1, "eligible_prob": 1.0, "night_hours": 24, "dropout_per_hour": 0.0},
                        "cohort": {"goal": 1, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
                        "eval": {"every": 0}, "workers": {"num": 1}, "task": task})
    with engine(base) as process:
        train(process, tmp_path / "base", progress=False)
    cfg = load_config({"experiment": {"task": "asr", "rounds": 1, "seed": 1},
                       "client": {"epochs": 1, "batch_size": 4, "lr": 0.01, "validation_fraction": 0.25},
                       "eval": {"every": 0}, "workers": {"num": 1},
                       "task": dict(task, base_checkpoint=str(tmp_path / "base"))})
    summary = study.run(cfg, tmp_path / "study", progress=False)
    df = pd.read_parquet(tmp_path / "study" / "speakers.parquet")
    assert len(df) == 2 * 3 * 4 and set(df["strategy"]) == set(study.STRATEGIES)
    assert set(df["domain"]) == {"all", "home", "caregiver", "conversation"}
    # per-domain word counts add up to the speaker's total
    words = df.pivot_table(index=["speaker", "strategy"], columns="domain", values="test_words")
    assert (words[["home", "caregiver", "conversation"]].sum(axis=1) == words["all"]).all()
    df = df[df["domain"] == "all"]
    assert (df["status"] == "accepted").all() and df["wer_before"].notna().all() and df["wer_after"].notna().all()
    assert {"severity", "condition", "snr_db"} <= set(df.columns)
    # the same speaker starts from the same base model whatever the strategy
    assert df.groupby("speaker")["wer_before"].nunique().eq(1).all()
    assert df.groupby("speaker")["val_loss_before"].nunique().eq(1).all() and df["finetuned_wer"].notna().all()
    # a fine-tuned model that does not lower the validation loss is not deployed
    kept = df["kept_base"].astype(bool)
    assert (kept == ~(df["val_loss_after"] < df["val_loss_before"])).all()
    assert (df.loc[kept, "wer_after"] == df.loc[kept, "wer_before"]).all()
    assert (df.loc[~kept, "wer_after"] == df.loc[~kept, "finetuned_wer"]).all()
    for png in ("wer_by_severity.png", "wer_by_domain.png", "wer_cdf.png", "quintile_cohens_d.png"):
        assert (tmp_path / "study" / png).stat().st_size > 1000
    saved = json.loads((tmp_path / "study" / "summary.json").read_text())
    assert saved["speakers"] == 2 and set(saved["targets"]) >= {"base_heldout_wer", "study_wall_s"}
    assert all(saved["strategies"][s]["kept_base"] == int(kept[df["strategy"] == s].sum()) for s in study.STRATEGIES)
    assert summary["failed"] == 0
    ray.shutdown()


def test_heldout_phrases_never_reach_training():
    from clients.speech.task import ASRTask

    task = ASRTask(ASRTask.Config(**dict(TINY, n_typical=4, heldout_typical=2, utterances_per_speaker=20)), seed=2)
    assert len(task.train_speakers) == 2 and len(task.heldout_speakers) == 2 and task.heldout_phrases
    from clients.speech.decoding import ids_to_text

    for dev in range(len(task.train_speakers)):
        y = task.device_data(dev, 0, "train")["y"]
        assert len(y) and not {ids_to_text(row[row > 0]) for row in y} & task.heldout_phrases
    # the held-out speakers' test phrases are exactly what the base WER is measured on
    held = task.utterances(task.speaker_index(task.heldout_speakers[0]), "test")
    assert set(held["transcripts"]) <= task.heldout_phrases


def test_batches_are_trimmed_to_their_longest_utterance():
    """Packing width does not change the loss: padding frames are cut before the model."""
    import tensorflow as tf

    from clients.speech.task import ASRTask

    losses = []
    for width in (300, 420):
        task = ASRTask(ASRTask.Config(**dict(TINY, max_frames=width)), seed=0)
        d = task.device_data(0, 0, "train")
        loss, _ = task.batch_loss(task.build_model(), tf.constant(d["x"][:3]), tf.constant(d["y"][:3]), training=False)
        losses.append(loss.numpy())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


def test_population_larger_than_training_speakers_is_rejected(tmp_path):

    from experiments import fedavg_asr
    from fl.config import ConfigError

    cfg = load_config({"experiment": {"task": "asr", "rounds": 1}, "population": {"size": 3}, "task": TINY})
    with pytest.raises(ConfigError, match="population.size"):
        fedavg_asr.run(cfg, tmp_path, progress=False)


@pytest.mark.slow  # an end-to-end study: `make test-all`
def test_fedavg_asr_recipe_with_warm_start_is_deterministic_and_cached(tmp_path):
    """Central warm start -> FedAvg rounds -> held-out WER; the warm start is saved and the
    same seed gives the same warm-start weights."""
    import json

    from clients.speech.task import ASRTask
    from clients.speech.warm_start import warm_start
    from experiments import fedavg_asr
    from fl.pool import start_ray

    task = ASRTask(ASRTask.Config(**TINY), seed=4)
    w1, losses = warm_start(task, [0, 1], steps=3, batch_size=4, seed=4, progress=False)
    w2, _ = warm_start(task, [0, 1], steps=3, batch_size=4, seed=4, progress=False)
    assert len(losses) == 3 and np.isfinite(losses).all()
    np.testing.assert_array_equal(w1, w2)
    assert w1.size == task.model_config.num_params()

    start_ray(object_store_mb=256, num_cpus=2)
    cfg = load_config({"experiment": {"task": "asr", "rounds": 1, "seed": 4},
                       "population": {"size": 2, "eligible_prob": 1.0, "night_hours": 24, "dropout_per_hour": 0.0},
                       "cohort": {"goal": 2, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
                       "eval": {"every": 0}, "workers": {"num": 1, "cache_dir": str(tmp_path / "cache")},
                       "task": dict(TINY, warm_start_steps=3, warm_start_batch=4)})
    summary = fedavg_asr.run(cfg, tmp_path / "run", progress=False)
    saved = np.load(tmp_path / "run" / "warm_start.npz")
    np.testing.assert_array_equal(saved["weights"], w1)
    assert summary["warm_start_steps"] == 3 and summary["heldout_speakers"] == 1
    # the thread count the warm-start weights are reproducible for is recorded
    assert summary["warm_start_threads"] == int(saved["threads"]) == len(os.sched_getaffinity(0))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["heldout_wer"] == summary["heldout_wer"]
    ray.shutdown()
