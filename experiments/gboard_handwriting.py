"""`fedpop run gboard-handwriting`: online handwriting recognition as an on-device model family
(Carbune et al. 2020, "Fast multi-language LSTM-based online handwriting recognition", the
recognizer behind Gboard's handwriting input).

Four recognizers, each trained by FedAvg through the engine (one writer per device) on the
same budget (rounds, cohort, local epochs, learning rate):

- ``points_bilstm_greedy``: resampled touch points, bidirectional LSTM, greedy CTC decoding
  (the baseline);
- ``bezier_bilstm_greedy``: Bézier curves, bidirectional LSTM;
- ``bezier_biqrnn_greedy``: Bézier curves, bidirectional QRNN of about the same size;
- ``bezier_biqrnn_lm_beam``: the same QRNN, beam search with the character n-gram LM as a
  weighted acceptor; the LM weight and insertion bonus are tuned on validation writers
  (training writers that never train: their words are training words, their ink unseen).

Then: CER/WER on held-out words (10% of every training writer's distinct words, never in
training or in the LM's text), points -> curves compaction, per-word latency on one thread,
per-writer fine-tuning of the held-out writers on their own devices (the engine's
"personalize" mode) with CER before/after by writer style, and TFLite float/int8 exports.
The study's own keys are the ``study`` section; the rest is the engine's config.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from experiments.study_config import StudyConfig, load_study
from fl.config import ConfigError, bounded

TASK = "handwriting"
# name -> (representation, cell, decoder); the LM-beam configuration reuses the QRNN's training
CONFIGURATIONS = {
    "points_bilstm_greedy": ("points", "lstm", "greedy"),
    "bezier_bilstm_greedy": ("bezier", "lstm", "greedy"),
    "bezier_biqrnn_greedy": ("bezier", "qrnn", "greedy"),
    "bezier_biqrnn_lm_beam": ("bezier", "qrnn", "beam"),
}
BASELINE, LSTM, QRNN, LM_BEAM = CONFIGURATIONS
STRATEGIES = ("all", "top", "softmax")


@dataclass
class StudySection:
    validation_writers: int = bounded(4, 1)  # the last training writers: LM tuning, never trained
    points_spacing: float = bounded(0.1, 1e-3)  # raw-points baseline: resampling step (ink heights)
    points_max_steps: int = bounded(320, 2)
    lm_order: int = bounded(5, 1)
    beam: int = bounded(8, 1)
    lm_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    insertion_bonuses: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0)
    latency_words: int = bounded(40, 1)
    personalize_strategies: tuple[str, ...] = ("all", "softmax")
    personalize_epochs: int = bounded(5, 1)
    personalize_lr: float = bounded(0.001, 0)
    tflite_words: int = bounded(200, 1)


def load(raw: dict, overrides: list[str]) -> StudyConfig:
    """The engine's config plus the ``study`` section, validated before any work."""
    return load_study(raw, overrides, StudySection, check)


def check(cfg: StudyConfig) -> None:
    """Named errors for a configuration the study cannot run, before anything starts."""
    e, s = cfg.engine, cfg.study
    if e.experiment.task != TASK:
        raise ConfigError(f"bad value for 'experiment.task': {e.experiment.task!r} (allowed: {TASK})")
    t = e.task
    from clients.handwriting.task import HandwritingTask

    HandwritingTask.check_config(t)
    if t.personalize_heldout:
        raise ConfigError("bad value for 'task.personalize_heldout': true (allowed: false; the study sets it "
                          "only for the held-out writers' own fine-tuning)")
    trainers = t.n_writers - s.validation_writers
    if trainers < 1:
        raise ConfigError(f"bad value for 'study.validation_writers': {s.validation_writers} (allowed: "
                          f"< task.n_writers={t.n_writers})")
    if e.population.size != trainers:
        raise ConfigError(f"bad value for 'population.size': {e.population.size} (allowed: {trainers} = "
                          f"task.n_writers - study.validation_writers: one device per training writer)")
    if e.cohort.goal > trainers:
        raise ConfigError(f"bad value for 'cohort.goal': {e.cohort.goal} (allowed: <= {trainers} training writers)")
    if t.heldout_writers < 1:
        raise ConfigError("bad value for 'task.heldout_writers': 0 (allowed: >= 1, personalization needs them)")
    if not s.lm_weights or not s.insertion_bonuses or min(s.lm_weights) < 0:
        raise ConfigError("bad value for 'study.lm_weights'/'study.insertion_bonuses': non-empty lists, "
                          "weights >= 0 (allowed: e.g. [0, 0.5, 1])")
    bad = [x for x in s.personalize_strategies if x not in STRATEGIES]
    if not s.personalize_strategies or bad:
        raise ConfigError(f"bad value for 'study.personalize_strategies': {s.personalize_strategies} "
                          f"(allowed: a non-empty subset of {', '.join(STRATEGIES)})")


def engine_config(cfg: StudyConfig, name: str, personalize: bool = False):
    """The engine config of one configuration's training (or of the personalization)."""
    from fl.config import load_config

    representation, cell, _ = CONFIGURATIONS[name]
    over = [f"task.representation={representation}", f"task.cell={cell}",
            f"experiment.name=gboard-handwriting/{name}"]
    if representation == "points":
        over += [f"task.point_spacing={cfg.study.points_spacing}", f"task.max_steps={cfg.study.points_max_steps}"]
    if personalize:
        s = cfg.study
        over += ["task.personalize_heldout=true", f"client.epochs={s.personalize_epochs}",
                 f"client.lr={s.personalize_lr}", "client.optimizer=adam", "experiment.rounds=1"]
    return load_config(cfg.engine.to_dict(), over)


def configuration_task(cfg: StudyConfig, name: str):
    from fl.task import make_task

    ec = engine_config(cfg, name)
    return make_task(TASK, ec.task, ec.experiment.seed)


# -- data and decoding ------------------------------------------------------------------------
class Words:
    """Packed words per (representation, writer, split), memoized (and cached on disk with the
    engine's device cache, so the workers' and the study's featurization is done once)."""

    def __init__(self, cfg: StudyConfig):
        from fl.cache import DeviceCache

        self.cfg, self.tasks, self.caches = cfg, {}, {}
        for name in (BASELINE, QRNN):
            ec, task = engine_config(cfg, name), configuration_task(cfg, name)
            rep = ec.task.representation
            self.tasks[rep] = task
            self.caches[rep] = DeviceCache(ec.workers.cache_dir or None, task.cache_namespace)

    def get(self, representation: str, writers, split: str) -> dict[str, np.ndarray]:
        task, cache = self.tasks[representation], self.caches[representation]
        parts = []
        for w in writers:
            d = dict(cache.get_or_make(f"writer{int(w)}-{split}", lambda w=w: task.writer_data(int(w), split)))
            d["writer"] = np.full(len(d["y"]), int(w), np.int32)
            parts.append(d)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def references(d: dict) -> list[str]:
    from clients.handwriting.decoding import decode_ids

    return [decode_ids(row[row > 0]) for row in d["y"]]


def beam_decode(lps, lm, beam: int, lm_weight: float, bonus: float) -> list[str]:
    from clients.handwriting.decoding import beam_search, decode_ids

    return [decode_ids(beam_search(lp, beam=beam, lm=lm, lm_weight=lm_weight, insertion_bonus=bonus)[0][0])
            for lp in lps]


def error_rates(refs, hyps) -> dict:
    from clients.handwriting.decoding import cer

    return {"cer": cer(refs, hyps), "wer": float(np.mean([r != h for r, h in zip(refs, hyps)])) if refs else np.nan,
            "words": len(refs), "chars": int(sum(len(r) for r in refs))}


def tune_lm(lps, refs, lm, s: StudySection) -> tuple[dict, pd.DataFrame]:
    """LM weight x insertion bonus grid on the validation words: the lowest CER (ties: the
    first in grid order, smallest weight first)."""
    rows = []
    for wgt in s.lm_weights:
        for bonus in s.insertion_bonuses:
            rows.append({"lm_weight": float(wgt), "insertion_bonus": float(bonus),
                         **error_rates(refs, beam_decode(lps, lm, s.beam, wgt, bonus))})
    grid = pd.DataFrame(rows)
    best = grid.loc[grid["cer"].idxmin()]
    return {"lm_weight": float(best["lm_weight"]), "insertion_bonus": float(best["insertion_bonus"]),
            "validation_cer": float(best["cer"])}, grid


def per_word_latency_ms(model, x: np.ndarray, n: int) -> float:
    """Median wall time of one word's recognition (one compiled forward pass + greedy
    decoding), one word at a time, on this process's TF threads."""
    import tensorflow as tf

    from clients.handwriting.decoding import greedy_decode
    from clients.handwriting.tflite_export import concrete_function, word_latency_ms

    fn = concrete_function(model)
    feats = [xi[: int(xi[:, -1].sum()), :-1] for xi in np.asarray(x)[:n]]
    return float(np.median(word_latency_ms(lambda f: fn(tf.constant(f[None])).numpy()[0], feats, greedy_decode)))


# -- the study ---------------------------------------------------------------------------------
def train_configuration(cfg: StudyConfig, name: str, out: Path, progress: bool) -> np.ndarray:
    """FedAvg through the engine into OUT/runs/NAME (resumed if interrupted); final weights."""
    from fl import checkpoint
    from fl.runner import engine, train

    ec = engine_config(cfg, name)
    run_dir = out / "runs" / name
    state = checkpoint.load(run_dir)
    if state is not None and state.round >= ec.experiment.rounds:
        return state.weights
    with engine(ec) as process:
        state, recorder = train(process, run_dir, progress)
        recorder.finish({"configuration": name, "rounds": int(state.round)})
    return state.weights


def personalize(cfg: StudyConfig, weights: np.ndarray, progress: bool) -> pd.DataFrame:
    """Per-writer fine-tuning of every held-out writer on their own training words, inside
    their device; CER/WER before and after on their held-out words, per strategy."""
    from tqdm import tqdm

    from fl.runner import engine

    t = cfg.engine.task
    ids = np.arange(t.n_writers, t.n_writers + t.heldout_writers)
    records = []
    with engine(engine_config(cfg, QRNN, personalize=True)) as process:
        step = 2 * len(process.pool)
        bar = tqdm(total=len(ids), desc="personalize", unit="writer", disable=not progress, file=sys.stderr)
        for lo in range(0, len(ids), step):
            chunk = ids[lo:lo + step]
            for res in process.pool.run(0, weights, chunk, np.ones(len(chunk), np.int32), "personalize",
                                        options={"strategies": tuple(cfg.study.personalize_strategies)}):
                records += res["records"]
            bar.update(len(chunk))
        bar.close()
    return pd.DataFrame(records)


def curve_ink_example(words: Words, writer: int, split: str = "eval"):
    """(word, strokes, fitted curves) of one of a writer's words, for the figures."""
    from clients.handwriting.bezier import FitConfig, fit_ink, normalize

    task = words.tasks["bezier"]
    word, ink = task.population.samples(writer, split)[0]
    return word, normalize(ink), fit_ink(ink, FitConfig(threshold=task.config.fit_threshold))


def run(cfg: StudyConfig, out_dir: Path, progress: bool = True) -> dict:
    from tqdm import tqdm

    from fl.pool import start_ray
    from fl.results import write_json
    from fl.task import model_with_weights

    import ray

    check(cfg)
    t0 = time.perf_counter()
    threads = one_thread()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study_config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))
    bad_input = bad_input_check()
    e, s = cfg.engine, cfg.study
    trainers = list(range(e.population.size))
    validation = list(range(e.population.size, e.task.n_writers))
    heldout = list(range(e.task.n_writers, e.task.n_writers + e.task.heldout_writers))
    started = not ray.is_initialized()
    start_ray(e.workers.ray_address, e.workers.object_store_mb)
    stages = tqdm(total=9, desc="gboard-handwriting", unit="stage", disable=not progress, file=sys.stderr)
    try:
        weights = {}
        for name in (BASELINE, LSTM, QRNN):
            stages.set_postfix_str(f"train {name}")
            weights[name] = train_configuration(cfg, name, out, progress)
            stages.update()
        stages.set_postfix_str("evaluate")
        words = Words(cfg)
        test = {rep: words.get(rep, trainers, "eval") for rep in ("points", "bezier")}
        val = words.get("bezier", validation, "train")
        models = {name: model_with_weights(configuration_task(cfg, name), weights[name]) for name in weights}
        from clients.handwriting.task import log_probs

        decodes, lps = {}, {}
        for name, model in models.items():
            d = test[CONFIGURATIONS[name][0]]
            lps[name] = log_probs(model, d["x"])
            decodes[name] = [decode_ids_greedy(lp) for lp in lps[name]]
        stages.update()
        stages.set_postfix_str("LM tuning")
        lm = words.tasks["bezier"].language_model(order=s.lm_order)
        tuned, grid = tune_lm(log_probs(models[QRNN], val["x"]), references(val), lm, s)
        grid.to_csv(out / "lm_tuning.csv", index=False)
        decodes[LM_BEAM] = beam_decode(lps[QRNN], lm, s.beam, tuned["lm_weight"], tuned["insertion_bonus"])
        stages.update()
        stages.set_postfix_str("latency")
        latency = {name: per_word_latency_ms(models[name], test["bezier"]["x"], s.latency_words)
                   for name in (LSTM, QRNN)}
        stages.update()
        stages.set_postfix_str("personalize")
        personal = personalize(cfg, weights[QRNN], progress)
        stages.update()
        stages.set_postfix_str("tflite")
        from clients.handwriting.tflite_export import evaluate as tflite_evaluate

        d = test["bezier"]
        tfl_words = [(x[: int(x[:, -1].sum()), :-1], r) for x, r in zip(d["x"][: s.tflite_words],
                                                                          references(d)[: s.tflite_words])]
        on_device = tflite_evaluate(models[QRNN], tfl_words, out / "tflite")
        stages.update()
        stages.set_postfix_str("report")
        table = word_table(test, decodes)
        table.to_parquet(out / "heldout_words.parquet", index=False)
        writers = writer_table(words.tasks["bezier"].population, table, personal, trainers, validation, heldout)
        writers.to_parquet(out / "writers.parquet", index=False)
        summary = summarize(table, writers, personal, tuned, latency, on_device, test["bezier"], cfg)
        summary["wall_s"] = time.perf_counter() - t0
        summary["latency_tf_threads"] = threads
        summary["bad_input"] = bad_input
        summary["targets"] = targets(summary)
        plots(out, summary, table, writers, words, models[QRNN], heldout[0])
        write_json(summary, out / "summary.json")
        stages.update()
        stages.close()
    finally:
        if started:
            ray.shutdown()
    return summary


def one_thread() -> dict:
    """Pin this process's TensorFlow to one thread for the latency figures (possible only
    before TF starts its runtime); returns the thread counts in effect."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialized (e.g. inside a test session): say so in the summary
        pass
    return {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}


def decode_ids_greedy(lp) -> str:
    from clients.handwriting.decoding import decode_ids, greedy_decode

    return decode_ids(greedy_decode(lp))


def bad_input_check() -> dict:
    """The named errors that user-supplied ink and words raise before any work."""
    from clients.handwriting.bezier import fit_ink
    from clients.handwriting.ink import EmptyStrokeError, NonMonotonicTimestampError, OutOfAlphabetError
    from clients.handwriting.ink import validate_word

    ok = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.01]])
    cases = {"empty_stroke": (lambda: fit_ink([ok, np.zeros((0, 3))]), EmptyStrokeError),
             "out_of_alphabet": (lambda: validate_word("café"), OutOfAlphabetError),
             "non_monotonic_timestamp": (lambda: fit_ink([ok[::-1]]), NonMonotonicTimestampError)}
    out = {}
    for name, (fn, err) in cases.items():
        try:
            fn()
            out[name] = "accepted"
        except err as exc:
            out[name] = type(exc).__name__
        except Exception as exc:  # a different error is a failure of the target
            out[name] = f"unnamed {type(exc).__name__}"
    return out


def word_table(test: dict, decodes: dict) -> pd.DataFrame:
    """One row per held-out word and configuration: writer, reference, hypothesis, edits."""
    from clients.handwriting.decoding import edit_distance

    rows = []
    for name, hyps in decodes.items():
        d = test[CONFIGURATIONS[name][0]]
        for w, ref, hyp, pts, steps in zip(d["writer"], references(d), hyps, d["points"], d["steps"]):
            rows.append({"configuration": name, "writer": int(w), "reference": ref, "hypothesis": hyp,
                         "char_errors": edit_distance(ref, hyp), "chars": len(ref), "word_error": ref != hyp,
                         "points": int(pts), "steps": int(steps)})
    return pd.DataFrame(rows)


def cer_of(g: pd.DataFrame) -> float:
    return float(g["char_errors"].sum() / g["chars"].sum()) if len(g) and g["chars"].sum() else float("nan")


def writer_table(population, table: pd.DataFrame, personal: pd.DataFrame, trainers, validation, heldout):
    """Per writer: role, style, CER of each configuration on their held-out words, and (held-out
    writers) CER before and after personalization per strategy."""
    styles = population.style_table()
    styles["role"] = ["train" if w in set(trainers) else "validation" if w in set(validation) else "heldout"
                      for w in styles["writer"]]
    for name, g in table.groupby("configuration"):
        sums = g.groupby("writer")[["char_errors", "chars"]].sum()
        per = sums["char_errors"] / sums["chars"].where(sums["chars"] > 0)
        styles[f"cer_{name}"] = styles["writer"].map(per)
    ok = personal[personal["status"] == "accepted"] if len(personal) else personal
    for strategy, g in ok.groupby("strategy"):
        g = g.set_index("device_id")
        styles[f"cer_before_{strategy}"] = styles["writer"].map(g["cer_before"])
        styles[f"cer_after_{strategy}"] = styles["writer"].map(g["cer_after"])
    if len(ok):
        first = ok.drop_duplicates("device_id").set_index("device_id")
        styles["cer_before"] = styles["writer"].map(first["cer_before"])
        best = ok.groupby("strategy")["cer_after"].median().idxmin() if ok["cer_after"].notna().any() else None
        styles["cer_after"] = styles["writer"].map(ok[ok["strategy"] == best].set_index("device_id")["cer_after"]) \
            if best is not None else np.nan
        styles.attrs["best_strategy"] = best
    return styles


def summarize(table, writers, personal, tuned, latency, on_device, bezier, cfg) -> dict:
    configs = {name: {"cer": cer_of(g), "wer": float(g["word_error"].mean()), "words": int(len(g))}
               for name, g in table.groupby("configuration", sort=False)}
    configs["bezier_biqrnn_int8_on_device"] = {"cer": on_device["int8"]["cer"], "wer": on_device["int8"]["wer"],
                                               "words": on_device["words"]}
    ratio = bezier["points"] / np.maximum(bezier["steps"], 1)
    compaction = {"words": int(len(ratio)), "median_points": float(np.median(bezier["points"])),
                  "median_curves": float(np.median(bezier["steps"])),
                  "median_points_per_curve": float(np.median(ratio)),
                  "p10_points_per_curve": float(np.quantile(ratio, 0.1)),
                  "p90_points_per_curve": float(np.quantile(ratio, 0.9))}
    h = writers[writers["role"] == "heldout"]
    personal_summary = {}
    if "cer_before" in h:
        for strategy in cfg.study.personalize_strategies:
            col = f"cer_after_{strategy}"
            if col in h:
                personal_summary[strategy] = {
                    "writers": int(h[col].notna().sum()), "median_cer_before": float(h["cer_before"].median()),
                    "median_cer_after": float(h[col].median()),
                    "improved": int((h[col] < h["cer_before"]).sum()),
                    "by_family": {f: {"writers": int(len(g)), "median_cer_before": float(g["cer_before"].median()),
                                      "median_cer_after": float(g[col].median())} for f, g in h.groupby("family")},
                    "by_slant": {b: {"writers": int(len(g)), "median_cer_before": float(g["cer_before"].median()),
                                     "median_cer_after": float(g[col].median())}
                                 for b, g in h.groupby(pd.cut(h["slant_deg"], [-90, 5, 15, 90],
                                                              labels=["upright", "slanted", "very slanted"]),
                                                       observed=True)}}
    return {"configurations": configs, "compaction": compaction, "lm": tuned,
            "latency_ms_median_one_thread": {**latency, "int8_tflite": on_device["int8"]["latency_ms_median"],
                                             "float_tflite": on_device["float"]["latency_ms_median"]},
            "personalization": {"best_strategy": writers.attrs.get("best_strategy"), "strategies": personal_summary,
                                "failed": int((personal["status"] != "accepted").sum()) if len(personal) else 0},
            "on_device": on_device, "rounds": cfg.engine.experiment.rounds,
            "training_writers": int(cfg.engine.population.size), "validation_writers": cfg.study.validation_writers,
            "heldout_writers": int(cfg.engine.task.heldout_writers)}


def targets(summary: dict) -> dict:
    """The study's targets, measured (value, target, met)."""
    c = summary["configurations"]
    comp = summary["compaction"]["median_points_per_curve"]
    reduction = 1.0 - c[LM_BEAM]["cer"] / c[BASELINE]["cer"] if c[BASELINE]["cer"] > 0 else float("nan")
    lat = summary["latency_ms_median_one_thread"]
    speedup = lat[LSTM] / lat[QRNN]
    rel = c[QRNN]["cer"] / c[LSTM]["cer"] - 1.0 if c[LSTM]["cer"] > 0 else float("nan")
    od = summary["on_device"]
    p = summary["personalization"]
    best = p["strategies"].get(p["best_strategy"] or "", {})
    before, after = best.get("median_cer_before", np.nan), best.get("median_cer_after", np.nan)
    bad = summary["bad_input"]
    return {
        "median_compaction": {"value": comp, "target": ">= 10 points per curve", "met": bool(comp >= 10)},
        "lm_beam_fewer_char_errors_than_raw_points_bilstm": {
            "value": reduction, "target": ">= 0.20 relative CER reduction", "met": bool(reduction >= 0.20)},
        "biqrnn_faster_than_bilstm_at_similar_cer": {
            "value": {"speedup": speedup, "cer_relative_difference": rel},
            "target": "speedup >= 1.5 and CER within 10% relative", "met": bool(speedup >= 1.5 and rel <= 0.10)},
        "int8_smaller_at_same_cer": {
            "value": {"size_ratio": od["size_ratio"], "cer_change_points": od["cer_change_points"],
                      "weight_size_ratio": od.get("weight_size_ratio", np.nan)},  # weights only, not the graph
            "target": "size ratio ~4 (>= 3.5) and CER change <= 0.5 points",
            "met": bool(od["size_ratio"] >= 3.5 and od["cer_change_points"] <= 0.5)},
        "personalization_lowers_median_heldout_cer": {
            "value": {"strategy": p["best_strategy"], "median_cer_before": before, "median_cer_after": after},
            "target": "median after < median before", "met": bool(after < before)},
        "study_wall_s": {"value": summary["wall_s"], "target": "<= 2700 (45 min, 2 cores)",
                         "met": bool(summary["wall_s"] <= 2700)},
        "bad_input_named_errors": {"value": bad, "target": "EmptyStrokeError, OutOfAlphabetError, "
                                   "NonMonotonicTimestampError before work",
                                   "met": bad == {"empty_stroke": "EmptyStrokeError",
                                                  "out_of_alphabet": "OutOfAlphabetError",
                                                  "non_monotonic_timestamp": "NonMonotonicTimestampError"}},
    }


# -- figures ------------------------------------------------------------------------------------
def plots(out: Path, summary: dict, table: pd.DataFrame, writers: pd.DataFrame, words: Words, model,
          writer: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clients.handwriting.bezier import curve_features, evaluate
    from clients.handwriting.ink import ALPHABET
    from clients.handwriting.task import log_probs

    # 1. a word's ink coloured by fitted curve, next to its curves (Carbune et al. 2020, Fig. 2)
    word, strokes, curves = curve_ink_example(words, writer)
    colors = plt.cm.tab20(np.arange(len(curves)) % 20)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.5), sharey=True)
    for s in strokes:  # each point takes the colour of the curve whose time span holds it
        t0 = curves.ctrl[:, 0, 2]
        which = np.clip(np.searchsorted(t0, s[:, 2], side="right") - 1, 0, len(curves) - 1)
        a.scatter(s[:, 0], s[:, 1], s=4, c=colors[which])
    u = np.linspace(0, 1, 30)
    for i, ctrl in enumerate(curves.ctrl):
        p = evaluate(ctrl, u)
        b.plot(p[:, 0], p[:, 1], color=colors[i], ls=":" if curves.pen_up[i] else "-", lw=1.5)
        b.plot(ctrl[:, 0], ctrl[:, 1], "o", ms=2, color=colors[i], alpha=0.5)
    n_points = sum(len(s) for s in strokes)
    a.set_title(f"'{word}': {n_points} touch points")
    b.set_title(f"{len(curves)} cubic Bézier curves (dotted: pen up)")
    for ax in (a, b):
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "ink_curves.png", dpi=110)
    plt.close(fig)
    # 2. the decoder matrix, characters x curves, for that word
    f = curve_features(curves)
    x = np.zeros((1, len(f), f.shape[1] + 1), np.float32)
    x[0, :, :-1], x[0, :, -1] = f, 1.0
    probs = np.exp(log_probs(model, x)[0])
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(f) + 2), 6))
    ax.imshow(probs.T, aspect="auto", cmap="Greys", origin="upper")
    ax.set_yticks(range(len(ALPHABET) + 1), ["-"] + list(ALPHABET), fontsize=7)
    ax.set_xlabel("curve")
    ax.set_title(f"P(character | curve) for '{word}' (row '-': CTC blank)")
    fig.tight_layout()
    fig.savefig(out / "decoder_matrix.png", dpi=110)
    plt.close(fig)
    # 3. CER per configuration
    c = summary["configurations"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(list(c), [v["cer"] for v in c.values()])
    ax.set_xlabel("CER on held-out words")
    fig.tight_layout()
    fig.savefig(out / "cer_by_configuration.png", dpi=110)
    plt.close(fig)
    # 4. per-writer CDF
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in CONFIGURATIONS:
        v = np.sort(writers[f"cer_{name}"].dropna()) if f"cer_{name}" in writers else []
        ax.step(v, np.arange(1, len(v) + 1) / max(len(v), 1), where="post", label=name)
    for col, ls in (("cer_before", "--"), ("cer_after", ":")):
        if col in writers:
            v = np.sort(writers[col].dropna())
            ax.step(v, np.arange(1, len(v) + 1) / max(len(v), 1), where="post", ls=ls, color="k",
                    label=f"held-out writers, {col.split('_')[1]} personalization")
    ax.set_xlabel("per-writer CER")
    ax.set_ylabel("fraction of writers")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "writer_cer_cdf.png", dpi=110)
    plt.close(fig)
