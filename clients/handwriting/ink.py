"""Online ink: strokes of timestamped touch points, the alphabet, validation, and rendering
a word as a writer would write it on a touch screen.

Ink is a list of strokes, each a float array [n, 3] of (x, y, t): x to the right and y up in
device pixels, t in seconds.  The input of Carbune et al. 2020 ("Fast multi-language
LSTM-based online handwriting recognition", IJDAR 23) is exactly this: sequences of touch
points grouped into strokes (pen-down to pen-up).

Glyph skeletons come from the Hershey vector fonts (PyPI ``Hershey-Fonts``): single-stroke
polylines in font units, y down.  `render_word` turns them into touch points through a
writer's persistent style (`WriterStyle`, drawn in writers.py) and a device's sampling:
smoothing of the polyline corners, aspect, slant, baseline drift, letter spacing, joined
letters, delayed dots, a low-frequency wobble, a bell-shaped pen-speed profile that slows
down in sharp turns (the 2/3 power law), sampling at the device's rate, position noise and
pixel quantization, so the same word has a different point count on every device.
"""
from __future__ import annotations

import functools
import string
from dataclasses import dataclass

import numpy as np

ALPHABET = string.ascii_lowercase  # class 0 is the CTC blank; character c is class ALPHABET.index(c) + 1
FAMILIES = ("scripts", "futural")  # Hershey single-stroke families: joined script and print writers


class InkError(ValueError):
    """Ink or a word that cannot be used; raised before any work starts."""


class EmptyStrokeError(InkError):
    """Ink without strokes, or a stroke without touch points."""


class NonMonotonicTimestampError(InkError):
    """Timestamps that go backwards (or repeat) within a stroke or between strokes."""


class OutOfAlphabetError(InkError):
    """A word with characters outside the recognizer's alphabet."""


def validate_word(word: str, alphabet: str = ALPHABET) -> str:
    """``word`` if every character is in ``alphabet``, else `OutOfAlphabetError` naming them."""
    if not isinstance(word, str) or not word:
        raise OutOfAlphabetError(f"a word is a non-empty string of {alphabet!r}, not {word!r}")
    bad = sorted(set(word) - set(alphabet))
    if bad:
        raise OutOfAlphabetError(f"word {word!r} has characters outside the alphabet: {''.join(bad)!r} "
                                 f"(allowed: {alphabet!r})")
    return word


def validate_ink(strokes) -> list[np.ndarray]:
    """User-supplied ink as a list of float64 [n, 3] (x, y, t) arrays, checked: at least one
    stroke, no empty stroke, finite values, and strictly increasing time within a stroke and
    non-decreasing across strokes.  Raises `EmptyStrokeError` / `NonMonotonicTimestampError` /
    `InkError` naming the stroke and point."""
    if strokes is None or len(strokes) == 0:
        raise EmptyStrokeError("ink has no strokes")
    out, last_t = [], -np.inf
    for i, s in enumerate(strokes):
        a = np.asarray(s, np.float64)
        if a.size == 0:
            raise EmptyStrokeError(f"stroke {i} has no touch points")
        if a.ndim != 2 or a.shape[1] != 3:
            raise InkError(f"stroke {i} must be [n, 3] (x, y, t) points, not shape {a.shape}")
        if not np.isfinite(a).all():
            raise InkError(f"stroke {i} has non-finite coordinates")
        dt = np.diff(a[:, 2])
        if (dt <= 0).any():
            j = int(np.argmax(dt <= 0)) + 1
            raise NonMonotonicTimestampError(f"stroke {i}: timestamp of point {j} ({a[j, 2]!r}) is not after "
                                             f"point {j - 1} ({a[j - 1, 2]!r})")
        if a[0, 2] < last_t:
            raise NonMonotonicTimestampError(f"stroke {i} starts at t={a[0, 2]!r}, before the previous stroke "
                                             f"ends (t={last_t!r})")
        last_t = a[-1, 2]
        out.append(a)
    return out


def num_points(strokes) -> int:
    return int(sum(len(s) for s in strokes))


# -- glyphs ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _font(family: str):
    from HersheyFonts import HersheyFonts

    if family not in FAMILIES:
        raise ValueError(f"unknown Hershey family {family!r} (allowed: {', '.join(FAMILIES)})")
    f = HersheyFonts()
    f.load_default_font(family)
    return f


@functools.lru_cache(maxsize=None)
def glyph(family: str, ch: str) -> tuple[tuple[np.ndarray, ...], float]:
    """(strokes in x-height units with the baseline at y=0 and y up, advance width) of one
    character; the x-height is the height of the font's 'x'."""
    f = _font(family)
    g = next(iter(f.glyphs_for_text(ch)))
    gx = next(iter(f.glyphs_for_text("x")))
    ys = [y for s in gx.strokes for _, y in s]
    xh = float(max(ys) - min(ys))
    base = float(g.base_line)
    strokes = tuple(np.array([((x - g.left_offset) / xh, (base - y) / xh) for x, y in s], np.float64)
                    for s in g.strokes)
    return strokes, float(g.char_width) / xh


@dataclass(frozen=True)
class WriterStyle:
    """A writer's persistent style and device (see writers.py for how it is drawn).
    Lengths are in x-heights unless named ``_px``; speeds in x-heights per second."""
    family: str = "scripts"
    slant_deg: float = 10.0  # forward slant (shear of x by y)
    x_height_px: float = 40.0  # scale on the device
    aspect: float = 1.0  # width / height
    baseline_slope_deg: float = 0.0  # baseline drift: a tilt ...
    baseline_wave: float = 0.0  # ... plus a slow wave (amplitude, x-heights)
    letter_spacing: float = 0.0  # extra advance per letter
    join_gap: float = 0.3  # letters whose pen ends are closer than this are written in one stroke
    delayed_dots: bool = False  # i/j dots and small marks written after the word
    jitter: float = 0.02  # amplitude of the low-frequency wobble
    speed: float = 6.0  # mean pen speed
    speed_peak: float = 2.0  # bell shape of the speed profile within a stroke (higher = more peaked)
    pen_up_s: float = 0.15  # mean pause between strokes
    sample_rate_hz: float = 100.0  # the device's touch sampling rate
    noise_px: float = 0.3  # the device's position noise (std, pixels)
    pixel_px: float = 1.0  # the device's coordinate grid


def _chaikin(p: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Corner cutting (Chaikin 1974): rounds the Hershey polyline as a pen would; keeps the ends."""
    for _ in range(iterations):
        if len(p) < 3:
            return p
        q, r = 0.75 * p[:-1] + 0.25 * p[1:], 0.25 * p[:-1] + 0.75 * p[1:]
        mid = np.empty((2 * (len(p) - 1), 2))
        mid[0::2], mid[1::2] = q, r
        p = np.vstack([p[:1], mid[1:-1], p[-1:]])
    return p


def word_skeleton(word: str, style: WriterStyle) -> list[np.ndarray]:
    """The word's pen-down polylines in x-heights, in writing order: glyphs placed with the
    writer's aspect and letter spacing, touching letters joined, dots delayed if the writer does."""
    validate_word(word)
    strokes, x = [], 0.0
    for ch in word:
        g, width = glyph(style.family, ch)
        for s in g:
            strokes.append(s * [style.aspect, 1.0] + [x, 0.0])
        x += width * style.aspect + style.letter_spacing
    small = lambda s: np.ptp(s, axis=0).max() < 0.35  # noqa: E731  (dots, short marks)
    if style.delayed_dots:
        strokes = [s for s in strokes if not small(s)] + [s for s in strokes if small(s)]
    joined = [strokes[0]]
    for s in strokes[1:]:
        if not small(s) and not small(joined[-1]) and np.hypot(*(s[0] - joined[-1][-1])) < style.join_gap:
            joined[-1] = np.vstack([joined[-1], s])
        else:
            joined.append(s)
    return [_chaikin(s) for s in joined]


def _transform(p: np.ndarray, style: WriterStyle, slant: float, scale: float, wobble) -> np.ndarray:
    x, y = p[:, 0], p[:, 1]
    y = y + np.tan(np.radians(style.baseline_slope_deg)) * x + style.baseline_wave * np.sin(0.7 * x)
    dx, dy = wobble(x, y)
    x = x + np.tan(np.radians(slant)) * y + dx
    return np.stack([x, y + dy], 1) * scale


def _timed(p: np.ndarray, style: WriterStyle, t0: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Touch points of one pen-down polyline (pixels): speed follows a bell over the stroke and
    slows in turns (v ~ curvature^(-1/3), Lacquaniti et al. 1983); sampled at the device rate."""
    seg = np.hypot(*np.diff(p, axis=0).T)
    keep = np.concatenate([[True], seg > 1e-9])
    p, seg = p[keep], seg[seg > 1e-9]
    if len(p) < 2:
        return np.array([[*p[0], t0]]), t0
    s = np.concatenate([[0.0], np.cumsum(seg)])
    u = s / s[-1]
    bell = 0.25 + np.sin(np.pi * np.clip(u, 0, 1)) ** style.speed_peak
    d = np.diff(p, axis=0)
    turn = np.zeros(len(p))
    ang = np.arctan2(d[:, 1], d[:, 0])
    turn[1:-1] = np.abs((np.diff(ang) + np.pi) % (2 * np.pi) - np.pi)
    local = np.maximum(np.concatenate([[seg[0]], 0.5 * (seg[:-1] + seg[1:]), [seg[-1]]]), 1e-6)
    curv = turn / local * style.x_height_px  # radians per x-height
    v = bell * (1.0 + curv) ** (-1.0 / 3.0)
    dt = seg / (0.5 * (v[:-1] + v[1:]))
    duration = s[-1] / (style.speed * style.x_height_px * rng.uniform(0.9, 1.1))  # mean speed = style.speed
    t = t0 + np.concatenate([[0.0], np.cumsum(dt)]) * duration / dt.sum()
    step = 1.0 / style.sample_rate_hz
    ts = np.arange(t0, t[-1], step)
    if len(ts) == 0 or t[-1] - ts[-1] > 0.25 * step:
        ts = np.append(ts, t[-1])
    xy = np.stack([np.interp(ts, t, p[:, 0]), np.interp(ts, t, p[:, 1])], 1)
    return np.column_stack([xy, ts]), float(ts[-1])


def render_word(word: str, style: WriterStyle, rng: np.random.Generator) -> list[np.ndarray]:
    """One realization of ``word`` by a writer on their device: a list of [n, 3] (x, y, t)
    strokes in pixels and seconds (y up).  ``rng`` varies what differs between two writings of
    the same word (small slant/scale changes, the wobble, timing, noise)."""
    slant = style.slant_deg + rng.normal(0, 1.5)
    scale = style.x_height_px * rng.lognormal(0, 0.04)
    k = rng.uniform(0.5, 2.0, size=(2, 3))
    ph = rng.uniform(0, 2 * np.pi, size=(2, 3))
    amp = style.jitter * rng.normal(0, 1, size=(2, 3)) / np.sqrt(3)

    def wobble(x, y):  # a smooth random displacement field: the hand's low-frequency tremor
        dx = (amp[0] * np.sin(np.outer(x, k[0]) + 0.5 * y[:, None] + ph[0])).sum(1)
        dy = (amp[1] * np.sin(np.outer(x, k[1]) + 0.3 * y[:, None] + ph[1])).sum(1)
        return dx, dy

    out, t = [], 0.0
    for i, s in enumerate(word_skeleton(word, style)):
        if i:
            t += max(0.03, rng.gamma(4.0, style.pen_up_s / 4.0))
        pts, t = _timed(_transform(s, style, slant, scale, wobble), style, t, rng)
        pts[:, :2] += rng.normal(0, style.noise_px, size=(len(pts), 2))
        pts[:, :2] = np.round(pts[:, :2] / style.pixel_px) * style.pixel_px
        out.append(pts)
        t += 1.0 / style.sample_rate_hz
    return validate_ink(out)
