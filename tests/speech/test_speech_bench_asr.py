"""`fedpop bench asr`: one workload measured at tiny size, and the JSON's shape."""
import pytest

from experiments import bench_asr


def test_bench_asr_measures_a_workload_and_compares_with_the_reference():
    m = bench_asr.measure_workload("personalize", utterances=8, epochs=1, repeats=2)
    assert m["strategy"] == "bottom5" and m["batch_size"] == 8 and m["bucket_pool"] == 8
    assert len(m["utterance_epochs_per_s_runs"]) == 2 and m["utterance_epochs_per_s"] > 0
    assert m["spread"][0] <= m["utterance_epochs_per_s"] <= m["spread"][1]
    slow = {"personalize": {**m, "utterance_epochs_per_s": m["utterance_epochs_per_s"] / 3}}
    out = bench_asr.assemble({"personalize": m}, {"commit": "abc", **slow}, repeats=2, quick=True, commit="def")
    t = out["targets"]["personalize_speedup"]
    assert t["value"] == pytest.approx(3.0) and t["met"] and t["target"] == ">= 2.0"
    assert out["headline"]["personalize_utterance_epochs_per_s"] == m["utterance_epochs_per_s"]
    assert bench_asr.assemble({"personalize": m}, None, 2, True, "def")["targets"] == {}  # no reference: no claim


def test_synthetic_utterances_have_realistic_lengths():
    from clients.speech.task import ASRTask

    task = ASRTask(ASRTask.Config(max_frames=1200), seed=0)
    d = bench_asr.synthetic_device(task, 200)
    frames = d["x"][:, :, -1].sum(axis=1)
    assert 250 < float(sorted(frames)[100]) < 400 and frames.max() <= 1200
    assert ((d["y"] > 0).sum(axis=1) >= 4).all() and d["y"].max() < 29
