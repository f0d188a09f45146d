"""Long-term identity keys and signed statements for the active-security mode.

Bonawitz et al. (CCS 2017, §4 "active adversary") give every client a long-term
signing key registered with a PKI; clients sign their key advertisement and, in
the ConsistencyCheck round, the survivor set.  Here the signature scheme is
Ed25519 (RFC 8032) from ``cryptography``; :class:`KeyRegistry` stands in for
the PKI (device id -> verification key, registered once).  Every signed
statement is domain-separated by purpose, round id and sender, so a signature
cannot be replayed in another round, by another sender or for another message.

The round id is chosen by the server, so it alone cannot stop a server that runs
several executions under one id and shows a client the signatures a peer made in
another execution.  Every statement after the key advertisement therefore also
commits to the signer's own ephemeral X25519 keys of this execution
(:func:`instance_binding`), which the verifier knows from the signed
advertisement it used: a signature is valid only inside the execution that
produced it.  Clients also refuse a round id they have taken part in before
(:class:`secagg.ledger.RoundLedger`).
"""
from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import AuthenticationError

SIG_BYTES = 64
VERIFY_KEY_BYTES = 32
_LABEL = b"fedpop-secagg-sig-v1"


def generate_signing_key(rand) -> Ed25519PrivateKey:
    """A long-term Ed25519 key from the party's random source."""
    return Ed25519PrivateKey.from_private_bytes(rand.bytes(32))


def verify_key_bytes(sk: Ed25519PrivateKey) -> bytes:
    return sk.public_key().public_bytes_raw()


def statement(purpose: bytes, round_id: bytes, sender: int, *parts: bytes) -> bytes:
    """Canonical bytes of a signed statement (every part length-prefixed)."""
    out = [_LABEL, b"|", purpose, b"|", bytes(round_id), struct.pack("<I", sender)]
    for p in parts:
        out += [struct.pack("<I", len(p)), bytes(p)]
    return b"".join(out)


def digest(*parts: bytes) -> bytes:
    """SHA-256 over length-prefixed parts (for large fields such as vectors)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(struct.pack("<Q", len(p)))
        h.update(p)
    return h.digest()


def instance_binding(c_pk: bytes, s_pk: bytes) -> bytes:
    """What binds a signed statement to one execution of the protocol: a digest of the
    signer's ephemeral public keys, fresh for every execution and known to every
    party that checks the signature."""
    return digest(b"instance", bytes(c_pk), bytes(s_pk))


def sign(sk: Ed25519PrivateKey, purpose: bytes, round_id: bytes, sender: int, *parts: bytes) -> bytes:
    return sk.sign(statement(purpose, round_id, sender, *parts))


_VERIFIED: set = set()  # (key, statement, signature) triples already verified in this process
_VERIFIED_MAX = 1 << 18


class KeyRegistry:
    """PKI stand-in: party id -> Ed25519 verification key, registered once.

    Re-registering an id with a different key is refused (a forging client
    cannot take over another id's identity); look-ups of unknown ids fail with
    :class:`AuthenticationError`.
    """

    def __init__(self, keys: dict | None = None):
        self._raw: dict[int, bytes] = {}
        self._loaded: dict[int, Ed25519PublicKey] = {}
        for i, vk in (keys or {}).items():
            self.register(i, vk)

    def register(self, party: int, vk: bytes) -> None:
        party = int(party)
        if not isinstance(vk, (bytes, bytearray)) or len(vk) != VERIFY_KEY_BYTES:
            raise AuthenticationError("verification key must be 32 bytes")
        old = self._raw.get(party)
        if old is not None and old != vk:
            raise AuthenticationError(f"party {party} is already registered with another key")
        self._raw[party] = bytes(vk)

    def __contains__(self, party) -> bool:
        return int(party) in self._raw

    def __len__(self) -> int:
        return len(self._raw)

    def raw(self, party: int) -> bytes:
        try:
            return self._raw[int(party)]
        except KeyError:
            raise AuthenticationError(f"party {party} has no registered verification key") from None

    def verify_message(self, msg, signature: bytes | None = None, binding: bytes = b"") -> None:
        """Check a protocol message's signature by its sender (``msg.signed_parts()``),
        bound to the sender's execution by ``binding`` (:func:`instance_binding`)."""
        purpose, rid, sender, *parts = msg.signed_parts()
        if binding:
            parts.append(binding)
        self.verify(sender, msg.signature if signature is None else signature, purpose, rid, *parts)

    def verify(self, party: int, sig: bytes, purpose: bytes, round_id: bytes, *parts: bytes) -> None:
        """Check ``sig`` on the statement of ``party``; raise :class:`AuthenticationError`.

        The clients simulated in one process (a worker hosting many devices) verify the same
        advertisement or consistency signature once per neighbour; a successful check of the
        exact (key, statement, signature) bytes is remembered for the process, so the
        simulation pays for each distinct signature once.  Each device's decision is the
        same as if it had verified itself; nothing that failed is remembered."""
        pk = self._loaded.get(party)
        if pk is None:
            pk = self._loaded[party] = Ed25519PublicKey.from_public_bytes(self.raw(party))
        if not isinstance(sig, (bytes, bytearray)) or len(sig) != SIG_BYTES:
            raise AuthenticationError(f"missing or malformed signature from {party} ({purpose.decode()})")
        stmt = statement(purpose, round_id, party, *parts)
        seen = (self._raw[int(party)], stmt, bytes(sig))
        if seen in _VERIFIED:
            return
        try:
            pk.verify(bytes(sig), stmt)
            if len(_VERIFIED) >= _VERIFIED_MAX:
                _VERIFIED.clear()
            _VERIFIED.add(seen)
        except InvalidSignature:
            raise AuthenticationError(f"bad signature from {party} on its {purpose.decode()} message "
                                      f"(forged sender, other round, or tampered)") from None
