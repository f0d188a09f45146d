"""`fedpop run now-playing`: which songs of a regional catalog are recognised most.

The Now Playing study of "Federated Analytics" (Ramage & Mazzocchi 2020):
each round selects a few hundred eligible phones (idle, charging, unmetered;
:func:`fl.cohort.select_cohort`) that have not reported yet; each sends its
per-song recognition counts (a histogram over the catalog) plus a
population-statistics vector (recognitions per device,
:class:`analytics.population_stats.StatsEncoder`) through SecAgg+; the server
accumulates the unmasked sums over rounds until every device has reported
(devices that drop out of a round are asked again later).  A round never
aggregates fewer than ``rounds.min_devices`` devices, so a last handful of
rarely-eligible devices may stay unreported (``coverage`` < 1): the exact
comparison is against the ground truth of the devices that reported, and the
population total is compared as well.  No DP: the totals
are exact and are compared with the simulator's ground truth.

The population is lazy (fl/population.py), so the study runs at any
``population.size`` (a billion included) in memory set by the devices that
report: the server keeps the sorted ids of the devices that reported, not a
flag per device.  The population-wide ground truth is exact up to
``TRUTH_SAMPLE`` devices; beyond, it is estimated from that many evenly spaced
devices (`Population.sample_ids`) scaled to the population
(``summary["population_truth"]`` says which).  At such sizes the query stops at
``rounds.max_rounds`` with ``coverage`` far below 1; the exact comparison
(secure sums vs the truth of the devices that reported) is the same.

Outputs in ``out_dir``: ``heavy_hitters.parquet`` (every song with its secure
and true counts and ranks), ``rounds.parquet``, ``top_songs.png``,
``summary.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.config import NowPlayingConfig, load_now_playing
from analytics.evaluation import plot_top_items, topk_metrics
from analytics.now_playing import ListeningHistories, SongCatalog
from analytics.population_stats import StatsEncoder
from analytics.query import Query, run_query
from analytics.secure_histogram import SecAggPool
from fl.results import write_json
from fl.seeding import rng_for

STATS = StatsEncoder(lo=0.0, hi=400.0, bins=40, scale=1 << 12)  # recognitions per device
# the population-wide ground truth is exact up to this many devices, estimated from a sample beyond
TRUTH_SAMPLE = 50_000


def load(raw: dict | None, overrides: list[str] | None = None) -> NowPlayingConfig:
    """The CLI's hook: validate the YAML dict plus ``--set`` overrides (ConfigError on bad input)."""
    return load_now_playing(raw, overrides)


def run(cfg: NowPlayingConfig, out_dir: Path, progress: bool = True) -> dict:
    from fl.cohort import select_cohort
    from fl.population import Population

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = cfg.study.seed
    pop = Population.build(cfg.population, seed)
    if pop.size < 2:
        raise ValueError("the population is empty (need >= 2 devices)")
    s = cfg.songs
    catalog = SongCatalog(s.songs, seed, genres=s.genres, zipf=s.zipf, regional_sigma=s.regional_sigma)
    hist = ListeningHistories(catalog, pop.columns["locale"], seed, recognitions_median=s.recognitions_median,
                              recognitions_sigma=s.recognitions_sigma, taste_weight=s.taste_weight,
                              taste_alpha=s.taste_alpha, max_per_song=s.max_per_song)
    truth_ids = pop.sample_ids(TRUTH_SAMPLE)  # every device up to TRUTH_SAMPLE
    truth_all = hist.totals(truth_ids)  # simulator only
    truth_exact = len(truth_ids) == pop.size
    if not truth_exact:  # expected population totals from an evenly spaced sample
        truth_all = np.rint(truth_all * (pop.size / len(truth_ids))).astype(np.int64)
    t_setup = time.perf_counter() - t_start
    rc = cfg.rounds
    patience = int(np.ceil(86400.0 / max(rc.round_interval_s, 1.0))) + 1  # a simulated day without reports

    # the query (analytics/query.py): each device adds its song counts and its own total;
    # the server keeps the running sum and who has reported; a device reports once
    def select(st, r):
        if len(st["reported"]) == pop.size or r - st["last_report"] > patience:
            return None
        t_sim = rc.start_hour_utc * 3600.0 + r * rc.round_interval_s
        return select_cohort(pop, rc.goal, t_sim, rng_for(seed, "now-playing-cohort", r), exclude=st["reported"])

    def device(st, ids, r):
        counts = hist.histograms(ids)
        return np.concatenate([counts, STATS.encode(counts.sum(axis=1))], axis=1)

    def server(st, total, reported_ids, r):
        st["total"] += total
        st["reported"] = np.union1d(st["reported"], reported_ids)  # sorted ids of the devices that reported
        if len(reported_ids):
            st["last_report"] = r
        return st, {"t_sim_h": (rc.start_hour_utc * 3600.0 + r * rc.round_interval_s) / 3600.0}, False

    query = Query(lambda: {"total": np.zeros(catalog.n + STATS.width, np.int64),
                           "reported": np.zeros(0, np.int64), "last_report": 0}, select, device, server)
    with SecAggPool(cfg.secagg.workers) as pool:
        st, rounds = run_query(query, settings=cfg.secagg.settings(), seed=seed, tag=("now-playing",), pool=pool,
                               max_rounds=rc.max_rounds, min_devices=rc.min_devices, progress=progress,
                               label="now-playing rounds")
    total, reported = st["total"], st["reported"]
    secure_counts = total[: catalog.n]
    stats = STATS.decode(total[catalog.n:])
    reported_ids = reported
    truth_reported = hist.totals(reported_ids)
    per_device_truth = np.array([len(hist.device_songs(d)) for d in reported_ids.tolist()], np.float64)
    exact = bool(np.array_equal(secure_counts, truth_reported))
    k = rc.top_k
    order = np.lexsort((np.arange(catalog.n), -secure_counts))
    true_order = np.lexsort((np.arange(catalog.n), -truth_all))
    true_rank = np.empty(catalog.n, np.int64)
    true_rank[true_order] = np.arange(1, catalog.n + 1)
    names = np.array(catalog.titles)
    table = pd.DataFrame({"rank": np.arange(1, catalog.n + 1), "song_id": order, "title": names[order],
                          "genre": catalog.genre[order], "secure_count": secure_counts[order],
                          "true_count_reported": truth_reported[order], "true_count_population": truth_all[order],
                          "true_rank": true_rank[order]})
    table.to_parquet(out / "heavy_hitters.parquet", index=False)
    pd.DataFrame(rounds).to_parquet(out / "rounds.parquet", index=False)
    top = order[:k]
    plot_top_items([names[i] for i in top], secure_counts[top], truth_all[top], out / "top_songs.png",
                   f"Now Playing: top {k} of {catalog.n:,} songs ({len(reported_ids):,} devices, SecAgg+)")
    truth_map = {int(i): int(c) for i, c in enumerate(truth_reported)}  # what the aggregate should equal
    pop_map = {int(i): int(c) for i, c in enumerate(truth_all)}
    ranked = [int(i) for i in order if secure_counts[i] > 0]
    wall = time.perf_counter() - t_start
    done = [r for r in rounds if r.get("reported")]
    summary = {
        "study": "now-playing", "seed": seed, "devices": pop.size, "songs": catalog.n,
        "devices_reported": int(len(reported_ids)), "coverage": len(reported_ids) / pop.size,
        "rounds_run": len(rounds), "rounds_with_reports": len(done),
        "devices_per_round_mean": float(np.mean([r["reported"] for r in done])) if done else 0.0,
        "dropouts_total": int(sum(r.get("dropped", 0) for r in rounds)),
        "recognitions_total": int(secure_counts.sum()),
        "exact_equals_ground_truth": exact,
        "exact_equals_population_truth": bool(truth_exact and np.array_equal(secure_counts, truth_all)),
        "population_truth": ("exact" if truth_exact else
                             f"estimated from {len(truth_ids):,} evenly spaced devices of {pop.size:,}"),
        "max_abs_error": int(np.abs(secure_counts - truth_reported).max()),
        f"top{k}": [{"song_id": int(i), "title": str(names[i]), "secure_count": int(secure_counts[i]),
                     "true_count": int(truth_all[i])} for i in top],
        **topk_metrics(ranked, truth_map, k), **topk_metrics(ranked, truth_map, 10),
        "vs_population_truth": {**topk_metrics(ranked, pop_map, k), **topk_metrics(ranked, pop_map, 10)},
        "population_stats_recognitions_per_device": {
            **stats.as_dict(), "true_mean": float(per_device_truth.mean()) if len(per_device_truth) else None,
            "true_median": float(np.median(per_device_truth)) if len(per_device_truth) else None},
        "secagg": {**cfg.secagg.__dict__},
        "secagg_seconds_total": float(sum(r.get("secagg_s", 0.0) for r in rounds)),
        "bytes_sent_per_client": float(np.mean([r["bytes_sent_per_client"] for r in done])) if done else 0.0,
        "setup_seconds": t_setup, "wall_seconds": wall,
        "targets": {"exact_counts": exact, "wall_seconds<=120": wall <= 120.0},
        "config": cfg.to_dict(),
    }
    write_json(summary, out / "summary.json")
    return summary
