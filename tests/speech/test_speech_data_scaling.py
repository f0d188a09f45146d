"""The data-scaling study: nested training subsets per speaker, a fixed test set, the curve's
outputs, and named errors for configs it cannot run."""
import json

import numpy as np
import pandas as pd
import pytest

from experiments import euphonia_data_scaling as study
from fl.config import ConfigError

TINY_TASK = {"n_typical": 1, "heldout_typical": 0, "n_atypical": 6, "utterances_per_speaker": 8,
             "atypical_utterances": 40, "max_frames": 800, "max_label_len": 48, "encoder_layers": 8,
             "encoder_units": 8, "pred_units": 8, "joint_units": 8, "specaugment": True}


def _raw(tmp_path, **study_keys):
    return {"experiment": {"task": "asr", "rounds": 1, "seed": 1},
            "population": {"size": 7, "eligible_prob": 1.0, "night_hours": 24, "dropout_per_hour": 0.0},
            "cohort": {"goal": 1, "over_selection": 1.0, "min_reports": 1, "deadline_s": 1e6},
            "client": {"optimizer": "adam", "epochs": 1, "batch_size": 4, "lr": 0.01, "validation_fraction": 0.2,
                       "bucket_pool": 2},
            "eval": {"every": 0}, "workers": {"num": 1, "cache_dir": str(tmp_path / "cache")},
            "task": dict(TINY_TASK, base_checkpoint=str(tmp_path / "base")),
            "study": {"speakers": 2, "sizes": [6, 12, 30], "contrast_sizes": [12], **study_keys}}


@pytest.mark.parametrize("key, value, named", [
    ("sizes", [140, 60], "study.sizes"),
    ("sizes", [], "study.sizes"),
    ("strategy", "bottom4", "study.strategy"),
    ("severities", ["severe", "loud"], "study.severities"),
    ("sizes", [60, 5000], "task.atypical_utterances"),
    ("speakers", 9, "study.speakers"),
])
def test_bad_configs_are_named_before_any_work(tmp_path, key, value, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        study.load(_raw(tmp_path), [f"study.{key}={json.dumps(value)}"])


def test_speakers_are_balanced_across_severities():
    table = pd.DataFrame({"kind": ["atypical"] * 6, "severity": ["moderate", "moderate", "mild", "moderate",
                                                                  "severe", "moderate"]},
                         index=[f"a{i}" for i in range(6)])
    assert study.choose_speakers(table, ("moderate", "severe"), 4) == ["a0", "a4", "a1", "a3"]
    with pytest.raises(ConfigError, match="study.speakers"):
        study.choose_speakers(table, ("severe",), 2)


def test_learning_curve_end_to_end(tmp_path):
    """A tiny base model, then each speaker's curve in one device call: nested subsets, the
    same test set at every size, outputs and targets."""
    import ray

    from fl.config import load_config
    from fl.pool import start_ray
    from fl.runner import engine, train

    start_ray(object_store_mb=256, num_cpus=2)
    raw = _raw(tmp_path)
    base = load_config({k: raw[k] for k in ("experiment", "population", "cohort", "eval", "workers")}
                       | {"task": TINY_TASK})
    with engine(base) as process:
        train(process, tmp_path / "base", progress=False)
    cfg = study.load(raw, [])
    summary = study.run(cfg, tmp_path / "out", progress=False)
    ray.shutdown()
    curve = pd.read_parquet(tmp_path / "out" / "curve.parquet")
    assert {"speaker", "severity", "utterances", "strategy", "wer_before", "wer_after"} <= set(curve.columns)
    assert len(curve) == 2 * 4 and (curve["status"] == "accepted").all() and summary["failed"] == 0
    assert set(curve["severity"]) <= {"moderate", "severe"}
    for _, g in curve.groupby("speaker"):
        g = g[g["strategy"] == "bottom5"].sort_values("size")
        # the requested sizes, the last capped by what the speaker has; the test set never changes
        used = g["utterances"].tolist()
        assert used[:2] == [6, 12] and 12 < used[2] <= 30 and used[2] <= g["n_train"].iloc[0]
        assert g["wer_before"].nunique() == 1 and g["test_words"].nunique() == 1
    assert curve["wer_after"].notna().all()
    assert set(curve[curve["strategy"] == "all"]["size"]) == {12}
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    t = saved["targets"]["median_relative_reduction_within_target_utterances"]
    assert t["size"] == 30 and set(t) >= {"value", "target", "met"} and "study_wall_s" in saved["targets"]
    row = next(r for r in saved["curve"] if r["strategy"] == "bottom5" and r["size"] == 30)
    b5 = curve[(curve["strategy"] == "bottom5") & (curve["size"] == 30)]
    expected = ((b5["wer_before"] - b5["wer_after"]) / b5["wer_before"]).median()
    assert row["median_relative_reduction"] == pytest.approx(expected, nan_ok=True)
    assert (tmp_path / "out" / "learning_curve.png").stat().st_size > 1000
    assert np.isfinite(saved["wall_s"])
