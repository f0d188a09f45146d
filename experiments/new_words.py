"""`fedpop run new-words`: discover new words (outside the global dictionary) with TrieHH.

Gboard-style new-word discovery ("Federated Analytics", Ramage & Mazzocchi
2020) with TrieHH (Zhu et al., AISTATS 2020) over a population of simulated
phones whose new words come from the char-LM task's typing data
(:class:`clients.typing_data.TypingPopulation`, sampled per device by
:class:`analytics.new_words.NewWordDevices`).  Each round samples a fraction
gamma of the devices eligible at that simulated hour (idle, charging,
unmetered); votes are summed with SecAgg+ in groups.  The population is lazy
(fl/population.py): a round draws Binomial(size, gamma) distinct device ids
(Poisson sampling is exactly that) and keeps the eligible ones, so a round
costs O(gamma x size) at any size; at a billion devices pass a ``triehh.gamma``
below the one Corollary 1 gives for the target ε (a smaller gamma is a smaller
ε) to keep a few thousand voters per round.  The ground truth (devices per new
word) is exact up to ``TRUTH_SAMPLE`` devices and estimated from that many
evenly spaced devices beyond (``summary["ground_truth"]``).  Outputs in ``out_dir``:
``heavy_hitters.parquet`` (TrieHH at the chosen epsilon and the IBLT
comparison), ``triehh_rounds.parquet``, ``f1_vs_epsilon.png``, ``summary.json``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from analytics.config import NewWordsConfig, load_new_words
from analytics.evaluation import heavy_hitter_table, plot_f1_vs_epsilon, topk_metrics, true_top_k
from analytics.new_words import NewWordDevices
from analytics.secure_histogram import SecAggPool
from analytics.triehh import run_triehh, triehh_params
from fl.results import write_json
from fl.seeding import rng_for


def load(raw: dict | None, overrides: list[str] | None = None) -> NewWordsConfig:
    """The CLI's hook: validate the YAML dict plus ``--set`` overrides (ConfigError on bad input)."""
    return load_new_words(raw, overrides)


# devices per new word: exact up to this many devices, estimated from a sample beyond
TRUTH_SAMPLE = 1_000_000


def _sampler(pop, cfg: NewWordsConfig, tag: str):
    """Each round: every device eligible at that hour joins with probability gamma (Poisson
    sampling), drawn as Binomial(size, gamma) distinct uniform ids of which the eligible
    ones join: O(gamma x size), whatever the population size."""

    def sample(depth: int, gamma: float) -> np.ndarray:
        t = cfg.triehh.start_hour_utc * 3600.0 + depth * cfg.triehh.round_interval_s
        rng = rng_for(cfg.study.seed, "triehh-sample", tag, depth)
        ids = np.sort(rng.choice(pop.size, size=rng.binomial(pop.size, min(gamma, 1.0)), replace=False))
        return ids[pop.eligible(ids, t)].astype(np.int64)

    return sample


def _iblt_study(cfg: NewWordsConfig, pop, devices: NewWordDevices, truth: dict, pool, progress: bool):
    """IBLT heavy hitters on a cohort of eligible devices: encode, SecAgg-sum, decode, release."""
    from analytics import central_dp, iblt
    from analytics.secure_histogram import secure_sum
    from fl.cohort import select_cohort

    c = cfg.iblt
    t0 = time.perf_counter()
    ids = select_cohort(pop, c.devices, cfg.triehh.start_hour_utc * 3600.0, rng_for(cfg.study.seed, "iblt-cohort"))
    spec = iblt.IbltSpec(capacity=c.capacity, string_max_bytes=c.string_max_bytes, repetitions=c.repetitions,
                         seed=cfg.study.seed)
    hasher = iblt.Hasher(spec)
    items = devices.items(ids)
    total = np.zeros(spec.size, np.uint64)
    survivors = 0
    groups = 0
    step = max(cfg.secagg.group_size * max(cfg.secagg.workers, 1) * 2, 2)
    settings = cfg.secagg.settings()
    for a in range(0, len(ids), step):
        chunk = items[a:a + step]
        if len(chunk) < 2:
            continue
        rows = iblt.device_rows(spec, [[devices.vocab[i] for i in row if i >= 0] for row in chunk],
                                max_items=c.max_items_per_device, hasher=hasher)
        res = secure_sum(rows, settings=settings, seed=cfg.study.seed, tag=("iblt", a), pool=pool,
                         max_total=(spec.field_size - 1) * cfg.secagg.group_size)
        total = (total + res.total.astype(np.uint64) % np.uint64(spec.field_size)) % np.uint64(spec.field_size)
        survivors += len(res.survivors)
        groups += res.groups
    dec = iblt.decode(spec, total.astype(np.int64), hasher=hasher)
    summary = {"devices": int(len(ids)), "survivors": int(survivors), "secagg_groups": groups,
               "table_shape": list(spec.shape), "capacity": spec.capacity, "decoded_items": len(dec.items),
               "decode_complete": dec.complete, "decode_message": dec.message}
    if c.dp_epsilon > 0:
        dp = central_dp.calibrate(c.dp_epsilon, c.dp_delta, c.max_items_per_device)
        released = central_dp.release(dec.items, dp, rng_for(cfg.study.seed, "iblt-dp"))
        summary.update(dp.as_dict(), release="gaussian noise + threshold (central DP)")
    else:
        released = {w: n for w, n in dec.items.items() if n >= c.k_anonymity}
        summary.update(release=f"k-anonymity >= {c.k_anonymity} (no DP)", dp_epsilon=None)
    ranked = sorted(released, key=lambda w: (-released[w], w))
    summary.update(released_items=len(ranked), **topk_metrics(ranked, truth, cfg.eval.k),
                   seconds=time.perf_counter() - t0)
    table = heavy_hitter_table(ranked, released, truth, method="iblt",
                               epsilon=c.dp_epsilon if c.dp_epsilon > 0 else None)
    return table, summary


def run(cfg: NewWordsConfig, out_dir: Path, progress: bool = True) -> dict:
    from fl.population import Population

    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed = cfg.study.seed
    t = cfg.triehh
    params = triehh_params(t.epsilon, t.delta, t.max_word_len, theta=t.theta or None, gamma=t.gamma or None)
    pop = Population.build(cfg.population, seed)
    if pop.size < 2:
        raise ValueError("the population is empty (need >= 2 devices)")
    ty = cfg.typing
    devices = NewWordDevices.build(seed, dictionary_size=ty.dictionary_size, new_words=ty.new_words,
                                   new_words_per_device=ty.new_words_per_device, new_word_zipf=ty.new_word_zipf)
    truth_ids = pop.sample_ids(TRUTH_SAMPLE)  # every device up to TRUTH_SAMPLE
    counts = devices.device_counts(truth_ids)  # ground truth, simulator only
    if len(truth_ids) < pop.size:  # expected devices per word, from an evenly spaced sample
        counts = np.rint(counts * (pop.size / len(truth_ids))).astype(np.int64)
    truth = {w: int(n) for w, n in zip(devices.vocab, counts) if n > 0}
    t_setup = time.perf_counter() - t_start
    k = cfg.eval.k
    settings = cfg.secagg.settings()
    with SecAggPool(cfg.secagg.workers) as pool:
        main = run_triehh(devices.vocab, devices.items, _sampler(pop, cfg, "main"), params, seed=seed,
                          secagg=settings, pool=pool, progress=progress, label=f"TrieHH eps={params.epsilon:.3g}")
        main_metrics = {**topk_metrics(main.words, truth, k), **topk_metrics(main.words, truth, 10)}
        curve_rows = []
        for eps in cfg.eval.curve_epsilons:
            if abs(eps - t.epsilon) < 1e-12 and not (t.theta or t.gamma):
                res, secure = main, True
            else:
                pe = triehh_params(eps, t.delta, t.max_word_len)
                res = run_triehh(devices.vocab, devices.items, _sampler(pop, cfg, f"curve-{eps:g}"), pe, seed=seed,
                                 secagg=settings if cfg.eval.curve_secure else None, pool=pool, progress=progress,
                                 label=f"TrieHH eps={eps:g}")
                secure = cfg.eval.curve_secure
            row = {"epsilon": eps, "theta": res.params.theta, "gamma": res.params.gamma,
                   "discovered": len(res.words), "voters_per_round": res.summary()["voters_total"] / max(
                       1, res.rounds_run), "secure_aggregation": secure, "seconds": res.seconds}
            for kk in sorted(set(cfg.eval.curve_ks) | {k}):
                row.update(topk_metrics(res.words, truth, kk))
            curve_rows.append(row)
        iblt_table, iblt_summary = (None, None)
        if cfg.iblt.devices >= 2:
            iblt_table, iblt_summary = _iblt_study(cfg, pop, devices, truth, pool, progress)
    curve = pd.DataFrame(curve_rows, columns=list(curve_rows[0]) if curve_rows else ["epsilon"])
    curve = curve.sort_values("epsilon", ignore_index=True)
    if curve_rows:  # eval.curve_epsilons=[]: no sweep (e.g. at a billion devices)
        plot_f1_vs_epsilon(curve, out / "f1_vs_epsilon.png", sorted(set(cfg.eval.curve_ks)),
                           f"TrieHH new words, {pop.size:,} devices")
    curve.to_csv(out / "f1_vs_epsilon.csv", index=False)
    tables = [heavy_hitter_table(main.words, main.votes, truth, method="triehh", epsilon=params.epsilon)]
    if iblt_table is not None:
        tables.append(iblt_table)
    pd.concat(tables, ignore_index=True).to_parquet(out / "heavy_hitters.parquet", index=False)
    pd.DataFrame(main.per_round).to_parquet(out / "triehh_rounds.parquet", index=False)
    wall = time.perf_counter() - t_start
    rounds = main.per_round
    summary = {
        "study": "new-words", "seed": seed, "devices": pop.size, "vocabulary_new_words": len(devices.vocab),
        "new_words_held": len(truth), "true_top10": true_top_k(truth, 10),
        "ground_truth": ("exact" if len(truth_ids) == pop.size else
                         f"estimated from {len(truth_ids):,} evenly spaced devices of {pop.size:,}"),
        "epsilon": params.epsilon, "epsilon_target": t.epsilon, "delta": params.delta, "theta": params.theta,
        "gamma": params.gamma, "rounds_L": params.rounds, "rounds_run": main.rounds_run,
        "dp_release": "the set of discovered words; per-prefix vote totals stay with the server",
        "discovered": main.words, **main_metrics,
        "voters_per_round": [r["sampled"] for r in rounds],
        "voters_total": int(sum(r["sampled"] for r in rounds)),
        "secagg_groups_total": int(sum(r["groups"] for r in rounds)),
        "secagg_seconds_total": float(sum(r["secagg_s"] for r in rounds)),
        "secagg": {**cfg.secagg.__dict__},
        "triehh_seconds": main.seconds, "setup_seconds": t_setup,
        "f1_vs_epsilon": curve.to_dict("records"),
        "iblt": iblt_summary,
        "wall_seconds": wall,
        "targets": {"recall@10>=0.9": main_metrics["recall@10"] >= 0.9,
                    "triehh_seconds<=300": main.seconds + t_setup <= 300.0, "wall_seconds": wall},
        "config": cfg.to_dict(),
    }
    write_json(summary, out / "summary.json")
    return summary
