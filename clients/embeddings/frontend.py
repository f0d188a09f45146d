"""The TRILL/FRILL front end: 16 kHz audio -> log-mel frames [T, 64] -> 0.96 s windows [N, 96, 64].

As in the released TRILL/FRILL export code (Shor et al. 2020, "Towards Learning a Universal
Non-Semantic Representation of Speech"; Peplinski et al. 2021, "FRILL: A Non-Semantic Speech
Embedding for Mobile Devices"): 25 ms Hann window (periodic), 10 ms hop, FFT 512, magnitude
spectrogram, 64 mel bins over 125-7500 Hz, ``log(max(mel, 1e-12) + 0.001)``; frames are
not padded at the end (a frame needs a whole window); audio shorter than 1 s is zero-padded
to 1 s; windows of 96 frames (0.96 s) with a hop of ``window_hop`` frames.

The mel filters are the speech stack's (clients.speech.features.mel_filterbank, HTK-style
triangles); float64 inside, so the same waveform always gives the same features.
"""
from __future__ import annotations

import numpy as np

from clients.speech.features import mel_filterbank

SAMPLE_RATE = 16000
N_MELS = 64
WIN_MS = 25.0
HOP_MS = 10.0
FFT_LENGTH = 512
FMIN, FMAX = 125.0, 7500.0
LOG_OFFSET, LOG_FLOOR = 0.001, 1e-12
WINDOW_FRAMES = 96          # 0.96 s model input
MIN_SAMPLES = SAMPLE_RATE   # shorter audio is zero-padded to 1 s


def frame_count(n_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """Log-mel frames of a waveform after padding to 1 s (no partial last frame)."""
    win, hop = int(round(sample_rate * WIN_MS / 1000)), int(round(sample_rate * HOP_MS / 1000))
    return 1 + (max(n_samples, MIN_SAMPLES) - win) // hop


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS) -> np.ndarray:
    """float32 [T, n_mels] TRILL log-mel features of a mono waveform (see the module docstring)."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"the TRILL front end takes {SAMPLE_RATE} Hz audio, not {sample_rate}")
    x = np.asarray(wave, np.float64).reshape(-1)
    if x.size < MIN_SAMPLES:
        x = np.pad(x, (0, MIN_SAMPLES - x.size))
    win, hop = int(round(sample_rate * WIN_MS / 1000)), int(round(sample_rate * HOP_MS / 1000))
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop]
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic, as tf.signal.hann_window
    magnitude = np.abs(np.fft.rfft(frames * hann, n=FFT_LENGTH, axis=1))
    mel = magnitude @ mel_filterbank(n_mels, FFT_LENGTH, sample_rate, FMIN, FMAX)
    return np.log(np.maximum(mel, LOG_FLOOR) + LOG_OFFSET).astype(np.float32)


def windows(feats: np.ndarray, window_hop: int = WINDOW_FRAMES, window_frames: int = WINDOW_FRAMES) -> np.ndarray:
    """[N, window_frames, n_mels] windows of log-mel frames [T, n_mels], hop ``window_hop`` frames.

    Frames past the last whole window are dropped (as tf.signal.frame without padding);
    features shorter than one window (never from `log_mel`, which pads to 1 s) are padded
    with the log of silence, log(0.001)."""
    if window_hop < 1:
        raise ValueError(f"window_hop must be >= 1 frame, not {window_hop}")
    f = np.asarray(feats, np.float32)
    if f.shape[0] < window_frames:
        f = np.concatenate([f, np.full((window_frames - f.shape[0], f.shape[1]), np.log(LOG_OFFSET), np.float32)])
    n = 1 + (f.shape[0] - window_frames) // window_hop
    idx = np.arange(n)[:, None] * window_hop + np.arange(window_frames)[None, :]
    return f[idx]


def frontend(wave: np.ndarray, window_hop: int = WINDOW_FRAMES) -> np.ndarray:
    """Waveform -> model inputs [N, 96, 64] (the whole TRILL front end)."""
    return windows(log_mel(wave), window_hop)
