import numpy as np

from clients.speech.features import mel_filterbank, log_mel, num_frames


def test_shape_and_framing():
    for n in (0, 10, 400, 401, 16000, 16123):
        f = log_mel(np.zeros(n, np.float32))
        assert f.shape == (num_frames(n), 80) and f.dtype == np.float32
    assert num_frames(400) == 1 and num_frames(560) == 2 and num_frames(16000) == 99
    fb = mel_filterbank()
    assert fb.shape == (257, 80) and (fb >= 0).all() and (fb.sum(axis=0) > 0).all()


def test_tone_lands_in_the_right_channel_and_matches_a_direct_frame():
    sr = 16000
    x = np.sin(2 * np.pi * 1000 * np.arange(sr) / sr)
    f = log_mel(x)
    fb = mel_filterbank()
    bins = np.fft.rfftfreq(512, 1 / sr)
    expected = int(np.argmax(fb[np.argmin(np.abs(bins - 1000))]))
    assert abs(int(np.median(f.argmax(axis=1))) - expected) <= 1
    frame = x[160 * 5: 160 * 5 + 400] * np.hanning(402)[1:-1]
    direct = np.log(np.abs(np.fft.rfft(frame, 512)) ** 2 @ fb + 1e-6)
    np.testing.assert_allclose(f[5], direct, rtol=1e-5, atol=1e-4)
    high = log_mel(np.sin(2 * np.pi * 4000 * np.arange(sr) / sr))
    assert np.median(high.argmax(axis=1)) > np.median(f.argmax(axis=1)) + 20


def test_deterministic_and_normalized():
    x = np.random.default_rng(0).standard_normal(12345).astype(np.float32)
    np.testing.assert_array_equal(log_mel(x), log_mel(x.copy()))
    n = log_mel(x * 3.0 + 0.1 * np.sin(np.arange(12345)), normalize=True)
    np.testing.assert_allclose(n.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(n.std(axis=0), 1.0, atol=1e-3)
    # normalization removes a global gain (a constant offset in log-mel)
    np.testing.assert_allclose(log_mel(x, normalize=True), log_mel(4 * x, normalize=True), atol=1e-3)
