"""Client state machine of SecAgg / SecAgg+ (Bonawitz et al., CCS 2017, Fig. 4;
neighbour-restricted as in Bell et al., CCS 2020).

Stages, each callable exactly once and in order::

    advertise_keys() -> AdvertiseKeys
    share_keys(KeyBroadcast) -> ShareKeys
    masked_input(ForwardedShares, x) -> MaskedInput
    consistency(ConsistencyRequest) -> ConsistencySignature      (active mode only)
    unmask(UnmaskRequest) -> UnmaskResponse

A client never reveals both the share of ``b_v`` and the share of ``s_v^SK``
of the same peer ``v``: one unmask request is answered, and before answering
it checks the request as Bonawitz et al. prescribe (Round 4): the survivor set
is a subset of the neighbours it saw at masking, disjoint from the dropped set,
names this client and at least t holders; survivors and dropped together are
exactly its view.  In active mode it also holds the survivor set U3 it signed
in the ConsistencyCheck round and needs t valid signatures of its surviving
holders on that same set, each bound to the signer's ephemeral keys of this
execution (:func:`secagg.signing.instance_binding`).  A failed check raises
:class:`~secagg.errors.ClientCheckError` and reveals nothing.

A client with a :class:`~secagg.ledger.RoundLedger` refuses a round id it has
used before.  A peer whose share ciphertext does not decrypt, names the wrong
parties or fails the dealer's share commitment is treated as dropped (Bonawitz et
al.: the receiver ignores it, it does not abort): the client does not mask
against it, and reports it to the server with its masked input (``excluded``).
"""
from __future__ import annotations

import struct

import numpy as np

from .config import RoundConfig
import dataclasses

from .errors import (AuthenticationError, ClientCheckError, ConfigError, DecryptionError, MalformedMessageError,
                     ProtocolStateError, SecAggAbort, UnknownClientError)
from .keys import (Channel, agree, associated_data, channel_key, commit_self_mask,
                   generate_keypair, load_public, mask_seed, self_mask_seed, NONCE_BYTES)
from .messages import (AdvertiseKeys, ConsistencyRequest, ConsistencySignature, ForwardedShares, KeyBroadcast,
                       MaskedInput, ShareKeys, UnmaskRequest, UnmaskResponse)
from . import signing
from .keys import COMMITMENTS_BYTES, canonical_point, commit_shares
from .signing import sign
from .prg import MaskExpander, reduce_mod
from .rand import SystemRandomSource
from .shamir import PRIME, SHARE_BYTES, share_many, x_of

def _stage(cur: str, nxt):
    """Run a stage method in state ``cur``; move to ``nxt`` (a name, or a function
    of the client), or to 'aborted' on error."""
    def deco(fn):
        def wrapper(self, *args, **kwargs):
            if self.stage != cur:
                raise ProtocolStateError(f"client {self.id}: in stage {self.stage!r}, cannot run {cur!r}")
            try:
                out = fn(self, *args, **kwargs)
            except BaseException:
                self.stage = "aborted"
                raise
            self.stage = nxt(self) if callable(nxt) else nxt
            return out
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper
    return deco


_PT = struct.Struct(f"<II16s{SHARE_BYTES}s{SHARE_BYTES}s")  # sender, receiver, round, s-share, b-share


def check_input(x, m: int, bits: int) -> np.ndarray:
    """Validate a client input: length-m integers in [0, 2^bits)."""
    x = np.asarray(x)
    if x.shape != (m,):
        raise ValueError(f"input must have shape ({m},), got {x.shape}")
    if x.dtype.kind not in "ui":
        raise ValueError(f"input must be integers, got {x.dtype}")
    if x.size and (int(x.min()) < 0 or int(x.max()) >> bits):
        raise ValueError(f"input entries must be in [0, 2^{bits})")
    return x


class SecAggClient:
    """One client's side of a round.

    ``rand`` is the source of secret randomness (OS CSPRNG by default);
    ``expander`` may be shared between clients run by the same worker to reuse
    the PRG buffer; ``signing_key`` is the client's long-term Ed25519 key
    (required in active mode; its public half is ``config.verify_keys[id]``).
    """

    def __init__(self, client_id: int, config: RoundConfig, rand=None, expander: MaskExpander | None = None,
                 signing_key=None, ledger=None):
        if not 0 <= client_id < config.n:
            raise UnknownClientError(f"client id {client_id} not in round of {config.n}")
        if config.malicious and signing_key is None:
            raise ConfigError("active mode (malicious=True) needs the client's signing_key")
        self.id = int(client_id)
        self.cfg = config
        self._sk_sign = signing_key
        self.neighbours = config.neighbours[client_id]
        self.rand = rand if rand is not None else SystemRandomSource()
        self.expander = expander if expander is not None else MaskExpander(config.m, config.bits, config.prg)
        self.ledger = ledger
        self.stage = "advertise_keys"
        self.revealed: dict[int, str] = {}  # owner -> 'b' or 's'
        self.excluded: dict[int, str] = {}  # peer -> why its shares were rejected

    # -- helpers ---------------------------------------------------------
    def _check_msg(self, msg, cls, who: int) -> None:
        if not isinstance(msg, cls):
            raise MalformedMessageError(f"expected {cls.__name__}, got {type(msg).__name__}")
        msg.validate()
        if msg.round_id != self.cfg.round_id:
            raise MalformedMessageError("message is for another round")
        if who != self.id:
            raise UnknownClientError(f"message addressed to {who}, not client {self.id}")

    def _signed(self, msg):
        """``msg`` with this client's signature in active mode (unchanged otherwise);
        every statement after the advertisement is bound to this execution's keys."""
        if not self.cfg.malicious:
            return msg
        purpose, rid, sender, *parts = msg.signed_parts()
        if purpose != b"advertise":
            binding = self.binding
            if binding:
                parts.append(binding)
        return dataclasses.replace(msg, signature=sign(self._sk_sign, purpose, rid, sender, *parts))

    @property
    def binding(self) -> bytes:
        """This execution's instance binding (:func:`secagg.signing.instance_binding`)."""
        return signing.instance_binding(self.c_pk, self.s_pk)

    def _refuse(self, why: str):
        raise ClientCheckError(f"client {self.id} refuses: {why}")

    # -- stage 0 ---------------------------------------------------------
    @_stage("advertise_keys", "share_keys")
    def advertise_keys(self) -> AdvertiseKeys:
        """Generate (c_u, s_u) X25519 key pairs and advertise the public halves
        (signed with the long-term key in active mode).  With a ledger, a round id
        used before is refused first."""
        if self.ledger is not None:
            self.ledger.claim(self.cfg.round_id, self.id)
        self._c_sk, self.c_pk = generate_keypair(self.rand)
        self._s_sk, self.s_pk = generate_keypair(self.rand)
        return self._signed(AdvertiseKeys(self.cfg.round_id, self.id, self.c_pk, self.s_pk))

    # -- stage 1 ---------------------------------------------------------
    @_stage("share_keys", "masked_input")
    def share_keys(self, msg: KeyBroadcast) -> ShareKeys:
        """Shamir-share s_u^SK and a fresh self-mask seed b_u among the
        neighbours in U1 and encrypt each share pair under AES-GCM."""
        self._check_msg(msg, KeyBroadcast, msg.receiver if isinstance(msg, KeyBroadcast) else -1)
        cfg, keys = self.cfg, msg.keys
        unknown = [v for v in keys if v not in self.neighbours]
        if unknown:
            raise UnknownClientError(f"client {self.id}: keys for non-neighbours {sorted(unknown)[:5]}")
        if len(keys) + 1 < cfg.threshold:
            raise SecAggAbort(f"client {self.id}: only {len(keys)} neighbours left, threshold {cfg.threshold}")
        pks = [canonical_point(pk) for pk in [self.c_pk, self.s_pk] + [pk for pair in keys.values() for pk in pair]]
        if len(set(pks)) != len(pks):
            raise MalformedMessageError("public keys are not pairwise distinct (replayed keys?)")
        if cfg.malicious:  # the server must not substitute a neighbour's keys
            reg = cfg.registry()
            for v in sorted(keys):
                reg.verify_message(AdvertiseKeys(cfg.round_id, v, *keys[v]), msg.signatures.get(v, b""))
        # (a low-order neighbour key makes the agreement below fail: `agree` rejects
        # all-zero secrets; the server already excludes such keys at advertise)
        # share holders: the neighbours in U1 and the client itself (as in Bonawitz
        # et al., where u keeps a share; it only ever reveals its own b-share)
        holders = sorted(keys)
        self._b = self.rand.randbelow(PRIME)
        s_int = int.from_bytes(self._s_sk.private_bytes_raw(), "little")
        s_sh, b_sh = share_many([s_int, self._b], cfg.threshold, [x_of(v) for v in holders] + [x_of(self.id)],
                                self.rand.randbelow)
        self._own_b_share = b_sh[-1]
        rid = cfg.round_id
        self._channels: dict[int, Channel] = {}
        self._peer_s_pk: dict[int, bytes] = {}
        self._peer_keys = dict(keys)
        cts = {}
        for v, ss, bs in zip(holders, s_sh, b_sh):
            c_pk, s_pk = keys[v]
            ch = Channel(channel_key(agree(self._c_sk, load_public(c_pk)), rid, self.id, v))
            self._channels[v] = ch
            self._peer_s_pk[v] = s_pk
            pt = _PT.pack(self.id, v, rid, ss.to_bytes(SHARE_BYTES, "little"), bs.to_bytes(SHARE_BYTES, "little"))
            cts[v] = (commit_shares(rid, self.id, v, ss, bs)
                      + ch.encrypt(pt, associated_data(rid, self.id, v), self.rand.bytes(NONCE_BYTES)))
        own = commit_shares(rid, self.id, self.id, 0, self._own_b_share)[32:]
        return self._signed(ShareKeys(rid, self.id, cts, commit_self_mask(self._b, rid, self.id) + own))

    # -- stage 2 ---------------------------------------------------------
    def _open_share(self, u: int, blob: bytes) -> tuple[int, int]:
        """Decrypt and check sender u's shares: DecryptionError if anything is wrong."""
        rid = self.cfg.round_id
        if len(blob) < COMMITMENTS_BYTES:
            raise DecryptionError("share message too short for its commitments")
        pt = self._channels[u].decrypt(blob[COMMITMENTS_BYTES:], associated_data(rid, u, self.id))
        if len(pt) != _PT.size:
            raise DecryptionError("share plaintext has wrong length")
        su, rv, prid, ss, bs = _PT.unpack(pt)
        if su != u or rv != self.id or prid != rid:
            raise DecryptionError("share plaintext names the wrong sender/receiver/round")
        ss, bs = int.from_bytes(ss, "little"), int.from_bytes(bs, "little")
        if ss >= PRIME or bs >= PRIME:
            raise DecryptionError("share outside the field")
        if commit_shares(rid, u, self.id, ss, bs) != bytes(blob[:COMMITMENTS_BYTES]):
            raise DecryptionError("shares do not match the dealer's commitments")
        return ss, bs

    def receive_shares(self, msg: ForwardedShares) -> None:
        """Decrypt and store the shares forwarded by the server (part of stage 2).
        A sender whose shares fail any check is treated as dropped (``excluded``)."""
        self._check_msg(msg, ForwardedShares, msg.receiver if isinstance(msg, ForwardedShares) else -1)
        cfg = self.cfg
        unknown = [u for u in msg.ciphertexts if u not in self._channels]
        if unknown:
            raise UnknownClientError(f"client {self.id}: ciphertexts from unknown senders {sorted(unknown)[:5]}")
        held = {}
        for u, blob in msg.ciphertexts.items():
            try:
                held[u] = self._open_share(u, blob)
            except DecryptionError as e:
                self.excluded[u] = str(e)
        if len(held) + 1 < cfg.threshold:
            raise SecAggAbort(f"client {self.id}: only {len(held)} valid shares received "
                              f"({len(self.excluded)} rejected), threshold {cfg.threshold}")
        self._held = held

    @_stage("masked_input", lambda c: "consistency" if c.cfg.malicious else "unmask")
    def masked_input(self, msg: ForwardedShares, x) -> MaskedInput:
        """y_u = x_u + PRG(b_u) + sum_{v in U2 ∩ N(u)} Δ_{u,v} PRG(s_{u,v}) mod 2^b,
        with Δ = +1 if u < v else -1."""
        cfg = self.cfg
        x = check_input(x, cfg.m, cfg.bits)
        self.receive_shares(msg)
        acc = x.astype(cfg.dtype, copy=True)
        ex, rid = self.expander, cfg.round_id
        ex.add(acc, self_mask_seed(self._b, rid))
        for v in sorted(self._held):
            seed = mask_seed(agree(self._s_sk, load_public(self._peer_s_pk[v])), rid, self.id, v)
            if self.id < v:
                ex.add(acc, seed)
            else:
                ex.sub(acc, seed)
        reduce_mod(acc, cfg.bits)
        return self._signed(MaskedInput(rid, (self.id,), acc, cfg.bits, excluded=tuple(sorted(self.excluded))))

    def _check_survivors(self, surv: set) -> None:
        """Checks of a survivor set against this client's view at masking."""
        view = self._held.keys()
        if self.id not in surv:
            self._refuse("the survivor set does not name this client")
        unseen = surv - view - {self.id}
        if unseen:
            self._refuse(f"survivors {sorted(unseen)[:5]} are not neighbours it received shares from")
        if len(surv) < self.cfg.threshold:
            self._refuse(f"only {len(surv)} holders survive (itself included), threshold {self.cfg.threshold}")

    # -- stage 2b (active mode) -------------------------------------------
    @_stage("consistency", "unmask")
    def consistency(self, msg: ConsistencyRequest) -> ConsistencySignature:
        """Sign the survivor set U3 (Bonawitz et al. ConsistencyCheck): once per
        round, after checking its restriction to this client's view."""
        self._check_msg(msg, ConsistencyRequest, msg.receiver if isinstance(msg, ConsistencyRequest) else -1)
        u3 = set(msg.survivors)
        self._check_survivors(u3 & (self._held.keys() | {self.id}))
        self._u3, self._u3_digest = u3, msg.survivors_digest()
        return self._signed(ConsistencySignature(self.cfg.round_id, self.id, self._u3_digest, b""))

    # -- stage 3 ---------------------------------------------------------
    @_stage("unmask", "done")
    def unmask(self, msg: UnmaskRequest) -> UnmaskResponse:
        """Reveal b-shares of surviving and s^SK-shares of dropped neighbours
        (never both for one peer; answered once; only after the checks in the
        module docstring pass)."""
        self._check_msg(msg, UnmaskRequest, msg.receiver if isinstance(msg, UnmaskRequest) else -1)
        surv, drop = set(msg.survivors), set(msg.dropped)
        both = surv & drop
        if both:
            self._refuse(f"asked for both shares of {sorted(both)[:5]}")
        if self.id in drop:
            self._refuse("the server claims this client dropped")
        view = set(self._held)
        unknown = drop - view
        if unknown:
            self._refuse(f"dropped clients {sorted(unknown)[:5]} are not neighbours it received shares from")
        self._check_survivors(surv)
        if (surv | drop) != view | {self.id}:
            self._refuse(f"survivors and dropped do not partition its view (missing "
                         f"{sorted(view - surv - drop)[:5]})")
        if self.cfg.malicious:
            self._check_consistency(msg, surv)
        b_shares = {u: (self._own_b_share if u == self.id else self._held[u][1]) for u in sorted(surv)}
        s_shares = {u: self._held[u][0] for u in sorted(drop)}
        for u in b_shares:
            self.revealed[u] = "b"
        for u in s_shares:
            self.revealed[u] = "s"
        return self._signed(UnmaskResponse(self.cfg.round_id, self.id, b_shares, s_shares))

    def _check_consistency(self, msg: UnmaskRequest, surv: set) -> None:
        """Active mode: the request agrees with the U3 this client signed, and
        at least t holders (itself included) signed that same U3."""
        want = self._u3 & (set(self._held) | {self.id})
        if surv != want:
            self._refuse("the unmask request contradicts the survivor set it signed")
        reg, rid, need = self.cfg.registry(), self.cfg.round_id, self.cfg.threshold
        valid = 1  # its own signature
        for v in sorted(set(msg.signatures) & (surv - {self.id})):
            if valid >= need:
                break
            binding = signing.instance_binding(*self._peer_keys[v])
            try:
                reg.verify(v, msg.signatures[v], b"consistency", rid, self._u3_digest, *([binding] if binding else []))
                valid += 1
            except AuthenticationError:  # a bad signature does not count
                continue
        if valid < need:
            self._refuse(f"only {valid} valid signatures on the survivor set it signed, threshold {need}")
