"""The two studies end to end on tiny populations, their configs, and the device samplers."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from analytics.config import load_new_words, load_now_playing
from analytics.evaluation import topk_metrics, true_top_k
from analytics.new_words import NewWordDevices
from analytics.now_playing import ListeningHistories, SongCatalog
from fl.config import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"

TINY_NEW_WORDS = {
    "population": {"size": 6000, "eligible_prob": 1.0, "night_hours": 24},
    "typing": {"new_words": 30, "dictionary_size": 300},
    "triehh": {"epsilon": 8.0, "max_word_len": 10},
    "iblt": {"devices": 40, "capacity": 60, "dp_epsilon": 0},
    "secagg": {"group_size": 100, "workers": 1, "dropout_rate": 0.05, "corrupt_fraction": 0.02},
    "eval": {"k": 5, "curve_epsilons": [4, 8], "curve_ks": [5]},
}


def test_default_yamls_are_the_full_size_targets():
    nw = load_new_words(yaml.safe_load((CONFIGS / "new-words.yaml").read_text()))
    assert nw.population.size == 1_000_000 and nw.triehh.epsilon == 4.0
    npl = load_now_playing(yaml.safe_load((CONFIGS / "now-playing.yaml").read_text()))
    assert npl.population.size == 10_000 and npl.songs.songs == 5000


@pytest.mark.parametrize("override,match", [
    ("triehh.epsilon=0", "triehh.epsilon"),
    ("triehh.epsilon=-2", "triehh.epsilon"),
    ("population.size=0", "population.size"),
    ("population.size=300", "nothing could ever be discovered"),
    ("triehh.gamma=0.5", "impossible"),
    ("triehh.theta=6", "impossible"),
    ("triehh.colour=red", "unknown key 'triehh.colour'"),
    ("secagg.mode=plain", "allowed: secagg\\+, secagg"),
    ("eval.curve_epsilons=[1, 0]", "curve_epsilons"),
])
def test_new_words_bad_input_fails_before_work(override, match):
    with pytest.raises(ConfigError, match=match):
        load_new_words(TINY_NEW_WORDS, [override])


def test_now_playing_bad_input():
    for o, m in (("population.size=0", "population.size"), ("population.size=1", "population.size"),
                 ("songs.songs=0", "songs.songs"), ("rounds.top_k=50", "top_k"),
                 ("rounds.min_devices=500", "min_devices"), ("nope.x=1", "unknown key")):
        with pytest.raises(ConfigError, match=m):
            load_now_playing({"songs": {"songs": 20}}, [o])


@pytest.mark.slow  # an end-to-end study: `make test-all`
def test_new_words_study_end_to_end(tmp_path):
    from experiments import new_words

    # recall@5 of this tiny config is 0.6 or 0.8 depending on the seed's cohorts (seeds 0-5)
    cfg = new_words.load(TINY_NEW_WORDS, ["study.seed=4"])
    s = new_words.run(cfg, tmp_path, progress=False)
    for f in ("heavy_hitters.parquet", "summary.json", "f1_vs_epsilon.png", "triehh_rounds.parquet"):
        assert (tmp_path / f).exists(), f
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["theta"] == 15 and on_disk["gamma"] == pytest.approx(s["gamma"])
    assert s["recall@5"] >= 0.8 and s["discovered"][0] == s["true_top10"][0]
    assert s["secagg_groups_total"] >= s["rounds_run"] and s["voters_total"] > 1000
    df = pd.read_parquet(tmp_path / "heavy_hitters.parquet")
    assert set(df["method"]) == {"triehh", "iblt"}
    ib = s["iblt"]
    assert ib["decode_complete"] and ib["devices"] == 40
    curve = {r["epsilon"]: r for r in s["f1_vs_epsilon"]}
    assert set(curve) == {4.0, 8.0} and curve[8.0]["secure_aggregation"] and not curve[4.0]["secure_aggregation"]
    assert curve[8.0]["f1@5"] == s["f1@5"]
    # deterministic from the seed: the same sampling summed in the clear gives the same trie
    from analytics.new_words import NewWordDevices
    from analytics.triehh import run_triehh, triehh_params
    from fl.population import Population

    pop = Population.build(cfg.population, 4)
    dev = NewWordDevices.build(4, dictionary_size=300, new_words=30)
    again = run_triehh(dev.vocab, dev.items, new_words._sampler(pop, cfg, "main"),
                       triehh_params(8.0, cfg.triehh.delta, 10), seed=4, secagg=None)
    assert again.words == s["discovered"]


@pytest.mark.slow  # an end-to-end study: `make test-all`
def test_now_playing_study_exact_counts(tmp_path):
    from experiments import now_playing

    cfg = now_playing.load(
        {"population": {"size": 240, "eligible_prob": 1.0, "night_hours": 24}, "songs": {"songs": 150, "recognitions_median": 10},
         "rounds": {"goal": 60, "top_k": 5, "round_interval_s": 3600, "min_devices": 2},
         "secagg": {"group_size": 60, "simulated_dropout": 0.05, "workers": 1, "dropout_rate": 0.1}}, [])
    s = now_playing.run(cfg, tmp_path, progress=False)
    assert s["devices_reported"] >= 236 and s["coverage"] >= 0.98  # a lone last device cannot be aggregated
    assert s["exact_equals_ground_truth"] and s["max_abs_error"] == 0
    assert s["dropouts_total"] > 0  # dropped devices were asked again in later rounds
    assert s["recall@5"] == 1.0 and s["precision@5"] == 1.0
    ps = s["population_stats_recognitions_per_device"]
    assert ps["count"] == s["devices_reported"] and ps["mean"] == pytest.approx(ps["true_mean"], abs=0.2)
    df = pd.read_parquet(tmp_path / "heavy_hitters.parquet")
    assert len(df) == 150 and (df["secure_count"] == df["true_count_reported"]).all()
    assert (tmp_path / "top_songs.png").exists()


def test_new_word_sampler_matches_typing_population_law():
    nw = NewWordDevices.build(0, new_words=25, dictionary_size=300)
    items = nw.items(np.arange(100_000))
    assert (items[:, 0] != items[:, 1]).all()
    assert np.array_equal(items[:5], nw.items(np.arange(5)))  # per-device, independent of batch
    mine = np.bincount(items.ravel(), minlength=25) / 100_000
    ref = Counter()
    for d in range(4000):
        ref.update(nw.typing.device_new_words(d))
    ref = np.array([ref[w] for w in nw.vocab]) / 4000
    assert np.abs(mine - ref).max() < 0.03  # same inclusion probabilities (sd <= 0.008)
    assert nw.device_counts(np.arange(1000)).sum() == 2000


def test_catalog_and_histories_deterministic():
    cat = SongCatalog(300, seed=1, genres=5)
    assert np.allclose(cat.region_p.sum(axis=1), 1.0) and len(set(cat.titles)) == 300
    h = ListeningHistories(cat, np.arange(50) % 8, seed=1, max_per_song=2)
    a, b = h.histograms(np.arange(50)), h.histograms(np.arange(50))
    assert np.array_equal(a, b) and a.max() <= 2
    assert np.array_equal(h.totals(np.arange(50), chunk=7), a.sum(axis=0))
    with pytest.raises(ValueError):
        SongCatalog(0, seed=1)


def test_topk_metrics():
    truth = {"a": 10, "b": 9, "c": 8, "d": 1}
    assert true_top_k(truth, 2) == ["a", "b"]
    m = topk_metrics(["a", "d", "c"], truth, 2)
    assert m["recall@2"] == 0.5 and m["precision@2"] == 0.5 and m["f1@2"] == 0.5
    assert topk_metrics([], truth, 2)["f1@2"] == 0.0
