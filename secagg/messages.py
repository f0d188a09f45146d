"""Protocol messages of SecAgg (Bonawitz et al., CCS 2017, Fig. 4) and their
binary wire format.

Rounds (client -> server, then server -> client):

0. AdvertiseKeys:  (c_u^PK, s_u^PK)                 -> KeyBroadcast (neighbours' keys)
1. ShareKeys:      AE-encrypted Shamir shares e_u,v  -> ForwardedShares (ciphertexts for v)
2. MaskedInput:    y_u = x_u + PRG(b_u) + sum_v ±PRG(s_u,v)  -> UnmaskRequest (U3 / dropped)
3. UnmaskResponse: shares of b_u (survivors) or s_u^SK (dropped)

``MaskedInput`` may cover several clients: a worker may pre-sum masked
vectors mod 2^b (:func:`presum`) and send them with the list of ids covered.

Every message starts with ``MAGIC | type | round_id``; integers are
little-endian ``uint32``; decoding rejects truncation, trailing bytes, bad
types, out-of-range values and duplicate ids with a clear error.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import DuplicateClientError, MalformedMessageError
from .keys import PUBLIC_KEY_BYTES
from .shamir import PRIME, SHARE_BYTES

MAGIC = b"FSA1"
ROUND_ID_BYTES = 16
MAX_ID = 2**32 - 1
_HDR = struct.Struct("<4sB16s")
_U32 = struct.Struct("<I")
_U32x2 = struct.Struct("<II")

T_ADVERTISE, T_KEYS, T_SHARES, T_FORWARD, T_MASKED, T_UNMASK_REQ, T_UNMASK_RESP = range(1, 8)


def _check_round(round_id) -> None:
    if not isinstance(round_id, (bytes, bytearray)) or len(round_id) != ROUND_ID_BYTES:
        raise MalformedMessageError("round_id must be 16 bytes")


def _check_id(i, what="client id") -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= MAX_ID:
        raise MalformedMessageError(f"{what} must be an int in [0, 2^32): {i!r}")


def _check_ids(ids, what="client id") -> None:
    for i in ids:
        _check_id(i, what)
    if len(set(ids)) != len(ids):
        raise DuplicateClientError(f"duplicate {what} in message")


def _check_blob(b, n=None, what="field") -> None:
    if not isinstance(b, (bytes, bytearray)):
        raise MalformedMessageError(f"{what} must be bytes")
    if n is not None and len(b) != n:
        raise MalformedMessageError(f"{what} must be {n} bytes, got {len(b)}")
    if len(b) > 0xFFFF:
        raise MalformedMessageError(f"{what} too long")


class _Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes):
        self.buf, self.pos = memoryview(buf), 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise MalformedMessageError("message truncated")
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def count(self, item_size: int) -> int:
        n = self.u32()
        if n * item_size > len(self.buf) - self.pos:
            raise MalformedMessageError("element count exceeds message size")
        return n

    def end(self) -> None:
        if self.pos != len(self.buf):
            raise MalformedMessageError("trailing bytes after message")


def _header(t: int, round_id: bytes) -> bytes:
    return _HDR.pack(MAGIC, t, bytes(round_id))


@dataclass(frozen=True)
class AdvertiseKeys:
    round_id: bytes
    sender: int
    c_pk: bytes
    s_pk: bytes

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        _check_blob(self.c_pk, PUBLIC_KEY_BYTES, "c_pk")
        _check_blob(self.s_pk, PUBLIC_KEY_BYTES, "s_pk")
        if self.c_pk == self.s_pk:
            raise MalformedMessageError("c_pk and s_pk must differ")

    def encode(self) -> bytes:
        return _header(T_ADVERTISE, self.round_id) + _U32.pack(self.sender) + bytes(self.c_pk) + bytes(self.s_pk)

    @classmethod
    def _decode(cls, rid, r: _Reader):
        return cls(rid, r.u32(), bytes(r.take(32)), bytes(r.take(32)))


@dataclass(frozen=True)
class KeyBroadcast:
    """Server -> client ``receiver``: public keys of its neighbours in U1."""
    round_id: bytes
    receiver: int
    keys: dict  # id -> (c_pk, s_pk)

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.receiver, "receiver")
        if not isinstance(self.keys, dict):
            raise MalformedMessageError("keys must be a dict")
        for i, pair in self.keys.items():
            _check_id(i)
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise MalformedMessageError("keys values must be (c_pk, s_pk)")
            _check_blob(pair[0], PUBLIC_KEY_BYTES, "c_pk")
            _check_blob(pair[1], PUBLIC_KEY_BYTES, "s_pk")

    def encode(self) -> bytes:
        parts = [_header(T_KEYS, self.round_id), _U32x2.pack(self.receiver, len(self.keys))]
        for i, (c, s) in self.keys.items():
            parts += [_U32.pack(i), c, s]
        return b"".join(parts)

    @classmethod
    def _decode(cls, rid, r: _Reader):
        recv = r.u32()
        keys = {}
        for _ in range(r.count(68)):
            i = r.u32()
            if i in keys:
                raise DuplicateClientError(f"duplicate client id {i} in key broadcast")
            keys[i] = (bytes(r.take(32)), bytes(r.take(32)))
        return cls(rid, recv, keys)


def _enc_ct_map(t, rid, who, cts: dict) -> bytes:
    parts = [_header(t, rid), _U32x2.pack(who, len(cts))]
    for i, ct in cts.items():
        parts += [_U32.pack(i), struct.pack("<H", len(ct)), ct]
    return b"".join(parts)


_ID_LEN = struct.Struct("<IH")


def _dec_ct_map(r: _Reader) -> tuple[int, dict]:
    who = r.u32()
    count = r.count(6)
    buf, pos, end = r.buf, r.pos, len(r.buf)
    cts = {}
    for _ in range(count):
        if pos + 6 > end:
            raise MalformedMessageError("message truncated")
        i, n = _ID_LEN.unpack_from(buf, pos)
        pos += 6
        if pos + n > end:
            raise MalformedMessageError("message truncated")
        if i in cts:
            raise DuplicateClientError(f"duplicate client id {i} in ciphertext list")
        cts[i] = bytes(buf[pos:pos + n])
        pos += n
    r.pos = pos
    return who, cts


def _validate_ct_map(cts) -> None:
    if not isinstance(cts, dict):
        raise MalformedMessageError("ciphertexts must be a dict")
    for i, ct in cts.items():
        _check_id(i)
        _check_blob(ct, None, "ciphertext")


@dataclass(frozen=True)
class ShareKeys:
    """Client ``sender`` -> server: ciphertexts e_{u,v} addressed to neighbours v."""
    round_id: bytes
    sender: int
    ciphertexts: dict  # receiver -> ciphertext

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        _validate_ct_map(self.ciphertexts)

    def encode(self) -> bytes:
        return _enc_ct_map(T_SHARES, self.round_id, self.sender, self.ciphertexts)

    @classmethod
    def _decode(cls, rid, r):
        return cls(rid, *_dec_ct_map(r))


@dataclass(frozen=True)
class ForwardedShares:
    """Server -> client ``receiver``: ciphertexts addressed to it, by sender (= U2 ∩ N(v))."""
    round_id: bytes
    receiver: int
    ciphertexts: dict  # sender -> ciphertext

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.receiver, "receiver")
        _validate_ct_map(self.ciphertexts)

    def encode(self) -> bytes:
        return _enc_ct_map(T_FORWARD, self.round_id, self.receiver, self.ciphertexts)

    @classmethod
    def _decode(cls, rid, r):
        return cls(rid, *_dec_ct_map(r))


@dataclass(frozen=True)
class MaskedInput:
    """Masked vector(s) mod 2^bits, covering ``client_ids`` (pre-summed if > 1)."""
    round_id: bytes
    client_ids: tuple
    vector: np.ndarray
    bits: int

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        if not isinstance(self.client_ids, tuple) or not self.client_ids:
            raise MalformedMessageError("client_ids must be a non-empty tuple")
        _check_ids(self.client_ids)
        if isinstance(self.bits, bool) or not isinstance(self.bits, int) or not 1 <= self.bits <= 64:
            raise MalformedMessageError("bits must be an int in [1, 64]")
        v = self.vector
        want = np.uint32 if self.bits <= 32 else np.uint64
        if not isinstance(v, np.ndarray) or v.ndim != 1 or v.dtype != want:
            raise MalformedMessageError(f"vector must be a 1-D {np.dtype(want).name} array")
        if self.bits < v.dtype.itemsize * 8 and v.size and int(v.max()) >> self.bits:
            raise MalformedMessageError(f"vector entries must be < 2^{self.bits}")

    def encode(self) -> bytes:
        ids = self.client_ids
        return b"".join([_header(T_MASKED, self.round_id), struct.pack("<BI", self.bits, len(ids)),
                         struct.pack(f"<{len(ids)}I", *ids), _U32.pack(self.vector.size),
                         np.ascontiguousarray(self.vector, dtype=self.vector.dtype.newbyteorder("<")).tobytes()])

    def wire_size(self) -> int:
        return _HDR.size + 5 + 4 * len(self.client_ids) + 4 + self.vector.nbytes

    @classmethod
    def _decode(cls, rid, r):
        (bits,) = struct.unpack("<B", r.take(1))
        if not 1 <= bits <= 64:
            raise MalformedMessageError("bits must be in [1, 64]")
        ids = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        dt = np.dtype("<u4" if bits <= 32 else "<u8")
        m = r.count(dt.itemsize)
        vec = np.frombuffer(r.take(m * dt.itemsize), dtype=dt).astype(dt.newbyteorder("="), copy=True)
        return cls(rid, ids, vec, bits)


@dataclass(frozen=True)
class UnmaskRequest:
    """Server -> client: which of its neighbours survived (send b-shares) and
    which dropped after sharing keys (send s^SK-shares)."""
    round_id: bytes
    receiver: int
    survivors: tuple
    dropped: tuple

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.receiver, "receiver")
        for name in ("survivors", "dropped"):
            if not isinstance(getattr(self, name), tuple):
                raise MalformedMessageError(f"{name} must be a tuple")
        _check_ids(self.survivors)
        _check_ids(self.dropped)

    def encode(self) -> bytes:
        s, d = self.survivors, self.dropped
        return b"".join([_header(T_UNMASK_REQ, self.round_id), _U32x2.pack(self.receiver, len(s)),
                         struct.pack(f"<{len(s)}I", *s), _U32.pack(len(d)), struct.pack(f"<{len(d)}I", *d)])

    @classmethod
    def _decode(cls, rid, r):
        recv = r.u32()
        s = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        d = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        return cls(rid, recv, s, d)


def _enc_shares(d: dict) -> bytes:
    return _U32.pack(len(d)) + b"".join(_U32.pack(i) + v.to_bytes(SHARE_BYTES, "little") for i, v in d.items())


def _dec_shares(r: _Reader) -> dict:
    out = {}
    for _ in range(r.count(4 + SHARE_BYTES)):
        i = r.u32()
        if i in out:
            raise DuplicateClientError(f"duplicate owner id {i} in unmask response")
        out[i] = int.from_bytes(r.take(SHARE_BYTES), "little")
    return out


@dataclass(frozen=True)
class UnmaskResponse:
    """Client -> server: Shamir shares it holds, keyed by the owner's id."""
    round_id: bytes
    sender: int
    self_mask_shares: dict  # owner -> share of b_owner
    key_shares: dict  # owner -> share of s_owner^SK

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        for d in (self.self_mask_shares, self.key_shares):
            if not isinstance(d, dict):
                raise MalformedMessageError("shares must be a dict")
            for i, v in d.items():
                _check_id(i, "owner id")
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < PRIME:
                    raise MalformedMessageError("share must be a field element")
        both = self.self_mask_shares.keys() & self.key_shares.keys()
        if both:
            raise MalformedMessageError(f"both shares revealed for owners {sorted(both)}")

    def encode(self) -> bytes:
        return b"".join([_header(T_UNMASK_RESP, self.round_id), _U32.pack(self.sender),
                         _enc_shares(self.self_mask_shares), _enc_shares(self.key_shares)])

    @classmethod
    def _decode(cls, rid, r):
        return cls(rid, r.u32(), _dec_shares(r), _dec_shares(r))


_TYPES = {T_ADVERTISE: AdvertiseKeys, T_KEYS: KeyBroadcast, T_SHARES: ShareKeys,
          T_FORWARD: ForwardedShares, T_MASKED: MaskedInput, T_UNMASK_REQ: UnmaskRequest,
          T_UNMASK_RESP: UnmaskResponse}
Message = AdvertiseKeys | KeyBroadcast | ShareKeys | ForwardedShares | MaskedInput | UnmaskRequest | UnmaskResponse


def decode(data: bytes) -> Message:
    """Parse and validate one wire message (raises :class:`MalformedMessageError`)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MalformedMessageError("message must be bytes")
    r = _Reader(data)
    magic, t, rid = _HDR.unpack(r.take(_HDR.size))
    if magic != MAGIC:
        raise MalformedMessageError("bad magic")
    cls = _TYPES.get(t)
    if cls is None:
        raise MalformedMessageError(f"unknown message type {t}")
    msg = cls._decode(bytes(rid), r)
    r.end()
    msg.validate()
    object.__setattr__(msg, "_validated", True)
    return msg


def presum(msgs: Sequence[MaskedInput]) -> MaskedInput:
    """Pre-sum masked inputs of several clients mod 2^bits (e.g. in a worker).

    The server accepts the result like any masked input; it covers the union
    of the client ids (which must be disjoint).
    """
    if not msgs:
        raise ValueError("nothing to pre-sum")
    for msg in msgs:
        msg.validate()
    first = msgs[0]
    if any(m.round_id != first.round_id or m.bits != first.bits or m.vector.shape != first.vector.shape
           for m in msgs):
        raise MalformedMessageError("pre-summed inputs must share round, bits and length")
    ids = tuple(i for m in msgs for i in m.client_ids)
    if len(set(ids)) != len(ids):
        raise DuplicateClientError("a client id appears in two pre-summed inputs")
    acc = first.vector.copy()
    for m in msgs[1:]:
        np.add(acc, m.vector, out=acc)
    if first.bits < acc.dtype.itemsize * 8:
        np.bitwise_and(acc, acc.dtype.type((1 << first.bits) - 1), out=acc)
    return MaskedInput(first.round_id, ids, acc, first.bits)
