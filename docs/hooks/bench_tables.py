"""MkDocs hook: the benchmarks page's tables, rendered from ``bench/*.json`` at build time.

A page that contains the marker ``<!-- bench-tables -->`` gets, in its place, one section per
JSON file: its headline figures (with the [min, max] spread across runs where the file
records one), its targets and whether they were met, its other scalars, and every
``{name: {metric: value}}`` block as a table. Nothing is fetched: the files are read from
the repository.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

MARKER = "<!-- bench-tables -->"

# what each file measures; a file not listed here is still rendered, with its name only
DESCRIPTIONS = {
    "engine": "`fedpop bench engine`: the 784-200-200-10 MLP workload (cohort 50, 5×10 examples per "
              "device, 10 rounds) through fedpop with `client.jit_compile`, TFF 0.87, and a one-process "
              "tight loop (the floor); `small_compute`: logistic regression 784→10, one batch of 10 per "
              "device, cohort 1,000; `aggregators`: the MLP workload per aggregator chain.",
    "peers": "`make bench-peers`: the engine workload through fedpop, TFF, Flower 1.42 and pfl-research "
             "0.6, and the tiny-compute workload (logistic regression 784→10, cohort 1,000) through fedpop "
             "and pfl-research. `peers/flower_mlp.py` follows Flower's Keras quickstart (`run_simulation`, "
             "1 CPU per client); `peers/pfl_mlp.py` follows pfl's `SimulatedBackend` + `FederatedAveraging` "
             "(TF backend via tf-keras), in one process and in pfl's multi-worker mode with one process per "
             "core, taking the faster. Both peers share one virtualenv (`requirements-peers.lock`). Final "
             "weights are compared with fedpop's.",
    "scale": "`fedpop bench scale`: 1,000,000 devices, cohort 1,000 over-selected 1.3×, a tiny model, full "
             "outputs; each run in a fresh process.",
    "scale_10m": "`fedpop bench scale --population 10000000`: the same at 10,000,000 devices.",
    "soak": "`fedpop bench soak`: 1,000,000 devices, 500 rounds, cohort 200 with dropouts; a worker killed "
            "every 50 rounds and the coordinator SIGKILLed at a seeded random round, then `--resume`; the "
            "final weights and tables compared with an undisturbed run.",
    "secagg": "`fedpop bench secagg`: SecAgg+ with n = 1,000 clients, m = 100,000 parameters, 10 % dropout, "
              "in one process, against a floor of the primitives the protocol must run (X25519, keystream, "
              "Shamir, AES-GCM, HKDF, share commitments, Ed25519), measured in the same run; active mode at "
              "its own k and t, and semi-honest on the active graph.",
    "asr": "`fedpop bench asr`: one device's local training as the speech studies run it, in "
           "utterance-epochs per second on one core; `reference` is the same file run against an "
           "earlier tree (`--reference-tree DIR`).",
    "fedavg-asr-base": "The base recognizer's held-out WER per recipe and seed (see the "
                       "[fedavg-asr study](studies/fedavg-asr.md)).",
    "personalize_check": "The bottom-5 personalization recipe on 6 speakers from one base, with the "
                         "training code before and after the ASR speed-up (see the changelog).",
}


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - MkDocs hook signature
    if MARKER not in markdown:
        return markdown
    bench = Path(config["config_file_path"]).parent / "bench"
    return markdown.replace(MARKER, render(bench))


def render(bench_dir: Path) -> str:
    """Markdown for every ``*.json`` directly in ``bench_dir`` (sorted by name)."""
    files = sorted(Path(bench_dir).glob("*.json"))
    if not files:
        return "*No benchmark results in `bench/`: run `make bench`.*\n"
    return "\n".join(render_file(p) for p in files)


def render_file(path: Path) -> str:
    data = json.loads(path.read_text())
    out = [f"## {path.stem}", "", f"From `bench/{path.name}`."]
    if path.stem in DESCRIPTIONS:
        out[-1] += " " + DESCRIPTIONS[path.stem]
    out.append("")
    if not isinstance(data, dict):
        return "\n".join(out + [f"`{_fmt(data)}`", ""])
    spread = data.get("spread") if isinstance(data.get("spread"), dict) else {}
    headline = data.get("headline") if isinstance(data.get("headline"), dict) else None
    if headline is not None:
        out += _table(["figure", "median", "[min, max]"], _rows(headline, spread), "headline")
    scalars = {k: v for k, v in data.items() if _scalar(v) and (headline is None or k not in headline)}
    if scalars:
        out += _table(["value", "", "[min, max]"], _rows(scalars, spread),
                      "other figures" if headline is not None else "figures")
    targets = _targets(data.get("targets"), data.get("met") or (headline or {}).get("met"))
    if targets:
        out += _table(["target", "wanted", "met"], targets, "targets")
    for key, value in data.items():
        if key in ("headline", "targets", "met", "spread"):
            continue
        if _grid(value):
            cols = sorted({c for row in value.values() for c in row})
            rows = [[name] + [_fmt(row.get(c, "")) for c in cols] for name, row in value.items()]
            out += _table([key] + cols, rows, key)
        elif isinstance(value, dict) and value and all(_scalar(v) or _pair(v) for v in value.values()):
            out += _table([key, "", ""], [(k, _fmt(v), "") for k, v in value.items()], key)
    return "\n".join(out)


def _targets(targets, met) -> list[tuple[str, str, str]]:
    """(name, wanted, met) from ``{name: {target, met, value}}`` or ``{name_min|name_max: bound}``
    with a separate ``{name: bool}``."""
    rows: dict[str, list[str]] = {}
    for key, spec in (targets if isinstance(targets, dict) else {}).items():
        if isinstance(spec, dict):
            rows[key] = [_fmt(spec.get("target", "")), _mark(spec.get("met"))]
            continue
        name, op = ((key[:-4], "≥ ") if key.endswith("_min") else (key[:-4], "≤ ") if key.endswith("_max")
                    else (key, ""))
        rows.setdefault(name, ["", "–"])[0] = op + _fmt(spec)
    for key, ok in (met if isinstance(met, dict) else {}).items():
        rows.setdefault(key, ["", "–"])[1] = _mark(ok)
    return [(name, wanted, mark) for name, (wanted, mark) in rows.items()]


# -- helpers --------------------------------------------------------------------------------------
def _rows(values: dict, spread: dict):
    rows = []
    for key, value in _flat(values):
        if key.endswith("_spread") or key.endswith(".runs") or ".spread" in key or key.startswith("met."):
            continue
        lo_hi = spread.get(key)
        own = values.get(f"{key}_spread") if isinstance(values.get(f"{key}_spread"), dict) else None
        if own is not None and {"min", "max"} <= set(own):
            lo_hi = [own["min"], own["max"]]
        rows.append((key, _fmt(value), f"[{_fmt(lo_hi[0])}, {_fmt(lo_hi[1])}]" if _pair(lo_hi) else ""))
    return rows


def _flat(obj, prefix: str = ""):
    for key, value in obj.items():
        if isinstance(value, dict) and value:
            if {"min", "max"} <= set(value):
                continue  # a spread, shown next to its figure
            yield from _flat(value, f"{prefix}{key}.")
        elif _scalar(value) or _pair(value):
            yield f"{prefix}{key}", value


def _table(head, rows, what):
    rows = list(rows)
    if not rows:
        return []
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return [f"**{what}**", ""] + lines + [""]


def _scalar(v) -> bool:
    return v is None or isinstance(v, (str, bool, int, float))


def _pair(v) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)


def _grid(v) -> bool:
    return (isinstance(v, dict) and len(v) > 1 and all(
        isinstance(r, dict) and r and all(_scalar(x) for x in r.values()) for r in v.values()))


def _mark(v) -> str:
    return "✔" if v is True else "✘" if v is False else "–"


def _fmt(v) -> str:
    if isinstance(v, bool):
        return "✔" if v else "✘"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if _pair(v):
        return f"[{_fmt(v[0])}, {_fmt(v[1])}]"
    return "–" if v is None else str(v)
