"""The gboard-handwriting study (experiments/gboard_handwriting.py): config errors before work,
the targets logic, the personalization hooks of the task, the TFLite export, and a tiny
end-to-end run whose summary must agree with its own tables."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from experiments import gboard_handwriting as study
from experiments.registry import lookup
from fl.config import ConfigError, read_yaml

TINY_TASK = {"n_writers": 4, "heldout_writers": 2, "words_per_writer": 10, "vocab_size": 300, "max_word_len": 6,
             "max_label_len": 6, "max_steps": 48, "layers": 1, "units": 8}
TINY = ["experiment.rounds=2", "population.size=3", "cohort.goal=3", "cohort.min_reports=1", "workers.num=1",
        *[f"task.{k}={v}" for k, v in TINY_TASK.items()], "study.validation_writers=1",
        "study.points_max_steps=200", "study.lm_weights=[0, 0.5]", "study.insertion_bonuses=[0, 1]",
        "study.latency_words=5", "study.personalize_epochs=2", "study.personalize_lr=0.01", "study.tflite_words=10"]


def _load(*extra):
    _, default = lookup("gboard-handwriting")
    return study.load(read_yaml(default), [*TINY, *extra])


def test_default_config_loads_and_bad_config_fails_before_work(tmp_path):
    module, default = lookup("gboard-handwriting")
    assert module is study
    cfg = study.load(read_yaml(default), [])
    assert cfg.engine.population.size == cfg.engine.task.n_writers - cfg.study.validation_writers
    for override, key in (("population.size=2", "population.size"), ("study.validation_writers=4", "validation_writers"),
                          ("study.personalize_strategies=[bottom]", "personalize_strategies"),
                          ("task.personalize_heldout=true", "personalize_heldout"), ("study.beams=3", "study.beams"),
                          ("task.cell=gru", "task.cell"), ("cohort.goal=5", "cohort.goal"),
                          ("task.heldout_writers=0", "heldout_writers"), ("study.lm_weights=[]", "lm_weights")):
        with pytest.raises(ConfigError, match=key):
            _load(override)
            pytest.fail(f"{override} was accepted")
    # run() checks again before it writes or starts anything
    cfg = _load()
    cfg.engine.population.size = 4
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="population.size"):
        study.run(cfg, out, progress=False)
    assert not out.exists()
    # the CLI's --workers reaches the engine's worker count
    assert study.load(read_yaml(default), ["secagg.workers=3"]).engine.workers.num == 3


def _summary(cer=None, lat=(10.0, 4.0), sizes=(400, 100), int8_cer=0.30, personal=(0.5, 0.4), wall=100.0,
             comp=12.0, bad=None):
    cer = cer or {study.BASELINE: 0.5, study.LSTM: 0.35, study.QRNN: 0.36, study.LM_BEAM: 0.30}
    return {"configurations": {k: {"cer": v} for k, v in cer.items()},
            "compaction": {"median_points_per_curve": comp},
            "latency_ms_median_one_thread": {study.LSTM: lat[0], study.QRNN: lat[1]},
            "on_device": {"size_ratio": sizes[0] / sizes[1], "cer_change_points": 100 * (int8_cer - 0.30)},
            "personalization": {"best_strategy": "all", "strategies": {
                "all": {"median_cer_before": personal[0], "median_cer_after": personal[1]}}},
            "wall_s": wall, "bad_input": bad or study.bad_input_check()}


def test_targets_logic():
    t = study.targets(_summary())
    assert set(t) == {"median_compaction", "lm_beam_fewer_char_errors_than_raw_points_bilstm",
                      "biqrnn_faster_than_bilstm_at_similar_cer", "int8_smaller_at_same_cer",
                      "personalization_lowers_median_heldout_cer", "study_wall_s", "bad_input_named_errors"}
    assert all(v["met"] for v in t.values()), t
    assert t["lm_beam_fewer_char_errors_than_raw_points_bilstm"]["value"] == pytest.approx(0.4)
    assert t["biqrnn_faster_than_bilstm_at_similar_cer"]["value"]["speedup"] == pytest.approx(2.5)
    assert t["biqrnn_faster_than_bilstm_at_similar_cer"]["value"]["cer_relative_difference"] == pytest.approx(
        0.36 / 0.35 - 1)
    # each target fails on its own
    miss = {"median_compaction": _summary(comp=9.0),
            "lm_beam_fewer_char_errors_than_raw_points_bilstm": _summary(
                cer={study.BASELINE: 0.5, study.LSTM: 0.35, study.QRNN: 0.36, study.LM_BEAM: 0.41}),
            "biqrnn_faster_than_bilstm_at_similar_cer": _summary(lat=(10.0, 8.0)),
            "int8_smaller_at_same_cer": _summary(int8_cer=0.31),
            "personalization_lowers_median_heldout_cer": _summary(personal=(0.4, 0.4)),
            "study_wall_s": _summary(wall=2701.0),
            "bad_input_named_errors": _summary(bad={"empty_stroke": "accepted"})}
    for name, s in miss.items():
        t = study.targets(s)
        assert not t[name]["met"] and sum(v["met"] for v in t.values()) == len(t) - 1, name
    qrnn_worse = _summary(cer={study.BASELINE: 0.5, study.LSTM: 0.30, study.QRNN: 0.34, study.LM_BEAM: 0.3})
    assert not study.targets(qrnn_worse)["biqrnn_faster_than_bilstm_at_similar_cer"]["met"]
    assert not study.targets(_summary(sizes=(300, 100)))["int8_smaller_at_same_cer"]["met"]


def test_bad_user_ink_raises_named_errors():
    assert study.bad_input_check() == {"empty_stroke": "EmptyStrokeError", "out_of_alphabet": "OutOfAlphabetError",
                                       "non_monotonic_timestamp": "NonMonotonicTimestampError"}


def test_personalization_hooks_and_tflite_export(tmp_path):
    from clients.handwriting.decoding import cer, decode_ids
    from clients.handwriting.task import HandwritingTask, log_probs, recognize
    from clients.handwriting.tflite_export import TFLiteRecognizer, export

    task = HandwritingTask(HandwritingTask.Config(**{**TINY_TASK, "layers": 2}), seed=3)
    model = task.build_model()
    n = len(model.trainable_variables)
    head = {id(v) for v in model.head.trainable_variables}
    top = head | {id(v) for v in model.rnns[-1].trainable_variables}
    assert task.trainable_mask(model, "all") == [True] * n
    assert task.trainable_mask(model, "softmax") == [id(v) in head for v in model.trainable_variables]
    assert task.trainable_mask(model, "top") == [id(v) in top for v in model.trainable_variables]
    assert 0 < sum(task.trainable_mask(model, "softmax")) < sum(task.trainable_mask(model, "top")) < n
    with pytest.raises(ValueError, match="strategy"):
        task.trainable_mask(model, "bottom5")
    d = task.device_data(4, 1, "eval")
    refs, hyps = [decode_ids(r[r > 0]) for r in d["y"]], recognize(model, d["x"])
    m = task.decode_metrics(model, d)
    assert m["cer"] == pytest.approx(cer(refs, hyps)) and m["words"] == len(refs) >= 1
    assert m["wer"] == pytest.approx(np.mean([r != h for r, h in zip(refs, hyps)]))
    # held-out writers: refused for training, served for their own personalization only
    with pytest.raises(ValueError, match="held out"):
        task.device_data(4, 1, "train")
    mine = HandwritingTask(HandwritingTask.Config(**{**TINY_TASK, "layers": 2}, personalize_heldout=True), seed=3)
    assert len(mine.device_data(4, 1, "train")["y"]) >= 1
    assert mine.cache_namespace == task.cache_namespace  # the same data, one cache
    # the float export computes the Keras model's log-probabilities
    rec = TFLiteRecognizer(export(model, tmp_path / "r.tflite", quantize=False))
    for x, lp in zip(d["x"], log_probs(model, d["x"])):
        np.testing.assert_allclose(rec.log_probs(x[: int(x[:, -1].sum()), :-1]), lp, atol=1e-4)


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    import ray

    from clients.handwriting.decoding import edit_distance

    cfg = _load(f"workers.cache_dir={tmp_path / 'cache'}")
    out = tmp_path / "run"
    summary = study.run(cfg, out, progress=False)
    assert not ray.is_initialized()
    for f in ("summary.json", "writers.parquet", "heldout_words.parquet", "lm_tuning.csv", "ink_curves.png",
              "decoder_matrix.png", "cer_by_configuration.png", "writer_cer_cdf.png",
              "tflite/recognizer.tflite", "tflite/recognizer_int8.tflite"):
        assert (out / f).stat().st_size > 0, f
    for name in (study.BASELINE, study.LSTM, study.QRNN):  # trained through the engine, with TensorBoard
        rounds = pd.read_parquet(out / "runs" / name / "rounds.parquet")
        assert len(rounds) == 2 and rounds["updated"].all()
        assert any((out / "runs" / name / "tensorboard").rglob("events.out.tfevents*"))
    assert json.loads((out / "summary.json").read_text())["targets"] == json.loads(json.dumps(summary["targets"]))
    # the summary's numbers are those of its tables
    words = pd.read_parquet(out / "heldout_words.parquet")
    assert set(words["configuration"]) == set(study.CONFIGURATIONS)
    assert (words["char_errors"] == [edit_distance(r, h) for r, h in zip(words["reference"], words["hypothesis"])]).all()
    for name, g in words.groupby("configuration"):
        c = summary["configurations"][name]
        assert c["cer"] == pytest.approx(g["char_errors"].sum() / g["chars"].sum())
        assert c["wer"] == pytest.approx((g["reference"] != g["hypothesis"]).mean()) and c["words"] == len(g)
    bez = words[words["configuration"] == study.QRNN]
    assert summary["compaction"]["median_points_per_curve"] == pytest.approx(np.median(bez["points"] / bez["steps"]))
    t = summary["targets"]
    base, beam = summary["configurations"][study.BASELINE]["cer"], summary["configurations"][study.LM_BEAM]["cer"]
    assert t["lm_beam_fewer_char_errors_than_raw_points_bilstm"]["value"] == pytest.approx(1 - beam / base)
    assert t["median_compaction"]["met"] == (summary["compaction"]["median_points_per_curve"] >= 10)
    grid = pd.read_csv(out / "lm_tuning.csv")
    assert len(grid) == 4 and summary["lm"]["validation_cer"] == pytest.approx(grid["cer"].min())
    writers = pd.read_parquet(out / "writers.parquet")
    assert list(writers["role"]) == ["train"] * 3 + ["validation"] + ["heldout"] * 2
    held = writers[writers["role"] == "heldout"]
    p = summary["personalization"]
    assert p["failed"] == 0 and set(p["strategies"]) == {"all", "softmax"}
    for strategy, s in p["strategies"].items():
        assert s["writers"] == 2 and s["median_cer_before"] == pytest.approx(held["cer_before"].median())
        assert s["median_cer_after"] == pytest.approx(held[f"cer_after_{strategy}"].median())
        assert sum(v["writers"] for v in s["by_family"].values()) == 2
    assert held["cer_before"].notna().all() and writers.loc[writers["role"] != "heldout", "cer_before"].isna().all()
    od = summary["on_device"]
    assert od["float"]["bytes"] > 0 and od["size_ratio"] == pytest.approx(od["float"]["bytes"] / od["int8"]["bytes"])
    # the weights are a part of each file (this tiny model's tensors are under the converter's
    # 1,024-element quantization floor, so its int8 weights are not smaller; see README)
    for kind in ("float", "int8"):
        assert 0 < od[kind]["weight_bytes"] < od[kind]["bytes"]
    assert od["weight_size_ratio"] == pytest.approx(od["float"]["weight_bytes"] / od["int8"]["weight_bytes"])
    assert summary["configurations"]["bezier_biqrnn_int8_on_device"]["cer"] == od["int8"]["cer"]
    assert all(math.isfinite(v) and v > 0 for v in summary["latency_ms_median_one_thread"].values())
    assert t["study_wall_s"]["value"] == summary["wall_s"] > 0
