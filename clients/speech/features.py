"""16 kHz waveform -> log-mel filterbank features [T, 80] (25 ms window, 10 ms hop), in numpy.

The usual ASR front end (as in the Euphonia personalization work, Shor et al. 2019, "Personalizing
ASR for Dysarthric and Accented Speech with Limited Data"; the exact sizes here are this project's
choice). Pure numpy with float64 internals, so the same waveform always gives the same
features. Normalization: ``global_normalize`` (a fixed affine map, causal, the streaming
recognizer's default) or per-utterance mean/variance normalization (per channel over time;
not causal: every frame then carries statistics of the whole utterance).
"""
from __future__ import annotations

import functools

import numpy as np

SAMPLE_RATE = 16000
N_MELS = 80
WIN_MS = 25.0
HOP_MS = 10.0
LOG_FLOOR = 1e-6
# mean and std of log-mel energies over synthetic typical and atypical speech (all channels)
GLOBAL_MEAN, GLOBAL_STD = -2.23, 2.43


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


@functools.lru_cache(maxsize=8)
def mel_filterbank(n_mels: int = N_MELS, n_fft: int = 512, sample_rate: int = SAMPLE_RATE,
                   fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """HTK-style triangular mel filters, shape [n_fft // 2 + 1, n_mels]."""
    fmax = sample_rate / 2 if fmax is None else fmax
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (bins[None, :] - lo) / (mid - lo)
    down = (hi - bins[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb.setflags(write=False)
    return fb.T


def num_frames(n_samples: int, sample_rate: int = SAMPLE_RATE, win_ms: float = WIN_MS,
               hop_ms: float = HOP_MS) -> int:
    win, hop = int(round(sample_rate * win_ms / 1000)), int(round(sample_rate * hop_ms / 1000))
    return 1 + max(0, n_samples - win + hop - 1) // hop  # last partial frame is zero-padded


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS, win_ms: float = WIN_MS,
            hop_ms: float = HOP_MS, normalize: bool = False) -> np.ndarray:
    """float32 [T, n_mels] log-mel energies of a mono waveform (Hann window, power spectrum).

    normalize: subtract each channel's mean over the utterance and divide by its std."""
    x = np.asarray(wave, np.float64).reshape(-1)
    win, hop = int(round(sample_rate * win_ms / 1000)), int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (win - 1).bit_length()
    t = num_frames(x.size, sample_rate, win_ms, hop_ms)
    padded = np.zeros((t - 1) * hop + win)
    padded[: x.size] = x[: padded.size]
    frames = np.lib.stride_tricks.sliding_window_view(padded, win)[::hop][:t]
    spec = np.abs(np.fft.rfft(frames * np.hanning(win + 2)[1:-1], n=n_fft, axis=1)) ** 2
    feats = np.log(spec @ mel_filterbank(n_mels, n_fft, sample_rate) + LOG_FLOOR)
    if normalize:
        feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-5)
    return feats.astype(np.float32)


def global_normalize(feats: np.ndarray) -> np.ndarray:
    """Fixed affine map to roughly zero mean, unit variance: frame t depends on frame t only."""
    return ((np.asarray(feats, np.float64) - GLOBAL_MEAN) / GLOBAL_STD).astype(np.float32)
