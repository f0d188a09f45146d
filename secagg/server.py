"""Server state machine of SecAgg / SecAgg+ (Bonawitz et al., CCS 2017, Fig. 4;
Bell et al., CCS 2020).

Each stage collects client messages (``receive_*``, which reject malformed,
duplicate, unknown, unauthenticated or out-of-stage messages without touching
the state) and is closed by a method producing the messages of the next stage::

    receive_advertise(AdvertiseKeys)*          -> broadcast_keys()        {id: KeyBroadcast}
    receive_share_keys(ShareKeys)*             -> forward_shares()        {id: ForwardedShares}
    receive_masked_input(MaskedInput)*         -> consistency_requests()  {id: ConsistencyRequest}  (active)
    receive_consistency(ConsistencySignature)* -> unmask_requests()       {id: UnmaskRequest}
    receive_unmask(UnmaskResponse)*            -> finalize()              sum mod 2^b

In semi-honest mode ``unmask_requests()`` closes the masked-input stage
directly.  Every ``receive_*`` takes ``origin``: the client ids that the
transport authenticated for the connection the message came on (a device's
own id; a worker's hosted ids for a pre-sum).  A message naming a sender
outside ``origin`` is an :class:`~secagg.errors.AuthenticationError`; in
active mode every single-client message must also carry a valid signature,
bound to the sender's ephemeral keys of this execution, and a pre-sum one per
covered client.

**One bad client is a dropout.**  Public keys are deduplicated on the X25519
point they decode to.  A client reports the neighbours whose shares it rejected
(``MaskedInput.excluded``); when the masked-input stage closes, every client so
reported is treated as dropped: its masked input leaves the sum (a pre-sum that
holds it leaves with all the clients it covers, who become dropouts, which the
double masking makes safe), and each holder's unmask request reflects the peers
it accepted.  The sum is that of the remaining survivors.

**Attribution from evidence.**  Every share a holder reveals is checked against the
dealer's commitment to that share (sent ahead of its ciphertext, checked by the
holder on receipt).  A revealed share that fails it was changed by its holder: the
holder is listed in ``cheaters`` (``evidence`` says why).  If the shares that pass
do not reconstruct a secret that matches its public check (``b_u`` against the
commitment sent with the shares, ``s_u^SK`` against ``s_u^PK``), the dealer dealt
them so: Reed-Solomon decoding recovers the secret when enough shares arrived, and
the dealer is named; otherwise the round aborts naming the dealer and the stage.
If fewer than t parties remain at any stage, :class:`SecAggAbort` is raised and no
(partial) sum is released.  A wrong sum is never returned silently.
"""
from __future__ import annotations

import numpy as np

from .config import RoundConfig
from .errors import (AuthenticationError, BadPublicKeyError, DuplicateClientError, InconsistentSharesError,
                     MalformedMessageError, ProtocolStateError, SecAggAbort, UnknownClientError)
from . import signing
from .keys import (COMMITMENTS_BYTES, agree, canonical_point, check_public_key, commit_self_mask, commit_share,
                   load_public, mask_seed, private_key_from_bytes, public_bytes, self_mask_seed)
from .messages import (AdvertiseKeys, ConsistencyRequest, ConsistencySignature, ForwardedShares, KeyBroadcast,
                       MaskedInput, ShareKeys, UnmaskRequest, UnmaskResponse, survivors_digest)
from .prg import MaskExpander, reduce_mod
from .shamir import _interpolate, reconstruct_checked, x_of

STAGES = ("advertise_keys", "share_keys", "masked_input", "unmasking")
ACTIVE_STAGES = ("advertise_keys", "share_keys", "masked_input", "consistency", "unmasking")


def stages_for(malicious: bool) -> tuple:
    """The protocol's client stages: the ConsistencyCheck round only in active mode."""
    return ACTIVE_STAGES if malicious else STAGES


class SecAggServer:
    def __init__(self, config: RoundConfig, expander: MaskExpander | None = None):
        self.cfg = config
        self.expander = expander if expander is not None else MaskExpander(config.m, config.bits, config.prg)
        self.stage = "advertise_keys"
        self.u1: dict[int, tuple[bytes, bytes]] = {}
        self.u1_sigs: dict[int, bytes] = {}
        self.u2: dict[int, dict[int, bytes]] = {}
        self.commitments: dict[int, bytes] = {}
        self.u3: set[int] = set()
        self.u4: dict[int, bytes] = {}  # active mode: consistency signatures on U3
        self.responses: dict[int, UnmaskResponse] = {}
        self.cheaters: set[int] = set()
        self.evidence: dict[int, str] = {}  # cheater -> what proves it
        self.ejected: dict[int, str] = {}  # client -> why it was treated as dropped after sending its input
        self.excluded_by: dict[int, set[int]] = {}  # reporter -> peers whose shares it rejected
        self._inputs: list[tuple[tuple, np.ndarray]] = []  # masked inputs, summed when the stage closes
        self._sent_to: dict[int, set[int]] = {}  # v -> senders whose shares were forwarded to v
        self._requests: dict[int, UnmaskRequest] = {}
        self._acc = np.zeros(config.m, dtype=config.dtype)
        self._pks: set[bytes] = set()
        self._u3_digest: bytes | None = None
        self.result: np.ndarray | None = None

    # -- helpers ---------------------------------------------------------
    def _expect(self, stage: str, msg, cls, origin) -> None:
        if self.stage != stage:
            raise ProtocolStateError(f"server is in stage {self.stage!r}, got a {stage!r} message")
        if not isinstance(msg, cls):
            raise MalformedMessageError(f"expected {cls.__name__}, got {type(msg).__name__}")
        msg.validate()
        if msg.round_id != self.cfg.round_id:
            raise MalformedMessageError("message is for another round (replay?)")
        ids = msg.client_ids if isinstance(msg, MaskedInput) else (msg.sender,)
        if origin is not None:
            foreign = sorted(set(ids) - set(origin))
            if foreign:
                raise AuthenticationError(f"message claims clients {foreign[:5]} but came from a connection "
                                          f"authenticated for {sorted(origin)[:5]} (forged sender id)")

    def _binding(self, sender: int) -> bytes:
        return signing.instance_binding(*self.u1[sender]) if sender in self.u1 else b""

    def _verify(self, msg) -> None:
        """Active mode: the message's signature by its sender (after the advertisement,
        bound to the keys the sender advertised in this execution)."""
        if self.cfg.malicious:
            sender = msg.client_ids[0] if isinstance(msg, MaskedInput) else msg.sender
            binding = b"" if isinstance(msg, AdvertiseKeys) else self._binding(sender)
            self.cfg.registry().verify_message(msg, binding=binding)

    def _abort(self, why: str):
        self.stage = "aborted"
        self._acc = None
        raise SecAggAbort(why)

    def _close(self, stage: str, nxt: str, alive: int) -> None:
        if self.stage != stage:
            raise ProtocolStateError(f"server is in stage {self.stage!r}, cannot close {stage!r}")
        if alive < self.cfg.threshold:
            self._abort(f"{stage}: only {alive} clients left, threshold is {self.cfg.threshold}")
        self.stage = nxt

    # -- stage 0 ---------------------------------------------------------
    def receive_advertise(self, msg: AdvertiseKeys, origin=None) -> None:
        """Accept a key advertisement; a low-order key excludes only its sender."""
        self._expect("advertise_keys", msg, AdvertiseKeys, origin)
        u = msg.sender
        if not 0 <= u < self.cfg.n:
            raise UnknownClientError(f"unknown client id {u}")
        if u in self.u1:
            raise DuplicateClientError(f"client {u} already advertised keys")
        self._verify(msg)
        points = (canonical_point(msg.c_pk), canonical_point(msg.s_pk))
        if points[0] == points[1] or any(p in self._pks for p in points):
            raise DuplicateClientError(f"client {u} advertised an already used public key (the same X25519 point)")
        for pk in (msg.c_pk, msg.s_pk):
            try:
                check_public_key(pk)
            except BadPublicKeyError as e:
                raise BadPublicKeyError(f"client {u} excluded: {e}") from None
        self.u1[u] = (msg.c_pk, msg.s_pk)
        if msg.signature:
            self.u1_sigs[u] = msg.signature
        self._pks.update(points)

    def broadcast_keys(self) -> dict[int, KeyBroadcast]:
        self._close("advertise_keys", "share_keys", len(self.u1))
        nb, u1, rid, sigs = self.cfg.neighbours, self.u1, self.cfg.round_id, self.u1_sigs
        out = {}
        for u in sorted(u1):
            peers = [v for v in sorted(nb[u]) if v in u1]
            out[u] = KeyBroadcast(rid, u, {v: u1[v] for v in peers}, {v: sigs[v] for v in peers if v in sigs})
        return out

    # -- stage 1 ---------------------------------------------------------
    def receive_share_keys(self, msg: ShareKeys, origin=None) -> None:
        self._expect("share_keys", msg, ShareKeys, origin)
        u = msg.sender
        if u not in self.u1:
            raise UnknownClientError(f"client {u} did not advertise keys")
        if u in self.u2:
            raise DuplicateClientError(f"client {u} already shared keys")
        self._verify(msg)
        want = {v for v in self.cfg.neighbours[u] if v in self.u1}
        got = set(msg.ciphertexts)
        if got - want:
            raise UnknownClientError(f"client {u} addressed non-neighbours {sorted(got - want)[:5]}")
        if got != want:
            raise MalformedMessageError(f"client {u} must address all {len(want)} neighbours in U1")
        if any(len(ct) < COMMITMENTS_BYTES for ct in msg.ciphertexts.values()):
            raise MalformedMessageError(f"client {u} sent shares without their commitments")
        self.u2[u] = msg.ciphertexts
        self.commitments[u] = msg.commitment

    def forward_shares(self) -> dict[int, ForwardedShares]:
        self._close("share_keys", "masked_input", len(self.u2))
        nb, u2, rid = self.cfg.neighbours, self.u2, self.cfg.round_id
        out = {v: ForwardedShares(rid, v, {u: u2[u][v] for u in sorted(nb[v]) if u in u2}) for v in sorted(u2)}
        self._sent_to = {v: set(msg.ciphertexts) for v, msg in out.items()}
        return out

    # -- stage 2 ---------------------------------------------------------
    def receive_masked_input(self, msg: MaskedInput, origin=None) -> None:
        """Accept one masked vector, or a worker's pre-sum covering several clients.

        In active mode a single client's vector must be signed by it; a pre-sum
        is accepted only from an authenticated ``origin`` that covers all its ids,
        with each covered client's signature on its own vector and exclusions (the
        worker, which verified them before adding, is trusted for the addition).
        Each client's exclusions may name only peers whose shares it was sent.
        """
        self._expect("masked_input", msg, MaskedInput, origin)
        if msg.bits != self.cfg.bits or msg.vector.shape != (self.cfg.m,):
            raise MalformedMessageError(f"masked input must be {self.cfg.m} words of {self.cfg.bits} bits")
        ids = msg.client_ids
        unknown = [u for u in ids if u not in self.u2]
        if unknown:
            raise UnknownClientError(f"masked input from clients not in U2: {sorted(unknown)[:5]}")
        dup = [u for u in ids if u in self.u3]
        if dup:
            raise DuplicateClientError(f"masked input already received for {sorted(dup)[:5]}")
        exclusions = msg.exclusions()
        for v, ex in exclusions.items():
            foreign = set(ex) - self._sent_to.get(v, set())
            if foreign:
                raise MalformedMessageError(f"client {v} excludes {sorted(foreign)[:5]}, whose shares it was not sent")
        if self.cfg.malicious:
            reg = self.cfg.registry()
            if len(ids) == 1:
                self._verify(msg)
            elif origin is None:
                raise AuthenticationError("active mode: a pre-summed masked input needs an authenticated origin")
            else:
                for part in msg.parts:
                    purpose, rid, sender, *parts = part.signed_parts(msg.round_id, msg.bits)
                    binding = self._binding(sender)
                    reg.verify(sender, part.signature, purpose, rid, *parts, *([binding] if binding else []))
        self._inputs.append((tuple(ids), msg.vector))
        self.excluded_by.update({v: set(ex) for v, ex in exclusions.items() if ex})
        self.u3.update(ids)

    def _settle_inputs(self) -> None:
        """Close masked-input collection: every client some survivor reported as
        excluded is treated as dropped (with the pre-sum it arrived in), and the
        remaining inputs are summed."""
        reported = {}
        for v, ex in self.excluded_by.items():
            for u in ex:
                reported.setdefault(u, set()).add(v)
        for ids, vec in self._inputs:
            bad = sorted(u for u in ids if u in reported)
            if not bad:
                np.add(self._acc, vec, out=self._acc)
                continue
            for u in ids:
                self.ejected[u] = (f"its shares were rejected by {sorted(reported[u])[:5]}" if u in reported else
                                   f"its input was pre-summed with that of excluded client(s) {bad[:5]}")
            self.u3.difference_update(ids)
        self._inputs = []

    def view(self, v: int) -> set:
        """The peers whose shares ``v`` accepted (those it masked against)."""
        return self._sent_to.get(v, set()) - self.excluded_by.get(v, set())

    def _build_unmask_requests(self) -> dict[int, UnmaskRequest]:
        u3, rid = self.u3, self.cfg.round_id
        reqs = {}
        signers = self.u4
        for v in sorted(u3 if not self.cfg.malicious else signers):
            held = sorted(self.view(v))
            surv = tuple(sorted([u for u in held if u in u3] + [v]))  # v also holds a share of its own b_v
            sigs = {u: signers[u] for u in surv if u in signers and u != v} if self.cfg.malicious else {}
            reqs[v] = UnmaskRequest(rid, v, surv, tuple(u for u in held if u not in u3), sigs)
        return reqs

    def consistency_requests(self) -> dict[int, ConsistencyRequest]:
        """Active mode: close masked-input collection and send U3 to its members."""
        if not self.cfg.malicious:
            raise ProtocolStateError("the ConsistencyCheck round exists only in active mode (malicious=True)")
        self._settle_inputs()
        self._close("masked_input", "consistency", len(self.u3))
        u3 = tuple(sorted(self.u3))
        self._u3_digest = survivors_digest(u3)
        return {v: ConsistencyRequest(self.cfg.round_id, v, u3) for v in u3}

    def receive_consistency(self, msg: ConsistencySignature, origin=None) -> None:
        self._expect("consistency", msg, ConsistencySignature, origin)
        v = msg.sender
        if v not in self.u3:
            raise UnknownClientError(f"client {v} is not in U3")
        if v in self.u4:
            raise DuplicateClientError(f"client {v} already signed")
        if msg.survivors_digest != self._u3_digest:
            raise MalformedMessageError(f"client {v} signed another survivor set")
        self._verify(msg)
        self.u4[v] = msg.signature

    def unmask_requests(self) -> dict[int, UnmaskRequest]:
        if self.cfg.malicious:
            self._close("consistency", "unmasking", len(self.u4))
        else:
            if self.stage == "masked_input":
                self._settle_inputs()
            self._close("masked_input", "unmasking", len(self.u3))
        self._requests = self._build_unmask_requests()
        return self._requests

    # -- stage 3 ---------------------------------------------------------
    def receive_unmask(self, msg: UnmaskResponse, origin=None) -> None:
        self._expect("unmasking", msg, UnmaskResponse, origin)
        v = msg.sender
        if v not in self._requests:
            raise UnknownClientError(f"client {v} was not asked to unmask")
        if v in self.responses:
            raise DuplicateClientError(f"client {v} already answered")
        self._verify(msg)
        req = self._requests[v]
        if not set(msg.self_mask_shares) <= set(req.survivors) or not set(msg.key_shares) <= set(req.dropped):
            raise MalformedMessageError(f"client {v} answered with shares that were not requested")
        self.responses[v] = msg

    def dropped(self) -> list[int]:
        """Clients that shared keys but sent no masked input (U2 \\ U3)."""
        return sorted(set(self.u2) - self.u3)

    def _valid_points(self, owner: int, kind: bytes, pts: list) -> list:
        """The revealed shares of ``owner``'s secret that match the owner's commitment
        to each holder's share; a holder whose share does not is a proven cheater."""
        rid, out, liars = self.cfg.round_id, [], []
        for x, y in pts:
            v = x - 1
            if v == owner:
                com = self.commitments[owner][32:64]
            else:
                blob = self.u2[owner][v]
                com = blob[:32] if kind == b"s" else blob[32:64]
            if 0 <= y and commit_share(rid, owner, v, kind, y) == bytes(com):
                out.append((x, y))
            else:
                liars.append(v)
                self.cheaters.add(v)
                self.evidence[v] = (f"revealed a share of client {owner}'s {'key' if kind == b's' else 'self-mask'} "
                                    f"secret that differs from the one it accepted (fails the dealer's commitment)")
        return out, liars

    def _recover(self, owner: int, kind: bytes, pts: list, check) -> int:
        """One verified secret of ``owner``.  Shares that fail their commitments are
        dropped (their holders join ``cheaters``); if the rest do not give a secret that
        passes ``check``, the owner dealt them wrongly: Reed-Solomon decoding recovers
        the secret when it can (the owner is named), else the round aborts naming it."""
        t = self.cfg.threshold
        what = "key" if kind == b"s" else "self-mask"
        if len(pts) >= t:  # the honest case: t shares give a secret that passes its check
            secret = _interpolate(pts[:t])
            if check(secret):
                return secret
        pts, liars = self._valid_points(owner, kind, pts)
        if len(pts) < t:
            self._abort(f"unmasking: only {len(pts)} valid shares of client {owner}'s {what} secret, threshold {t}"
                        + (f"; holders {liars[:10]} revealed shares that fail the dealer's commitments" if liars else ""))
        try:  # interpolation, then Reed-Solomon decoding if that fails its check
            secret, wrong = reconstruct_checked(pts, t, check)
        except InconsistentSharesError:
            pass
        else:
            if wrong:  # every point matched the owner's commitments: the owner dealt them off its polynomial
                self.cheaters.add(owner)
                self.evidence[owner] = (f"dealt shares of its {what} secret that are not on one polynomial "
                                        f"(holders {[x - 1 for x in wrong][:10]} hold shares that match its "
                                        f"commitments but not the polynomial)")
            return secret
        self.cheaters.add(owner)
        self.evidence[owner] = f"dealt shares of its {what} secret that do not reconstruct its commitment"
        self._abort(f"unmasking: client {owner} dealt shares of its {what} secret that match its per-share "
                    f"commitments but do not reconstruct the secret it committed to ({len(pts)} shares, threshold "
                    f"{t}); no sum is released")

    def finalize(self) -> np.ndarray:
        """Reconstruct b_u (survivors) and s_u^SK (dropped clients some survivor masked
        against), verify them, remove their masks, and return the exact sum of the
        survivors' inputs mod 2^b."""
        if self.stage != "unmasking":
            raise ProtocolStateError(f"server is in stage {self.stage!r}, cannot finalize")
        cfg, t = self.cfg, self.cfg.threshold
        if len(self.responses) < t:
            self._abort(f"unmasking: only {len(self.responses)} clients answered, threshold is {t}")
        views = {v: self.view(v) for v in self.u3}
        masked_with: dict[int, list] = {}  # dropped u -> survivors that masked against it
        for v in sorted(self.u3):
            for u in views[v]:
                if u not in self.u3:
                    masked_with.setdefault(u, []).append(v)
        b_pts: dict[int, list] = {u: [] for u in self.u3}
        s_pts: dict[int, list] = {u: [] for u in masked_with}
        for v in sorted(self.responses):
            r = self.responses[v]
            xv = x_of(v)
            for u, y in r.self_mask_shares.items():
                if u in b_pts:
                    b_pts[u].append((xv, y))
            for u, y in r.key_shares.items():
                if u in s_pts:
                    s_pts[u].append((xv, y))
        short = sorted(u for u, p in list(b_pts.items()) + list(s_pts.items()) if len(p) < t)
        if short:
            self._abort(f"unmasking: fewer than t={t} shares for clients {short[:10]}"
                        f"{' ...' if len(short) > 10 else ''} ({len(short)} in total)")
        rid = cfg.round_id
        # reconstruct and verify every secret before touching the sum (no partial result)
        s_keys = {}
        for u in sorted(masked_with):
            def key_ok(s, u=u):
                return not s >> 256 and public_bytes(private_key_from_bytes(s.to_bytes(32, "little"))) == self.u1[u][1]
            s = self._recover(u, b"s", s_pts[u], key_ok)
            s_keys[u] = private_key_from_bytes(s.to_bytes(32, "little"))
        b_vals = {}
        for u in sorted(self.u3):
            com = self.commitments[u][:32]
            b_vals[u] = self._recover(u, b"b", b_pts[u], lambda b, u=u, com=com: commit_self_mask(b, rid, u) == com)
        acc, ex = self._acc, self.expander
        for u in sorted(masked_with):
            sk = s_keys[u]
            for v in masked_with[u]:  # v added Δ_{v,u} PRG(s_{v,u}); remove it
                seed = mask_seed(agree(sk, load_public(self.u1[v][1])), rid, u, v)
                if v < u:
                    ex.sub(acc, seed)
                else:
                    ex.add(acc, seed)
        for u, b in b_vals.items():
            ex.sub(acc, self_mask_seed(b, rid))
        reduce_mod(acc, cfg.bits)
        self.stage = "done"
        self.result = acc
        return acc.copy()
