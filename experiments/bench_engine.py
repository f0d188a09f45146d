"""`fedpop bench engine`: seconds per FedAvg round for fedpop, TFF and the compute floor.

Workload: 784-200-200-10 MLP, cohort 50, 5 batches of 10 per device, 10 rounds, measured
in one run on identical device data and cohorts:
  (a) fedpop with its Ray worker pool (`process.next`); the timed pass repeats the same
      rounds after a first pass made and cached the device data (TFF and the floor also
      get prebuilt data); the first pass is reported as `fedpop_cold_s_per_round`,
  (b) TFF 0.87 `build_weighted_fed_avg` on its native C++ runtime (datasets prebuilt,
      outside the timing, which favours TFF),
  (c) the floor: the same SGD steps in one process, one `tf.function` per round that
      loops over all devices (reset to global weights, 5 steps, add the weighted delta).
Then `small_compute`: a workload where overhead is the whole cost (multinomial logistic
regression 784->10, one batch of 10 per device, cohort 1,000): device updates per second.
fedpop trains devices with `client.jit_compile` (XLA); both workloads are also timed
without it (`fedpop_no_jit_s_per_round`, `small_compute.device_updates_per_s_no_jit`).
Then `aggregators`: the same workload under clip+DP, the SecAgg+ secure sum, trimmed mean
and median (seconds per round, server aggregation seconds), and the robust aggregators'
extra coordinator memory and time at cohort 1,000.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from fl.results import write_json


def _config(quick: bool, cache_dir: str | None):
    from experiments.registry import CONFIGS
    from fl.config import load_yaml

    sets = ["client.jit_compile=true"] + ([f"workers.cache_dir={cache_dir}"] if cache_dir else [])
    if quick:
        sets += ["experiment.rounds=3", "cohort.goal=10", "task.hidden=[32, 32]"]
    return load_yaml(str(CONFIGS / "fedavg-mlp.yaml"), sets)


def _fedpop(cfg):
    from fl.runner import engine

    with engine(cfg) as process:
        passes = []
        for _ in range(2):  # pass 1 makes and caches device data; pass 2 (same cohorts) is timed
            state = process.initialize()
            init = state.weights.copy()
            times, cohorts = [], []
            for _ in range(cfg.experiment.rounds):
                t = time.perf_counter()
                state, out = process.next(state)
                times.append(time.perf_counter() - t)
                cohorts.append(np.array(sorted(c["device_id"] for c in out.clients if c["status"] == "accepted")))
            passes.append(times)
        workers = len(process.pool)
        counts = process.population.columns["num_examples"]
    return passes[1], passes[0], cohorts, init, state.weights, workers, counts


def _tff(task, cfg, cohorts, counts, init):
    from fl.tff_backend import TFFFedAvg, tff_context, to_dataset

    data = [[to_dataset(task.device_data(int(d), int(counts[d]), "train"), cfg.client.batch_size) for d in ids]
            for ids in cohorts]
    times = []
    with tff_context():
        algo = TFFFedAvg(task, cfg.client.lr, cfg.server.lr)
        state = algo.initialize(init)
        for round_data in data:
            t = time.perf_counter()
            state, _ = algo.next(state, round_data)
            times.append(time.perf_counter() - t)
        final = algo.weights(state)
    return times, final


def _floor(task, cfg, cohorts, counts, init):
    import tensorflow as tf

    from fl.trainer import sparse_ce

    model = task.build_model()
    variables = model.trainable_variables
    lr = cfg.client.lr
    rounds = []
    for ids in cohorts:
        xs = np.stack([task.device_data(int(d), int(counts[d]), "train")["x"] for d in ids])
        ys = np.stack([task.device_data(int(d), int(counts[d]), "train")["y"] for d in ids])
        b = cfg.client.batch_size
        rounds.append((xs.reshape(len(ids), -1, b, xs.shape[-1]), ys.reshape(len(ids), -1, b)))

    @tf.function
    def fedavg_round(global_vars, xs, ys):
        sums = [tf.zeros_like(v) for v in variables]
        for d in tf.range(tf.shape(xs)[0]):
            for v, g in zip(variables, global_vars):
                v.assign(g)
            for i in tf.range(tf.shape(xs)[1]):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(sparse_ce(ys[d, i], model(xs[d, i], training=True)))
                for v, grad in zip(variables, tape.gradient(loss, variables)):
                    v.assign_sub(lr * grad)
            sums = [s + (v - g) for s, v, g in zip(sums, variables, global_vars)]
        n = tf.cast(tf.shape(xs)[0], tf.float32)
        return [g + s / n for g, s in zip(global_vars, sums)]  # equal examples per device

    shapes = [v.shape for v in variables]
    sizes = [int(np.prod(s)) for s in shapes]
    glob = [tf.constant(p.reshape(s)) for p, s in zip(np.split(init, np.cumsum(sizes)[:-1]), shapes)]
    fedavg_round(glob, *rounds[0])  # trace once, outside the timing
    glob = [tf.constant(p.reshape(s)) for p, s in zip(np.split(init, np.cumsum(sizes)[:-1]), shapes)]
    times = []
    for xs, ys in rounds:
        t = time.perf_counter()
        glob = fedavg_round(glob, tf.constant(xs), tf.constant(ys))
        _ = [g.numpy() for g in glob]
        times.append(time.perf_counter() - t)
    return times, np.concatenate([g.numpy().ravel() for g in glob])


AGGREGATOR_ROWS = {
    "mean": [],
    "clip_dp": ["aggregator.chain=[dp_mean]", "aggregator.clip_norm=1.0", "aggregator.dp_noise_multiplier=1.0",
                "aggregator.weighting=uniform"],
    "secure_sum": ["aggregator.chain=[clip, secure_sum, mean]", "aggregator.clip_norm=1.0"],
    "trimmed_mean": ["aggregator.chain=[trimmed_mean]", "aggregator.trim_fraction=0.1"],
    "median": ["aggregator.chain=[median]"],
}


def _aggregator_rows(cfg, quick: bool) -> dict:
    """Seconds per round of the workload under each aggregator (median of the timed pass),
    the server's aggregation time, and, for the robust ones, the coordinator memory they
    add (every update held: reports x parameters x 4 bytes) at the workload's cohort and
    at cohort 1,000 (``big_cohort``: 2 rounds, mean vs. trimmed mean)."""
    import ray

    from fl.config import load_config

    rows = {}
    for name, sets in AGGREGATOR_ROWS.items():
        c = load_config(cfg.to_dict(), sets)
        times = _fedpop_rounds(c)
        rows[name] = times
        if ray.is_initialized():
            ray.shutdown()
    big = 200 if quick else 1000
    for name in ("mean", "trimmed_mean"):
        c = load_config(cfg.to_dict(), AGGREGATOR_ROWS[name] + [f"cohort.goal={big}", "experiment.rounds=2",
                                                                  "population.size=20000"])
        rows[f"{name}_cohort_{big}"] = _fedpop_rounds(c, passes=1)
        if ray.is_initialized():
            ray.shutdown()
    return rows


def _fedpop_rounds(cfg, passes: int = 2) -> dict:
    from fl.runner import engine

    with engine(cfg) as process:
        for _ in range(passes):  # the last pass is timed (the first makes and caches device data)
            state = process.initialize()
            times, agg, reports = [], [], []
            for _ in range(cfg.experiment.rounds):
                t = time.perf_counter()
                state, out = process.next(state)
                times.append(time.perf_counter() - t)
                agg.append(out.metrics.get("aggregate_s", float("nan")))
                reports.append(out.metrics["accepted"])
    robust = cfg.aggregator.chain and cfg.aggregator.chain[-1] in ("median", "trimmed_mean")
    return {"s_per_round": statistics.median(times), "s_per_round_spread": [min(times), max(times)],
            "aggregate_s": statistics.median(agg), "cohort": cfg.cohort.goal,
            "extra_coordinator_bytes": int(max(reports) * state.weights.size * 4) if robust else 0}


def _one_run(cfg, quick: bool) -> dict:
    import ray

    from fl.task import make_task

    print(f"[bench engine] fedpop: {cfg.experiment.rounds} rounds, cohort {cfg.cohort.goal}", flush=True)
    fp_times, fp_cold, cohorts, init, fp_final, workers, counts = _fedpop(cfg)
    if ray.is_initialized():
        ray.shutdown()
    from fl.config import load_config
    one = load_config(cfg.to_dict(), ["workers.num=1"])
    print("[bench engine] fedpop with a single worker", flush=True)
    fp1_times = _fedpop(one)[0]
    if ray.is_initialized():
        ray.shutdown()
    print("[bench engine] fedpop without XLA (client.jit_compile=false)", flush=True)
    plain = _fedpop(load_config(cfg.to_dict(), ["client.jit_compile=false"]))
    fp_plain_times = plain[0]
    if ray.is_initialized():
        ray.shutdown()
    task = make_task(cfg.experiment.task, cfg.task, cfg.experiment.seed)
    print("[bench engine] TFF native runtime", flush=True)
    tff_times, tff_final = _tff(task, cfg, cohorts, counts, init)
    print("[bench engine] floor: one-process tf.function loop", flush=True)
    floor_times, floor_final = _floor(task, cfg, cohorts, counts, init)
    fp, tf_, fl = (statistics.median(t) for t in (fp_times, tff_times, floor_times))
    result = {
        "workload": {"model": f"mlp {cfg.task.input_dim}-{'-'.join(map(str, cfg.task.hidden))}-{cfg.task.classes}",
                     "cohort": cfg.cohort.goal, "batches_per_device": int(counts[cohorts[0]][0] // cfg.client.batch_size),
                     "batch_size": cfg.client.batch_size, "rounds": cfg.experiment.rounds, "fedpop_workers": workers},
        "fedpop_s_per_round": fp, "tff_s_per_round": tf_, "floor_s_per_round": fl,
        "overhead_vs_floor": fp / fl, "speedup_vs_tff": tf_ / fp,
        "max_abs_diff_fedpop_vs_tff_weights": float(np.abs(fp_final - tff_final).max()),
        "max_abs_diff_fedpop_vs_floor_weights": float(np.abs(fp_final - floor_final).max()),
        "fedpop_cold_s_per_round": statistics.median(fp_cold),
        "fedpop_1worker_s_per_round": statistics.median(fp1_times),
        "fedpop_no_jit_s_per_round": statistics.median(fp_plain_times),
        "speedup_vs_tff_no_jit": tf_ / statistics.median(fp_plain_times),
        "max_abs_diff_fedpop_no_jit_vs_tff_weights": float(np.abs(plain[4] - tff_final).max()),
        "overhead_vs_floor_1worker": statistics.median(fp1_times) / fl,
        "per_round_s": {"fedpop": fp_times, "fedpop_cold": fp_cold, "fedpop_1worker": fp1_times,
                        "fedpop_no_jit": fp_plain_times,
                        "tff": tff_times, "floor": floor_times},
    }
    print("[bench engine] small compute: logistic regression, 1 batch per device, cohort 1,000", flush=True)
    result["small_compute"] = _small_compute(cfg, quick)
    if ray.is_initialized():
        ray.shutdown()
    print("[bench engine] aggregators: clip+DP, secure sum, robust", flush=True)
    result["aggregators"] = _aggregator_rows(cfg, quick)
    return result


def _small_compute(cfg, quick: bool) -> dict:
    """Device updates per second when per-device compute is tiny: the engine's overhead
    (cohort planning, dispatch, data lookup, per-device bookkeeping) is the whole cost."""
    from fl.config import load_config

    goal = 200 if quick else 1000
    c = load_config(cfg.to_dict(), ["task.hidden=[]", f"cohort.goal={goal}", "population.size=100000",
                                    "population.examples_median=10", "population.examples_min=10",
                                    "population.examples_max=10", "experiment.rounds=5"])
    row = _fedpop_rounds(c)
    import ray

    if ray.is_initialized():
        ray.shutdown()
    plain = _fedpop_rounds(load_config(c.to_dict(), ["client.jit_compile=false"]))
    return {"model": "logistic regression 784->10", "cohort": goal, "examples_per_device": 10,
            "s_per_round": row["s_per_round"], "s_per_round_spread": row["s_per_round_spread"],
            "device_updates_per_s": goal / row["s_per_round"],
            "device_updates_per_s_no_jit": goal / plain["s_per_round"]}


HEADLINE = ("fedpop_s_per_round", "tff_s_per_round", "floor_s_per_round", "overhead_vs_floor", "speedup_vs_tff")
SCALARS = HEADLINE + ("fedpop_cold_s_per_round", "fedpop_1worker_s_per_round", "overhead_vs_floor_1worker",
                      "fedpop_no_jit_s_per_round", "speedup_vs_tff_no_jit",
                      "max_abs_diff_fedpop_vs_tff_weights", "max_abs_diff_fedpop_vs_floor_weights",
                      "max_abs_diff_fedpop_no_jit_vs_tff_weights")


def _median_and_spread(values) -> tuple[float, list[float]]:
    return float(statistics.median(values)), [float(min(values)), float(max(values))]


def summarize_runs(runs: list[dict]) -> dict:
    """Median over whole runs of each figure, with the spread [min, max] across runs (the
    per-run figures are themselves medians over rounds)."""
    out = {"repeats": len(runs), "workload": runs[0]["workload"], "spread": {}, "aggregators": {}}
    for k in SCALARS:
        out[k], out["spread"][k] = _median_and_spread([r[k] for r in runs])
    for name in runs[0]["aggregators"]:
        rows = [r["aggregators"][name] for r in runs]
        row = {k: v for k, v in rows[0].items() if k not in ("s_per_round", "s_per_round_spread", "aggregate_s")}
        row["s_per_round"], row["s_per_round_spread_across_runs"] = _median_and_spread([x["s_per_round"] for x in rows])
        row["aggregate_s"], row["aggregate_s_spread_across_runs"] = _median_and_spread([x["aggregate_s"] for x in rows])
        out["aggregators"][name] = row
    small = [r["small_compute"]["device_updates_per_s"] for r in runs if "small_compute" in r]
    if small:
        out["small_compute"] = {**runs[0]["small_compute"]}
        out["small_compute"]["device_updates_per_s"], out["small_compute"]["spread_across_runs"] = \
            _median_and_spread(small)
        out["small_compute"].pop("s_per_round_spread", None)
        (out["small_compute"]["device_updates_per_s_no_jit"],
         out["small_compute"]["no_jit_spread_across_runs"]) = _median_and_spread(
            [r["small_compute"]["device_updates_per_s_no_jit"] for r in runs])
        out["small_compute"]["s_per_round"] = _median_and_spread([r["small_compute"]["s_per_round"] for r in runs])[0]
    out["targets"] = {"overhead_vs_floor_max": 1.15, "speedup_vs_tff_min": 8.0, "device_updates_per_s_min": 20_000}
    out["met"] = {"overhead_vs_floor": out["overhead_vs_floor"] <= 1.15, "speedup_vs_tff": out["speedup_vs_tff"] >= 8.0,
                  "device_updates_per_s": bool(small) and out["small_compute"]["device_updates_per_s"] >= 20_000}
    out["headline"] = {k: out[k] for k in HEADLINE}
    out["runs"] = runs
    return out


def run_bench(out: str, quick: bool = False, cache_dir: str | None = None, repeats: int = 3) -> dict:
    """``repeats`` whole runs (the machine is noisy): figures are medians across runs, with
    the spread; each run's own figures are kept under ``runs``."""
    import ray

    cfg = _config(quick, cache_dir)
    runs = []
    for i in range(max(int(repeats), 1)):
        print(f"[bench engine] run {i + 1} of {repeats}", flush=True)
        runs.append(_one_run(cfg, quick))
        if ray.is_initialized():
            ray.shutdown()
    result = summarize_runs(runs)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out))
    return result
