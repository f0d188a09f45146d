"""The trill-frill study (Shor et al. 2020 TRILL, Peplinski et al. 2021 FRILL): config errors before
any work, the summary/targets logic on a hand-made models table, and a tiny end-to-end run."""
import json
import time

import numpy as np
import pandas as pd
import pytest

from clients.embeddings.frill import FrillConfigError
from clients.embeddings.noss import NossConfigError
from experiments import trill_frill as study
from fl.config import ConfigError

TINY = {"n_devices": 3, "clips_per_device": 2, "eval_clips": 2, "utterances_per_clip": 1,
        "triplets_per_device": 6, "eval_triplets": 4, "width": 4, "stages": 2, "embedding_dim": 8}
TINY_NOSS = dict(n_speakers=4, speaker_clips=3, languages=["en-us", "de", "fr"], language_speakers=2,
                 language_clips=2, command_words=["yes", "no", "up"], command_speakers=3, command_repeats=2,
                 styles=["neutral", "sad", "angry"], style_speakers=2, style_repeats=2, mask_speakers=3,
                 mask_clips=2, severity_speakers=4, severity_clips=2)

TASKS = ("speaker_id", "commands")


def tiny_raw(tmp_path) -> dict:
    return {
        "experiment": {"name": "trill-frill", "task": "trill", "seed": 3, "rounds": 1},
        "population": {"size": 3, "eligible_prob": 1.0, "night_hours": 24, "dropout_per_hour": 0.0},
        "cohort": {"goal": 2, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
        "client": {"optimizer": "adam", "lr": 0.01, "batch_size": 6},
        "eval": {"every": 0}, "workers": {"num": 1, "cache_dir": str(tmp_path / "cache")},
        "task": dict(TINY),
        "noss": dict(TINY_NOSS),
        "frill": {"architectures": ["small"], "alphas": [0.25], "distill_steps": 2, "distill_batch": 8,
                  "latency_invocations": 50, "device_rounds": 1, "device_windows": 6},
        "study": {"central_steps": 2, "central_batch": 6, "central_triplets": 12, "tasks": list(TASKS)},
    }


@pytest.mark.parametrize("override, error, key", [
    ("frill.architectures=[tiny]", FrillConfigError, "frill.architecture"),
    ("frill.alphas=[1.0,0]", FrillConfigError, "frill.alpha"),
    ("frill.alphas=[-0.5]", FrillConfigError, "frill.alpha"),
    ("noss.window_s=0.5", NossConfigError, "noss.window_s"),
    ("task.window_s=0.5", ConfigError, "task.window_s"),
    ("study.tasks=[speaker_id,accent]", ConfigError, "study.tasks"),
    ("frill.alphas=[]", ConfigError, "student grid is empty"),
    ("study.distill_target=logits", ConfigError, "study.distill_target"),
])
def test_bad_config_fails_before_work(tmp_path, monkeypatch, override, error, key):
    from experiments.cli import main

    def no_work(*a, **k):
        raise AssertionError("work started")
    monkeypatch.setattr(study, "train_federated", no_work)
    monkeypatch.setattr("clients.embeddings.noss.NossCorpus.get", no_work)
    with pytest.raises(error, match=key):
        study.load(tiny_raw(tmp_path), [override])
    rc = main(["run", "trill-frill", "--out", str(tmp_path / "run"), "--set", override, "--quiet"])
    assert rc == 2 and not (tmp_path / "run").exists()  # the CLI's config error, nothing written


def test_full_grid_is_expressible(tmp_path):
    cfg = study.load(tiny_raw(tmp_path), ["frill.architectures=[small,large]", "frill.alphas=[0.5,1.0,2.0]",
                                          "frill.average_pool=[true,false]", "frill.bottlenecks=[0,64]",
                                          "frill.qat=[false,true]", "frill.output_dim=2048"])
    grid = study.students(cfg)
    assert len(grid) == 36 and len({study.student_name(s) for s in grid}) == 36
    assert all(s.bottleneck_dim for s in grid if s.qat)
    from clients.embeddings.frill import FRILL
    assert FRILL in grid
    assert len(study.students(study.load(tiny_raw(tmp_path), ["frill.alphas=[0.5,1.0,2.0]", "frill.max_students=2"]))) == 2
    with pytest.raises(ConfigError, match="grid is empty"):  # QAT applies to a bottleneck; there is none
        study.load(tiny_raw(tmp_path), ["frill.qat=[true]"])


def test_students_are_as_wide_as_what_they_regress(tmp_path):
    from clients.embeddings.trill import layer19_dim

    cfg = study.load(tiny_raw(tmp_path), [])
    assert {s.output_dim for s in study.students(cfg)} == {cfg.engine.task.embedding_dim}
    cfg = study.load(tiny_raw(tmp_path), ["study.distill_target=layer19"])
    from clients.embeddings.task import TrillTask
    assert {s.output_dim for s in study.students(cfg)} == {layer19_dim(TrillTask(cfg.engine.task).model_config)}
    cfg = study.load(tiny_raw(tmp_path), ["study.distill_target=layer19", "frill.output_dim=7"])
    assert {s.output_dim for s in study.students(cfg)} == {7}  # regressed through a training-only head


def _models(trill_acc, fed_acc, logmel_acc, students):
    """Hand-made models table: students = [(name, latency_ms, bytes, accuracy per task)]."""
    rows = [{"model": "log_mel", "kind": "baseline", "params": 0, "tflite_float_bytes": np.nan,
             "tflite_int8_bytes": np.nan, "latency_ms": np.nan, **dict(zip(TASKS, logmel_acc))},
            {"model": "trill_central", "kind": "trill", "params": 1000, "tflite_float_bytes": 1_000_000,
             "tflite_int8_bytes": 300_000, "latency_ms": 100.0, **dict(zip(TASKS, trill_acc))},
            {"model": "trill_federated", "kind": "trill", "params": 1000, "tflite_float_bytes": 1_000_000,
             "tflite_int8_bytes": 300_000, "latency_ms": 100.0, **dict(zip(TASKS, fed_acc))}]
    rows += [{"model": n, "kind": "frill", "params": 10, "tflite_float_bytes": b, "tflite_int8_bytes": b // 4,
              "latency_ms": lat, **dict(zip(TASKS, acc))} for n, lat, b, acc in students]
    df = pd.DataFrame(rows).rename(columns={t: f"acc_{t}" for t in TASKS})
    df["mean_accuracy"] = study.mean_accuracy(df, TASKS)
    return df


def test_summary_and_targets_from_a_hand_made_table():
    models = _models((0.80, 0.60), (0.78, 0.58), (0.50, 0.40), [
        ("fast_good", 5.0, 300_000, (0.79, 0.60)),    # mean 0.695, 20x faster, 30% of the size
        ("fast_bad", 2.0, 100_000, (0.50, 0.50)),
        ("slow_best", 50.0, 900_000, (0.90, 0.70)),  # best, but over the 10 ms threshold
    ])
    speakers = pd.DataFrame({"model": "trill_central", "task": "commands", "speaker": [0, 1, 2],
                             "accuracy": [0.5, 1.0, 0.75]})
    s = study.summarize(models, speakers, TASKS, 0.0, 120.0)
    assert s["latency_threshold_ms"] == pytest.approx(10.0) and s["chosen_frill"] == "fast_good"
    assert s["chosen_under_threshold"] and s["students"] == 3
    t = s["targets"]
    assert t["frill_tflite_size_ratio"]["value"] == pytest.approx(0.3) and t["frill_tflite_size_ratio"]["met"]
    assert t["frill_speedup"]["value"] == pytest.approx(20.0) and t["frill_speedup"]["met"]
    assert t["frill_accuracy_drop_points"]["value"] == pytest.approx(0.5) and t["frill_accuracy_drop_points"]["met"]
    assert t["trill_over_log_mel_points"]["value"] == pytest.approx(25.0) and t["trill_over_log_mel_points"]["met"]
    assert t["federated_gap_points"]["value"] == pytest.approx(2.0) and t["federated_gap_points"]["met"]
    assert t["study_wall_s"]["met"] and set(t) == {"frill_tflite_size_ratio", "frill_speedup", "frill_accuracy_drop_points",
                                                   "trill_over_log_mel_points", "federated_gap_points", "study_wall_s"}
    assert all(set(v) >= {"value", "target", "met"} for v in t.values())
    assert s["table"]["FRILL"]["size_mb"] == pytest.approx(0.3) and s["table"]["TRILL"]["latency_ms"] == 100.0
    assert s["table"]["mean_drop_points"] == pytest.approx(0.5)
    assert s["intra_speaker"]["trill_central"]["commands"]["median"] == pytest.approx(0.75)
    # a stated threshold that admits the slow student picks it; one nobody meets falls back to the fastest
    s = study.summarize(models, speakers, TASKS, 60.0, 4000.0)
    assert s["chosen_frill"] == "slow_best" and not s["targets"]["frill_speedup"]["met"]
    assert s["targets"]["frill_accuracy_drop_points"]["value"] < 0 and not s["targets"]["study_wall_s"]["met"]
    s = study.summarize(models, speakers, TASKS, 1.0, 1.0)
    assert s["chosen_frill"] == "fast_bad" and not s["chosen_under_threshold"]
    assert not s["targets"]["frill_accuracy_drop_points"]["met"]
    bad_fed = _models((0.80, 0.60), (0.70, 0.50), (0.75, 0.60), [("x", 5.0, 300_000, (0.8, 0.6))])
    t = study.summarize(bad_fed, speakers, TASKS, 0.0, 1.0)["targets"]
    assert t["federated_gap_points"]["value"] == pytest.approx(10.0) and not t["federated_gap_points"]["met"]
    assert t["trill_over_log_mel_points"]["value"] == pytest.approx(2.5) and not t["trill_over_log_mel_points"]["met"]


def test_a_collapsed_embedding_is_detected():
    import tensorflow as tf

    windows = np.random.default_rng(0).normal(-5, 2, (64, 96, 64)).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    healthy = tf.keras.Sequential([tf.keras.Input((96, 64)), tf.keras.layers.Flatten(), tf.keras.layers.Dense(16)])
    collapsed = tf.keras.Sequential([tf.keras.Input((96, 64)), tf.keras.layers.Flatten(),
                                     tf.keras.layers.Dense(16, kernel_initializer="zeros", bias_initializer="ones")])
    assert study.embedding_spread(healthy, windows) > 10 * study.COLLAPSE_SPREAD
    assert study.embedding_spread(collapsed, windows) < study.COLLAPSE_SPREAD


def test_a_collapsed_trill_makes_every_accuracy_target_unmet():
    models = _models((0.80, 0.60), (0.78, 0.58), (0.50, 0.40), [("fast_good", 5.0, 300_000, (0.79, 0.60))])
    speakers = pd.DataFrame(columns=["model", "task", "speaker", "accuracy"])
    healthy = study.summarize(models, speakers, TASKS, 0.0, 1.0)["targets"]
    assert healthy["federated_gap_points"]["met"] and healthy["trill_over_log_mel_points"]["met"]
    t = study.summarize(models, speakers, TASKS, 0.0, 1.0, collapsed=["trill_central"])["targets"]
    for key in ("frill_accuracy_drop_points", "trill_over_log_mel_points", "federated_gap_points"):
        assert not t[key]["met"] and "trill_central" in t[key]["invalid"], key
        assert t[key]["value"] == pytest.approx(healthy[key]["value"])
    assert t["frill_tflite_size_ratio"]["met"] and t["study_wall_s"]["met"]


def test_a_student_whose_int8_model_does_not_run_is_not_chosen():
    models = _models((0.80, 0.60), (0.78, 0.58), (0.50, 0.40), [
        ("qat_fastest", 1.0, 300_000, (0.79, 0.60)), ("plain", 5.0, 300_000, (0.70, 0.60))])
    models["int8_error"] = ["", "", "", "TFLite refused it", ""]
    assert study.choose_frill(models, 10.0) == ("plain", True)
    assert study.choose_frill(models, 0.5) == ("plain", False)  # the fallback (fastest) skips it too
    models["int8_error"] = ["", "", "", "refused", "refused"]
    assert study.choose_frill(models, 10.0) == ("qat_fastest", True)  # none runs: all stay candidates


def test_the_targets_use_the_better_trill_representation():
    models = _models((0.60, 0.60), (0.50, 0.50), (0.55, 0.55), [("s", 5.0, 300_000, (0.6, 0.6))])
    layer19 = models[models["model"].str.startswith("trill")].copy()
    layer19["model"] += "_layer19"
    layer19[["acc_" + t for t in TASKS]] = [[0.70, 0.70], [0.45, 0.45]]  # central better, federated worse
    layer19["mean_accuracy"] = study.mean_accuracy(layer19, TASKS)
    both = pd.concat([models, layer19], ignore_index=True)
    speakers = pd.DataFrame(columns=["model", "task", "speaker", "accuracy"])
    s = study.summarize(both, speakers, TASKS, 0.0, 1.0)
    assert s["trill_rows"] == {"central": "trill_central_layer19", "federated": "trill_federated"}
    t = s["targets"]
    assert t["trill_over_log_mel_points"]["value"] == pytest.approx(15.0)
    assert t["federated_gap_points"]["value"] == pytest.approx(20.0)
    assert t["frill_accuracy_drop_points"]["value"] == pytest.approx(10.0)
    assert study.summarize(models, speakers, TASKS, 0.0, 1.0)["trill_rows"]["central"] == "trill_central"


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    cfg = study.load(tiny_raw(tmp_path), [])
    t0 = time.perf_counter()
    summary = study.run(cfg, tmp_path / "out", progress=False)
    assert time.perf_counter() - t0 < 180
    out = tmp_path / "out"
    for name in ("models.parquet", "speakers.parquet", "summary.json", "frontier.png", "tasks.png"):
        assert (out / name).stat().st_size > 0, name
    assert list((out / "tensorboard").iterdir())
    assert (out / "federated" / "checkpoint.npz").exists() and list((out / "federated" / "tensorboard").iterdir())
    models = pd.read_parquet(out / "models.parquet")
    assert list(models["model"][:6]) == ["log_mel", "trill_central", "trill_central_layer19", "trill_federated",
                                         "trill_federated_layer19", "trill_untrained_layer19"]
    assert (models["kind"] == "frill").sum() == 1
    # the grid's first student, distilled again on the devices through the engine (task "frill")
    od = saved_od = json.loads((out / "summary.json").read_text())["on_device_distillation"]
    assert (models["kind"] == "frill_on_device").sum() == 1 and od["model"] == "on_device_" + od["central_model"]
    assert (out / "federated_distill" / "checkpoint.npz").exists() and (out / "teacher.npz").exists()
    assert saved_od["federated"]["rounds"] == 1
    assert od["gap_points"] == pytest.approx(100 * (od["central_mean_accuracy"] - od["on_device_mean_accuracy"]))
    m = models.set_index("model")
    on_device = models[models["kind"] != "baseline"]
    assert (on_device["tflite_float_bytes"] > 0).all() and (on_device["tflite_int8_bytes"] > 0).all()
    assert (on_device["latency_ms"] > 0).all() and (on_device["params"] > 0).all()
    acc = models[[f"acc_{t}" for t in TASKS]].to_numpy()
    assert ((acc >= 0) & (acc <= 1)).all()
    np.testing.assert_allclose(models["mean_accuracy"], acc.mean(1))
    saved = json.loads((out / "summary.json").read_text())
    assert saved["chosen_frill"] == summary["chosen_frill"] and saved["chosen_frill"] in m.index
    rows = saved["trill_rows"]  # each TRILL's better representation (embedding or layer19)
    assert rows["central"] in ("trill_central", "trill_central_layer19")
    assert m.loc[rows["central"], "mean_accuracy"] == max(m.loc["trill_central", "mean_accuracy"],
                                                          m.loc["trill_central_layer19", "mean_accuracy"])
    f, t = m.loc[saved["chosen_frill"]], m.loc[rows["central"]]
    tg = saved["targets"]
    assert tg["frill_tflite_size_ratio"]["value"] == pytest.approx(f["tflite_float_bytes"] / t["tflite_float_bytes"])
    assert tg["frill_speedup"]["value"] == pytest.approx(t["latency_ms"] / f["latency_ms"])
    assert tg["frill_accuracy_drop_points"]["value"] == pytest.approx(100 * (t["mean_accuracy"] - f["mean_accuracy"]))
    assert tg["trill_over_log_mel_points"]["value"] == pytest.approx(
        100 * (t["mean_accuracy"] - m.loc["log_mel", "mean_accuracy"]))
    assert tg["federated_gap_points"]["value"] == pytest.approx(
        100 * (t["mean_accuracy"] - m.loc[rows["federated"], "mean_accuracy"]))
    for k, v in tg.items():
        assert isinstance(v["met"], bool), k
    assert saved["table"]["FRILL"]["latency_ms"] == pytest.approx(f["latency_ms"])
    speakers = pd.read_parquet(out / "speakers.parquet")
    assert set(speakers["task"]) == {"commands"} and set(speakers["model"]) == set(models["model"])
    assert speakers["accuracy"].between(0, 1).all()
    assert saved["federated"]["rounds"] == 1
    assert set(saved["collapse"]["embedding_spread"]) == {"trill_central", "trill_federated"}
    assert isinstance(saved["collapse"]["collapsed"], list)
