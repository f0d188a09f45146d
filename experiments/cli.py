"""The `fedpop` command: run a named experiment, resume one, report on a run, or run a benchmark."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TF's CUDA-plugin noise on CPU hosts
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

BENCHES = {"asr": "experiments.bench_asr", "engine": "experiments.bench_engine", "scale": "experiments.bench_scale", "secagg": "secagg.bench",
           "soak": "experiments.bench_soak", "peers": "experiments.bench_peers"}


def _parser() -> argparse.ArgumentParser:
    from experiments.registry import names

    p = argparse.ArgumentParser(prog="fedpop", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the named experiments")
    r = sub.add_parser("run", help="run a named experiment")
    r.add_argument("name", nargs="?", choices=names(),
                   help="experiment name (default with --config: fedavg; omit with --resume)")
    r.add_argument("--out", help="run directory (default runs/EXPERIMENT.NAME)")
    r.add_argument("--config", help="YAML layered over the experiment's defaults (over fedavg's without a name); "
                                    "the run is named after the file unless it sets experiment.name")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set cohort.goal=50 (repeatable)")
    r.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    r.add_argument("--ray-address", help="join an existing Ray cluster ('auto' or host:port)")
    r.add_argument("--workers", type=int, help="number of worker actors (default: CPUs / cpus_per_worker)")
    r.add_argument("--cache-dir", help="device data cache (default ~/.cache/fedpop)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    rp = sub.add_parser("report", help="write one self-contained report.html for a run directory")
    rp.add_argument("dir", help="run directory (e.g. runs/NAME)")
    rp.add_argument("--out", help="HTML file to write (default DIR/report.html)")
    b = sub.add_parser("bench", help="run a benchmark and write JSON")
    b.add_argument("which", choices=sorted(BENCHES))
    b.add_argument("--out", required=True, help="JSON file to write")
    b.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    b.add_argument("--repeats", type=int,
                   help="whole runs to take the median of (engine, peers, secagg: default 3; scale, soak: default 1)")
    b.add_argument("--population", type=int, help="devices (scale, soak; default 1,000,000)")
    b.add_argument("--reference-tree", metavar="DIR",
                   help="asr: also measure the code checked out in DIR (e.g. a git worktree of an older commit)")
    return p


STUDY_FILE = ".study"  # in a run directory: the registered experiment that made it (for --resume)


def layer_config(base: dict, user: dict, label: str | None = None) -> dict:
    """``user`` (a YAML file's sections, then ``--set`` overrides) merged over ``base`` (the
    experiment's default file). A ``user`` that changes ``experiment.task`` brings its own
    ``task`` keys: the base's belong to the base's task. ``label`` (the YAML file's stem)
    names the run unless ``user`` sets ``experiment.name`` (``study.name`` for studies that
    have one instead)."""
    from fl.config import merge

    merged = merge(base, user)
    base_task = (base.get("experiment") or {}).get("task")
    user_task = (user.get("experiment") or {}).get("task")
    if user_task is not None and user_task != base_task and "task" in base:
        merged["task"] = dict(user.get("task") or {})
    if label:
        section = "study" if ("experiment" not in base and "name" in (base.get("study") or {})) else "experiment"
        if "name" not in (user.get(section) or {}):
            merged[section] = {**(merged.get(section) or {}), "name": label}
    return merged


def check_out_dir(out: Path) -> str | None:
    """Why ``out`` cannot hold a run (it or a parent is a file, or it cannot be written), or None."""
    if out.exists() and not out.is_dir():
        return f"--out {out} is a file, not a directory"
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"--out {out}: {parent} is not writable"
    return None


def _finished(out: Path, cfg) -> int | None:
    """The rounds a finished run in ``out`` holds (its checkpoint reached experiment.rounds and
    its summary is written), else None."""
    import numpy as np

    ckpt = out / "checkpoint.npz"
    rounds = getattr(getattr(cfg, "experiment", None), "rounds", None)
    if rounds is None or not ckpt.exists() or not (out / "summary.json").exists():
        return None
    with np.load(ckpt) as z:
        done = int(z["round"])
    return done if done >= rounds else None


def _run(args) -> int:
    from experiments.registry import lookup, names
    from fl.runner import resolve_resume

    overrides = list(args.overrides)
    if args.ray_address:
        overrides.append(f"workers.ray_address={args.ray_address}")
    if args.workers is not None:
        overrides.append(f"workers.num={args.workers}")
    if args.cache_dir:
        overrides.append(f"workers.cache_dir={args.cache_dir}")
    if args.resume:
        out = Path(args.resume)
        args.run_dir = out
        cfg = resolve_resume(out, overrides)
        done = _finished(out, cfg)
        if done is not None:
            print(f"fedpop: the run in {out} is complete ({done} of {cfg.experiment.rounds} rounds); nothing to do "
                  f"(raise experiment.rounds with --set to train further)")
            return 0
        stored = out / STUDY_FILE
        name = args.name or (stored.read_text().strip() if stored.exists() else None)
        if name is None:
            name = cfg.experiment.name if cfg.experiment.name in names() else "fedavg"
    else:
        if not args.name and not args.config:
            print("fedpop run: give an experiment name, --config FILE or --resume DIR", file=sys.stderr)
            return 2
        extra = overrides[len(args.overrides):]
        name, cfg = run_config(args.name, args.config, args.overrides, extra, args.workers)
        run_name = _run_name(cfg) or name
        out = Path(args.out or f"runs/{run_name}")
        problem = check_out_dir(out)
        if problem:
            print(f"fedpop run: {problem}", file=sys.stderr)
            return 2
        if (out / "checkpoint.npz").exists():
            raise SystemExit(f"fedpop run: {out} already holds a run; use --resume {out} or another --out")
        args.run_dir = out
        out.mkdir(parents=True, exist_ok=True)
        (out / STUDY_FILE).write_text(name + "\n")
    module, _ = lookup(name)
    summary = module.run(cfg, out, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    write_run_report(out, cfg)
    print(f"results in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    return _end_of_run(out)


def run_config(name: str | None, config: str | None = None, overrides=(), extra=(), workers: int | None = None):
    """(experiment name, validated config) for `fedpop run [NAME] [--config FILE] [--set ...]`:
    the named experiment's default file (fedavg's without a name), the YAML layered over it
    (`layer_config`), then the ``--set`` overrides; ``extra``: the CLI's own engine overrides
    (--ray-address, --workers, --cache-dir)."""
    from experiments.registry import lookup
    from fl.config import load_config, merge, parse_overrides, read_yaml, resolve_data_paths

    name = name or "fedavg"
    module, default = lookup(name)
    user = resolve_data_paths(read_yaml(config), Path(config).resolve().parent) if config else {}
    raw = layer_config(read_yaml(default), merge(user, parse_overrides(list(overrides))),
                       Path(config).stem if config else None)
    # one loader per study: the engine's config (fl.config) unless the study has its own
    # sections (the analytics studies), built by the same machinery (fl.config.build_sections)
    loader = getattr(module, "load", None)
    if loader is not None:
        return name, loader(raw, [f"secagg.workers={workers}"] if workers is not None else [])
    return name, load_config(raw, list(extra))


def _run_name(cfg) -> str | None:
    for section in ("experiment", "study"):
        name = getattr(getattr(cfg, section, None), "name", None)
        if isinstance(name, str) and name:
            return name
    engine = getattr(cfg, "engine", None)
    return getattr(getattr(engine, "experiment", None), "name", None) if engine is not None else None


def _end_of_run(out: Path) -> int:
    """Print the run's device statuses and first errors; 1 when no round made an update."""
    import pandas as pd

    from fl.results import console_summary

    rounds_path, clients_path = out / "rounds.parquet", out / "clients.parquet"
    if not rounds_path.exists():
        return 0
    rounds = pd.read_parquet(rounds_path)
    clients = pd.read_parquet(clients_path) if clients_path.exists() else None
    print(console_summary(clients, rounds), file=sys.stderr)
    if "updated" in rounds and len(rounds) and not rounds["updated"].astype(bool).any():
        print(f"fedpop: no round made an update: the model in {out} is the initial one (see the errors above and "
              f"{clients_path})", file=sys.stderr)
        return 1
    return 0


def _interrupted(out: Path | None) -> int:
    """Ctrl-C: where the run stopped and how to continue it; exit status 130 (128 + SIGINT)."""
    done = None
    if out is not None and (out / "checkpoint.npz").exists():
        import numpy as np

        try:
            with np.load(out / "checkpoint.npz") as z:
                done = int(z["round"])
        except Exception:  # noqa: BLE001 - a checkpoint being replaced: report no round
            done = None
    if done:
        print(f"fedpop: interrupted after round {done - 1}; continue with `fedpop run --resume {out}`",
              file=sys.stderr)
    else:
        print("fedpop: interrupted before the first round finished; nothing to resume", file=sys.stderr)
    return 130


def _report_module():
    import report

    return report


def write_run_report(out: Path, cfg=None) -> Path | None:
    """OUT/report.html at the end of `fedpop run`; a failure is a warning, never a failed run."""
    try:
        config = cfg.to_dict() if hasattr(cfg, "to_dict") else None
        path = _report_module().write_report(out, config=config)
    except Exception as e:  # noqa: BLE001 - the run's results are already written
        print(f"fedpop: warning: could not write {Path(out) / 'report.html'}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return None
    print(f"report: {path}")
    return path


def _report(args) -> int:
    report = _report_module()
    try:
        path = report.write_report(args.dir, args.out)
    except report.ReportError as e:
        print(f"fedpop report: {e}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """Run warnings as one line, ``fedpop: warning: ...`` (others as Python prints them)."""
    from fl.notices import RunWarning

    if issubclass(category, RunWarning):
        print(f"fedpop: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = None


def main(argv: list[str] | None = None) -> int:
    import warnings

    from fl.config import ConfigError
    from fl.task import TaskError

    global _default_showwarning
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    args.run_dir = None
    if _default_showwarning is None:
        _default_showwarning = warnings.showwarning
        warnings.showwarning = _show_warning
    try:
        if args.command == "list":
            from experiments.registry import config_of, names
            for name in names():
                print(f"{name:24s} configs/{config_of(name).name}")
            return 0
        if args.command == "run":
            return _run(args)
        if args.command == "report":
            return _report(args)
        import importlib
        kwargs = {"repeats": args.repeats} if args.repeats else {}
        if args.population:
            if args.which not in ("scale", "soak"):
                print("fedpop: --population applies to `bench scale` and `bench soak` only", file=sys.stderr)
                return 2
            kwargs["population"] = args.population
        if args.reference_tree:
            if args.which != "asr":
                print("fedpop: --reference-tree applies to `bench asr` only", file=sys.stderr)
                return 2
            kwargs["reference_tree"] = args.reference_tree
        result = importlib.import_module(BENCHES[args.which]).run_bench(args.out, quick=args.quick, **kwargs)
        print(json.dumps(result.get("headline", result), indent=2, default=str))
        return 0
    except ConfigError as e:
        print(f"fedpop: config error: {e}", file=sys.stderr)
        return 2
    except TaskError as e:
        print(f"fedpop: task error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
