"""`fedpop run trill-frill`: speech embeddings as an on-device model family.

TRILL (Shor et al. 2020, "Towards Learning a Universal Non-Semantic Representation of Speech"):
a ResNet-style triplet-loss embedding, trained here federatedly through the engine (task
"trill": each phone mines triplets from its own recordings, FedAvg across phones) and
centrally on pooled triplets of the same devices for comparison (Adam, same initial weights).
FRILL (Peplinski et al. 2021, "FRILL: A Non-Semantic Speech Embedding for Mobile Devices"):
MobileNetV3 students distilled from the TRILL teacher by MSE over a grid (Small/Large, alpha,
pooling, bottleneck, QAT), each measured as TFLite (float/int8 bytes, one-thread latency per
0.96 s window, median of >= 50 invocations) and on every NOSS-like task (clients.embeddings.noss;
logistic regression on time-averaged embeddings, the best of with/without L2 and per-speaker
normalization, as NOSS reports). TRILL is scored both on its embedding and on its intermediate
"layer19" (rows ``*_layer19``); the targets use whichever of the two scores higher. The chosen
FRILL is the best mean accuracy under a latency threshold (``frill.latency_threshold_ms``; 0 = a
tenth of TRILL's latency, the speed target).

Outputs: models.parquet (one row per model), speakers.parquet (intra-speaker accuracies),
summary.json (TRILL vs FRILL table, ``targets``), frontier.png, tasks.png, tensorboard/ (per-model
scalars), federated/ (the
engine run: rounds, TensorBoard, checkpoint). The engine's sections configure the federated
TRILL; the study's own keys are the ``noss``, ``frill`` and ``study`` sections.
"""
from __future__ import annotations

import dataclasses
import itertools
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fl.config import ConfigError, bounded

TASK = "trill"
LOGMEL, TRILL_CENTRAL, TRILL_FEDERATED = "log_mel", "trill_central", "trill_federated"
TRILL_INIT = "trill_untrained"
ON_DEVICE = "on_device_"  # prefix of the student distilled on devices (task "frill")
LAYER19 = "_layer19"  # suffix of the rows that read TRILL's intermediate layer


@dataclass
class FrillSection:
    """The student grid: the product of the axes (QAT only where there is a bottleneck)."""
    architectures: tuple[str, ...] = ("small",)
    alphas: tuple[float, ...] = (0.5, 1.0)
    average_pool: tuple[bool, ...] = (True,)
    bottlenecks: tuple[int, ...] = (0,)
    qat: tuple[bool, ...] = (False,)
    output_dim: int = bounded(0, 0)              # 0: the distillation target's size (FRILL: 2048)
    max_students: int = bounded(0, 0)            # 0: the whole grid
    budget_s: float = bounded(0.0, 0.0)          # stop distilling new students after this (0: no limit)
    distill_steps: int = bounded(300, 1)
    distill_batch: int = bounded(32, 1)
    distill_lr: float = bounded(0.001, 0.0)
    latency_invocations: int = bounded(50, 50)
    latency_threshold_ms: float = bounded(0.0, 0.0)  # 0: TRILL's latency / 10
    device_rounds: int = bounded(20, 0)          # on-device distillation of the grid's first student (0: none)
    device_windows: int = bounded(128, 1)        # its training crops per device


@dataclass
class StudySection:
    central_steps: int = bounded(1000, 0)        # Adam steps of the central TRILL
    central_batch: int = bounded(32, 2)
    central_lr: float = bounded(0.0003, 0.0)     # (1e-3 collapsed seed 2's TRILL in its first 30 steps)
    central_triplets: int = bounded(4096, 2)     # pooled triplets (also the distillation windows)
    teacher: str = "central"                     # which TRILL the students distil: central or federated
    distill_target: str = "embedding"            # which of its outputs: embedding, or layer19 (NOSS's)
    tasks: tuple[str, ...] = ("speaker_id", "language_id", "commands", "style", "mask", "severity")
    classifier_c: float = bounded(1e5, 0.0)


@dataclass
class StudyConfig:
    engine: object       # fl.config.Config of the federated TRILL
    noss: object         # clients.embeddings.noss.NossConfig
    frill: FrillSection
    study: StudySection

    def to_dict(self) -> dict:
        return {**self.engine.to_dict(), "noss": dataclasses.asdict(self.noss),
                "frill": dataclasses.asdict(self.frill), "study": dataclasses.asdict(self.study)}


def load(raw: dict, overrides: list[str]) -> StudyConfig:
    """The engine's config plus the ``noss``, ``frill`` and ``study`` sections, validated
    (NossConfigError / FrillConfigError / ConfigError, naming the key) before any work."""
    from clients.embeddings.noss import NossConfig
    from fl.config import build_section, load_config, merge, parse_overrides

    data = merge(raw or {}, parse_overrides(overrides or []))
    noss = build_section(NossConfig, data.pop("noss", None), "noss.")
    frill = build_section(FrillSection, data.pop("frill", None), "frill.")
    study = build_section(StudySection, data.pop("study", None), "study.")
    workers = (data.pop("secagg", None) or {}).get("workers")  # the CLI's --workers for studies with load()
    if workers is not None:
        data = merge(data, {"workers": {"num": workers}})
    cfg = StudyConfig(load_config(data), noss, frill, study)
    check(cfg)
    return cfg


def students(cfg: StudyConfig) -> list:
    """The grid's StudentConfigs in order (FrillConfigError for an unknown architecture or alpha <= 0).
    Their output is ``frill.output_dim`` wide, or (0) as wide as what they regress: TRILL's layer19
    or its embedding (``study.distill_target``); a different width goes through a training-only head."""
    from clients.embeddings.frill import StudentConfig

    f = cfg.frill
    dim = f.output_dim or target_dim(cfg)
    out = [StudentConfig(a, al, p, b, q, dim)
           for a, al, p, b, q in itertools.product(f.architectures, f.alphas, f.average_pool, f.bottlenecks, f.qat)
           if not (q and not b)]
    return out[:f.max_students] if f.max_students else out


def target_dim(cfg: StudyConfig) -> int:
    """Width of the TRILL output the students regress."""
    from clients.embeddings.task import TrillTask
    from clients.embeddings.trill import layer19_dim

    if cfg.study.distill_target == "layer19":
        return layer19_dim(TrillTask(cfg.engine.task, cfg.engine.experiment.seed).model_config)
    return cfg.engine.task.embedding_dim


def check(cfg: StudyConfig) -> None:
    from clients.embeddings.noss import TASKS

    e = cfg.engine
    if e.experiment.task != TASK:
        raise ConfigError(f"bad value for 'experiment.task': {e.experiment.task!r} (allowed: {TASK})")
    from clients.embeddings.task import TrillTask

    TrillTask(e.task, e.experiment.seed)  # window_s, layer19_stage
    if abs(cfg.noss.window_s - e.task.window_s) > 1e-9:
        raise ConfigError(f"bad value for 'noss.window_s': {cfg.noss.window_s} (allowed: task.window_s="
                          f"{e.task.window_s}, the models' input)")
    if e.population.size > e.task.n_devices:
        raise ConfigError(f"bad value for 'population.size': {e.population.size} (allowed: <= task.n_devices="
                          f"{e.task.n_devices})")
    bad = [t for t in cfg.study.tasks if t not in TASKS]
    if bad or not cfg.study.tasks:
        raise ConfigError(f"bad value for 'study.tasks': {list(cfg.study.tasks)} (allowed: some of {', '.join(TASKS)})")
    if cfg.study.distill_target not in ("layer19", "embedding"):
        raise ConfigError(f"bad value for 'study.distill_target': {cfg.study.distill_target!r} "
                          f"(allowed: layer19, embedding)")
    if cfg.study.teacher not in ("central", "federated"):
        raise ConfigError(f"bad value for 'study.teacher': {cfg.study.teacher!r} (allowed: central, federated)")
    if not students(cfg):
        raise ConfigError("bad value for 'frill': the student grid is empty (allowed: non-empty axes)")


# -- TRILL -----------------------------------------------------------------------------------
def train_central(task, triplets: dict, steps: int, batch: int, lr: float, seed: int):
    """Central TRILL (pooled triplets, negatives may cross devices): Adam steps from the task's
    initial weights; (model, losses)."""
    import tensorflow as tf

    model = task.build_model()
    opt = tf.keras.optimizers.Adam(lr)
    rng = np.random.default_rng(seed)

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.batch_loss(model, x, y, True)[0])
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return loss

    x, y = triplets["x"], triplets["y"]
    losses = []
    for _ in range(steps):
        idx = rng.choice(len(x), size=min(batch, len(x)), replace=False)
        losses.append(float(step(tf.constant(x[idx]), tf.constant(y[idx]))))
    return model, losses


def train_federated(engine_cfg, out_dir: Path, progress: bool):
    """FedAvg rounds through the engine (resumed from ``out_dir`` if interrupted); (weights, summary)."""
    from experiments.fedavg_train import summarize
    from fl.runner import engine, train

    with engine(engine_cfg) as process:
        state, recorder = train(process, out_dir, progress)
        summary = summarize(process, state, recorder)
    recorder.finish(summary)
    return state.weights, summary


def device_distill_config(cfg: StudyConfig, student, teacher_weights: Path):
    """The engine config of on-device distillation (task "frill", clients.embeddings.distill_task):
    the federated TRILL's devices, population, cohort and client optimizer, ``frill.device_rounds``
    rounds, each device distilling ``student`` (its first non-QAT form) from the teacher whose
    weights are at ``teacher_weights``."""
    from fl.config import load_config

    raw = cfg.engine.to_dict()
    raw["experiment"] = {**raw["experiment"], "task": "frill", "rounds": cfg.frill.device_rounds,
                         "name": f"{raw['experiment']['name']}-distill"}
    raw["task"] = {**raw["task"], "teacher_weights": str(teacher_weights), "target": cfg.study.distill_target,
                   "architecture": student.architecture, "alpha": student.alpha,
                   "average_pool": student.average_pool, "bottleneck_dim": student.bottleneck_dim,
                   "windows_per_device": cfg.frill.device_windows}
    return load_config(raw)


# -- measurement -----------------------------------------------------------------------------
COLLAPSE_SPREAD = 1e-3  # a healthy d-dim unit embedding has a per-dimension std near 1/sqrt(d)


def embedding_spread(model, windows: np.ndarray, n: int = 512) -> float:
    """Mean over dimensions of the std across windows of the L2-normalized embedding: about
    1/sqrt(d) when windows map to different directions, 0 when a triplet network has collapsed
    (every window the same embedding, the loss stuck at its margin)."""
    from clients.embeddings.evaluate import l2_normalize

    e = l2_normalize(model.predict(windows[:n], batch_size=256, verbose=0)).astype(np.float64)
    return float(e.std(0).mean())


def on_device(model, representative: np.ndarray, invocations: int, phone: dict | None = None,
              name: str = "") -> dict:
    """Params, TFLite float/int8 bytes and one-thread float latency per window (median ms); the
    float flatbuffer goes to ``phone[name]`` (what the devices run to personalize)."""
    from clients.embeddings.frill import tflite_latency_ms, tflite_model

    flt = tflite_model(model, "float")
    if phone is not None:
        phone[name] = flt
    i8 = tflite_model(model, "int8", representative)
    lat = tflite_latency_ms(flt, invocations=invocations, threads=1)
    try:
        lat8, int8_error = tflite_latency_ms(i8, invocations=invocations, threads=1)["median_ms"], ""
    except RuntimeError as e:  # e.g. TFLite refuses a QAT Dense layer's requantization scale at prepare
        lat8, int8_error = float("nan"), str(e).splitlines()[0][:200]
    return {"params": int(model.count_params()), "tflite_float_bytes": len(flt), "tflite_int8_bytes": len(i8),
            "latency_ms": lat["median_ms"], "latency_int8_ms": lat8, "int8_error": int8_error}


def noss_accuracy(featurizers: dict, corpus, tasks, C: float) -> dict:
    """{model: {task: accuracy}} (the best of with/without L2 and speaker normalization)."""
    from clients.embeddings.evaluate import evaluate

    table, _ = evaluate(featurizers, corpus, tasks, C, intra=False)
    best = table.groupby(["model", "task"])["accuracy"].max()
    return {m: {t: float(best[(m, t)]) for t in tasks} for m in featurizers}


# -- summary ---------------------------------------------------------------------------------
def mean_accuracy(models: pd.DataFrame, tasks) -> pd.Series:
    return models[[f"acc_{t}" for t in tasks]].mean(axis=1)


def best_representation(models: pd.DataFrame, name: str) -> str:
    """The row of TRILL ``name`` that the targets use: its embedding or its layer19 (``name +
    LAYER19``, where present), whichever has the higher mean accuracy, as the TRILL paper picked
    layer19 for NOSS by its accuracy (ties: the embedding)."""
    other = name + LAYER19
    if other in models.index and models.loc[other, "mean_accuracy"] > models.loc[name, "mean_accuracy"]:
        return other
    return name


def choose_frill(models: pd.DataFrame, threshold_ms: float) -> tuple[str, bool]:
    """The student with the best mean accuracy at latency <= threshold_ms; if none is that fast,
    the fastest student. (name, whether it meets the threshold). Only students whose float and
    int8 TFLite models both run are candidates (a QAT student whose int8 model the interpreter
    refuses, ``int8_error``, cannot ship), unless no student runs both. (``embedding_spread`` is
    not a criterion: students regress TRILL's unnormalized embedding, whose common offset
    dominates, so their unit outputs spread little even when they score well, and TRILL's
    collapse threshold does not carry over to them.)"""
    s = models[models["kind"] == "frill"]
    if "int8_error" in s.columns:
        runs = s["int8_error"].fillna("").astype(str) == ""
        s = s[runs] if runs.any() else s
    under = s[s["latency_ms"] <= threshold_ms]
    if len(under):
        return str(under.sort_values(["mean_accuracy", "latency_ms"], ascending=[False, True]).iloc[0]["model"]), True
    return str(s.sort_values("latency_ms").iloc[0]["model"]), False


def summarize(models: pd.DataFrame, speakers: pd.DataFrame, tasks, threshold_ms: float, wall_s: float,
              teacher: str = TRILL_CENTRAL, collapsed=()) -> dict:
    """The seed-style TRILL-vs-FRILL table and the study's targets, from models.parquet's rows
    (accuracies in [0, 1]; points are 100 x). ``collapsed``: TRILLs whose embedding collapsed;
    every accuracy target then counts as unmet (a gap between broken models means nothing),
    with the reason in ``invalid``."""
    m = models.set_index("model")
    central_name, fed_name = best_representation(m, TRILL_CENTRAL), best_representation(m, TRILL_FEDERATED)
    trill = m.loc[central_name if teacher == TRILL_CENTRAL else fed_name]
    fed, logmel = m.loc[fed_name], m.loc[LOGMEL]
    if threshold_ms <= 0:
        threshold_ms = float(trill["latency_ms"]) / 10
    chosen, under = choose_frill(models, threshold_ms)
    frill = m.loc[chosen]
    pts = lambda r: 100 * float(r["mean_accuracy"])  # noqa: E731
    row = lambda r: {"size_mb": float(r["tflite_float_bytes"]) / 1e6,  # noqa: E731
                     "int8_size_mb": float(r["tflite_int8_bytes"]) / 1e6, "latency_ms": float(r["latency_ms"]),
                     "params": int(r["params"]), "mean_accuracy": float(r["mean_accuracy"]),
                     **{t: float(r[f"acc_{t}"]) for t in tasks}}
    size_ratio = float(frill["tflite_float_bytes"]) / float(trill["tflite_float_bytes"])
    speedup = float(trill["latency_ms"]) / float(frill["latency_ms"])
    drop, gain, gap = pts(trill) - pts(frill), pts(trill) - pts(logmel), pts(m.loc[central_name]) - pts(fed)
    intra = {}
    for (model, t), g in speakers.groupby(["model", "task"]):
        a = g["accuracy"].to_numpy()
        intra.setdefault(model, {})[t] = {"speakers": int(len(a)), "median": float(np.median(a)),
                                          "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90))}
    out = {
        "teacher": teacher, "trill_rows": {"central": central_name, "federated": fed_name},
        "chosen_frill": chosen, "latency_threshold_ms": threshold_ms,
        "chosen_under_threshold": under, "students": int((models["kind"] == "frill").sum()),
        "table": {"TRILL": row(trill), "FRILL": row(frill), "mean_drop_points": drop},
        "mean_accuracy": {str(k): float(v) for k, v in m["mean_accuracy"].items()},
        "intra_speaker": intra, "wall_s": wall_s,
        "targets": {
            "frill_tflite_size_ratio": {"value": size_ratio, "target": "<= 0.40", "met": bool(size_ratio <= 0.40)},
            "frill_speedup": {"value": speedup, "target": ">= 10", "met": bool(speedup >= 10)},
            "frill_accuracy_drop_points": {"value": drop, "target": "<= 2", "met": bool(drop <= 2)},
            "trill_over_log_mel_points": {"value": gain, "target": ">= 10", "met": bool(gain >= 10)},
            "federated_gap_points": {"value": gap, "target": "<= 3", "met": bool(gap <= 3)},
            "study_wall_s": {"value": wall_s, "target": "<= 3600", "met": bool(wall_s <= 3600)},
        },
    }
    if collapsed:
        for key in ("frill_accuracy_drop_points", "trill_over_log_mel_points", "federated_gap_points"):
            out["targets"][key].update(met=False, invalid=f"collapsed: {', '.join(collapsed)}")
    return out


def plots(models: pd.DataFrame, tasks, chosen: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = models[models["latency_ms"].notna()]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    size = 30 + 300 * d["tflite_float_bytes"] / d["tflite_float_bytes"].max()
    ax.scatter(d["latency_ms"], 100 * d["mean_accuracy"], s=size, alpha=0.6)
    for _, r in d.iterrows():
        ax.annotate(r["model"] + (" (chosen)" if r["model"] == chosen else ""), (r["latency_ms"], 100 * r["mean_accuracy"]),
                    fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("TFLite latency per 0.96 s window, 1 thread (ms)")
    ax.set_ylabel("mean NOSS accuracy (%)")
    ax.set_title("Quality / latency frontier (marker size: TFLite float size)")
    fig.tight_layout()
    fig.savefig(out / "frontier.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(7, len(models) * 0.8), 4.5))
    width = 0.8 / len(models)
    for i, (_, r) in enumerate(models.iterrows()):
        ax.bar(np.arange(len(tasks)) + i * width, [100 * r[f"acc_{t}"] for t in tasks], width, label=r["model"])
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(out / "tasks.png", dpi=110)
    plt.close(fig)


def tensorboard(models: pd.DataFrame, tasks, out: Path) -> None:
    """Per-model scalars in OUT/tensorboard (step = the model's row in models.parquet)."""
    import tensorflow as tf

    with tf.summary.create_file_writer(str(out / "tensorboard")).as_default():
        for step, r in enumerate(models.itertuples(index=False)):
            r = r._asdict()
            tf.summary.text("model", r["model"], step=step)
            for key in ("mean_accuracy", "latency_ms", "tflite_float_bytes", "tflite_int8_bytes",
                        *(f"acc_{t}" for t in tasks)):
                if key in r and pd.notna(r[key]):
                    tf.summary.scalar(f"trill_frill/{key}", float(r[key]), step=step)


def student_name(s) -> str:
    return (f"frill_{s.architecture}_a{s.alpha:g}_{'pool' if s.average_pool else 'flat'}"
            f"_b{s.bottleneck_dim}{'_qat' if s.qat else ''}")


def run(cfg: StudyConfig, out_dir: Path, progress: bool = True) -> dict:
    import tensorflow as tf
    from tqdm import tqdm

    from clients.embeddings.evaluate import keras_embedder
    from clients.embeddings.frill import build_student, distill, tflite_model
    from clients.embeddings.noss import NossCorpus
    from clients.embeddings.distill_task import federated_batch_norm
    from clients.embeddings.personalize import intra_speaker_on_pool
    from clients.embeddings.trill import embedding_and_layer19, layer19_model
    from fl.results import write_json
    from fl.task import make_task, model_with_weights

    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = students(cfg)  # validated before any work (load / check)
    e, s, f = cfg.engine, cfg.study, cfg.frill
    seed = e.experiment.seed
    tasks = tuple(s.tasks)
    print(f"[trill-frill] NOSS corpus ({len(tasks)} tasks)", file=sys.stderr, flush=True)
    corpus = NossCorpus(seed, cfg.noss, e.workers.cache_dir)
    for t in tasks:
        corpus.get(t)
    task = make_task(TASK, e.task, seed)
    print("[trill-frill] federated TRILL through the engine", file=sys.stderr, flush=True)
    fed_weights, fed_summary = train_federated(e, out / "federated", progress)
    fed_model = model_with_weights(task, fed_weights)
    print("[trill-frill] central TRILL on pooled triplets", file=sys.stderr, flush=True)
    t_central = time.perf_counter()
    pooled = task.pooled_triplets(range(e.population.size), s.central_triplets)
    central, losses = train_central(task, pooled, s.central_steps, s.central_batch, s.central_lr, seed)
    central_s = time.perf_counter() - t_central
    teacher = central if s.teacher == "central" else fed_model
    windows = pooled["x"].reshape(-1, *pooled["x"].shape[2:])
    spread = {TRILL_CENTRAL: embedding_spread(central, windows), TRILL_FEDERATED: embedding_spread(fed_model, windows)}
    collapsed = sorted(k for k, v in spread.items() if v < COLLAPSE_SPREAD)
    if collapsed:
        print(f"[trill-frill] WARNING: {', '.join(collapsed)} collapsed: its embeddings are (nearly) the same for "
              f"every window (spread {', '.join(f'{spread[k]:.2g}' for k in collapsed)} < {COLLAPSE_SPREAD}); "
              f"the triplet loss sits at its margin. Its accuracies are those of a broken model.",
              file=sys.stderr, flush=True)
    representative = windows[np.random.default_rng(seed).choice(len(windows), min(64, len(windows)), replace=False)]
    if s.distill_target == "layer19":  # the output NOSS evaluates, as FRILL's students regress it
        targets = embedding_and_layer19(teacher, task.model_config).predict(windows, batch_size=256, verbose=0)[1]
    else:
        targets = teacher.predict(windows, batch_size=256, verbose=0)
    rows, featurizers = [], {LOGMEL: None}
    phone = {LOGMEL: None}  # the float TFLite model each device runs to personalize (None: log-mel)
    figures = {}  # on-device figures per TRILL
    for name, model in ((TRILL_CENTRAL, central), (TRILL_FEDERATED, fed_model)):
        measured = figures[name] = on_device(model, representative, f.latency_invocations, phone, name)
        rows.append({"model": name, "kind": "trill", "representation": "embedding", **measured})
        featurizers[name] = keras_embedder(model)
        # NOSS evaluates TRILL's intermediate "layer19": the same network, read one stage earlier
        rows.append({"model": name + LAYER19, "kind": "trill", "representation": "layer19", **measured})
        featurizers[name + LAYER19] = keras_embedder(embedding_and_layer19(model, task.model_config))
        phone[name + LAYER19] = tflite_model(layer19_model(model, task.model_config))
    # control: the same network untrained (both TRILLs' starting point, so the same on-device
    # figures), read at layer19; what self-supervision adds is the gap to it (not a target)
    rows.append({"model": TRILL_INIT + LAYER19, "kind": "control", "representation": "layer19",
                 **figures[TRILL_CENTRAL]})
    featurizers[TRILL_INIT + LAYER19] = keras_embedder(embedding_and_layer19(task.build_model(), task.model_config))
    phone[TRILL_INIT + LAYER19] = tflite_model(layer19_model(task.build_model(), task.model_config))
    bar = tqdm(grid, desc="FRILL students", unit="student", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    t_grid, skipped = time.perf_counter(), 0
    for i, sc in enumerate(bar):
        if f.budget_s and i > 0 and time.perf_counter() - t_grid > f.budget_s:
            skipped = len(grid) - i
            break
        name = student_name(sc)
        bar.set_postfix_str(name)
        tf.keras.utils.set_random_seed(seed + i)
        student = build_student(sc, task.window_frames)
        t1 = time.perf_counter()
        dl = distill(student, windows, targets, f.distill_steps, f.distill_batch, f.distill_lr, seed + i)
        rows.append({"model": name, "kind": "frill", "architecture": sc.architecture, "alpha": sc.alpha,
                     "average_pool": sc.average_pool, "bottleneck": sc.bottleneck_dim, "qat": sc.qat,
                     "output_dim": sc.output_dim, "distill_loss": float(np.mean(dl[-10:])),
                     "embedding_spread": embedding_spread(student, windows),
                     "distill_s": time.perf_counter() - t1,
                     **on_device(student, representative, f.latency_invocations, phone, name)})
        featurizers[name] = keras_embedder(student)
    bar.close()
    device_summary = None
    on_grid = [sc for sc in grid if not sc.qat]
    if f.device_rounds and on_grid:
        sc = on_grid[0]
        print(f"[trill-frill] on-device distillation of {student_name(sc)} through the engine", file=sys.stderr,
              flush=True)
        np.savez(out / "teacher.npz", *teacher.get_weights())
        t1 = time.perf_counter()
        dcfg = device_distill_config(cfg, sc, out / "teacher.npz")
        d_weights, d_summary = train_federated(dcfg, out / "federated_distill", progress)
        d_task = make_task("frill", dcfg.task, seed)
        d_student = model_with_weights(d_task, d_weights)
        bn_devices = federated_batch_norm(d_student, dcfg.task, seed, d_weights, range(dcfg.population.size),
                                          dcfg.client.batch_size, e.workers.num, progress,
                                          secure_settings=_secure_settings(dcfg.aggregator))
        name = ON_DEVICE + student_name(d_task.student_config)
        rows.append({"model": name, "kind": "frill_on_device", "architecture": sc.architecture, "alpha": sc.alpha,
                     "average_pool": sc.average_pool, "bottleneck": sc.bottleneck_dim, "qat": False,
                     "output_dim": d_task.target_dim, "embedding_spread": embedding_spread(d_student, windows),
                     "distill_s": time.perf_counter() - t1,
                     **on_device(d_student, representative, f.latency_invocations, phone, name)})
        featurizers[name] = keras_embedder(d_student)
        device_summary = {"model": name, "central_model": student_name(sc), "rounds": f.device_rounds,
                          "windows_per_device": f.device_windows, "batch_norm_devices": bn_devices,
                          "federated": d_summary}
    print("[trill-frill] NOSS evaluation", file=sys.stderr, flush=True)
    acc = noss_accuracy(featurizers, corpus, tasks, s.classifier_c)
    print("[trill-frill] intra-speaker personalization on the worker pool", file=sys.stderr, flush=True)
    speakers = intra_speaker_on_pool(phone, corpus, tasks, s.classifier_c, e.workers.num, progress)
    rows.insert(0, {"model": LOGMEL, "kind": "baseline", "params": 0})
    models = pd.DataFrame(rows)
    for t in tasks:
        models[f"acc_{t}"] = [acc[m][t] for m in models["model"]]
    models["mean_accuracy"] = mean_accuracy(models, tasks)
    models.to_parquet(out / "models.parquet", index=False)
    speakers.to_parquet(out / "speakers.parquet", index=False)
    wall_s = time.perf_counter() - t0
    summary = summarize(models, speakers, tasks, f.latency_threshold_ms, wall_s,
                        TRILL_CENTRAL if s.teacher == "central" else TRILL_FEDERATED, collapsed)
    if device_summary is not None:
        mm = models.set_index("model")["mean_accuracy"]
        device_summary.update(on_device_mean_accuracy=float(mm[device_summary["model"]]),
                              central_mean_accuracy=float(mm[device_summary["central_model"]]),
                              gap_points=100 * float(mm[device_summary["central_model"]] - mm[device_summary["model"]]))
    summary.update(on_device_distillation=device_summary, federated=fed_summary, central={"steps": s.central_steps, "final_loss": float(np.mean(losses[-10:]))
                                                   if losses else None, "wall_s": central_s},
                   students_skipped_for_budget=skipped, tasks=list(tasks),
                   collapse={"embedding_spread": spread, "threshold": COLLAPSE_SPREAD, "collapsed": collapsed})
    plots(models, tasks, summary["chosen_frill"], out)
    tensorboard(models, tasks, out)
    write_json(summary, out / "summary.json")
    return summary


def _secure_settings(agg):
    """SecAgg settings for the batch-norm statistics when the study's aggregator is secure
    (they then go through the same kind of secure sum as the updates), else None."""
    from analytics.config import SecAggSection
    from fl.aggregators import default_chain

    if "secure_sum" not in (tuple(agg.chain) if agg.chain else default_chain(agg)):
        return None

    return SecAggSection(mode=agg.secagg_mode, dropout_rate=agg.secagg_dropout_rate,
                         corrupt_fraction=agg.secagg_corrupt_fraction, malicious=agg.secagg_malicious).settings()
