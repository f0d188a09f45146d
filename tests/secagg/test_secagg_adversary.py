"""Secure aggregation tried as an adversary would: a server that sends crafted
requests or split views, clients that forge ids, replay or advertise bad keys,
a network that relabels or tampers.  Each attack must end in either the exact
sum of the honest survivors or a named abort, and must never reveal a share
that lets the server unmask one client."""
import dataclasses

import numpy as np
import pytest

from secagg import (AuthenticationError, BadPublicKeyError, ClientCheckError, ConfigError, KeyRegistry,
                    ProtocolStateError, SecAggAbort,
                    SecAggClient, SecAggServer, make_config, run_protocol)
from secagg.graph import corrupt_tail, structural_floor
from secagg.keys import agree, load_public, mask_seed, private_key_from_bytes, self_mask_seed
from secagg.messages import (ConsistencyRequest, MaskedInput, UnmaskRequest, UnmaskResponse, decode,
                             survivors_digest)
from secagg.prg import MaskExpander, reduce_mod
from secagg.rand import DeterministicRandomSource
from secagg.shamir import PRIME, reconstruct, x_of
from secagg.signing import generate_signing_key, verify_key_bytes

# small test graphs (explicit k on a few clients) are checked at this security level, not 2^-40
SMALL_GRAPH_BITS = 5


def _errors(result, name):
    return [r for r in result.rejected if name in r[2]]


# -- a hand-driven round: the test code plays a deviating server ------------------------------------
class Round:
    """Clients driven to the unmasking stage by a server the test controls."""

    def __init__(self, n=10, m=16, malicious=False, k=None, threshold=None, mode="secagg+", seed=0):
        self.rand = {i: DeterministicRandomSource(seed, label=b"c%d" % i) for i in range(n)}
        sks = {i: generate_signing_key(DeterministicRandomSource(seed, label=b"id%d" % i)) for i in range(n)}
        vks = [verify_key_bytes(sks[i]) for i in range(n)] if malicious else None
        self.cfg = make_config(n, m, mode=mode, k=k, threshold=threshold, malicious=malicious, seed=seed,
                               corrupt_fraction=0.0, security_bits=SMALL_GRAPH_BITS if k else 40.0, round_id=b"R" * 16, verify_keys=vks)
        self.x = np.random.default_rng(seed).integers(0, 2**32, size=(n, m), dtype=np.uint64).astype(np.uint32)
        self.clients = [SecAggClient(i, self.cfg, self.rand[i], signing_key=sks[i] if malicious else None)
                        for i in range(n)]
        self.server = SecAggServer(self.cfg)
        for c in self.clients:
            self.server.receive_advertise(c.advertise_keys(), origin={c.id})
        for i, msg in self.server.broadcast_keys().items():
            self.server.receive_share_keys(self.clients[i].share_keys(msg), origin={i})
        self.masked = {}
        for i, msg in self.server.forward_shares().items():
            self.masked[i] = self.clients[i].masked_input(msg, self.x[i])
            self.server.receive_masked_input(self.masked[i], origin={i})

    def view(self, v):
        return sorted(self.cfg.neighbours[v])

    def ask(self, v, survivors, dropped, signatures=None):
        """Send a crafted unmask request; returns the response or the refusal."""
        req = UnmaskRequest(self.cfg.round_id, v, tuple(sorted(survivors)), tuple(sorted(dropped)), signatures or {})
        if self.clients[v].stage == "aborted":
            return ClientCheckError(f"client {v} already refused")
        try:
            return self.clients[v].unmask(req)
        except ClientCheckError as e:
            return e


def _recover_input(rnd: Round, target: int, responses) -> np.ndarray | None:
    """What a cheating server does with the shares: rebuild b_target and the keys
    of all of target's neighbours, strip target's masks. None if it cannot."""
    t, rid = rnd.cfg.threshold, rnd.cfg.round_id
    b_pts, s_pts = [], {}
    for v, resp in responses.items():
        if isinstance(resp, UnmaskResponse):
            if target in resp.self_mask_shares:
                b_pts.append((x_of(v), resp.self_mask_shares[target]))
            for w, y in resp.key_shares.items():
                s_pts.setdefault(w, []).append((x_of(v), y))
    nbrs = rnd.view(target)
    if len(b_pts) < t or any(len(s_pts.get(w, [])) < t for w in nbrs):
        return None
    y = rnd.masked[target].vector.copy()
    ex = MaskExpander(rnd.cfg.m, rnd.cfg.bits)
    ex.sub(y, self_mask_seed(reconstruct(b_pts, t), rid))
    u1 = rnd.server.u1
    for w in nbrs:
        sk = private_key_from_bytes(reconstruct(s_pts[w], t).to_bytes(32, "little"))
        seed = mask_seed(agree(sk, load_public(u1[target][1])), rid, w, target)
        (ex.sub if target < w else ex.add)(y, seed)
    return reduce_mod(y, rnd.cfg.bits)


@pytest.mark.parametrize("malicious", [False, True])
def test_server_cannot_unmask_a_client_with_few_survivor_requests(malicious):
    """A crafted-request attack: tell every client that only it and the target
    survived.  Today's client refuses every such request and reveals nothing
    (in active mode each client also signed only its own two-member set)."""
    rnd = Round(n=10, mode="secagg", malicious=malicious)
    target = 0
    responses = {}
    for v in range(1, 10):
        sigs = _signed_u3(rnd, {v, target}, [v]) if malicious else {}
        responses[v] = rnd.ask(v, {v, target}, set(rnd.view(v)) - {target}, sigs)
    assert all(isinstance(r, ClientCheckError) for r in responses.values())
    assert all(c.revealed == {} for c in rnd.clients)
    assert _recover_input(rnd, target, responses) is None


def test_the_attack_works_against_a_client_without_checks():
    """Sanity of the attack code: with the checks bypassed it recovers x_0 exactly
    (so the test above would fail on code that answers such requests)."""
    rnd = Round(n=10, mode="secagg")
    target, responses = 0, {}
    for v in range(1, 10):
        c = rnd.clients[v]
        surv, drop = {v, target}, set(rnd.view(v)) - {target}
        responses[v] = UnmaskResponse(rnd.cfg.round_id, v,
                                      {u: (c._own_b_share if u == v else c._held[u][1]) for u in surv},
                                      {u: c._held[u][0] for u in drop})
    assert np.array_equal(_recover_input(rnd, target, responses), rnd.x[target])


@pytest.mark.parametrize("case", ["too_few_survivors", "no_survivors", "unseen_survivor", "unseen_dropped",
                                  "overlap", "self_dropped", "not_a_partition", "self_missing"])
def test_each_crafted_unmask_request_is_refused_and_reveals_nothing(case):
    rnd = Round(n=12, mode="secagg+", k=8)
    v, t = 3, rnd.cfg.threshold
    view = rnd.view(v)
    stranger = next(u for u in range(12) if u not in view and u != v)
    surv, drop = {
        "too_few_survivors": ({v, *view[:t - 2]}, set(view[t - 2:])),
        "no_survivors": (set(), set(view)),
        "unseen_survivor": ({v, *view, stranger}, set()),
        "unseen_dropped": ({v, *view}, {stranger}),
        "overlap": ({v, *view}, {view[0]}),
        "self_dropped": ({*view}, {v}),
        "not_a_partition": ({v, *view[1:]}, set()),
        "self_missing": (set(view), set()),
    }[case]
    out = rnd.ask(v, surv, drop)
    assert isinstance(out, ClientCheckError), out
    assert rnd.clients[v].revealed == {} and rnd.clients[v].stage == "aborted"
    # the honest request is answered (the checks do not refuse the protocol itself)
    w = 5
    ok = rnd.ask(w, {w, *rnd.view(w)}, set())
    assert isinstance(ok, UnmaskResponse)


def _signed_u3(rnd: Round, u3: set, signers):
    sigs = {}
    for v in signers:
        try:
            out = rnd.clients[v].consistency(ConsistencyRequest(rnd.cfg.round_id, v, tuple(sorted(u3))))
        except ClientCheckError:
            continue  # refused to sign (the set breaks its checks)
        sigs[v] = out.signature
    return sigs


def test_split_view_fails_in_active_mode():
    """Active server: half of the target's holders are told it survived (b-share),
    the other half that it dropped (key share).  Each honest client signs only
    the set it saw and needs t signatures on that same set, so at most one side
    gets shares: the server never holds t shares of both secrets."""
    rnd = Round(n=14, mode="secagg", malicious=True)
    target, t = 0, rnd.cfg.threshold
    everyone = set(range(14))
    side_a, side_b = list(range(1, 8)), list(range(8, 14))
    sig_a = _signed_u3(rnd, everyone, [target] + side_a)
    sig_b = _signed_u3(rnd, everyone - {target}, side_b)
    b_shares, s_shares, answered = 0, 0, []
    for v in side_a:
        out = rnd.ask(v, everyone, set(), sig_a)
        if isinstance(out, UnmaskResponse):
            b_shares += target in out.self_mask_shares
            answered.append(v)
    for v in side_b:
        out = rnd.ask(v, everyone - {target}, {target}, sig_b)
        if isinstance(out, UnmaskResponse):
            s_shares += target in out.key_shares
            answered.append(v)
    assert not (b_shares >= t and s_shares >= t)
    assert s_shares == 0  # side B has fewer than t signers of its set
    # without active mode the same split succeeds: this is what the ConsistencyCheck adds
    plain = Round(n=14, mode="secagg", threshold=t)
    got_b = sum(isinstance(plain.ask(v, everyone, set()), UnmaskResponse) for v in side_a)
    got_s = sum(isinstance(plain.ask(v, everyone - {target}, {target}), UnmaskResponse) for v in side_b)
    assert got_b + 1 >= t - 1 and got_s == len(side_b)  # semi-honest clients cannot see the lie


def test_active_mode_refuses_unsigned_or_mismatched_consistency():
    rnd = Round(n=10, mode="secagg", malicious=True)
    v, everyone = 2, set(range(10))
    _signed_u3(rnd, everyone, [v])
    assert isinstance(rnd.ask(v, everyone, set(), {}), ClientCheckError)  # no signatures
    rnd2 = Round(n=10, mode="secagg", malicious=True)
    sigs = _signed_u3(rnd2, everyone, range(10))
    forged = {u: bytes(64) for u in sigs}
    assert isinstance(rnd2.ask(v, everyone, set(), forged), ClientCheckError)
    with pytest.raises(ProtocolStateError):  # a client that refused stays aborted
        rnd2.clients[v].unmask(UnmaskRequest(rnd2.cfg.round_id, v, tuple(range(10)), (), sigs))
    ok = rnd2.ask(3, everyone, set(), sigs)
    assert isinstance(ok, UnmaskResponse)
    # a request that contradicts the signed set is refused even with valid signatures
    rnd3 = Round(n=10, mode="secagg", malicious=True)
    sigs = _signed_u3(rnd3, everyone, range(10))
    assert isinstance(rnd3.ask(4, everyone - {7}, {7}, sigs), ClientCheckError)
    assert rnd3.clients[4].revealed == {}


def test_active_round_end_to_end_with_dropouts_at_every_stage(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 24, 40)
    drops = {"share_keys": [1], "masked_input": [4, 9], "consistency": [11], "unmasking": [13]}
    r = run_protocol(x, mode="secagg+", malicious=True, corrupt_fraction=0.0, seed=3, dropouts=drops)
    assert r.malicious and "consistency" in r.per_stage_seconds
    assert sorted(set(range(24)) - set(r.survivors)) == [1, 4, 9]  # 11 and 13 masked, so they are summed
    assert same(r.sum, modsum(x, r.survivors))


# -- thresholds ---------------------------------------------------------------------------------------
def test_threshold_rule_over_many_configurations():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(250):
        n = int(rng.integers(3, 400))
        mode = ["secagg+", "secagg"][int(rng.integers(0, 2))]
        k = None if rng.random() < 0.4 or mode == "secagg" else int(rng.integers(1, n)) // 2 * 2 or 2
        malicious = bool(rng.random() < 0.5)
        gamma = float(rng.choice([0.0, 0.01, 0.05, 0.1]))
        delta = float(rng.choice([0.0, 0.05, 0.1, 0.3]))
        sigma = float(rng.choice([20, 40]))
        vks = [bytes(32)] * n if malicious else None
        try:
            cfg = make_config(n, 4, mode=mode, k=k, malicious=malicious, corrupt_fraction=gamma, dropout_rate=delta,
                              security_bits=sigma, seed=1, verify_keys=vks)
        except ConfigError as e:
            assert "k=" in str(e) and ("2^-" in str(e) or "floor" in str(e))
            continue
        checked += 1
        kk, t = min(len(s) for s in cfg.neighbours), cfg.threshold
        assert cfg.malicious == malicious
        assert t >= 2, (n, k, t)  # never "share = secret" for n > 2
        assert t > kk / 2 and t >= structural_floor(kk, malicious)
        assert n * corrupt_tail(n, kk, gamma, t) <= 2.0 ** -sigma
        if malicious:
            assert 2 * t >= kk + 3
            assert n * corrupt_tail(n, kk + 1, gamma, 2 * t - kk - 2) <= 2.0 ** -sigma
    assert checked > 100


def test_explicit_k_that_cannot_be_made_safe_is_a_config_error():
    with pytest.raises(ConfigError, match=r"k=4.*2\^-40"):
        make_config(1000, 8, k=4, corrupt_fraction=0.05)
    with pytest.raises(ConfigError, match="floor"):
        make_config(100, 8, k=10, threshold=3, corrupt_fraction=0.0, dropout_rate=0.0)
    # the old rule gave t = 1 for such configurations
    cfg = make_config(50, 8, k=2, corrupt_fraction=0.0, dropout_rate=0.0)
    assert cfg.threshold == 2
    # malicious is honoured on the complete-graph fallback too
    n = 12
    cfg = make_config(n, 8, malicious=True, corrupt_fraction=0.0, verify_keys=[bytes(32)] * n)
    assert cfg.k == n - 1 and cfg.malicious and 2 * cfg.threshold >= cfg.k + 3


# -- messages bound to sender and round ---------------------------------------------------------------
def test_relabelled_masked_input_is_rejected(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 12, 30)

    def relabel(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up" and party == 3:
            return dataclasses.replace(msg, client_ids=(5,))
        return msg

    r = run_protocol(x, mode="secagg", seed=2, corrupt_fraction=0.0, interceptor=relabel)
    assert [e[1] for e in _errors(r, "AuthenticationError")] == [3]
    assert 3 not in r.survivors and same(r.sum, modsum(x, r.survivors))


def test_relabelled_or_replayed_messages_fail_signatures_in_active_mode():
    """With no transport identity at all (origin unknown), signatures alone bind
    every message to its sender and round."""
    rnd = Round(n=8, mode="secagg", malicious=True)
    srv = SecAggServer(rnd.cfg)
    srv.stage = "masked_input"
    srv.u1, srv.u2, srv._sent_to = rnd.server.u1, rnd.server.u2, rnd.server._sent_to
    relabelled = dataclasses.replace(rnd.masked[3], client_ids=(5,))
    with pytest.raises(AuthenticationError, match="bad signature"):
        srv.receive_masked_input(relabelled)
    other_round = dataclasses.replace(rnd.masked[3], round_id=b"S" * 16)
    srv2 = SecAggServer(dataclasses.replace(rnd.cfg, round_id=b"S" * 16))
    srv2.stage, srv2.u1, srv2.u2 = "masked_input", rnd.server.u1, rnd.server.u2
    with pytest.raises(AuthenticationError):
        srv2.receive_masked_input(other_round)
    unsigned = dataclasses.replace(rnd.masked[3], signature=b"")
    with pytest.raises(AuthenticationError):
        srv.receive_masked_input(unsigned)
    srv.receive_masked_input(rnd.masked[3])  # the genuine one is accepted
    assert srv.u3 == {3}


def test_replayed_masked_input_from_an_earlier_round(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 10, 20)
    old = {}

    def record(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up":
            old[party] = msg
        return msg

    run_protocol(x, mode="secagg", seed=3, corrupt_fraction=0.0, interceptor=record, round_id=b"A" * 16,
                 malicious=True, deterministic=True)

    def replay(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up" and party == 4:
            return dataclasses.replace(old[4], round_id=msg.round_id)  # on client 4's own link
        if stage == "masked_input" and direction == "up" and party == 6:
            return [msg, dataclasses.replace(old[2], round_id=msg.round_id)]  # client 2's old vector via 6
        return msg

    r = run_protocol(x, mode="secagg", seed=3, corrupt_fraction=0.0, interceptor=replay, round_id=b"B" * 16,
                     malicious=True, deterministic=True)
    assert sorted(e[1] for e in _errors(r, "AuthenticationError")) == [4, 6]
    assert 4 not in r.survivors and 2 in r.survivors
    assert same(r.sum, modsum(x, r.survivors))


def test_relabelled_unmask_response_with_exactly_t(rng, rand_inputs, modsum, same):
    """Exactly t clients answer; one response is relabelled as another client's.
    It is rejected (origin), and the round aborts by name instead of summing
    with shares at the wrong x-coordinates."""
    n, t = 10, 6
    x = rand_inputs(rng, n, 20)
    drop_at_unmask = list(range(t, n))

    def relabel(stage, direction, party, msg):
        if stage == "unmasking" and direction == "up" and party == 0:
            return dataclasses.replace(msg, sender=drop_at_unmask[0])
        return msg

    with pytest.raises(SecAggAbort, match="only 5 clients answered|fewer than t"):
        run_protocol(x, mode="secagg", threshold=t, seed=4, corrupt_fraction=0.0,
                     dropouts={"unmasking": drop_at_unmask}, interceptor=relabel)


def test_tampered_share_with_exactly_t_is_a_named_abort(rng, rand_inputs):
    """A share value changed in flight (same link, so origin checks pass): it fails
    the dealer's commitment to that holder's share, so the holder is named (the
    revealed share differs from the one it accepted) and, with exactly t shares,
    the round aborts by name."""
    n, t = 10, 6
    x = rand_inputs(rng, n, 20)

    def tamper(stage, direction, party, msg):
        if stage == "unmasking" and direction == "up" and party == 1:
            shares = dict(msg.self_mask_shares)
            shares[2] = (shares[2] + 1) % PRIME
            return dataclasses.replace(msg, self_mask_shares=shares)
        return msg

    with pytest.raises(SecAggAbort, match=r"only 5 valid shares of client 2's self-mask secret.*holders \[1\]"):
        run_protocol(x, mode="secagg", threshold=t, seed=5, corrupt_fraction=0.0,
                     dropouts={"unmasking": list(range(t, n))}, interceptor=tamper)


def test_wrong_shares_are_found_and_excluded_when_more_than_t_arrive(rng, rand_inputs, modsum, same):
    n = 14
    x = rand_inputs(rng, n, 20)

    def cheat(stage, direction, party, msg):
        if stage == "unmasking" and direction == "up" and party in (1, 2):
            shares = {u: (y + 12345) % PRIME for u, y in msg.self_mask_shares.items()}
            keys = {u: (y + 1) % PRIME for u, y in msg.key_shares.items()}
            return dataclasses.replace(msg, self_mask_shares=shares, key_shares=keys)
        return msg

    r = run_protocol(x, mode="secagg", threshold=8, seed=6, corrupt_fraction=0.0,
                     dropouts={"masked_input": [9]}, interceptor=cheat)
    assert same(r.sum, modsum(x, r.survivors))
    assert r.cheaters == [1, 2]


def test_low_order_public_key_excludes_only_its_sender(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 12, 20)
    low_order = [bytes(32), (1).to_bytes(32, "little"),
                 bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")]

    def bad_key(stage, direction, party, msg):
        if stage == "advertise_keys" and direction == "up" and party in (3, 7, 8):
            return dataclasses.replace(msg, c_pk=low_order[(3, 7, 8).index(party)])
        return msg

    r = run_protocol(x, mode="secagg+", k=8, seed=7, corrupt_fraction=0.0, security_bits=SMALL_GRAPH_BITS, interceptor=bad_key)
    assert sorted(e[1] for e in _errors(r, "BadPublicKeyError")) == [3, 7, 8]
    assert r.survivors == [i for i in range(12) if i not in (3, 7, 8)]
    assert same(r.sum, modsum(x, r.survivors))


def test_wire_roundtrip_of_the_new_messages():
    rnd = Round(n=8, mode="secagg", malicious=True)
    req = ConsistencyRequest(rnd.cfg.round_id, 2, tuple(range(8)))
    assert decode(req.encode()) == req
    sig = rnd.clients[2].consistency(req)
    back = decode(sig.encode())
    assert back.signature == sig.signature and back.survivors_digest == survivors_digest(range(8))
    m = rnd.masked[1]
    back = decode(m.encode())
    assert back.signature == m.signature and np.array_equal(back.vector, m.vector)
    rnd.cfg.registry().verify_message(back, binding=rnd.clients[1].binding)


def test_registry_refuses_to_rebind_an_identity():
    reg = KeyRegistry({1: b"\x01" * 32})
    reg.register(1, b"\x01" * 32)
    with pytest.raises(AuthenticationError):
        reg.register(1, b"\x02" * 32)
    with pytest.raises(AuthenticationError):
        reg.raw(9)


def test_explicit_k_meets_the_graph_privacy_bound_of_automatic_k():
    """Property: whatever (n, k, t, rates) a caller passes, a config that is made meets
    the same graph-privacy bound as the automatic choice, and one that is refused says
    which bound (an explicit k is no way around the rule)."""
    from secagg.graph import graph_violation

    rng = np.random.default_rng(11)
    made = refused_graph = 0
    for _ in range(400):
        n = int(rng.integers(4, 3000))
        k = int(rng.integers(1, min(n - 1, 200))) // 2 * 2 or 2
        delta = float(rng.choice([0.0, 0.05, 0.1, 0.2]))
        gamma = float(rng.choice([0.0, 0.02, 0.05]))
        sigma = float(rng.choice([10, 20, 40]))
        threshold = None if rng.random() < 0.5 else int(rng.integers(1, k + 2))
        try:
            cfg = make_config(n, 4, k=k, threshold=threshold, dropout_rate=delta, corrupt_fraction=gamma,
                              security_bits=sigma, seed=1)
        except ConfigError as e:
            refused_graph += "graph privacy" in str(e)
            assert f"k={k}" in str(e) and ("2^-" in str(e) or "floor" in str(e))
            continue
        made += 1
        kk = min(len(s) for s in cfg.neighbours)
        assert kk >= n - 1 or n * (delta + gamma) ** (kk // 2) <= 2.0 ** -sigma
        assert graph_violation(n, kk, delta, gamma, sigma) is None
    assert made > 50 and refused_graph > 25
    # 10 % dropout and a k that choose_k_t would refuse
    with pytest.raises(ConfigError, match="graph privacy for k=6"):
        make_config(1000, 8, k=6, dropout_rate=0.1, corrupt_fraction=0.0)
