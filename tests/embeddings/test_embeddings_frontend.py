"""The TRILL front end: frame counts, window shapes, values against tf.signal and known signals."""
import numpy as np
import pytest

from clients.embeddings import frontend as FE
from clients.speech.features import mel_filterbank


def test_frame_and_window_counts():
    assert FE.frame_count(16000) == 98          # 1 + (16000 - 400) // 160
    assert FE.frame_count(8000) == 98           # padded to 1 s
    assert FE.log_mel(np.zeros(8000)).shape == (98, 64)
    assert FE.log_mel(np.zeros(40000)).shape == (248, 64)
    assert FE.frontend(np.zeros(40000)).shape == (2, 96, 64)          # hop 96: windows at 0 and 96
    assert FE.frontend(np.zeros(40000), window_hop=48).shape == (4, 96, 64)
    assert FE.frontend(np.zeros(100)).shape == (1, 96, 64)
    with pytest.raises(ValueError):
        FE.windows(np.zeros((100, 64)), window_hop=0)


def test_windows_are_consecutive_frames():
    f = np.arange(300 * 2, dtype=np.float32).reshape(300, 2)
    w = FE.windows(f, window_hop=50)
    assert w.shape == (5, 96, 2)
    np.testing.assert_array_equal(w[3], f[150:246])
    short = FE.windows(f[:10])
    assert short.shape == (1, 96, 2) and np.allclose(short[0, 10:], np.log(0.001))


def test_silence_and_tone_values():
    assert np.allclose(FE.log_mel(np.zeros(16000)), np.log(0.001), atol=1e-6)
    t = np.arange(16000) / 16000
    f = FE.log_mel(0.5 * np.sin(2 * np.pi * 1000.0 * t))
    peak = int(np.argmax(f.mean(axis=0)))
    fb = mel_filterbank(64, 512, 16000, 125.0, 7500.0)
    assert peak == int(np.argmax(fb[int(round(1000 / 16000 * 512))]))  # the filter centred nearest 1 kHz
    assert f.mean(axis=0)[peak] > 2.0 > np.log(0.001)


def test_matches_tf_signal_stft():
    """Framing, periodic Hann window, FFT 512 and magnitude as tf.signal.stft (the TRILL export code)."""
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(0).normal(size=23456).astype(np.float32) * 0.1
    mag = tf.abs(tf.signal.stft(tf.constant(x, tf.float64), 400, 160, 512, window_fn=tf.signal.hann_window)).numpy()
    ref = np.log(np.maximum(mag @ mel_filterbank(64, 512, 16000, 125.0, 7500.0), 1e-12) + 0.001)
    np.testing.assert_allclose(FE.log_mel(x), ref, rtol=1e-5, atol=1e-5)
