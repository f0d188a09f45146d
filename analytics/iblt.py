"""Invertible Bloom lookup tables for federated heavy hitters.

Goodrich & Mitzenmacher, "Invertible Bloom Lookup Tables" (2011); used for
heavy hitters under secure aggregation by TensorFlow Federated
(``tff.analytics.heavy_hitters.iblt``).  A table is linear: the sum of devices'
tables is the table of the union of their (item, count) pairs, so tables are
summed with SecAgg (:mod:`analytics.secure_histogram`) and the server peels the
sum to read every item with its count.

Layout: *identical* to TFF's ``IbltEncoder`` with the UTF-8 chunker and the
``random`` hash family (TFF's default below capacity 100,000): an int64 array
``[repetitions, table_size, num_chunks + 2]`` over the prime field
``2^31 - 1``; cell ``(r, h, c)`` holds, for the keys hashing to ``h`` in
repetition ``r``, the sum of ``count * chunk_c`` (``c < num_chunks``; 3 UTF-8
bytes per chunk, little-endian), of ``count`` (``c = num_chunks``) and of
``count * check`` (``c = num_chunks + 1``).  Hashes are TensorFlow's
``tf.strings.to_hash_bucket_fast`` (FarmHash fingerprint) of the same salted
strings TFF uses (``"<seed+r>;" + s`` for positions, ``"hash_check_<seed>" +
s`` for checks), and ``table_size`` follows TFF's sizing rule.  So this module
decodes TFF-encoded tables and TFF decodes ours (the tests check both, plus
equality of the encoded arrays).  Only the hashing needs TensorFlow; encoding
and peeling are numpy/Python.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

FIELD_SIZE = 2**31 - 1
_SPACE_OVERHEAD = {3: 1.222, 4: 1.295, 5: 1.425, 6: 1.570}  # TFF / Goodrich-Mitzenmacher Table 1


class IbltDecodeError(RuntimeError):
    """The table could not be fully decoded (over capacity, or corrupted)."""


@dataclass(frozen=True)
class IbltSpec:
    """Shape and hashing of a table (public; shared by devices and server)."""
    capacity: int
    string_max_bytes: int
    repetitions: int = 3
    seed: int = 0
    field_size: int = FIELD_SIZE

    def __post_init__(self):
        if self.capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {self.capacity}")
        if self.string_max_bytes < 1:
            raise ValueError(f"string_max_bytes must be >= 1, got {self.string_max_bytes}")
        if self.repetitions < 3:
            raise ValueError(f"repetitions must be >= 3, got {self.repetitions}")
        if self.capacity >= 100_000:
            raise ValueError("capacity >= 100000 needs TFF's coupled hash family, which is not implemented")

    @property
    def table_size(self) -> int:
        """TFF's ``_internal_parameters`` rule: 1.1 x space bound / repetitions + 10."""
        r = self.repetitions
        space = _SPACE_OVERHEAD[r] * self.capacity if r in _SPACE_OVERHEAD else self.capacity * r / 4
        return int(1.1 * space / r + 10)

    @property
    def chunk_bytes(self) -> int:
        return int(math.floor(math.log2(self.field_size) / 8))

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.string_max_bytes / self.chunk_bytes)

    @property
    def max_length(self) -> int:
        """Strings are trimmed to this many bytes (TFF's UTF-8 chunker)."""
        return self.num_chunks * self.chunk_bytes

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.repetitions, self.table_size, self.num_chunks + 2)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def _trim(s: str | bytes, spec: IbltSpec) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return b[: spec.max_length].replace(b"\x00", b"")


class Hasher:
    """Positions, checks and chunks of strings under a spec, cached per string.

    Hashes are computed in batches with ``tf.strings.to_hash_bucket_fast``.
    """

    def __init__(self, spec: IbltSpec):
        self.spec = spec
        self._cache: dict[bytes, tuple[np.ndarray, int, np.ndarray]] = {}

    def prepare(self, strings: Iterable[bytes]) -> None:
        todo = sorted({s for s in strings if s not in self._cache})
        if not todo:
            return
        import tensorflow as tf

        spec = self.spec
        t = tf.constant(todo, dtype=tf.string)
        pos = np.stack([tf.strings.to_hash_bucket_fast(tf.strings.join([f"{spec.seed + r};", t]),
                                                       num_buckets=spec.table_size).numpy()
                        for r in range(spec.repetitions)], axis=1).astype(np.int64)
        chk = tf.strings.to_hash_bucket_fast(tf.strings.join([f"hash_check_{spec.seed}", t]),
                                             num_buckets=spec.field_size).numpy().astype(np.int64)
        for i, s in enumerate(todo):
            self._cache[s] = (pos[i], int(chk[i]), chunks_of(s, spec))

    def get(self, s: bytes):
        if s not in self._cache:
            self.prepare([s])
        return self._cache[s]


def chunks_of(b: bytes, spec: IbltSpec) -> np.ndarray:
    """UTF-8 chunker of TFF: ``chunk_bytes`` bytes per integer, little-endian, zero padded."""
    padded = b.ljust(spec.max_length, b"\x00")
    raw = np.frombuffer(padded, np.uint8).astype(np.int64).reshape(spec.num_chunks, spec.chunk_bytes)
    return (raw << (8 * np.arange(spec.chunk_bytes, dtype=np.int64))).sum(axis=1)


def string_of(chunks: np.ndarray, spec: IbltSpec) -> bytes | None:
    """Inverse of :func:`chunks_of`; ``None`` if a chunk is out of range."""
    chunks = np.asarray(chunks, np.int64)
    if chunks.min() < 0 or chunks.max() >= 1 << (8 * spec.chunk_bytes):
        return None
    raw = (chunks[:, None] >> (8 * np.arange(spec.chunk_bytes, dtype=np.int64))) & 0xFF
    return raw.astype(np.uint8).tobytes().replace(b"\x00", b"")


def encode(spec: IbltSpec, items: Sequence[str | bytes], counts: Sequence[int] | None = None,
           hasher: Hasher | None = None) -> np.ndarray:
    """The table of ``items`` (with ``counts``, default 1 each), int64 values in [0, field)."""
    hasher = hasher or Hasher(spec)
    trimmed = [_trim(s, spec) for s in items]
    hasher.prepare(trimmed)
    table = np.zeros(spec.shape, np.int64)
    p = spec.field_size
    for i, s in enumerate(trimmed):
        c = 1 if counts is None else int(counts[i])
        pos, chk, ch = hasher.get(s)
        vals = np.concatenate([ch * c % p, [c % p], [chk * c % p]])
        for r in range(spec.repetitions):
            table[r, pos[r], :] = (table[r, pos[r], :] + vals) % p
    return table


@dataclass
class DecodeResult:
    items: dict  # str -> count
    undecoded: int  # TFF's "num_not_decoded": remaining count mass / repetitions
    nonempty_cells: int  # cells left non-zero after peeling
    complete: bool
    capacity: int = 0
    notes: list = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.complete:
            return f"decoded {len(self.items)} items"
        return (f"IBLT could not be fully decoded: {len(self.items)} items recovered, {self.undecoded} counts "
                f"left in {self.nonempty_cells} cells (table capacity {self.capacity}; too many distinct items - "
                f"raise the capacity or cap items per device)")


def decode(spec: IbltSpec, table: np.ndarray, *, strict: bool = False, hasher: Hasher | None = None) -> DecodeResult:
    """Peel a (summed) table into ``{item: count}``.

    A cell is *pure* if ``count != 0`` and ``check == count * h(s)`` where
    ``s`` is the string read from ``keys * count^-1`` (mod p), and ``s`` hashes
    to that cell; pure items are removed from all repetitions until nothing
    changes.  Counts above p/2 are read as negative.  If cells remain
    non-empty, the result has ``complete=False`` (``strict=True`` raises
    :class:`IbltDecodeError` with the reason).
    """
    hasher = hasher or Hasher(spec)
    t = np.mod(np.asarray(table, np.int64).reshape(spec.shape), spec.field_size)
    p, nc = spec.field_size, spec.num_chunks
    found: dict[bytes, int] = {}
    notes = []
    while True:
        cells = np.argwhere(t[:, :, nc] != 0)
        cand: dict[bytes, tuple[int, int, int]] = {}
        for r, h in cells:
            cnt = int(t[r, h, nc])
            inv = pow(cnt, p - 2, p)
            s = string_of(t[r, h, :nc] * inv % p, spec)
            if s is None or s in cand:
                continue
            cand[s] = (int(r), int(h), cnt)
        if not cand:
            break
        hasher.prepare(cand.keys())
        progress = False
        for s, (r, h, cnt) in cand.items():
            if t[r, h, nc] != cnt:  # cell changed by an earlier removal in this wave
                continue
            pos, chk, ch = hasher.get(s)
            if pos[r] != h or int(t[r, h, nc + 1]) != chk * cnt % p:
                continue
            vals = np.concatenate([ch * cnt % p, [cnt], [chk * cnt % p]])
            for rr in range(spec.repetitions):
                t[rr, pos[rr], :] = (t[rr, pos[rr], :] - vals) % p
            found[s] = (found.get(s, 0) + cnt) % p
            progress = True
        if not progress:
            break
    counts = t[:, :, nc]
    signed = np.where(counts > p // 2, counts - p, counts)
    left = int(np.count_nonzero(t))
    undecoded = int(signed.sum() // spec.repetitions)
    items = {}
    for s, c in found.items():
        c = c - p if c > p // 2 else c
        if c:
            items[s.decode("utf-8", "ignore")] = int(c)
    res = DecodeResult(items=items, undecoded=undecoded, nonempty_cells=left, complete=left == 0,
                       capacity=spec.capacity, notes=notes)
    if strict and not res.complete:
        raise IbltDecodeError(res.message)
    return res


def device_rows(spec: IbltSpec, device_items: Sequence[Sequence[str]], *, max_items: int,
                hasher: Hasher | None = None) -> np.ndarray:
    """Flattened tables, one row per device: each device inserts its distinct
    items (at most ``max_items``, count 1 each: the contribution bound that
    central DP relies on)."""
    hasher = hasher or Hasher(spec)
    trimmed = [[_trim(s, spec) for s in dict.fromkeys(items)][:max_items] for items in device_items]
    hasher.prepare({s for row in trimmed for s in row})
    nc2 = spec.num_chunks + 2
    tab = spec.table_size
    out = np.zeros((len(trimmed), spec.size), np.uint64)
    for i, row in enumerate(trimmed):
        for s in row:
            pos, chk, ch = hasher.get(s)
            vals = np.concatenate([ch, [1], [chk]]).astype(np.uint64)
            for r in range(spec.repetitions):
                a = (r * tab + int(pos[r])) * nc2
                out[i, a:a + nc2] = (out[i, a:a + nc2] + vals) % np.uint64(spec.field_size)
    return out
