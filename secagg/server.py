"""Server state machine of SecAgg / SecAgg+ (Bonawitz et al., CCS 2017, Fig. 4;
Bell et al., CCS 2020).

Each stage collects client messages (``receive_*``, which reject malformed,
duplicate, unknown or out-of-stage messages without touching the state) and
is closed by a method producing the messages of the next stage::

    receive_advertise(AdvertiseKeys)*     -> broadcast_keys()   {id: KeyBroadcast}
    receive_share_keys(ShareKeys)*        -> forward_shares()   {id: ForwardedShares}
    receive_masked_input(MaskedInput)*    -> unmask_requests()  {id: UnmaskRequest}
    receive_unmask(UnmaskResponse)*       -> finalize()         sum mod 2^b

``MaskedInput`` may cover several clients (pre-summed by a worker).  If fewer
than t parties remain at any stage, or some needed secret has fewer than t
shares, :class:`SecAggAbort` is raised and no (partial) sum is released.
"""
from __future__ import annotations

import numpy as np

from .config import RoundConfig
from .errors import (DuplicateClientError, InconsistentSharesError, MalformedMessageError,
                     ProtocolStateError, SecAggAbort, UnknownClientError)
from .keys import agree, load_public, mask_seed, private_key_from_bytes, public_bytes, self_mask_seed
from .messages import (AdvertiseKeys, ForwardedShares, KeyBroadcast, MaskedInput, ShareKeys, UnmaskRequest,
                       UnmaskResponse)
from .prg import MaskExpander, reduce_mod
from .shamir import reconstruct, x_of

STAGES = ("advertise_keys", "share_keys", "masked_input", "unmasking")


class SecAggServer:
    def __init__(self, config: RoundConfig, expander: MaskExpander | None = None):
        self.cfg = config
        self.expander = expander if expander is not None else MaskExpander(config.m, config.bits, config.prg)
        self.stage = "advertise_keys"
        self.u1: dict[int, tuple[bytes, bytes]] = {}
        self.u2: dict[int, dict[int, bytes]] = {}
        self.u3: set[int] = set()
        self.responses: dict[int, UnmaskResponse] = {}
        self._requests: dict[int, UnmaskRequest] = {}
        self._acc = np.zeros(config.m, dtype=config.dtype)
        self._pks: set[bytes] = set()
        self.result: np.ndarray | None = None

    # -- helpers ---------------------------------------------------------
    def _expect(self, stage: str, msg, cls) -> None:
        if self.stage != stage:
            raise ProtocolStateError(f"server is in stage {self.stage!r}, got a {stage!r} message")
        if not isinstance(msg, cls):
            raise MalformedMessageError(f"expected {cls.__name__}, got {type(msg).__name__}")
        msg.validate()
        if msg.round_id != self.cfg.round_id:
            raise MalformedMessageError("message is for another round (replay?)")

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
    def receive_advertise(self, msg: AdvertiseKeys) -> None:
        self._expect("advertise_keys", msg, AdvertiseKeys)
        u = msg.sender
        if not 0 <= u < self.cfg.n:
            raise UnknownClientError(f"unknown client id {u}")
        if u in self.u1:
            raise DuplicateClientError(f"client {u} already advertised keys")
        if msg.c_pk in self._pks or msg.s_pk in self._pks:
            raise DuplicateClientError(f"client {u} advertised an already used public key")
        self.u1[u] = (msg.c_pk, msg.s_pk)
        self._pks.update((msg.c_pk, msg.s_pk))

    def broadcast_keys(self) -> dict[int, KeyBroadcast]:
        self._close("advertise_keys", "share_keys", len(self.u1))
        nb, u1, rid = self.cfg.neighbours, self.u1, self.cfg.round_id
        return {u: KeyBroadcast(rid, u, {v: u1[v] for v in sorted(nb[u]) if v in u1}) for u in sorted(u1)}

    # -- stage 1 ---------------------------------------------------------
    def receive_share_keys(self, msg: ShareKeys) -> None:
        self._expect("share_keys", msg, ShareKeys)
        u = msg.sender
        if u not in self.u1:
            raise UnknownClientError(f"client {u} did not advertise keys")
        if u in self.u2:
            raise DuplicateClientError(f"client {u} already shared keys")
        want = {v for v in self.cfg.neighbours[u] if v in self.u1}
        got = set(msg.ciphertexts)
        if got - want:
            raise UnknownClientError(f"client {u} addressed non-neighbours {sorted(got - want)[:5]}")
        if got != want:
            raise MalformedMessageError(f"client {u} must address all {len(want)} neighbours in U1")
        self.u2[u] = msg.ciphertexts

    def forward_shares(self) -> dict[int, ForwardedShares]:
        self._close("share_keys", "masked_input", len(self.u2))
        nb, u2, rid = self.cfg.neighbours, self.u2, self.cfg.round_id
        return {v: ForwardedShares(rid, v, {u: u2[u][v] for u in sorted(nb[v]) if u in u2}) for v in sorted(u2)}

    # -- stage 2 ---------------------------------------------------------
    def receive_masked_input(self, msg: MaskedInput) -> None:
        """Accept one masked vector, or a worker's pre-sum covering several clients."""
        self._expect("masked_input", msg, MaskedInput)
        if msg.bits != self.cfg.bits or msg.vector.shape != (self.cfg.m,):
            raise MalformedMessageError(f"masked input must be {self.cfg.m} words of {self.cfg.bits} bits")
        ids = msg.client_ids
        unknown = [u for u in ids if u not in self.u2]
        if unknown:
            raise UnknownClientError(f"masked input from clients not in U2: {sorted(unknown)[:5]}")
        dup = [u for u in ids if u in self.u3]
        if dup:
            raise DuplicateClientError(f"masked input already received for {sorted(dup)[:5]}")
        np.add(self._acc, msg.vector, out=self._acc)
        self.u3.update(ids)

    def unmask_requests(self) -> dict[int, UnmaskRequest]:
        self._close("masked_input", "unmasking", len(self.u3))
        nb, u2, u3, rid = self.cfg.neighbours, self.u2, self.u3, self.cfg.round_id
        reqs = {}
        for v in sorted(u3):
            held = [u for u in sorted(nb[v]) if u in u2]
            surv = tuple(sorted([u for u in held if u in u3] + [v]))  # v also holds a share of its own b_v
            reqs[v] = UnmaskRequest(rid, v, surv, tuple(u for u in held if u not in u3))
        self._requests = reqs
        return reqs

    # -- stage 3 ---------------------------------------------------------
    def receive_unmask(self, msg: UnmaskResponse) -> None:
        self._expect("unmasking", msg, UnmaskResponse)
        v = msg.sender
        if v not in self._requests:
            raise UnknownClientError(f"client {v} was not asked to unmask")
        if v in self.responses:
            raise DuplicateClientError(f"client {v} already answered")
        req = self._requests[v]
        if not set(msg.self_mask_shares) <= set(req.survivors) or not set(msg.key_shares) <= set(req.dropped):
            raise MalformedMessageError(f"client {v} answered with shares that were not requested")
        self.responses[v] = msg

    def dropped(self) -> list[int]:
        """Clients that shared keys but sent no masked input (U2 \\ U3)."""
        return sorted(set(self.u2) - self.u3)

    def finalize(self) -> np.ndarray:
        """Reconstruct b_u (survivors) and s_u^SK (dropped), remove their masks,
        and return the exact sum of the survivors' inputs mod 2^b."""
        if self.stage != "unmasking":
            raise ProtocolStateError(f"server is in stage {self.stage!r}, cannot finalize")
        cfg, nb, t = self.cfg, self.cfg.neighbours, self.cfg.threshold
        if len(self.responses) < t:
            self._abort(f"unmasking: only {len(self.responses)} clients answered, threshold is {t}")
        b_pts: dict[int, list] = {u: [] for u in self.u3}
        dropped = [u for u in self.dropped() if any(v in self.u3 for v in nb[u])]
        s_pts: dict[int, list] = {u: [] for u in dropped}
        for v in sorted(self.responses):
            r = self.responses[v]
            xv = x_of(v)
            for u, y in r.self_mask_shares.items():
                b_pts[u].append((xv, y))
            for u, y in r.key_shares.items():
                if u in s_pts:
                    s_pts[u].append((xv, y))
        short = sorted(u for u, p in list(b_pts.items()) + list(s_pts.items()) if len(p) < t)
        if short:
            self._abort(f"unmasking: fewer than t={t} shares for clients {short[:10]}"
                        f"{' ...' if len(short) > 10 else ''} ({len(short)} in total)")
        try:
            # reconstruct every secret before touching the sum (no partial result)
            s_keys = {}
            for u in dropped:
                s = reconstruct(s_pts[u][:t + 1], t)
                if s >> 256:
                    raise InconsistentSharesError(f"reconstructed key of client {u} is out of range")
                sk = private_key_from_bytes(s.to_bytes(32, "little"))
                if public_bytes(sk) != self.u1[u][1]:
                    raise InconsistentSharesError(f"reconstructed key of client {u} does not match s_pk")
                s_keys[u] = sk
            b_vals = {u: reconstruct(b_pts[u][:t + 1], t) for u in sorted(self.u3)}
        except SecAggAbort as e:
            self._abort(f"unmasking: {e}")
        acc, ex, rid = self._acc, self.expander, cfg.round_id
        for u in dropped:
            sk = s_keys[u]
            for v in sorted(nb[u]):
                if v in self.u3:  # v added Δ_{v,u} PRG(s_{v,u}); remove it
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
