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
    r.add_argument("name", nargs="?", choices=names(), help="experiment name (omit with --resume)")
    r.add_argument("--out", help="run directory (default runs/NAME)")
    r.add_argument("--config", help="YAML config replacing the experiment's default")
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


def _run(args) -> int:
    from experiments.registry import lookup
    from fl.config import load_config, read_yaml
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
        cfg = resolve_resume(out, overrides)
        name = args.name or cfg.experiment.name
    else:
        if not args.name:
            raise SystemExit("fedpop run: give an experiment name or --resume DIR")
        name = args.name
        module, default = lookup(name)
        # one loader per study: the engine's config (fl.config) unless the study has its own
        # sections (the analytics studies), built by the same machinery (fl.config.build_sections)
        loader = getattr(module, "load", None)
        if loader is not None:
            extra = [f"secagg.workers={args.workers}"] if args.workers is not None else []
            cfg = loader(read_yaml(args.config or default), list(args.overrides) + extra)
        else:
            cfg = load_config(read_yaml(args.config or default), overrides)
        out = Path(args.out or f"runs/{name}")
        if (out / "checkpoint.npz").exists():
            raise SystemExit(f"fedpop run: {out} already holds a run; use --resume {out} or another --out")
    module, _ = lookup(name)
    summary = module.run(cfg, out, progress=not args.quiet)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, indent=2, default=str))
    write_run_report(out, cfg)
    print(f"results in {out}/: " + ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))))
    return 0


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


def main(argv: list[str] | None = None) -> int:
    from fl.config import ConfigError

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            from experiments.registry import EXPERIMENTS
            for name, (_, cfg) in sorted(EXPERIMENTS.items()):
                print(f"{name:24s} configs/{cfg}")
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


if __name__ == "__main__":
    sys.exit(main())
