import numpy as np

from fl.cache import DeviceCache


def test_cache_roundtrip_and_corruption_rebuilds(tmp_path):
    cache = DeviceCache(tmp_path, "t", memory_mb=0)  # every read goes to disk
    calls = []

    def make():
        calls.append(1)
        return {"x": np.arange(10.0), "y": np.ones(3, np.int32)}

    first = cache.get_or_make("d1", make)
    again = cache.get_or_make("d1", make)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["x"], again["x"])
    path = cache.path("d1")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # flip a byte inside the archive
    path.write_bytes(bytes(raw))
    fixed = cache.get_or_make("d1", make)
    assert len(calls) == 2 and cache.rebuilt == 1
    np.testing.assert_array_equal(fixed["x"], np.arange(10.0))
    path.write_bytes(b"truncated")
    cache.get_or_make("d1", make)
    assert len(calls) == 3 and cache.rebuilt == 2


def test_memory_cache_is_bounded(tmp_path):
    cache = DeviceCache(tmp_path, "m", memory_mb=1)
    for i in range(10):  # 10 x 400 KB through a 1 MB memory cache
        cache.get_or_make(f"d{i}", lambda: {"x": np.zeros(50_000)})
    assert cache._memory_bytes <= 2**20 and len(cache._memory) == 2
    assert cache.path("d0").exists()  # evicted from memory, still on disk
