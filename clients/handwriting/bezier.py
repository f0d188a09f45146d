"""Ink as a sequence of cubic Bézier curves, after Carbune et al. 2020 ("Fast multi-language
LSTM-based online handwriting recognition", IJDAR 23, Sec. 3.1): normalize the ink, fit each
stroke with cubic Bézier curves in (x, y, t) by iterative least squares, splitting a stroke
until every curve's fit error is under a threshold, and describe each curve by 10 features:

- the endpoint delta (dx, dy);
- the control-point distance ratios |P1 - P0| / |P3 - P0| and |P2 - P3| / |P3 - P0|;
- the control-point angles: of P1 - P0 from the chord P3 - P0, and of P2 - P3 from P0 - P3;
- the coefficients (c1, c2, c3) of the time polynomial t(s) = t0 + c1 s + c2 s^2 + c3 s^3;
- a pen-up flag: 1 for the straight, invisible curve from one stroke's end to the next start.

The fit is Schneider's ("An algorithm for automatically fitting digitized curves", Graphics
Gems 1990) in three dimensions: chord-length parameters, a linear least-squares solve for the
two inner control points with the ends fixed, Newton-Raphson re-parameterization, repeated;
a segment whose error stays above the threshold is split at its worst point.

The raw-points baseline (`point_features`) keeps the touch points instead: each stroke
resampled at equal arc length, as (dx, dy, dt, pen-up) deltas.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.handwriting.ink import validate_ink

NUM_FEATURES = 10
NUM_POINT_FEATURES = 4


@dataclass(frozen=True)
class FitConfig:
    threshold: float = 0.04  # max fit error (x-y-t distance, in normalized ink heights)
    time_weight: float = 0.1  # weight of one second against one ink height in that distance
    iterations: int = 30  # Levenberg-Marquardt steps per segment
    min_ratio_chord: float = 0.02  # floor of |P3 - P0| in the distance ratios


def normalize(strokes) -> list[np.ndarray]:
    """Validated ink translated to start at (0, 0, 0) -- x from the leftmost point, y from the
    lowest -- and scaled so that its height is 1 (its width if it is flat); time in seconds."""
    strokes = validate_ink(strokes)
    allp = np.concatenate(strokes)
    lo = np.array([allp[:, 0].min(), allp[:, 1].min(), strokes[0][0, 2]])
    span = np.ptp(allp[:, :2], axis=0)
    scale = span[1] if span[1] > 1e-3 * max(span[0], 1e-12) else max(span[0], 1.0)
    return [(s - lo) / np.array([scale, scale, 1.0]) for s in strokes]


# -- a single cubic ------------------------------------------------------------------------
def bernstein(u: np.ndarray) -> np.ndarray:
    u = np.asarray(u, np.float64)
    v = 1.0 - u
    out = np.empty((len(u), 4))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = v * v * v, 3 * u * v * v, 3 * u * u * v, u * u * u
    return out


def evaluate(ctrl: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points B(u) of a cubic with control points ``ctrl`` [4, d]."""
    return bernstein(u) @ ctrl


def _derivatives(ctrl: np.ndarray, u: np.ndarray):
    d1 = 3 * np.diff(ctrl, axis=0)  # quadratic hodograph
    d2 = 2 * np.diff(d1, axis=0)  # linear
    u = u[:, None]
    v = 1 - u
    b1 = v ** 2 * d1[0] + 2 * u * v * d1[1] + u ** 2 * d1[2]
    b2 = v * d2[0] + u * d2[1]
    return b1, b2


def _solve_inner(p: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Control points with P0, P3 fixed at the segment's ends and P1, P2 the least-squares
    solution (a tiny ridge towards the straight line keeps 3-point segments well posed)."""
    b = bernstein(u)
    a = b[:, 1:3]
    rhs = p - np.outer(b[:, 0], p[0]) - np.outer(b[:, 3], p[-1])
    line = np.stack([p[0] + (p[-1] - p[0]) / 3, p[0] + 2 * (p[-1] - p[0]) / 3])
    lam = 1e-8
    inner = np.linalg.solve(a.T @ a + lam * np.eye(2), a.T @ rhs + lam * line)
    return np.vstack([p[0], inner, p[-1]])


def fit_cubic(p: np.ndarray, iterations: int = 30, target: float = 0.0) -> tuple[np.ndarray, np.ndarray, float]:
    """(control points [4, d], parameters [n], max error) of one cubic through ``p`` [n, d]
    with its ends fixed at p[0] and p[-1].  Least squares over the two inner control points
    and every point's curve parameter jointly: chord-length start, then Levenberg-Marquardt
    steps whose per-point parameter block is diagonal and eliminated by a Schur complement
    (O(n) per step).  Stops early once the max error is under ``target``, or when it stays
    far above it without converging (a segment that will be split anyway)."""
    n, dim = p.shape
    if n <= 2:
        ctrl = np.stack([p[0], p[0] + (p[-1] - p[0]) / 3, p[0] + 2 * (p[-1] - p[0]) / 3, p[-1]])
        return ctrl, np.linspace(0.0, 1.0, n), 0.0
    chord = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    u = chord / chord[-1] if chord[-1] > 0 else np.linspace(0.0, 1.0, n)
    ctrl = _solve_inner(p, u)
    r = evaluate(ctrl, u) - p
    cost, lam = float((r * r).sum()), 1e-3
    free = np.ones(n, bool)
    free[[0, -1]] = False  # the ends stay at u = 0 and 1
    eye, history = np.eye(dim), []
    for step in range(max(0, iterations)):
        err = np.sqrt((r * r).sum(1).max())
        history.append(err)
        stalled = step >= 6 and err > 4 * target and err > 0.7 * history[-4]
        if cost < 1e-24 or err <= target or (target > 0 and stalled):
            break
        b = bernstein(u)[:, 1:3]  # [n, 2]
        d1, _ = _derivatives(ctrl, u)  # [n, dim]
        d1 = d1 * free[:, None]
        a = np.kron(b.T @ b, eye)  # [2 dim, 2 dim], unknowns ordered (P1 x.., P2 x..)
        bmat = (b[:, :, None] * d1[:, None, :]).reshape(n, 2 * dim)  # row i: column i of the coupling block
        g_c = (b[:, :, None] * r[:, None, :]).reshape(n, 2 * dim).sum(0)
        g_u = (d1 * r).sum(1)
        dd = (d1 * d1).sum(1)
        while True:
            inv = 1.0 / (dd * (1 + lam) + lam)
            s = a + lam * np.diag(np.diag(a) + 1.0) - (bmat * inv[:, None]).T @ bmat
            delta_c = np.linalg.solve(s, -(g_c - bmat.T @ (inv * g_u)))
            delta_u = -inv * (g_u + bmat @ delta_c)
            new_u = np.clip(u + delta_u * free, 0.0, 1.0)
            new_ctrl = ctrl.copy()
            new_ctrl[1:3] += delta_c.reshape(2, dim)
            new_r = evaluate(new_ctrl, new_u) - p
            new_cost = float((new_r * new_r).sum())
            if new_cost < cost:
                u, ctrl, r, lam = new_u, new_ctrl, new_r, max(lam / 3, 1e-12)
                improved, cost = cost - new_cost, new_cost
                break
            lam *= 4
            if lam > 1e8:
                improved = 0.0
                break
        if improved <= 1e-12 * max(cost, 1e-30) or lam > 1e8:
            break
    return ctrl, u, float(np.linalg.norm(r, axis=1).max())


def fit_stroke(stroke: np.ndarray, config: FitConfig = FitConfig()) -> list[np.ndarray]:
    """Cubic Bézier curves [4, 3] in (x, y, t) covering one normalized stroke, consecutive
    curves sharing their ends; each fits its points within ``config.threshold`` (x-y-t distance
    with time weighted by ``time_weight``), unless a segment is down to 2 points."""
    w = np.array([1.0, 1.0, config.time_weight])
    p = np.asarray(stroke, np.float64) * w
    keep = np.concatenate([[True], np.linalg.norm(np.diff(p, axis=0), axis=1) > 1e-12])
    p = p[keep]
    if len(p) == 1:
        p = np.vstack([p, p])
    out, todo = [], [(0, len(p) - 1)]
    while todo:  # depth first, left to right: curves come out in writing order
        lo, hi = todo.pop()
        ctrl, u, err = fit_cubic(p[lo:hi + 1], config.iterations, config.threshold)
        if err <= config.threshold or hi - lo < 2:
            out.append(ctrl / w)
            continue
        e = np.linalg.norm(evaluate(ctrl, u) - p[lo:hi + 1], axis=1)
        k = lo + int(np.clip(np.argmax(e), 1, hi - lo - 1))
        todo.extend([(k, hi), (lo, k)])
    return out


@dataclass
class CurveInk:
    """A word's fitted curves: control points [n, 4, 3] (x, y, t) and pen-up flags [n]."""
    ctrl: np.ndarray
    pen_up: np.ndarray
    stroke: np.ndarray  # index of the stroke a curve belongs to (-1 for pen-up curves)

    def __len__(self) -> int:
        return len(self.pen_up)


def fit_ink(strokes, config: FitConfig = FitConfig(), normalized: bool = False) -> CurveInk:
    """The curve sequence of a word's ink: each stroke's fitted curves, with one straight pen-up
    curve from each stroke's end to the next stroke's start."""
    strokes = validate_ink(strokes) if normalized else normalize(strokes)
    ctrl, pen, which = [], [], []
    for i, s in enumerate(strokes):
        if i:
            a, b = strokes[i - 1][-1], s[0]
            ctrl.append(np.stack([a, a + (b - a) / 3, a + 2 * (b - a) / 3, b]))
            pen.append(1.0)
            which.append(-1)
        curves = fit_stroke(s, config)
        ctrl.extend(curves)
        pen.extend([0.0] * len(curves))
        which.extend([i] * len(curves))
    return CurveInk(np.array(ctrl), np.array(pen, np.float32), np.array(which))


def curve_features(curves: CurveInk, config: FitConfig = FitConfig()) -> np.ndarray:
    """[n, 10] features per curve (see the module docstring), float32."""
    c = curves.ctrl
    p0, p1, p2, p3 = (c[:, k, :2] for k in range(4))
    chord = p3 - p0
    d = np.maximum(np.linalg.norm(chord, axis=1), config.min_ratio_chord)
    r1 = np.minimum(np.linalg.norm(p1 - p0, axis=1) / d, 5.0)
    r2 = np.minimum(np.linalg.norm(p2 - p3, axis=1) / d, 5.0)

    def angle(v, ref):
        a = np.arctan2(v[:, 1], v[:, 0]) - np.arctan2(ref[:, 1], ref[:, 0])
        a = (a + np.pi) % (2 * np.pi) - np.pi
        return np.where(np.linalg.norm(v, axis=1) > 1e-9, a, 0.0)

    t = c[:, :, 2]
    c1 = 3 * (t[:, 1] - t[:, 0])
    c2 = 3 * (t[:, 2] - 2 * t[:, 1] + t[:, 0])
    c3 = t[:, 3] - 3 * t[:, 2] + 3 * t[:, 1] - t[:, 0]
    return np.column_stack([chord, r1, r2, angle(p1 - p0, chord), angle(p2 - p3, -chord),
                            c1, c2, c3, curves.pen_up]).astype(np.float32)


def compaction(strokes, curves: CurveInk) -> float:
    """Touch points per curve of the sequence the recognizer reads (pen-up curves included)."""
    return sum(len(s) for s in strokes) / max(len(curves), 1)


def point_features(strokes, spacing: float = 0.05) -> np.ndarray:
    """Raw-points baseline: the normalized ink resampled every ``spacing`` ink heights along
    each stroke, as [n, 4] (dx, dy, dt, pen-up) deltas from the previous point (pen-up = 1
    at the first point of each stroke after the first)."""
    rows = []
    for i, s in enumerate(normalize(strokes)):
        seg = np.linalg.norm(np.diff(s[:, :2], axis=0), axis=1)
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        at = np.linspace(0.0, arc[-1], max(2, int(np.ceil(arc[-1] / spacing)) + 1)) if arc[-1] > 0 else [0.0]
        res = np.stack([np.interp(at, arc, s[:, k]) for k in range(3)], 1)
        flag = np.zeros((len(res), 1))
        flag[0] = 1.0 if i else 0.0
        rows.append(np.hstack([res, flag]))
    pts = np.concatenate(rows)
    out = pts.copy()
    out[1:, :3] = np.diff(pts[:, :3], axis=0)
    out[0, :3] = 0.0
    return out.astype(np.float32)
