"""Text -> 16 kHz float32 speech for a synthetic speaker, with espeak-ng (via `espeakng-loader`).

Pipeline per utterance: the speaker's rendering of the phrase (substitutions, repetitions, pauses,
irregular rate; see speakers.render) -> espeak-ng formant synthesis at 22.05 kHz with the speaker's
voice, variant, rate, pitch and pitch range -> resampling to 16 kHz (scipy.signal.resample_poly) ->
vocal-tract warp (resampling by the warp factor, with the speaking rate pre-compensated so duration
is kept; formants and pitch scale by the factor, as in VTLN-style perturbation, Jaitly & Hinton 2013,
"Vocal Tract Length Perturbation (VTLP) improves speech recognition") -> muffling (Butterworth
low-pass, stronger with severity) -> additive room noise at the speaker's SNR.

espeak-ng keeps synthesis state in static variables between calls (and draws noise from rand()), so
the same text gives different samples depending on what was said before in the process. For
deterministic output the library is loaded fresh (dlopen / dlclose) for every utterance, with its
random seed and libc's fixed; that costs ~5 ms. All noise comes from fl.seeding.rng_for(seed,
speaker_id, utterance key).
"""
from __future__ import annotations

import _ctypes
import ctypes
import threading
import time
from fractions import Fraction

import numpy as np
from scipy import signal

from fl.seeding import rng_for

from .speakers import Speaker, render

ESPEAK_RATE = 22050
SAMPLE_RATE = 16000
SYNTH_VERSION = "2"  # bump when the pipeline changes (part of the corpus cache key)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE, _P_WORDGAP = 1, 2, 3, 4, 7
_MIN_RATE, _MAX_RATE = 80, 450
_WORDGAP = (0, 2, 5, 10)  # extra gap between words (10 ms units) by severity level

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    pass


class _Espeak:
    """espeak-ng through ctypes, one fresh library instance per `say` call (see module docstring)."""

    def __init__(self):
        import espeakng_loader  # fail loudly here if the synthesizer is not installed

        self.lib_path = espeakng_loader.get_library_path()
        self.data_path = espeakng_loader.get_data_path().encode()
        self._lock = threading.Lock()
        self._pieces: list[np.ndarray] = []
        self._callback = _CALLBACK(self._on_audio)  # kept alive for the library's lifetime
        self._libc = ctypes.CDLL(None)
        self.say([("a", 175)], "en-us", 50, 50)  # check it works now, not in the middle of a job

    def _on_audio(self, wav, n, _events) -> int:
        if n > 0:
            self._pieces.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, chunks: list[tuple[str, int]], voice: str, pitch: int, pitch_range: int,
            wordgap: int = 0) -> np.ndarray:
        """int16 audio at 22.05 kHz for (text, words/min) chunks spoken one after another."""
        with self._lock:
            lib = ctypes.CDLL(self.lib_path, mode=ctypes.RTLD_LOCAL)
            try:
                lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
                lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                             ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
                lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self.data_path, 0)
                if rate != ESPEAK_RATE:
                    raise EspeakError(f"espeak_Initialize returned {rate}")
                lib.espeak_SetSynthCallback(self._callback)
                lib.espeak_ng_SetRandSeed(12345)
                self._libc.srand(12345)
                if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                    raise EspeakError(f"espeak-ng has no voice {voice!r}")
                self._pieces = []
                for text, wpm in chunks:
                    for p, v in ((_P_RATE, int(np.clip(wpm, _MIN_RATE, _MAX_RATE))), (_P_PITCH, pitch),
                                 (_P_RANGE, pitch_range), (_P_WORDGAP, wordgap), (_P_VOLUME, 100)):
                        lib.espeak_SetParameter(p, int(v), 0)
                    data = text.encode()
                    err = lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
                    if err != 0:
                        raise EspeakError(f"espeak_Synth failed ({err}) on {text!r}")
                lib.espeak_Terminate()
                out = np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.int16)
                self._pieces = []
                return out
            finally:
                _ctypes.dlclose(lib._handle)


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def engine() -> _Espeak:
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = _Espeak()
        return _ENGINE


def espeak_raw(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50
               ) -> np.ndarray:
    """Plain espeak-ng output: int16 at 22.05 kHz."""
    return engine().say([(text, rate)], voice, pitch, pitch_range)


def _resample(x: np.ndarray, ratio: float, max_den: int) -> np.ndarray:
    f = Fraction(ratio).limit_denominator(max_den)
    if f == 1:
        return x
    return signal.resample_poly(x, f.numerator, f.denominator).astype(np.float32)


def warp(x: np.ndarray, factor: float) -> np.ndarray:
    """Vocal-tract warp by resampling: all frequencies x factor, duration / factor."""
    return _resample(x, 1.0 / factor, 64)


def muffle(x: np.ndarray, cutoff_hz: float | None, sr: int = SAMPLE_RATE, order: int = 4) -> np.ndarray:
    """Butterworth low-pass (muffled / hypernasal-sounding speech)."""
    if cutoff_hz is None or cutoff_hz >= sr / 2 * 0.98:
        return x
    sos = signal.butter(order, cutoff_hz, btype="low", fs=sr, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


def add_noise(x: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Room noise (white + low-frequency rumble) scaled to `snr_db` below the active-speech power."""
    if x.size == 0:
        return x
    env = np.abs(x)
    active = x[env > 0.03 * env.max()] if env.max() > 0 else x
    p_speech = float(np.mean(active.astype(np.float64) ** 2)) if active.size else 0.0
    white = rng.standard_normal(x.size)
    rumble = signal.sosfilt(signal.butter(2, 300, btype="low", fs=SAMPLE_RATE, output="sos"),
                            rng.standard_normal(x.size))
    noise = white / white.std() + 0.7 * rumble / max(rumble.std(), 1e-12)
    noise *= np.sqrt(p_speech / 10 ** (snr_db / 10) / np.mean(noise ** 2))
    return (x + noise).astype(np.float32)


def synthesize(speaker: Speaker, phrase: str, seed: int, utterance_key: str | int = 0,
               noise: bool = True) -> np.ndarray:
    """16 kHz float32 waveform of `speaker` saying `phrase`; deterministic in all arguments.

    `utterance_key` tells repeated recordings of one phrase apart (they get different renderings
    and noise)."""
    rng = rng_for(seed, "utterance", speaker.speaker_id, str(utterance_key), phrase)
    chunks = render(speaker, phrase, rng)
    # Resampling by the warp factor shortens the audio by it, so speak proportionally slower.
    wpm = [int(round(speaker.rate * m / speaker.warp)) for _, m in chunks]
    raw = engine().say([(t, r) for (t, _), r in zip(chunks, wpm)], speaker.espeak_voice, speaker.pitch,
                       speaker.pitch_range, _WORDGAP[speaker.level])
    x = raw.astype(np.float32) / 32768.0
    x = _resample(x, SAMPLE_RATE / ESPEAK_RATE, 1000)  # 320 / 441
    x = warp(x, speaker.warp)
    x = muffle(x, speaker.lowpass_hz)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak > 0:
        x = x * (0.5 / peak)
    if noise:
        x = add_noise(x, speaker.snr_db, rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def measure_rtf(speaker: Speaker, phrases: list[str], seed: int = 0) -> dict[str, float]:
    """Synthesis speed: seconds of audio, seconds of compute, and x real time (audio / compute)."""
    engine()
    t0 = time.perf_counter()
    audio = sum(synthesize(speaker, p, seed, i).size for i, p in enumerate(phrases)) / SAMPLE_RATE
    compute = time.perf_counter() - t0
    return {"audio_s": audio, "compute_s": compute, "x_realtime": audio / max(compute, 1e-9),
            "rtf": compute / max(audio, 1e-9)}
