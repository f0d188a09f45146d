"""The population at work, as inline SVG charts for the report page.

Each chart is drawn from the tables a run writes (`rounds.parquet`, `clients.parquet`) with
no plotting library and no network: devices per status per round, the update norm and the
wall time per round, loss and accuracy per round, the distinct devices trained so far, the
CDF over devices of their final evaluation metric, and personalized against global accuracy
per device. Rounds are numbered as in the tables (from 0).
"""
from __future__ import annotations

import math
from html import escape

import numpy as np
import pandas as pd

W, H = 520, 260                     # chart size in px
L, R, T, B = 66, 14, 26, 40         # margins: left, right, top, bottom
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
STATUS_COLORS = {"accepted": "#2ca02c", "dropped": "#ff7f0e", "straggler": "#9467bd", "stragglers": "#9467bd",
                 "failed": "#d62728", "rejected": "#8c564b", "nonfinite": "#e377c2"}
ROUND_STATUS_COLUMNS = ("accepted", "dropped", "stragglers", "failed", "rejected")


def charts(rounds: pd.DataFrame | None, clients: pd.DataFrame | None) -> list[tuple[str, str, str]]:
    """``(id, title, html)`` for every chart the tables can fill; an empty table gives none."""
    out = []
    if rounds is not None and "round" in rounds and len(rounds):
        rounds = rounds.sort_values("round")
    else:
        rounds = None
    status = _status_per_round(rounds, clients)
    if status is not None:
        out.append(("chart-status", "Devices per status per round", _bars(status)))
    if rounds is not None:
        for cid, title, cols, ylabel in (
                ("chart-loss", "Loss per round", ["train_loss", "eval_loss"], "loss"),
                ("chart-accuracy", "Accuracy per round", ["train_accuracy", "eval_accuracy",
                                                          "eval_personalized_accuracy"], "accuracy"),
                ("chart-update-norm", "Update norm per round", ["update_norm"], "L2 norm of the server update"),
                ("chart-wall", "Wall time per round", ["wall_s"], "seconds"),
                ("chart-coverage", "Distinct devices trained so far", ["clients_trained"], "devices")):
            series = {c: rounds[["round", c]].dropna() for c in cols if c in rounds and rounds[c].notna().any()}
            series = {c: (s["round"].to_numpy(float), s[c].to_numpy(float)) for c, s in series.items()}
            series = {c: xy for c, xy in series.items() if np.isfinite(xy[1]).any()}
            if series:
                out.append((cid, title, _lines(series, ylabel)))
    final = final_per_device(clients)
    if final is not None:
        metric, rnd, values = final
        out.append(("chart-final-cdf", f"Final {metric} per device (CDF, round {rnd})",
                    _cdf(values, metric) + f'<p class="note">{len(values):,} devices; median '
                    f"{_num(float(np.median(values)))}, p10 {_num(float(np.quantile(values, 0.1)))}, "
                    f"p90 {_num(float(np.quantile(values, 0.9)))}.</p>"))
    personal = personalized_vs_global(clients)
    if personal is not None:
        rnd, df = personal
        better = float((df["personalized_accuracy"] > df["accuracy"]).mean())
        out.append(("chart-personalized", f"Personalized against global accuracy per device (round {rnd})",
                    _scatter(df["accuracy"].to_numpy(float), df["personalized_accuracy"].to_numpy(float))
                    + f'<p class="note">{len(df):,} devices; {better:.0%} do better with their personal model '
                    "(above the diagonal).</p>"))
    return out


# -- what the charts show -------------------------------------------------------------------------
def _status_per_round(rounds, clients) -> pd.DataFrame | None:
    """round × status counts: from the training cohorts' rows of clients.parquet when present
    (every status the engine records), else from the per-round columns of rounds.parquet."""
    if clients is not None and {"round", "status"} <= set(clients) and len(clients):
        train = clients[clients["phase"].eq("train")] if "phase" in clients else clients
        if len(train):
            counts = pd.crosstab(train["round"], train["status"].fillna("none").astype(str))
            first = [s for s in STATUS_COLORS if s in counts]
            return counts[first + sorted(c for c in counts if c not in first)]
    if rounds is not None:
        cols = [c for c in ROUND_STATUS_COLUMNS if c in rounds]
        if cols:
            return rounds.set_index("round")[cols].fillna(0)
    return None


def final_per_device(clients) -> tuple[str, int, np.ndarray] | None:
    """(metric, round, values): each device's metric at the last federated evaluation (else
    the last training round), accuracy when recorded, else loss; accepted rows only."""
    if clients is None or not {"round", "status"} <= set(clients) or not len(clients):
        return None
    ok = clients[clients["status"].eq("accepted")]
    if "phase" in ok and ok["phase"].eq("eval").any():
        ok = ok[ok["phase"].eq("eval")]
    for metric in ("accuracy", "loss"):
        if metric in ok:
            rows = ok[ok[metric].notna() & np.isfinite(pd.to_numeric(ok[metric], errors="coerce"))]
            if len(rows):
                last = int(rows["round"].max())
                return metric, last, rows.loc[rows["round"] == last, metric].to_numpy(float)
    return None


def personalized_vs_global(clients) -> tuple[int, pd.DataFrame] | None:
    """(round, rows) of the last evaluation that recorded a personal model's accuracy."""
    if clients is None or "personalized_accuracy" not in clients or "accuracy" not in clients:
        return None
    rows = clients[clients["personalized_accuracy"].notna() & clients["accuracy"].notna()]
    if "status" in rows:
        rows = rows[rows["status"].eq("accepted")]
    if not len(rows):
        return None
    last = int(rows["round"].max())
    return last, rows[rows["round"] == last]


# -- drawing --------------------------------------------------------------------------------------
def _frame(x0, x1, y0, y1, xlabel, ylabel, integer_x=True) -> tuple[list[str], callable, callable]:
    if x1 <= x0:
        x0, x1 = x0 - 0.5, x1 + 0.5
    if y1 <= y0:
        y0, y1 = y0 - 0.5, y1 + 0.5
    sx = lambda x: L + (x - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    sy = lambda y: H - B - (y - y0) / (y1 - y0) * (H - T - B)  # noqa: E731
    parts = [f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="#fff" stroke="#ccc"/>']
    for v in _ticks(y0, y1):
        parts.append(f'<line x1="{L}" x2="{W - R}" y1="{sy(v):.1f}" y2="{sy(v):.1f}" stroke="#eee"/>'
                     f'<text x="{L - 5}" y="{sy(v) + 4:.1f}" text-anchor="end">{_num(v)}</text>')
    xt = _ticks(x0, x1, integer=integer_x)
    for v in xt:
        parts.append(f'<text x="{sx(v):.1f}" y="{H - B + 15}" text-anchor="middle">{_num(v)}</text>')
    parts.append(f'<text x="{(L + W - R) / 2}" y="{H - 6}" text-anchor="middle">{escape(xlabel)}</text>'
                 f'<text transform="translate(13,{(T + H - B) / 2}) rotate(-90)" text-anchor="middle">'
                 f"{escape(ylabel)}</text>")
    return parts, sx, sy


def _svg(parts: list[str], legend: list[tuple[str, str]] = ()) -> str:
    x = L
    for name, color in legend:
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>'
                     f'<text x="{x + 14}" y="17">{escape(name)}</text>')
        x += 22 + 7 * len(name)
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" '
            f'height="{H}" role="img">{"".join(parts)}</svg>')


def _lines(series: dict, ylabel: str) -> str:
    xs = np.concatenate([x for x, _ in series.values()])
    ys = np.concatenate([y[np.isfinite(y)] for _, y in series.values()])
    lo, hi = float(ys.min()), float(ys.max())
    lo = 0.0 if lo >= 0 and lo < 0.3 * hi else lo
    pad = 0.05 * (hi - lo)
    parts, sx, sy = _frame(float(xs.min()) - 0.03 * max(float(np.ptp(xs)), 1.0), float(xs.max())
                           + 0.03 * max(float(np.ptp(xs)), 1.0), lo - (pad if lo != 0 else 0), hi + pad, "round", ylabel)
    legend = []
    for i, (name, (x, y)) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        keep = np.isfinite(y)
        pts = " ".join(f"{sx(a):.1f},{sy(b):.1f}" for a, b in zip(x[keep], y[keep]))
        parts.append(f'<polyline class="series" data-n="{int(keep.sum())}" points="{pts}" fill="none" '
                     f'stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle class="marker" cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="2.5" fill="{color}"/>'
                  for a, b in zip(x[keep], y[keep])] if keep.sum() <= 60 else []
        legend.append((name, color))
    return _svg(parts, legend)


def _bars(counts: pd.DataFrame) -> str:
    rounds = counts.index.to_numpy(float)
    totals = counts.sum(axis=1).to_numpy(float)
    parts, sx, sy = _frame(float(rounds.min()) - 0.5, float(rounds.max()) + 0.5, 0.0, float(max(totals.max(), 1)),
                           "round", "devices")
    width = max(1.0, 0.8 * (W - L - R) / max(len(rounds), 1))
    base = np.zeros(len(rounds))
    legend = []
    for i, status in enumerate(counts.columns):
        color = STATUS_COLORS.get(status, COLORS[i % len(COLORS)])
        vals = counts[status].to_numpy(float)
        for r, b, v in zip(rounds, base, vals):
            if v > 0:
                parts.append(f'<rect class="bar" data-status="{escape(str(status))}" data-round="{int(r)}" '
                             f'x="{sx(r) - width / 2:.1f}" y="{sy(b + v):.1f}" width="{width:.1f}" '
                             f'height="{sy(b) - sy(b + v):.1f}" fill="{color}"><title>round {int(r)}: '
                             f"{int(v)} {escape(str(status))}</title></rect>")
        base += vals
        legend.append((str(status), color))
    return _svg(parts, legend)


def _cdf(values: np.ndarray, metric: str) -> str:
    v = np.sort(values)
    y = np.arange(1, len(v) + 1) / len(v)
    parts, sx, sy = _frame(float(v.min()), float(v.max()), 0.0, 1.0, metric, "fraction of devices", integer_x=False)
    pts = [f"{sx(v[0]):.1f},{sy(0):.1f}"]
    prev = 0.0
    for a, b in zip(v, y):
        pts += [f"{sx(a):.1f},{sy(prev):.1f}", f"{sx(a):.1f},{sy(b):.1f}"]
        prev = b
    parts.append(f'<polyline class="series" data-n="{len(v)}" points="{" ".join(pts)}" fill="none" '
                 f'stroke="{COLORS[0]}" stroke-width="2"/>')
    return _svg(parts)


def _scatter(x: np.ndarray, y: np.ndarray) -> str:
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    lo, hi = lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo)
    parts, sx, sy = _frame(lo, hi, lo, hi, "global model's accuracy", "personal model's accuracy",
                           integer_x=False)
    parts.append(f'<line x1="{sx(lo):.1f}" y1="{sy(lo):.1f}" x2="{sx(hi):.1f}" y2="{sy(hi):.1f}" '
                 'stroke="#999" stroke-dasharray="4 3"/>')
    parts += [f'<circle class="point" cx="{sx(a):.1f}" cy="{sy(b):.1f}" r="3" fill="{COLORS[0]}" '
              'fill-opacity="0.6"/>' for a, b in zip(x, y)]
    return _svg(parts)


def _ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    span = hi - lo
    if span <= 0 or not math.isfinite(span):
        return [lo]
    step = 10 ** math.floor(math.log10(span / n))
    for m in (1, 2, 2.5, 5, 10):
        if span / (step * m) <= n:
            step *= m
            break
    if integer:
        step = max(1.0, round(step))
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step + 1e-9) + 1)]


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e6:
        return str(int(v))
    return f"{v:.3g}"
