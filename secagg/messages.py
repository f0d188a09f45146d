"""Protocol messages of SecAgg (Bonawitz et al., CCS 2017, Fig. 4) and their
binary wire format.

Rounds (client -> server, then server -> client):

0. AdvertiseKeys:  (c_u^PK, s_u^PK)                 -> KeyBroadcast (neighbours' keys)
1. ShareKeys:      AE-encrypted Shamir shares e_u,v  -> ForwardedShares (ciphertexts for v)
2. MaskedInput:    y_u = x_u + PRG(b_u) + sum_v ±PRG(s_u,v)  -> UnmaskRequest (U3 / dropped)
3. (active mode only) ConsistencySignature: signature on the survivor set U3
   sent in a ConsistencyRequest  -> UnmaskRequest (with >= t signatures)
4. UnmaskResponse: shares of b_u (survivors) or s_u^SK (dropped)

In active mode (``RoundConfig.malicious``) every client message carries an
Ed25519 signature over a statement bound to its purpose, round id and sender
(:mod:`secagg.signing`); ``signed_parts()`` gives what is signed.

``MaskedInput`` may cover several clients: a worker may pre-sum masked
vectors mod 2^b (:func:`presum`) and send them with the list of ids covered.

Every message starts with ``MAGIC | type | round_id``; integers are
little-endian ``uint32``; decoding rejects truncation, trailing bytes, bad
types, out-of-range values and duplicate ids with a clear error.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .errors import DuplicateClientError, MalformedMessageError
from .keys import PUBLIC_KEY_BYTES
from .signing import SIG_BYTES, digest
from .shamir import PRIME, SHARE_BYTES

MAGIC = b"FSA1"
_LITTLE = np.little_endian
ROUND_ID_BYTES = 16
MAX_ID = 2**32 - 1
_HDR = struct.Struct("<4sB16s")
_U32 = struct.Struct("<I")
_U32x2 = struct.Struct("<II")

T_ADVERTISE, T_KEYS, T_SHARES, T_FORWARD, T_MASKED, T_UNMASK_REQ, T_UNMASK_RESP, T_CONS_REQ, T_CONS_SIG = range(1, 10)


def _check_round(round_id) -> None:
    if not isinstance(round_id, (bytes, bytearray)) or len(round_id) != ROUND_ID_BYTES:
        raise MalformedMessageError("round_id must be 16 bytes")


def _check_id(i, what="client id") -> None:
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i <= MAX_ID:
        raise MalformedMessageError(f"{what} must be an int in [0, 2^32): {i!r}")


def _plain_ids(ids) -> bool:
    """Fast path: Python ints in [0, 2^32) (what decoding produces)."""
    return all(type(i) is int for i in ids) and (not ids or (min(ids) >= 0 and max(ids) <= MAX_ID))


def _check_ids(ids, what="client id") -> None:
    if not _plain_ids(ids):
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


_U16 = struct.Struct("<H")


def _blob(b: bytes) -> bytes:
    return _U16.pack(len(b)) + bytes(b)


def _read_blob(r: "_Reader") -> bytes:
    (n,) = _U16.unpack(r.take(2))
    return bytes(r.take(n))


def _check_sig(sig, what="signature") -> None:
    if not isinstance(sig, (bytes, bytearray)) or len(sig) not in (0, SIG_BYTES):
        raise MalformedMessageError(f"{what} must be empty or {SIG_BYTES} bytes")


def _pack_ids(ids) -> bytes:
    return struct.pack(f"<{len(ids)}I", *ids)


@dataclass(frozen=True)
class AdvertiseKeys:
    round_id: bytes
    sender: int
    c_pk: bytes
    s_pk: bytes
    signature: bytes = b""

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        _check_blob(self.c_pk, PUBLIC_KEY_BYTES, "c_pk")
        _check_blob(self.s_pk, PUBLIC_KEY_BYTES, "s_pk")
        _check_sig(self.signature)
        if self.c_pk == self.s_pk:
            raise MalformedMessageError("c_pk and s_pk must differ")

    def signed_parts(self):
        return b"advertise", self.round_id, self.sender, self.c_pk, self.s_pk

    def encode(self) -> bytes:
        return (_header(T_ADVERTISE, self.round_id) + _U32.pack(self.sender) + bytes(self.c_pk) + bytes(self.s_pk)
                + _blob(self.signature))

    @classmethod
    def _decode(cls, rid, r: _Reader):
        return cls(rid, r.u32(), bytes(r.take(32)), bytes(r.take(32)), _read_blob(r))


@dataclass(frozen=True)
class KeyBroadcast:
    """Server -> client ``receiver``: public keys of its neighbours in U1."""
    round_id: bytes
    receiver: int
    keys: dict  # id -> (c_pk, s_pk)
    signatures: dict = field(default_factory=dict)  # id -> advertisement signature (active mode)

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.receiver, "receiver")
        if not isinstance(self.keys, dict) or not isinstance(self.signatures, dict):
            raise MalformedMessageError("keys and signatures must be dicts")
        for i, pair in self.keys.items():
            _check_id(i)
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise MalformedMessageError("keys values must be (c_pk, s_pk)")
            _check_blob(pair[0], PUBLIC_KEY_BYTES, "c_pk")
            _check_blob(pair[1], PUBLIC_KEY_BYTES, "s_pk")
        for i, sig in self.signatures.items():
            if i not in self.keys:
                raise MalformedMessageError("signature for a client without keys")
            _check_sig(sig)

    def encode(self) -> bytes:
        parts = [_header(T_KEYS, self.round_id), _U32x2.pack(self.receiver, len(self.keys))]
        for i, (c, s) in self.keys.items():
            parts += [_U32.pack(i), c, s, _blob(self.signatures.get(i, b""))]
        return b"".join(parts)

    @classmethod
    def _decode(cls, rid, r: _Reader):
        recv = r.u32()
        keys, sigs = {}, {}
        for _ in range(r.count(70)):
            i = r.u32()
            if i in keys:
                raise DuplicateClientError(f"duplicate client id {i} in key broadcast")
            keys[i] = (bytes(r.take(32)), bytes(r.take(32)))
            sig = _read_blob(r)
            if sig:
                sigs[i] = sig
        return cls(rid, recv, keys, sigs)


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
    if _plain_ids(cts.keys()) and all(type(ct) is bytes and len(ct) <= 0xFFFF for ct in cts.values()):
        return
    for i, ct in cts.items():
        _check_id(i)
        _check_blob(ct, None, "ciphertext")


@dataclass(frozen=True)
class ShareKeys:
    """Client ``sender`` -> server: for each neighbour v, ``COMMITMENTS_BYTES`` of
    share commitments (:func:`secagg.keys.commit_shares`) followed by the AES-GCM
    ciphertext e_{u,v} of v's two shares.  The server keeps the commitments to check
    the shares v reveals at unmasking; v checks its decrypted shares against them."""
    round_id: bytes
    sender: int
    ciphertexts: dict  # receiver -> ciphertext
    commitment: bytes = b""  # commitments to the self-mask secret b_u and to the dealer's own share of it
    signature: bytes = b""

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        _validate_ct_map(self.ciphertexts)
        _check_blob(self.commitment, 64, "commitment")
        _check_sig(self.signature)

    def signed_parts(self):
        cts = b"".join(_U32.pack(v) + _blob(self.ciphertexts[v]) for v in sorted(self.ciphertexts))
        return b"share_keys", self.round_id, self.sender, self.commitment, digest(cts)

    def encode(self) -> bytes:
        return (_enc_ct_map(T_SHARES, self.round_id, self.sender, self.ciphertexts) + bytes(self.commitment)
                + _blob(self.signature))

    @classmethod
    def _decode(cls, rid, r):
        who, cts = _dec_ct_map(r)
        return cls(rid, who, cts, bytes(r.take(64)), _read_blob(r))


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
class MaskedPart:
    """One client's share in a pre-summed :class:`MaskedInput`: the peers it excluded,
    the digest of its own masked vector, and (active mode) its signature over both."""
    client_id: int
    excluded: tuple
    vector_digest: bytes
    signature: bytes = b""

    def validate(self) -> None:
        _check_id(self.client_id)
        if not isinstance(self.excluded, tuple):
            raise MalformedMessageError("excluded must be a tuple")
        _check_ids(self.excluded, "excluded id")
        if self.client_id in self.excluded:
            raise MalformedMessageError("a client cannot exclude itself")
        _check_blob(self.vector_digest, 32, "vector digest")
        _check_sig(self.signature)

    def signed_parts(self, round_id: bytes, bits: int):
        return (b"masked_input", round_id, self.client_id, bytes([bits]), self.vector_digest,
                _pack_ids(tuple(sorted(self.excluded))))


@dataclass(frozen=True)
class MaskedInput:
    """Masked vector(s) mod 2^bits, covering ``client_ids`` (pre-summed if > 1).

    ``excluded``: the neighbours whose shares this client rejected (they did not
    decrypt or failed their commitments); it did not mask against them and the
    server treats them as dropped.  A pre-sum carries one :class:`MaskedPart` per
    covered client (its exclusions, and in active mode its signature) in ``parts``.
    """
    round_id: bytes
    client_ids: tuple
    vector: np.ndarray
    bits: int
    signature: bytes = b""  # active mode: the single sender's signature (a pre-sum's are in ``parts``)
    excluded: tuple = ()
    parts: tuple = ()

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
        _check_sig(self.signature)
        if not isinstance(self.excluded, tuple) or not isinstance(self.parts, tuple):
            raise MalformedMessageError("excluded and parts must be tuples")
        if len(self.client_ids) == 1:
            if self.parts:
                raise MalformedMessageError("a single client's masked input has no parts")
            _check_ids(self.excluded, "excluded id")
            if self.client_ids[0] in self.excluded:
                raise MalformedMessageError("a client cannot exclude itself")
        else:
            if self.signature or self.excluded:
                raise MalformedMessageError("a pre-sum carries its clients' signatures and exclusions in parts")
            for p in self.parts:
                if not isinstance(p, MaskedPart):
                    raise MalformedMessageError("parts must be MaskedPart")
                p.validate()
            if tuple(p.client_id for p in self.parts) != self.client_ids:
                raise MalformedMessageError("a pre-sum needs one part per covered client, in order")

    def _le_bytes(self):
        """The vector's little-endian bytes (a zero-copy view when it already is)."""
        v = self.vector
        if v.dtype.byteorder in "<|" or (v.dtype.byteorder == "=" and _LITTLE):
            return np.ascontiguousarray(v).data.cast("B")
        return np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("<")).tobytes()

    def vector_digest(self) -> bytes:
        return digest(self._le_bytes())

    def as_part(self) -> MaskedPart:
        """This single client's input as a part of a pre-sum."""
        return MaskedPart(self.client_ids[0], tuple(self.excluded), self.vector_digest(), self.signature)

    def exclusions(self) -> dict:
        """client id -> the peers it excluded (for every covered client)."""
        if len(self.client_ids) == 1:
            return {self.client_ids[0]: tuple(self.excluded)}
        return {p.client_id: tuple(p.excluded) for p in self.parts}

    def signed_parts(self):
        return MaskedPart(self.client_ids[0], tuple(self.excluded), self.vector_digest()).signed_parts(
            self.round_id, self.bits)

    def encode(self) -> bytes:
        ids = self.client_ids
        out = [_header(T_MASKED, self.round_id), struct.pack("<BI", self.bits, len(ids)),
               struct.pack(f"<{len(ids)}I", *ids), _U32.pack(self.vector.size),
               self._le_bytes(), _blob(self.signature), _U32.pack(len(self.excluded)), _pack_ids(self.excluded),
               _U32.pack(len(self.parts))]
        for p in self.parts:
            out += [_U32x2.pack(p.client_id, len(p.excluded)), _pack_ids(p.excluded), bytes(p.vector_digest),
                    _blob(p.signature)]
        return b"".join(out)

    def wire_size(self) -> int:
        return (_HDR.size + 5 + 4 * len(self.client_ids) + 4 + self.vector.nbytes + 2 + len(self.signature)
                + 4 + 4 * len(self.excluded) + 4
                + sum(8 + 4 * len(p.excluded) + 32 + 2 + len(p.signature) for p in self.parts))

    @classmethod
    def _decode(cls, rid, r):
        (bits,) = struct.unpack("<B", r.take(1))
        if not 1 <= bits <= 64:
            raise MalformedMessageError("bits must be in [1, 64]")
        ids = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        dt = np.dtype("<u4" if bits <= 32 else "<u8")
        m = r.count(dt.itemsize)
        vec = np.frombuffer(r.take(m * dt.itemsize), dtype=dt)  # a read-only view of the message
        if not _LITTLE:
            vec = vec.astype(dt.newbyteorder("="))
        sig = _read_blob(r)
        excluded = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        parts = []
        for _ in range(r.count(8 + 32 + 2)):
            cid = r.u32()
            ex = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
            parts.append(MaskedPart(cid, ex, bytes(r.take(32)), _read_blob(r)))
        return cls(rid, ids, vec, bits, sig, excluded, tuple(parts))


@dataclass(frozen=True)
class ConsistencyRequest:
    """Server -> client (active mode): the survivor set U3 (every client whose
    masked input arrived), to be signed (Bonawitz et al. ConsistencyCheck)."""
    round_id: bytes
    receiver: int
    survivors: tuple

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.receiver, "receiver")
        if not isinstance(self.survivors, tuple):
            raise MalformedMessageError("survivors must be a tuple")
        _check_ids(self.survivors)
        if list(self.survivors) != sorted(self.survivors):
            raise MalformedMessageError("survivors must be sorted")

    def survivors_digest(self) -> bytes:
        return digest(_pack_ids(self.survivors))

    def encode(self) -> bytes:
        s = self.survivors
        return b"".join([_header(T_CONS_REQ, self.round_id), _U32x2.pack(self.receiver, len(s)), _pack_ids(s)])

    @classmethod
    def _decode(cls, rid, r):
        recv = r.u32()
        return cls(rid, recv, tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n))))


def survivors_digest(survivors) -> bytes:
    """What a ConsistencySignature signs: SHA-256 of the sorted survivor ids."""
    return digest(_pack_ids(tuple(sorted(survivors))))


@dataclass(frozen=True)
class ConsistencySignature:
    """Client -> server (active mode): signature on the digest of the survivor set."""
    round_id: bytes
    sender: int
    survivors_digest: bytes
    signature: bytes

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        _check_blob(self.survivors_digest, 32, "survivors_digest")
        _check_sig(self.signature)

    def signed_parts(self):
        return b"consistency", self.round_id, self.sender, self.survivors_digest

    def encode(self) -> bytes:
        return (_header(T_CONS_SIG, self.round_id) + _U32.pack(self.sender) + bytes(self.survivors_digest)
                + _blob(self.signature))

    @classmethod
    def _decode(cls, rid, r):
        return cls(rid, r.u32(), bytes(r.take(32)), _read_blob(r))


@dataclass(frozen=True)
class UnmaskRequest:
    """Server -> client: which of its neighbours survived (send b-shares) and
    which dropped after sharing keys (send s^SK-shares)."""
    round_id: bytes
    receiver: int
    survivors: tuple
    dropped: tuple
    signatures: dict = field(default_factory=dict)  # active mode: id -> consistency signature

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
        if not isinstance(self.signatures, dict):
            raise MalformedMessageError("signatures must be a dict")
        for i, sig in self.signatures.items():
            _check_id(i)
            _check_sig(sig)

    def encode(self) -> bytes:
        s, d, g = self.survivors, self.dropped, self.signatures
        return b"".join([_header(T_UNMASK_REQ, self.round_id), _U32x2.pack(self.receiver, len(s)),
                         _pack_ids(s), _U32.pack(len(d)), _pack_ids(d), _U32.pack(len(g))]
                        + [_U32.pack(i) + _blob(sig) for i, sig in g.items()])

    @classmethod
    def _decode(cls, rid, r):
        recv = r.u32()
        s = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        d = tuple(struct.unpack(f"<{(n := r.count(4))}I", r.take(4 * n)))
        g = {}
        for _ in range(r.count(6)):
            i = r.u32()
            if i in g:
                raise DuplicateClientError(f"duplicate signer {i} in unmask request")
            g[i] = _read_blob(r)
        return cls(rid, recv, s, d, g)


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
    signature: bytes = b""

    def validate(self) -> None:
        if self.__dict__.get("_validated"):
            return
        _check_round(self.round_id)
        _check_id(self.sender, "sender")
        for d in (self.self_mask_shares, self.key_shares):
            if not isinstance(d, dict):
                raise MalformedMessageError("shares must be a dict")
            vals = d.values()
            if _plain_ids(d.keys()) and all(type(v) is int for v in vals) and (
                    not d or (min(vals) >= 0 and max(vals) < PRIME)):
                continue
            for i, v in d.items():
                _check_id(i, "owner id")
                if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < PRIME:
                    raise MalformedMessageError("share must be a field element")
        both = self.self_mask_shares.keys() & self.key_shares.keys()
        if both:
            raise MalformedMessageError(f"both shares revealed for owners {sorted(both)}")
        _check_sig(self.signature)

    def signed_parts(self):
        body = _enc_shares(dict(sorted(self.self_mask_shares.items()))) + _enc_shares(dict(sorted(self.key_shares.items())))
        return b"unmask", self.round_id, self.sender, digest(body)

    def encode(self) -> bytes:
        return b"".join([_header(T_UNMASK_RESP, self.round_id), _U32.pack(self.sender),
                         _enc_shares(self.self_mask_shares), _enc_shares(self.key_shares), _blob(self.signature)])

    @classmethod
    def _decode(cls, rid, r):
        return cls(rid, r.u32(), _dec_shares(r), _dec_shares(r), _read_blob(r))


_TYPES = {T_ADVERTISE: AdvertiseKeys, T_KEYS: KeyBroadcast, T_SHARES: ShareKeys,
          T_FORWARD: ForwardedShares, T_MASKED: MaskedInput, T_UNMASK_REQ: UnmaskRequest,
          T_UNMASK_RESP: UnmaskResponse, T_CONS_REQ: ConsistencyRequest, T_CONS_SIG: ConsistencySignature}
Message = (AdvertiseKeys | KeyBroadcast | ShareKeys | ForwardedShares | MaskedInput | UnmaskRequest | UnmaskResponse
           | ConsistencyRequest | ConsistencySignature)


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


def presum(msgs: Sequence[MaskedInput], registry=None, bindings: dict | None = None) -> MaskedInput:
    """Pre-sum masked inputs of several clients mod 2^bits (e.g. in a worker).

    The server accepts the result like any masked input; it covers the union
    of the client ids (which must be disjoint) and carries, per client, a
    :class:`MaskedPart` with its exclusions and signature, so the server still
    learns whom each client excluded and, in active mode, verifies that each
    covered client signed its masked input for this round.  With a ``registry``
    (active mode) each input's signature is verified here first, bound to its
    sender's execution by ``bindings[id]`` (:func:`secagg.signing.instance_binding`).
    A single input is returned as it is (its own signature intact).
    """
    if not msgs:
        raise ValueError("nothing to pre-sum")
    for msg in msgs:
        msg.validate()
        if registry is not None:
            registry.verify_message(msg, binding=(bindings or {}).get(msg.client_ids[0], b""))
    if len(msgs) == 1:
        return msgs[0]
    first = msgs[0]
    if any(m.round_id != first.round_id or m.bits != first.bits or m.vector.shape != first.vector.shape
           for m in msgs):
        raise MalformedMessageError("pre-summed inputs must share round, bits and length")
    ids = tuple(i for m in msgs for i in m.client_ids)
    if len(set(ids)) != len(ids):
        raise DuplicateClientError("a client id appears in two pre-summed inputs")
    parts = tuple(p for m in msgs for p in (m.parts if len(m.client_ids) > 1 else (m.as_part(),)))
    acc = first.vector.copy()
    for m in msgs[1:]:
        np.add(acc, m.vector, out=acc)
    if first.bits < acc.dtype.itemsize * 8:
        np.bitwise_and(acc, acc.dtype.type((1 << first.bits) - 1), out=acc)
    return MaskedInput(first.round_id, ids, acc, first.bits, parts=parts)
