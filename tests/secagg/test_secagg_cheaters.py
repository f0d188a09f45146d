"""Secure aggregation, tried by someone who cheats (second pass).

* a server that reuses a round id across executions and replays the consistency
  signatures of one execution in another (active mode);
* a worker that pre-sums a single active-mode input;
* one client that sends garbage share ciphertexts, or copies another's key with
  bit 255 flipped;
* dealers that deal wrong shares, and holders that reveal wrong ones.

Each attack ends with the exact sum of the honest survivors, or an abort that names
the stage and whom the evidence proves deviated; never with a revealed secret or a
wrong sum, and never with an honest client blamed."""
import dataclasses

import numpy as np
import pytest

from secagg import SecAggAbort, SecAggClient, SecAggServer, make_config, presum, run_protocol
from secagg import signing
from secagg.errors import AuthenticationError, ClientCheckError, SecAggError
from secagg.keys import (Channel, agree, associated_data, commit_self_mask, commit_shares, load_public, mask_seed,
                         private_key_from_bytes, self_mask_seed)
from secagg.ledger import ReplayedRoundError, RoundLedger
from secagg.messages import (ConsistencyRequest, ForwardedShares, KeyBroadcast, MaskedPart, UnmaskRequest,
                             UnmaskResponse)
from secagg.prg import MaskExpander, reduce_mod
from secagg.rand import DeterministicRandomSource
from secagg.shamir import PRIME, SHARE_BYTES, reconstruct
from secagg.signing import generate_signing_key, verify_key_bytes

N, M = 10, 12
RID = b"R" * 16


# -- 1. a server that reuses one round id across executions ---------------------------------------
class Phone:
    """A device: its long-term identity key, its input, and (optionally) its memory of rounds."""

    def __init__(self, i, x, ledger=None):
        self.id, self.x, self.ledger = i, x, ledger
        self.sk = generate_signing_key(DeterministicRandomSource(7, label=b"identity-%d" % i))

    def instance(self, cfg, execution):
        rand = DeterministicRandomSource(7, label=b"phone-%d-exec-%d" % (self.id, execution))
        return SecAggClient(self.id, cfg, rand, signing_key=self.sk, ledger=self.ledger)


def _execute(cfg, phones, execution, views):
    """One execution under ``cfg.round_id`` driven by the cheating server up to the
    masked inputs, each phone shown the keys of ``views[i]`` only.  Returns the
    instances that took part and their masked inputs."""
    inst, adv = {}, {}
    for i, p in phones.items():
        c = p.instance(cfg, execution)
        try:
            adv[i] = c.advertise_keys()
        except ReplayedRoundError:
            continue
        inst[i] = c
    shares = {}
    for i, c in list(inst.items()):
        peers = [v for v in sorted(views[i]) if v in inst]
        kb = KeyBroadcast(cfg.round_id, i, {v: (adv[v].c_pk, adv[v].s_pk) for v in peers},
                          {v: adv[v].signature for v in peers})
        try:
            shares[i] = c.share_keys(kb)
        except SecAggError:
            inst.pop(i)
    masked = {}
    for i, c in list(inst.items()):
        fwd = ForwardedShares(cfg.round_id, i, {u: shares[u].ciphertexts[i] for u in sorted(views[i])
                                                if u in shares and i in shares[u].ciphertexts})
        try:
            masked[i] = c.masked_input(fwd, phones[i].x)
        except SecAggError:
            inst.pop(i)
    return inst, masked


TARGET, V0 = 0, (1, 2, 3, 4, 5)
# the survivor set the server shows each holder in the target execution (see _attack)
U3_FOR = {0: frozenset({0, 1, 2, 3, 4, 5}),
          **{v: frozenset({0, v, 6, 7, 8, 9}) for v in V0},
          6: frozenset({4, 5, 6, 7, 8, 9}), 7: frozenset({4, 5, 6, 7, 8, 9}),
          8: frozenset({1, 2, 6, 7, 8, 9}), 9: frozenset({1, 2, 6, 7, 8, 9})}


def _attack(phones, cfg):
    """A cheating server that reuses one round id, with no corrupt client.

    Executions 1..8 run all ten phones honestly up to the ConsistencyCheck and ask
    each to sign one of the survivor sets in ``U3_FOR``.  In the target execution the
    target sees only V0; every holder is shown its own survivor set with the matching
    signatures from the earlier executions, so the holders of the target's self mask
    believe it survived while, for each neighbour v in V0, six holders believe v
    dropped and reveal shares of v's mask key.  Returns (what the server rebuilt of the
    target's input or None, the target execution's instances)."""
    t = cfg.threshold
    everyone = {i: set(range(N)) - {i} for i in range(N)}
    signatures = {}
    for execution, u3 in enumerate(sorted(set(U3_FOR.values()), key=sorted), start=1):
        inst, _ = _execute(cfg, phones, execution, everyone)
        got = {}
        for i in sorted(u3):
            if i in inst:
                try:
                    got[i] = inst[i].consistency(ConsistencyRequest(cfg.round_id, i, tuple(sorted(u3)))).signature
                except SecAggError:
                    pass
        signatures[u3] = got
    views = {0: set(V0), **{v: set(range(N)) - {v} for v in V0}, **{w: set(range(1, N)) - {w} for w in (6, 7, 8, 9)}}
    inst, masked = _execute(cfg, phones, 99, views)
    responses = {}
    for w, c in inst.items():
        u3 = U3_FOR[w]
        try:
            c.consistency(ConsistencyRequest(cfg.round_id, w, tuple(sorted(u3))))
            surv, drop = (u3 & (views[w] | {w})), views[w] - u3
            sigs = {v: signatures[u3][v] for v in surv - {w} if v in signatures[u3]}
            responses[w] = c.unmask(UnmaskRequest(cfg.round_id, w, tuple(sorted(surv)), tuple(sorted(drop)), sigs))
        except SecAggError:
            continue
    b_pts = [(w + 1, r.self_mask_shares[TARGET]) for w, r in responses.items() if TARGET in r.self_mask_shares]
    s_pts = {v: [(w + 1, r.key_shares[v]) for w, r in responses.items() if v in r.key_shares] for v in V0}
    if TARGET not in masked or len(b_pts) < t or any(len(p) < t for p in s_pts.values()):
        return None, inst
    y = masked[TARGET].vector.copy()
    ex = MaskExpander(M, cfg.bits)
    ex.sub(y, self_mask_seed(reconstruct(b_pts[:t], t), cfg.round_id))
    target_s_pk = inst[TARGET].s_pk
    for v in V0:
        sk = private_key_from_bytes(reconstruct(s_pts[v][:t], t).to_bytes(32, "little"))
        ex.sub(y, mask_seed(agree(sk, load_public(target_s_pk)), cfg.round_id, v, TARGET))  # TARGET < v: it added
    return reduce_mod(y, cfg.bits), inst


def _phones(ledgers: bool):
    x = np.random.default_rng(5).integers(0, 2**32, size=(N, M), dtype=np.uint64).astype(np.uint32)
    return {i: Phone(i, x[i], RoundLedger() if ledgers else None) for i in range(N)}, x


def _active_config(phones):
    cfg = make_config(N, M, mode="secagg", malicious=True, corrupt_fraction=0.0, round_id=RID,
                      verify_keys=[verify_key_bytes(phones[i].sk) for i in range(N)])
    assert cfg.threshold == 6
    return cfg


def test_reused_round_id_recovers_an_input_when_statements_are_not_bound(monkeypatch):
    """The attack works against clients whose signatures bind only the server's round
    id and who keep no memory of rounds: it rebuilds the target's raw input exactly
    (so the two tests below would fail on such code)."""
    monkeypatch.setattr(signing, "instance_binding", lambda c_pk, s_pk: b"")
    phones, x = _phones(ledgers=False)
    rebuilt, _ = _attack(phones, _active_config(phones))
    assert rebuilt is not None and np.array_equal(rebuilt, x[TARGET])


def test_instance_binding_makes_replayed_signatures_worthless():
    """The same server against memoryless clients whose statements are bound to their
    execution's keys: every replayed signature fails, and no holder reveals a share."""
    phones, _ = _phones(ledgers=False)
    rebuilt, inst = _attack(phones, _active_config(phones))
    assert rebuilt is None
    assert all(c.revealed == {} for c in inst.values())


def test_a_phone_refuses_a_round_id_it_has_joined(monkeypatch):
    """With the device's round memory the server gets no second execution at all
    (even with the binding switched off): nothing is revealed."""
    monkeypatch.setattr(signing, "instance_binding", lambda c_pk, s_pk: b"")
    phones, _ = _phones(ledgers=True)
    cfg = _active_config(phones)
    rebuilt, inst = _attack(phones, cfg)
    assert rebuilt is None and inst == {}
    assert all(RID in p.ledger and len(p.ledger) == 1 for p in phones.values())
    with pytest.raises(ReplayedRoundError, match="already took part"):
        phones[3].instance(cfg, 100).advertise_keys()


def test_engine_devices_remember_their_rounds():
    """The engine's SecAgg clients come with their device's ledger."""
    from fl.secure_sum import device_ledger

    phones, _ = _phones(ledgers=False)
    cfg = _active_config(phones)
    c = SecAggClient(0, cfg, signing_key=phones[0].sk, ledger=device_ledger(123456789))
    c.advertise_keys()
    again = SecAggClient(0, cfg, signing_key=phones[0].sk, ledger=device_ledger(123456789))
    with pytest.raises(ReplayedRoundError):
        again.advertise_keys()
    SecAggClient(0, cfg, signing_key=phones[0].sk, ledger=device_ledger(987654321)).advertise_keys()


# -- 2. active-mode pre-sums keep their authentication --------------------------------------------
def _drive_to_masked(cfg, keys, x):
    clients = [SecAggClient(i, cfg, DeterministicRandomSource(3, label=b"c%d" % i), signing_key=keys[i])
               for i in range(cfg.n)]
    server = SecAggServer(cfg)
    for c in clients:
        server.receive_advertise(c.advertise_keys(), origin={c.id})
    for i, msg in server.broadcast_keys().items():
        server.receive_share_keys(clients[i].share_keys(msg), origin={i})
    masked = {i: clients[i].masked_input(msg, x[i]) for i, msg in server.forward_shares().items()}
    return clients, server, masked


def _finish(server, clients):
    if server.cfg.malicious:
        for i, msg in server.consistency_requests().items():
            server.receive_consistency(clients[i].consistency(msg), origin={i})
    for i, msg in server.unmask_requests().items():
        server.receive_unmask(clients[i].unmask(msg), origin={i})
    return server.finalize()


def test_a_worker_hosting_one_device_keeps_it_in_an_active_round(modsum, same):
    """Worker A hosts device 0 alone, worker B the rest; both pre-sum as the engine's
    workers do.  Device 0 is counted and the sum is exact."""
    keys = {i: generate_signing_key(DeterministicRandomSource(1, label=b"k%d" % i)) for i in range(N)}
    cfg = make_config(N, M, mode="secagg", malicious=True, corrupt_fraction=0.0, round_id=RID,
                      verify_keys=[verify_key_bytes(keys[i]) for i in range(N)])
    x = np.random.default_rng(2).integers(0, 2**32, size=(N, M), dtype=np.uint64).astype(np.uint32)
    clients, server, masked = _drive_to_masked(cfg, keys, x)
    reg = cfg.registry()
    bind = {i: clients[i].binding for i in range(N)}
    alone = presum([masked[0]], registry=reg, bindings=bind)
    rest = presum([masked[i] for i in range(1, N)], registry=reg, bindings=bind)
    assert alone.signature and len(rest.parts) == N - 1 and all(p.signature for p in rest.parts)
    server.receive_masked_input(alone, origin={0})
    server.receive_masked_input(rest, origin=set(range(1, N)))
    assert same(_finish(server, clients), modsum(x, range(N)))


def test_a_pre_sum_with_a_forged_part_signature_is_refused():
    keys = {i: generate_signing_key(DeterministicRandomSource(1, label=b"k%d" % i)) for i in range(N)}
    cfg = make_config(N, M, mode="secagg", malicious=True, corrupt_fraction=0.0, round_id=RID,
                      verify_keys=[verify_key_bytes(keys[i]) for i in range(N)])
    x = np.zeros((N, M), np.uint32)
    clients, server, masked = _drive_to_masked(cfg, keys, x)
    good = presum([masked[1], masked[2]])
    forged = dataclasses.replace(good, parts=(good.parts[0], dataclasses.replace(good.parts[1], signature=bytes(64))))
    with pytest.raises(AuthenticationError, match="from 2"):
        server.receive_masked_input(forged, origin={1, 2})
    # a part that lies about its exclusions breaks the signature too
    lying = dataclasses.replace(good, parts=(dataclasses.replace(good.parts[0], excluded=(5,)), good.parts[1]))
    with pytest.raises(AuthenticationError, match="from 1"):
        server.receive_masked_input(lying, origin={1, 2})
    with pytest.raises(AuthenticationError, match="authenticated origin"):
        server.receive_masked_input(good)
    server.receive_masked_input(good, origin={1, 2})
    assert server.u3 == {1, 2}


# -- 3. one bad client is a dropout, not an abort -------------------------------------------------
@pytest.mark.parametrize("malicious", [False, True])
def test_garbage_ciphertexts_to_every_neighbour_exclude_only_their_sender(malicious, rng, rand_inputs, modsum,
                                                                          same):
    x = rand_inputs(rng, 14, 30)
    bad = 3

    def garbage(stage, direction, party, msg):
        if stage == "share_keys" and direction == "up" and party == bad:
            junk = np.random.default_rng(0)
            return dataclasses.replace(msg, ciphertexts={v: junk.bytes(len(ct)) for v, ct in msg.ciphertexts.items()})
        return msg

    r = run_protocol(x, mode="secagg+", malicious=malicious, seed=4, corrupt_fraction=0.0, interceptor=garbage,
                     **({} if malicious else {"k": 8, "security_bits": 5}))
    if malicious:  # its signature no longer covers the garbage: the server refuses its shares outright
        assert [e[1] for e in r.rejected] == [bad]
    else:  # every neighbour rejects its shares and reports it; it is treated as dropped
        assert r.rejected == [] and "rejected by" in r.ejected[bad]
    assert r.survivors == [i for i in range(14) if i != bad]
    assert same(r.sum, modsum(x, r.survivors)) and r.cheaters == []


def test_a_neighbour_that_lies_in_signed_garbage_is_excluded_alone(rng, rand_inputs, modsum, same):
    """Active mode, the bad client signs its garbage itself: its signature is valid,
    so the server forwards it, and every neighbour treats it as dropped."""
    x = rand_inputs(rng, 12, 20)
    bad = 5
    real = SecAggClient._signed

    def signed(self, msg):
        if self.id == bad and type(msg).__name__ == "ShareKeys":
            junk = np.random.default_rng(1)
            msg = dataclasses.replace(msg, ciphertexts={v: junk.bytes(len(ct)) for v, ct in msg.ciphertexts.items()})
        return real(self, msg)

    try:
        SecAggClient._signed = signed
        r = run_protocol(x, mode="secagg", malicious=True, seed=5, corrupt_fraction=0.0)
    finally:
        SecAggClient._signed = real
    assert r.rejected == [] and list(r.ejected) == [bad]
    assert r.survivors == [i for i in range(12) if i != bad]
    assert same(r.sum, modsum(x, r.survivors)) and r.cheaters == []


def test_a_copied_key_with_bit_255_flipped_excludes_only_the_copier(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 12, 20)
    seen = {}

    def copy_key(stage, direction, party, msg):
        if stage == "advertise_keys" and direction == "up":
            seen[party] = msg
            if party == 7:  # the same X25519 points as client 2's keys, other bytes
                flip = lambda pk: pk[:31] + bytes([pk[31] ^ 0x80])  # noqa: E731
                return dataclasses.replace(msg, c_pk=flip(seen[2].c_pk), s_pk=flip(seen[2].s_pk))
        return msg

    r = run_protocol(x, mode="secagg", seed=6, corrupt_fraction=0.0, interceptor=copy_key)
    assert [(e[0], e[1]) for e in r.rejected] == [("advertise_keys", 7)]
    assert "same X25519 point" in r.rejected[0][2]
    assert r.survivors == [i for i in range(12) if i != 7]
    assert same(r.sum, modsum(x, r.survivors))


def test_a_pre_sum_holding_an_excluded_client_leaves_as_dropouts(rng, rand_inputs, modsum, same):
    """When the excluded client's input arrived pre-summed with others', that pre-sum
    leaves the sum and its clients become dropouts (the double masking keeps them
    private); the rest is still summed exactly."""
    x = rand_inputs(rng, 12, 20)
    bad = 4

    def garbage(stage, direction, party, msg):
        if stage == "share_keys" and direction == "up" and party == bad:
            return dataclasses.replace(msg, ciphertexts={v: bytes(len(ct)) for v, ct in msg.ciphertexts.items()})
        return msg

    r = run_protocol(x, mode="secagg", seed=8, corrupt_fraction=0.0, presum_group_size=3, interceptor=garbage)
    group = {3, 4, 5}  # clients 3..5 are pre-summed together
    assert set(r.ejected) == group and "pre-summed" in r.ejected[5]
    assert r.survivors == [i for i in range(12) if i not in group]
    assert same(r.sum, modsum(x, r.survivors))


# -- 4. honest attribution ------------------------------------------------------------------------
def _wrong_share_to(dealer, holder, commit_to_wrong: bool, delta=12345):
    """A dealer that gives ``holder`` a wrong self-mask share (ciphertext made with the
    dealer's own channel key); it commits to the right share or to the wrong one."""
    real = SecAggClient._signed

    def signed(self, msg):
        if self.id == dealer and type(msg).__name__ == "ShareKeys":
            rid = self.cfg.round_id
            bs = (self._held_out_b[holder] + delta) % PRIME
            pt = (self.id.to_bytes(4, "little") + holder.to_bytes(4, "little") + rid
                  + self._held_out_s[holder].to_bytes(SHARE_BYTES, "little") + bs.to_bytes(SHARE_BYTES, "little"))
            ct = self._channels[holder].encrypt(pt, associated_data(rid, self.id, holder), bytes(12))
            com = commit_shares(rid, self.id, holder, self._held_out_s[holder],
                                bs if commit_to_wrong else self._held_out_b[holder])
            msg = dataclasses.replace(msg, ciphertexts={**msg.ciphertexts, holder: com + ct})
        return real(self, msg)
    return signed


@pytest.fixture
def dealt_shares(monkeypatch):
    """Record each dealer's shares per holder (the test plays the cheating dealer)."""
    import secagg.client as client_mod

    real = client_mod.share_many

    def recording(secrets_, t, xs, randbelow):
        out = real(secrets_, t, xs, randbelow)
        recording.last = {x - 1: (s, b) for x, s, b in zip(xs, out[0], out[1])}
        return out

    monkeypatch.setattr(client_mod, "share_many", recording)
    real_share_keys = SecAggClient.share_keys

    def share_keys(self, msg):
        self._held_out_s, self._held_out_b = {}, {}
        return real_share_keys(self, msg)

    def on_sign(self, msg):
        if type(msg).__name__ == "ShareKeys":
            self._held_out_s = {v: sb[0] for v, sb in recording.last.items()}
            self._held_out_b = {v: sb[1] for v, sb in recording.last.items()}
    return on_sign


def _run_with_dealer(monkeypatch, dealt_shares, x, dealer, holder, commit_to_wrong, **kw):
    real = SecAggClient._signed
    cheat = _wrong_share_to(dealer, holder, commit_to_wrong)

    def signed(self, msg):
        dealt_shares(self, msg)
        return cheat(self, msg) if self.id == dealer else real(self, msg)

    monkeypatch.setattr(SecAggClient, "_signed", signed)
    return run_protocol(x, mode="secagg", corrupt_fraction=0.0, **kw)


def test_a_wrong_share_to_an_honest_holder_ejects_the_dealer_not_the_holder(monkeypatch, dealt_shares, rng,
                                                                            rand_inputs, modsum, same):
    """The dealer commits to the right share but encrypts a wrong one: the holder's
    check fails on receipt, the dealer becomes a dropout, and nobody is blamed."""
    x = rand_inputs(rng, 10, 16)
    r = _run_with_dealer(monkeypatch, dealt_shares, x, dealer=4, holder=7, commit_to_wrong=False, seed=9)
    assert list(r.ejected) == [4] and "rejected by [7]" in r.ejected[4]
    assert 7 in r.survivors and r.cheaters == []
    assert same(r.sum, modsum(x, r.survivors))


def test_a_dealer_committed_to_a_wrong_share_is_named_not_its_holder(monkeypatch, dealt_shares, rng, rand_inputs,
                                                                    modsum, same):
    """The dealer commits to the wrong share it encrypts, so the holder accepts it.
    Berlekamp-Welch still recovers the dealer's secret from the other shares; the
    evidence (every revealed share matches the dealer's own commitment) names the
    dealer, and the honest holder is not in ``cheaters``."""
    x = rand_inputs(rng, 10, 16)
    # holder 2's share is among the first t the server interpolates, so the dealing is noticed
    r = _run_with_dealer(monkeypatch, dealt_shares, x, dealer=4, holder=2, commit_to_wrong=True, seed=9)
    assert r.cheaters == [4] and 2 not in r.evidence and "not on one polynomial" in r.evidence[4]
    assert "holders [2]" in r.evidence[4]
    assert r.survivors == list(range(10)) and same(r.sum, modsum(x, r.survivors))


def test_a_dealer_whose_commitment_does_not_match_its_shares_is_named_in_the_abort(rng, rand_inputs):
    x = rand_inputs(rng, 10, 16)

    def bad_commitment(stage, direction, party, msg):
        if stage == "share_keys" and direction == "up" and party == 4:
            return dataclasses.replace(msg, commitment=commit_self_mask(99, msg.round_id, 4) + msg.commitment[32:])
        return msg

    with pytest.raises(SecAggAbort, match=r"unmasking: client 4 dealt shares of its self-mask secret") as e:
        run_protocol(x, mode="secagg", seed=10, corrupt_fraction=0.0, interceptor=bad_commitment)
    assert "holder" not in str(e.value)


def test_a_holder_that_changes_a_revealed_share_is_named_with_its_evidence(rng, rand_inputs, modsum, same):
    """Holder 1 adds one to every self-mask share it reveals (its shares are among the
    first t the server uses, so the lie matters)."""
    x = rand_inputs(rng, 12, 16)

    def lie(stage, direction, party, msg):
        if stage == "unmasking" and direction == "up" and party == 1:
            return dataclasses.replace(msg, self_mask_shares={u: (y + 1) % PRIME
                                                              for u, y in msg.self_mask_shares.items()})
        return msg

    r = run_protocol(x, mode="secagg", malicious=True, seed=11, corrupt_fraction=0.0, interceptor=lie)
    # in active mode its signature no longer verifies: the response is refused, 1 named nowhere
    assert [e[1] for e in r.rejected] == [1] and r.cheaters == []
    assert same(r.sum, modsum(x, r.survivors))
    r = run_protocol(x, mode="secagg", seed=11, corrupt_fraction=0.0, interceptor=lie)
    assert r.cheaters == [1] and "fails the dealer's commitment" in r.evidence[1]
    assert same(r.sum, modsum(x, r.survivors))
