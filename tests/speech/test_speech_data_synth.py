"""Synthesis tests: no skips; they fail if espeak-ng (espeakng-loader) is not installed."""
import dataclasses

import numpy as np
import pytest

from clients.speech import synth
from clients.speech.speakers import make_speaker
from clients.speech.synth import SAMPLE_RATE, EspeakError, add_noise, espeak_raw, measure_rtf, muffle, synthesize, warp


def _band_energy(x, lo, hi, sr=SAMPLE_RATE):
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / sr)
    return spec[(f >= lo) & (f < hi)].sum()


def test_espeak_is_installed_and_speaks():
    import espeakng_loader  # noqa: F401  (the dependency itself; ImportError = setup is missing it)

    raw = espeak_raw("turn on the tv", "en-us+f3")
    assert raw.dtype == np.int16 and 0.4 < raw.size / synth.ESPEAK_RATE < 3.0
    assert np.abs(raw).max() > 3000
    slow, fast = espeak_raw("turn on the tv", rate=90), espeak_raw("turn on the tv", rate=300)
    assert slow.size > 1.8 * fast.size
    with pytest.raises(EspeakError):
        espeak_raw("hello", "no-such-voice")


def test_synthesis_is_deterministic_and_16k_float():
    s = make_speaker(0, "a0003", "atypical")
    a = synthesize(s, "please call my daughter", seed=1, utterance_key=0)
    espeak_raw("something else in between", "en+m3")  # espeak-ng's hidden state must not leak in
    synthesize(make_speaker(0, "t0", "typical"), "turn off the lights", seed=1)
    b = synthesize(s, "please call my daughter", seed=1, utterance_key=0)
    assert a.dtype == np.float32 and a.ndim == 1 and np.abs(a).max() <= 1.0
    assert 0.5 < a.size / SAMPLE_RATE < 8.0
    np.testing.assert_array_equal(a, b)
    c = synthesize(s, "please call my daughter", seed=1, utterance_key=1)
    assert not (a.size == c.size and np.array_equal(a, c))  # another recording of the same phrase
    assert not np.array_equal(a, synthesize(s, "please call my daughter", seed=2, utterance_key=0)[: a.size])


def test_noise_is_at_the_speaker_snr():
    s = dataclasses.replace(make_speaker(0, "t1", "typical"), snr_db=12.0)
    clean = synthesize(s, "what's the weather today", seed=0, noise=False)
    noisy = synthesize(s, "what's the weather today", seed=0, noise=True)
    assert clean.size == noisy.size
    noise = noisy - clean
    active = clean[np.abs(clean) > 0.03 * np.abs(clean).max()]
    snr = 10 * np.log10(np.mean(active.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 12.0) < 1.0
    rng = np.random.default_rng(0)
    x = np.sin(np.arange(16000) / 5.0).astype(np.float32)
    np.testing.assert_array_equal(add_noise(x, 10, np.random.default_rng(3)), add_noise(x, 10, np.random.default_rng(3)))
    assert np.std(add_noise(x, 0, rng) - x) > 3 * np.std(add_noise(x, 20, rng) - x)


def test_muffling_and_warp():
    x = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    y = muffle(x, 2000.0)
    assert _band_energy(y, 4000, 8000) < 1e-3 * _band_energy(x, 4000, 8000)
    assert _band_energy(y, 100, 1500) > 0.7 * _band_energy(x, 100, 1500)
    assert muffle(x, None) is x
    tone = np.sin(2 * np.pi * 1000 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
    for factor in (0.9, 1.1):
        w = warp(tone, factor)
        peak = np.fft.rfftfreq(w.size, 1 / SAMPLE_RATE)[np.argmax(np.abs(np.fft.rfft(w)))]
        assert abs(peak - 1000 * factor) < 15 and abs(w.size - SAMPLE_RATE / factor) < 5


def test_severe_speech_is_slower_and_muffled():
    typ = make_speaker(0, "t0", "typical")
    typ = dataclasses.replace(typ, rate=170, snr_db=40.0)
    sev = dataclasses.replace(typ, speaker_id="a0", kind="atypical", severity="severe", condition="ALS", rate=90,
                              lowpass_hz=2400.0, rate_jitter=0.3, repeat_p=0.2, subst_p=0.5, pause_p=0.3)
    phrase = "please bring me some water and my glasses"
    a = synthesize(typ, phrase, 0, noise=False)
    b = synthesize(sev, phrase, 0, noise=False)
    assert b.size > 1.5 * a.size
    hi = lambda z: _band_energy(z, 3500, 8000) / _band_energy(z, 0, 8000)  # noqa: E731
    assert hi(b) < 0.2 * hi(a)


def test_real_time_factor_is_consistent():
    """The figures agree with each other and with the audio; speed itself is a benchmark's job."""
    s = make_speaker(0, "a0001", "atypical")
    phrases = ["turn on the tv", "i am hungry", "how was your day"]
    r = measure_rtf(s, phrases)
    audio = sum(synthesize(s, p, 0, i).size for i, p in enumerate(phrases)) / SAMPLE_RATE
    assert r["audio_s"] == audio > 1.0
    assert r["compute_s"] > 0 and np.isclose(r["x_realtime"] * r["rtf"], 1.0)
