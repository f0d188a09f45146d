"""A run directory as one self-contained HTML page (`fedpop report DIR`, and the end of `fedpop run`).

The page holds what the directory holds, and leaves out what it does not: a header naming the
task, algorithm, aggregator chain, population and seed; the population at work, as inline SVG
charts (`report.population`: devices per status, update norm, wall time, loss and accuracy per
round, numbered as in the tables; the CDF over devices of the final metric; personalized against
global accuracy per device); the config
(`config.yaml`, `config.json`, `study_config.json` or `summary.json`'s `config`), the
targets of `summary.json` (`{name: {value, target, met}}`, or `{name: bool}`) marked met /
not met, its headline scalars and nested tables, every PNG figure (embedded as a data URI),
the per-round table (`rounds.parquet`), the per-device table (`clients.parquet`, aggregated
per device, plus its first raw rows), per-speaker / per-writer rows (`speakers.parquet`,
`writers.parquet`), every other top-level `*.parquet` / `*.csv`, and the nested runs
(`runs/NAME/`, `federated/`, `base/`: any folder with a `summary.json` or `rounds.parquet`).

Tables are sortable by a click on a column (a small inline script); each shows at most
`max_rows` rows and says how many the file has. All text is HTML-escaped; the page loads
nothing from the network (a Content-Security-Policy forbids it), so it opens from disk.
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

MAX_ROWS = 500  # rows shown per table (the files keep them all)
MAX_PLOTS = 60
MAX_SUMMARY_VALUES = 400
MAX_DEPTH = 4  # how deep plots and nested runs are looked for
SKIP_DIRS = {"tensorboard", "device_state", "tflite", "__pycache__"}  # hold no figures or runs
CONFIG_FILES = ("config.yaml", "config.json", "study_config.json")
PER_UNIT = {"speakers.parquet": "Per speaker", "writers.parquet": "Per writer"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportError(ValueError):
    """The path is not a run directory (missing, not a directory, or holds no run outputs)."""


def write_report(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, max_rows: int = MAX_ROWS,
                 config: dict | None = None) -> Path:
    """Write the report of ``run_dir`` to ``out`` (default ``run_dir/report.html``) and return its path.
    ``config``: the resolved config, shown when the directory holds none (the CLI passes it)."""
    page = render(run_dir, max_rows=max_rows, config=config)
    out = Path(out) if out is not None else Path(run_dir) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp"
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def render(run_dir: str | os.PathLike, max_rows: int = MAX_ROWS, config: dict | None = None) -> str:
    """The report page of ``run_dir`` as a string."""
    d = Path(run_dir)
    if not d.exists():
        raise ReportError(f"{d} does not exist")
    if not d.is_dir():
        raise ReportError(f"{d} is not a directory")
    plots, nested = _scan(d)
    tables = sorted(p for p in d.iterdir() if p.suffix in (".parquet", ".csv") and not p.name.startswith("."))
    config_file = next((d / n for n in CONFIG_FILES if (d / n).is_file()), None)
    summary_file = d / "summary.json"
    if not (plots or nested or tables or config_file or summary_file.is_file()):
        raise ReportError(f"{d} holds no run outputs (no summary.json, {', '.join(CONFIG_FILES)}, "
                          "*.parquet, *.csv or *.png)")
    page = _Page(max_rows)
    summary = page.guard("summary.json", lambda: json.loads(summary_file.read_text()), {}) \
        if summary_file.is_file() else {}
    if not isinstance(summary, dict):
        summary = {"summary": summary}
    by_name = {p.name: p for p in tables}
    rounds = page.guard("rounds.parquet", lambda: _read(by_name.pop("rounds.parquet"))) \
        if "rounds.parquet" in by_name else None
    clients = page.guard("clients.parquet", lambda: _read(by_name.pop("clients.parquet"))) \
        if "clients.parquet" in by_name else None
    cfg = page.guard("config", lambda: _config_dict(config_file, summary, config), {}) or {}
    page.header = page.guard("header", lambda: run_header(cfg, summary), []) or []
    page.guard("population", lambda: _population_section(page, rounds, clients))
    page.guard("config", lambda: _config_section(page, config_file, summary, config))
    if isinstance(summary.get("targets"), dict) and summary["targets"]:
        page.guard("targets", lambda: _targets_section(page, summary["targets"]))
    if summary:
        page.guard("summary", lambda: _summary_section(page, summary))
    if plots:
        _plots_section(page, d, plots)
    if rounds is not None:
        page.guard("rounds.parquet", lambda: page.section(
            "rounds", "Per round", "<p>From <code>rounds.parquet</code>: one row per round.</p>"
            + page.table(rounds, "rounds")))
    if clients is not None:
        page.guard("clients.parquet", lambda: _clients_section(page, clients))
    for name, title in PER_UNIT.items():
        if name in by_name:
            page.guard(name, lambda name=name, title=title: page.section(
                Path(name).stem, title, f"<p>From <code>{escape(name)}</code>.</p>"
                + page.table(_read(by_name.pop(name)), "rows")))
    if by_name:
        _other_tables_section(page, by_name)
    if nested:
        page.guard("nested runs", lambda: _nested_section(page, d, nested))
    title = str(summary.get("experiment") or summary.get("name") or d.resolve().name)
    return page.html(title, d)


# -- the page ---------------------------------------------------------------------------------------
class _Page:
    def __init__(self, max_rows: int):
        self.max_rows = max(1, int(max_rows))
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, body html)
        self.problems: list[str] = []
        self.header: list[tuple[str, str]] = []  # (label, value) pairs under the title

    def section(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def guard(self, what: str, fn, default=None):
        """Run fn; a file that cannot be read becomes a note on the page, not a failed report."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any unreadable input is reported, never fatal
            self.problems.append(f"{what}: {type(e).__name__}: {e}")
            return default

    def table(self, df: pd.DataFrame, what: str = "rows", max_rows: int | None = None, index: bool = False) -> str:
        """A sortable table of the first rows of df, with a note of how many there are."""
        limit = self.max_rows if max_rows is None else max_rows
        if index:
            df = df.reset_index()
        n = len(df)
        shown = df.head(limit)
        note = (f"{n:,} {what}" if n <= limit else
                f"first {limit:,} of {n:,} {what} shown; the file holds them all")
        head = "".join(f"<th>{escape(str(c))}</th>" for c in shown.columns)
        body = "".join("<tr>" + "".join(_td(v) for v in row) + "</tr>\n"
                       for row in shown.itertuples(index=False, name=None))
        return (f'<p class="note">{escape(note)}; click a column to sort.</p>'
                f'<div class="scroll"><table class="sortable"><thead><tr>{head}</tr></thead>'
                f"<tbody>\n{body}</tbody></table></div>")

    def html(self, title: str, d: Path) -> str:
        if self.problems:
            self.section("problems", "Not shown", "<ul>" + "".join(
                f"<li>{escape(p)}</li>" for p in self.problems) + "</ul>")
        nav = " · ".join(f'<a href="#{escape(a)}">{escape(t)}</a>' for a, t, _ in self.sections)
        body = "\n".join(f'<section id="{escape(a)}"><h2>{escape(t)}</h2>\n{b}\n</section>'
                         for a, t, b in self.sections)
        when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; '
                f"style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
                f"<title>{escape(title)} — fedpop report</title><style>{CSS}</style></head>\n<body>"
                f"<h1>{escape(title)}</h1>{self._header_html()}"
                f'<p class="note">Run directory <code>{escape(str(d.resolve()))}</code>; report made {when} by '
                f"<code>fedpop report</code>. Self-contained: figures are embedded, nothing is loaded from the "
                f"network.</p><nav>{nav}</nav>\n{body}\n<script>{SORTER_JS}</script></body></html>\n")


    def _header_html(self) -> str:
        if not self.header:
            return ""
        items = "".join(f"<div><dt>{escape(k)}</dt><dd>{escape(v)}</dd></div>" for k, v in self.header)
        return f'<dl id="run-header">{items}</dl>'


# -- sections ---------------------------------------------------------------------------------------
def _config_dict(config_file: Path | None, summary: dict, config: dict | None) -> dict:
    """The run's config as a dict: the directory's file, else summary.json's, else the CLI's."""
    if config_file is not None:
        text = config_file.read_text()
        if config_file.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
        return data if isinstance(data, dict) else {}
    if isinstance(summary.get("config"), dict):
        return summary["config"]
    return config if isinstance(config, dict) else {}


def run_header(cfg: dict, summary: dict) -> list[tuple[str, str]]:
    """(label, value) pairs naming the task, algorithm, aggregator chain, population and seed,
    from the config (and summary.json where the config is silent); what neither holds is left out."""
    sec = lambda name: cfg.get(name) if isinstance(cfg.get(name), dict) else {}  # noqa: E731
    exp, client, server, agg, pop = sec("experiment"), sec("client"), sec("server"), sec("aggregator"), \
        sec("population")
    out = []
    task = exp.get("task") or summary.get("task")
    if task:
        out.append(("task", str(task)))
    if client.get("algorithm") or summary.get("algorithm"):
        algorithm = str(client.get("algorithm") or summary.get("algorithm"))
        if server.get("optimizer"):
            algorithm += f" (server {server['optimizer']}, lr {_text(server.get('lr'))})" \
                if server.get("lr") is not None else f" (server {server['optimizer']})"
        out.append(("algorithm", algorithm))
    if agg:
        out.append(("aggregators", " → ".join(aggregator_chain(agg))))
    size = pop.get("size", summary.get("population"))
    if size is not None:
        text = f"{size:,} devices" if isinstance(size, int) else _text(size)
        if pop.get("availability"):
            text += f", availability {pop['availability']}"
        out.append(("population", text))
    cohort = sec("cohort")
    if cohort.get("goal") is not None:
        out.append(("cohort", f"goal {cohort['goal']}" + (f", min reports {cohort['min_reports']}"
                                                          if cohort.get("min_reports") is not None else "")))
    seed = exp.get("seed", sec("study").get("seed", summary.get("seed")))
    if seed is not None:
        out.append(("seed", _text(seed)))
    rounds = exp.get("rounds", summary.get("rounds"))
    if rounds is not None:
        out.append(("rounds", _text(rounds)))
    return out


def aggregator_chain(agg: dict) -> list[str]:
    """The aggregator chain a config's ``aggregator`` section names: its ``chain``, or the chain
    its flat keys stand for (`fl.aggregators.default_chain`)."""
    if agg.get("chain"):
        return [str(c) for c in agg["chain"]]
    from types import SimpleNamespace

    from fl.aggregators import default_chain

    keys = {"kind": "mean", "secagg_dp_noise_multiplier": 0.0, "dp_noise_multiplier": 0.0, "clip_norm": 0.0}
    keys.update({k: agg[k] for k in keys if agg.get(k) is not None})
    return list(default_chain(SimpleNamespace(**keys)))


def _population_section(page: _Page, rounds: pd.DataFrame | None, clients: pd.DataFrame | None) -> None:
    from report.population import charts

    figs = charts(rounds, clients)
    if not figs:
        return
    body = "".join(f'<figure class="chart-fig" id="{cid}"><figcaption>{escape(title)}</figcaption>{svg}</figure>'
                   for cid, title, svg in figs)
    page.section("population", "The population, round by round",
                 "<p>From <code>rounds.parquet</code> and <code>clients.parquet</code>; rounds are numbered as "
                 "in the tables.</p>" + body)


def _config_section(page: _Page, config_file: Path | None, summary: dict, config: dict | None) -> None:
    if config_file is not None:
        text, source = config_file.read_text(), config_file.name
        if config_file.suffix == ".json":
            text = _yaml(json.loads(text))
    elif isinstance(summary.get("config"), dict):
        text, source = _yaml(summary["config"]), "summary.json (config)"
    elif config:
        text, source = _yaml(config), "the resolved config of this run"
    else:
        return
    lines = text.count("\n") + 1
    page.section("config", "Config", f"<details><summary>{escape(source)} — {lines} lines</summary>"
                                     f"<pre>{escape(text)}</pre></details>")


def _targets_section(page: _Page, targets: dict) -> None:
    rows = [_target_row(name, spec) for name, spec in targets.items()]
    met = sum(r[3] is True for r in rows)
    judged = sum(r[3] is not None for r in rows)
    marks = {True: ("met", "✔ met"), False: ("not-met", "✘ not met"), None: ("unknown", "–")}
    body = "".join(f'<tr class="{marks[m][0]}"><td>{escape(n)}</td><td>{escape(v)}</td><td>{escape(t)}</td>'
                   f'<td class="mark">{marks[m][1]}</td></tr>\n' for n, v, t, m in rows)
    page.section("targets", "Targets", f'<p class="headline">{met} of {judged} targets met</p>'
                 '<div class="scroll"><table class="sortable targets"><thead><tr><th>target</th><th>value</th>'
                 f"<th>wanted</th><th>met</th></tr></thead><tbody>\n{body}</tbody></table></div>")


def _target_row(name: str, spec) -> tuple[str, str, str, bool | None]:
    """(name, value, wanted, met) of a `{value, target, met}` spec, a bare bool, or a bare value."""
    if isinstance(spec, dict) and {"value", "target", "met"} & set(spec):
        extra = {k: v for k, v in spec.items() if k not in ("value", "target", "met")}
        value = _text(spec.get("value")) + "".join(f"; {k}={_text(v)}" for k, v in extra.items())
        met = spec.get("met")
        return str(name), value, _text(spec.get("target", "")), bool(met) if isinstance(met, (bool, np.bool_)) else None
    if isinstance(spec, (bool, np.bool_)):
        return str(name), _text(spec), "", bool(spec)
    return str(name), _text(spec), "", None


def _summary_section(page: _Page, summary: dict) -> None:
    rest = {k: v for k, v in summary.items() if k not in ("targets", "config")}
    scalars = {k: v for k, v in rest.items() if _is_scalar(v) or _short_list(v)}
    parts = []
    if scalars:
        parts.append(page.table(pd.DataFrame({"key": list(scalars), "value": [_text(v) for v in scalars.values()]}),
                                "headline values"))
    for key, v in rest.items():  # {name: {metric: scalar}} reads best as a table
        if key not in scalars and _is_grid(v):
            grid = pd.DataFrame.from_dict(v, orient="index")
            grid.index.name = key
            parts.append(f"<h3>{escape(str(key))}</h3>" + page.table(grid, "rows", index=True))
    flat = [(k, v) for k, v in _flatten({k: v for k, v in rest.items() if k not in scalars and not _is_grid(v)})]
    if flat:
        shown = flat[:MAX_SUMMARY_VALUES]
        note = "" if len(flat) <= MAX_SUMMARY_VALUES else f" (first {MAX_SUMMARY_VALUES} of {len(flat)})"
        parts.append(f"<details><summary>All other summary values{note}</summary>"
                     + page.table(pd.DataFrame(shown, columns=["key", "value"]), "values") + "</details>")
    page.section("summary", "Headline (summary.json)", "\n".join(parts) or "<p>summary.json is empty.</p>")


def _plots_section(page: _Page, d: Path, plots: list[Path]) -> None:
    figs = []
    for p in plots[:MAX_PLOTS]:
        rel = p.relative_to(d).as_posix()
        data = page.guard(rel, p.read_bytes)
        if data is None:
            continue
        if not data.startswith(PNG_MAGIC):
            page.problems.append(f"{rel}: not a PNG file")
            continue
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        figs.append(f'<figure><img src="{uri}" alt="{escape(rel)}"><figcaption>{escape(rel)}</figcaption></figure>')
    note = "" if len(plots) <= MAX_PLOTS else f'<p class="note">first {MAX_PLOTS} of {len(plots)} figures</p>'
    page.section("plots", "Plots", note + "\n".join(figs))


def _clients_section(page: _Page, clients: pd.DataFrame) -> None:
    parts = ["<p>From <code>clients.parquet</code>: one row per device per round (and per federated "
             "evaluation). Per device first, aggregated over its rows, then the raw rows.</p>"]
    if "device_id" in clients and len(clients):
        parts.append("<h3>Aggregated per device</h3>" + page.table(per_device(clients), "devices (by device id)"))
    parts.append(f"<details{' open' if 'device_id' not in clients else ''}><summary>Raw rows</summary>"
                 + page.table(clients, "rows") + "</details>")
    page.section("clients", "Per device", "\n".join(parts))


def per_device(clients: pd.DataFrame) -> pd.DataFrame:
    """One row per device: its rows and rounds, how often each status, total examples and compute,
    mean of every other numeric column (loss, accuracy, ...)."""
    g = clients.groupby("device_id", sort=True)
    out = pd.DataFrame({"rows": g.size()})
    if "round" in clients:
        out["rounds"] = g["round"].nunique()
    if "status" in clients:
        counts = pd.crosstab(clients["device_id"], clients["status"].fillna("none").astype(str))
        out = out.join(counts.add_prefix("status_"))
    skip = {"round", "device_id"}
    for col in clients.select_dtypes("number").columns:
        if col in skip:
            continue
        if col in ("examples", "compute_s"):
            out[f"total_{col}"] = g[col].sum()
        else:
            out[f"mean_{col}"] = g[col].mean()
    return out.reset_index()


def _other_tables_section(page: _Page, by_name: dict[str, Path]) -> None:
    parts = []
    for name, path in sorted(by_name.items()):
        html = page.guard(name, lambda path=path: page.table(_read(path), "rows"))
        if html is not None:
            parts.append(f"<h3>{escape(name)}</h3>{html}")
    if parts:
        page.section("tables", "Other tables", "\n".join(parts))


def _nested_section(page: _Page, d: Path, nested: list[Path]) -> None:
    rows = []
    for sub in nested:
        rel = sub.relative_to(d).as_posix()
        link = (f'<a href="{escape(rel)}/report.html">{escape(rel)}</a>' if (sub / "report.html").is_file()
                else f"<code>{escape(rel)}</code>")
        n_rounds = page.guard(f"{rel}/rounds.parquet", lambda sub=sub: str(len(_read(sub / "rounds.parquet"))), "") \
            if (sub / "rounds.parquet").exists() else ""
        summary = page.guard(f"{rel}/summary.json", lambda sub=sub: json.loads((sub / "summary.json").read_text()),
                             {}) if (sub / "summary.json").is_file() else {}
        brief = "; ".join(f"{k}={_text(v)}" for k, v in list(
            (summary if isinstance(summary, dict) else {}).items()) if _is_scalar(v))
        rows.append(f"<tr><td>{link}</td><td data-v=\"{n_rounds or ''}\">{escape(n_rounds)}</td>"
                    f"<td>{escape(brief[:600])}</td></tr>\n")
    page.section("nested", "Nested runs", "<p>Runs inside this directory (their figures are under Plots).</p>"
                 '<div class="scroll"><table class="sortable"><thead><tr><th>run</th><th>rounds</th>'
                 f"<th>summary</th></tr></thead><tbody>\n{''.join(rows)}</tbody></table></div>")


# -- reading ----------------------------------------------------------------------------------------
def _scan(d: Path) -> tuple[list[Path], list[Path]]:
    """PNG figures (the top level first) and nested run directories, at most MAX_DEPTH deep."""
    plots, nested = [], []
    for root, dirs, files in os.walk(d):
        here = Path(root)
        depth = len(here.relative_to(d).parts)
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x not in SKIP_DIRS
                         and not x.endswith(".parquet") and depth < MAX_DEPTH)
        plots += [here / f for f in sorted(files) if f.lower().endswith(".png")]
        if depth and ("summary.json" in files or "rounds.parquet" in files or (here / "rounds.parquet").is_dir()):
            nested.append(here)
    plots.sort(key=lambda p: (len(p.relative_to(d).parts), p.relative_to(d).as_posix()))
    return plots, nested


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


def _yaml(obj) -> str:
    import yaml

    try:
        return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True).rstrip("\n")
    except yaml.YAMLError:
        return json.dumps(obj, indent=2, default=str)


# -- values -----------------------------------------------------------------------------------------
def _is_scalar(v) -> bool:
    return v is None or isinstance(v, (str, bool, int, float, np.generic))


def _short_list(v) -> bool:
    return isinstance(v, list) and len(v) <= 12 and all(_is_scalar(x) for x in v)


def _is_grid(v) -> bool:
    return (isinstance(v, dict) and len(v) > 0 and all(
        isinstance(x, dict) and x and all(_is_scalar(y) for y in x.values()) for x in v.values()))


def _flatten(obj, prefix: str = ""):
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            yield from _flatten(v, key + ".")
        else:
            yield key, _text(v)


def _fmt_float(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return f"{x:.4f}".rstrip("0").rstrip(".")
    return f"{x:.4g}"


def _text(v) -> str:
    """A value as short text: numbers rounded, dicts as k=v, long lists shortened."""
    if v is None:
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return _fmt_float(float(v))
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple, np.ndarray)):
        items = [_text(x) for x in list(v)[:12]]
        more = f", … ({len(v)} items)" if len(v) > 12 else ""
        return "[" + ", ".join(items) + more + "]"
    s = str(v)
    return s if len(s) <= 300 else s[:300] + "…"


def _td(v) -> str:
    """A table cell; numbers carry their exact value in data-v for sorting."""
    if isinstance(v, (bool, np.bool_)):
        return f"<td>{bool(v)}</td>"
    if isinstance(v, (int, np.integer)):
        return f'<td data-v="{int(v)}">{int(v)}</td>'
    if isinstance(v, (float, np.floating)):
        x = float(v)
        return "<td></td>" if math.isnan(x) else f'<td data-v="{x!r}">{_fmt_float(x)}</td>'
    if v is None or v is pd.NaT or v is pd.NA or (isinstance(v, str) and not v):
        return "<td></td>"
    return f"<td>{escape(_text(v))}</td>"


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1200px;
 padding:0 1em;color:#1d1d1f;background:#fff}
h1{font-size:1.6em;margin:.2em 0} h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
h3{margin-bottom:.3em} nav{margin:.8em 0;padding:.5em .7em;background:#f4f6f8;border-radius:6px}
nav a{color:#0b5cad;text-decoration:none} .note{color:#555;font-size:.92em;margin:.3em 0}
.headline{font-size:1.15em;font-weight:600} code,pre{font-family:ui-monospace,Menlo,Consolas,monospace}
pre{background:#f6f8fa;padding:.8em;overflow:auto;max-height:40em;border-radius:6px}
.scroll{overflow:auto;max-height:36em;max-width:100%;display:inline-block;vertical-align:top;
 border:1px solid #ddd;border-radius:4px;margin-bottom:.8em}
table{border-collapse:collapse;font-size:.9em}
th,td{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left;white-space:nowrap}
td[data-v]{text-align:right;font-variant-numeric:tabular-nums}
th{position:sticky;top:0;background:#e9eef3;cursor:pointer;user-select:none}
th[aria-sort=ascending]::after{content:" ▲"} th[aria-sort=descending]::after{content:" ▼"}
tbody tr:nth-child(even){background:#fafbfc}
tr.met td.mark{color:#11703a;font-weight:600} tr.not-met td.mark{color:#b3261e;font-weight:600}
tr.met{background:#eef8f1!important} tr.not-met{background:#fdf0ef!important}
figure{display:inline-block;margin:.5em;vertical-align:top;max-width:100%}
figure img{max-width:100%;border:1px solid #ddd} figcaption{color:#555;font-size:.9em}
details summary{cursor:pointer;margin:.4em 0}
#run-header{display:flex;flex-wrap:wrap;gap:.4em 1.6em;margin:.4em 0 .8em;padding:.6em .8em;background:#f4f6f8;
 border-radius:6px} #run-header div{display:flex;gap:.4em} #run-header dt{color:#555}
#run-header dd{margin:0;font-weight:600}
figure.chart-fig{display:inline-block;margin:.4em .6em .8em 0;vertical-align:top}
figure.chart-fig figcaption{font-weight:600;color:#1d1d1f;margin-bottom:.2em}
svg.chart{font:11px system-ui,sans-serif;fill:#333;max-width:100%;height:auto}
"""

# click a header to sort its table's rows (numbers by data-v, else text); a second click reverses
SORTER_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead ? table.tHead.rows[0].cells : [];
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[col];
        if (!cell) return null;
        var v = cell.getAttribute("data-v");
        if (v !== null && v !== "") return parseFloat(v);
        var t = cell.textContent.trim();
        return t === "" ? null : t;
      };
      var rows = Array.prototype.map.call(body.rows, function (r, i) { return [key(r), i, r]; });
      rows.sort(function (a, b) {
        var x = a[0], y = b[0], c;
        if (x === null || y === null) c = (x === null) - (y === null);  /* empty cells last */
        else if (typeof x === "number" && typeof y === "number") c = asc ? x - y : y - x;
        else c = (asc ? 1 : -1) * String(x).localeCompare(String(y), undefined, {numeric: true});
        return c || a[1] - b[1];
      });
      rows.forEach(function (r) { body.appendChild(r[2]); });
    });
  });
});
"""
