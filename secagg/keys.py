"""Key agreement, key derivation and authenticated encryption.

* X25519 Diffie-Hellman (Bernstein 2006) is the key-agreement scheme ``KA`` of
  Bonawitz et al. (CCS 2017, §3): each client advertises two public keys,
  ``c_u^PK`` (for the share channel) and ``s_u^PK`` (for the pairwise masks).
* HKDF-SHA256 (RFC 5869, Krawczyk 2010) turns a raw X25519 output into a
  channel key or a PRG seed, domain-separated by round id, purpose and the
  (unordered) pair of client ids.
* AES-256-GCM is the authenticated encryption ``AE`` for Shamir shares; the
  associated data binds (round id, sender, receiver), so a tampered, replayed
  (other round) or misrouted ciphertext fails authentication.
"""
from __future__ import annotations

import hashlib
import hmac
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import DecryptionError, MalformedMessageError

PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_LABEL = b"fedpop-secagg-v1"


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF with SHA-256 (extract-then-expand)."""
    if length > 255 * 32:
        raise ValueError("HKDF output too long")
    prk = hmac.digest(salt or bytes(32), ikm, "sha256")
    if length == 32:  # one expand block (every key and seed of the protocol)
        return hmac.digest(prk, info + b"\x01", "sha256")
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([i]), "sha256")
        out += block
        i += 1
    return out[:length]


def private_key_from_bytes(raw: bytes) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(raw)


def generate_keypair(rand) -> tuple[X25519PrivateKey, bytes]:
    """A fresh X25519 key pair from the party's random source."""
    sk = X25519PrivateKey.from_private_bytes(rand.bytes(32))
    return sk, sk.public_key().public_bytes_raw()


def public_bytes(sk: X25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes_raw()


_PARSED: dict[bytes, X25519PublicKey] = {}
_PARSED_MAX = 1 << 16


def load_public(pk: bytes) -> X25519PublicKey:
    """A peer's X25519 public key, parsed once per process: a client's key is used by
    each of its k neighbours (and the server), so the parse is cached (bounded)."""
    key = _PARSED.get(pk) if isinstance(pk, bytes) else None
    if key is not None:
        return key
    if not isinstance(pk, (bytes, bytearray)) or len(pk) != PUBLIC_KEY_BYTES:
        raise MalformedMessageError("X25519 public key must be 32 bytes")
    key = X25519PublicKey.from_public_bytes(bytes(pk))
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.clear()
    _PARSED[bytes(pk)] = key
    return key


def agree(sk: X25519PrivateKey, peer: X25519PublicKey | bytes) -> bytes:
    """Raw X25519 shared secret; rejects low-order peer keys."""
    if not isinstance(peer, X25519PublicKey):
        peer = load_public(peer)
    try:
        return sk.exchange(peer)
    except ValueError as e:  # all-zero output: low-order point
        raise MalformedMessageError(f"invalid X25519 public key: {e}") from None


def _pair_info(purpose: bytes, round_id: bytes, a: int, b: int) -> bytes:
    lo, hi = (a, b) if a < b else (b, a)
    return _LABEL + b"|" + purpose + b"|" + round_id + struct.pack("<II", lo, hi)


def channel_key(shared: bytes, round_id: bytes, a: int, b: int) -> bytes:
    """AES-GCM key for the share channel between clients a and b."""
    return hkdf_sha256(shared, salt=round_id, info=_pair_info(b"enc", round_id, a, b))


def mask_seed(shared: bytes, round_id: bytes, a: int, b: int) -> bytes:
    """PRG seed s_{a,b} of the pairwise mask between clients a and b."""
    return hkdf_sha256(shared, salt=round_id, info=_pair_info(b"mask", round_id, a, b))


def self_mask_seed(b_u: int, round_id: bytes) -> bytes:
    """PRG seed of the self mask from the Shamir-shared secret b_u."""
    return hkdf_sha256(b_u.to_bytes(33, "little"), salt=round_id, info=_LABEL + b"|self")


def associated_data(round_id: bytes, sender: int, receiver: int) -> bytes:
    return _LABEL + b"|shares|" + round_id + struct.pack("<II", sender, receiver)


class Channel:
    """AES-256-GCM channel between two clients (random 96-bit nonces)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes):
        self._aead = AESGCM(key)

    def encrypt(self, plaintext: bytes, ad: bytes, nonce: bytes) -> bytes:
        return nonce + self._aead.encrypt(nonce, plaintext, ad)

    def decrypt(self, blob: bytes, ad: bytes) -> bytes:
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise DecryptionError("ciphertext too short")
        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], ad)
        except InvalidTag:
            raise DecryptionError("AES-GCM authentication failed (tampered, replayed or misrouted)") from None


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


_PROBE = X25519PrivateKey.from_private_bytes(bytes([9] * 32))


def check_public_key(pk: bytes) -> None:
    """Reject low-order X25519 points: a key whose shared secret with a clamped
    scalar is all zeros (RFC 7748 §6.1) would make every honest peer fail."""
    from .errors import BadPublicKeyError

    try:
        _PROBE.exchange(load_public(pk))
    except ValueError:
        raise BadPublicKeyError("X25519 public key is a low-order point (all-zero shared secret)") from None


_P25519 = 2**255 - 19
COMMITMENTS_BYTES = 64


def canonical_point(pk: bytes) -> bytes:
    """The X25519 u-coordinate a 32-byte key decodes to (RFC 7748 §5: bit 255 is
    ignored, values >= p are reduced).  Keys that differ only in those bits are the
    same point and give the same shared secrets, so duplicates are found on this."""
    u = (int.from_bytes(bytes(pk), "little") & ((1 << 255) - 1)) % _P25519
    return u.to_bytes(32, "little")


_COMMIT_LABEL = _LABEL + b"|commit-share|"


def commit_share(round_id: bytes, dealer: int, holder: int, kind: bytes, share: int) -> bytes:
    """Binding commitment to one Shamir share (``kind`` b"s" or b"b") that ``dealer``
    gives ``holder``: SHA-256 under a domain label.  The dealer publishes it (to the
    server, who forwards it with the ciphertext); the holder checks the share it
    decrypts against it, and the server checks the share the holder reveals.  A
    mismatch then proves who deviated.  Hiding rests on the shared secrets being
    uniformly random 256-bit values."""
    return hashlib.sha256(b"".join((_COMMIT_LABEL, kind, round_id, _PAIR.pack(dealer, holder),
                                    share.to_bytes(33, "little")))).digest()


_PAIR = struct.Struct("<II")


def commit_shares(round_id: bytes, dealer: int, holder: int, s_share: int, b_share: int) -> bytes:
    """The ``COMMITMENTS_BYTES`` sent ahead of each share ciphertext: the commitments to
    the key share and to the self-mask share (:func:`commit_share`)."""
    tail = round_id + _PAIR.pack(dealer, holder)
    sha = hashlib.sha256
    return (sha(b"".join((_COMMIT_LABEL, b"s", tail, s_share.to_bytes(33, "little")))).digest()
            + sha(b"".join((_COMMIT_LABEL, b"b", tail, b_share.to_bytes(33, "little")))).digest())


def commit_self_mask(b_u: int, round_id: bytes, owner: int) -> bytes:
    """Binding commitment to the self-mask secret b_u (SHA-256 of the 256-bit
    secret under a domain label): lets the server verify a reconstructed b_u
    even from exactly t shares, so a wrong sum is never returned silently."""
    return hashlib.sha256(_LABEL + b"|commit-b|" + round_id + struct.pack("<I", owner)
                          + b_u.to_bytes(33, "little")).digest()
