"""Adversarial messages: tampering, replay, misrouting, duplicates, unknown ids,
malformed messages, never revealing both shares, uniformity of masked vectors."""
import dataclasses

import numpy as np
import pytest
from scipy import stats

from secagg import (AuthenticationError, ClientCheckError, DecryptionError, DuplicateClientError, MalformedMessageError, ProtocolStateError,
                    SecAggClient, SecAggServer, UnknownClientError, decode, make_config, presum, run_protocol)
from secagg.keys import Channel, associated_data
from secagg.messages import MaskedPart, AdvertiseKeys, ForwardedShares, MaskedInput, UnmaskRequest, UnmaskResponse
from secagg.rand import DeterministicRandomSource

# small test graphs (explicit k on a few clients) are checked at this security level, not 2^-40
SMALL_GRAPH_BITS = 5


def _errors(result, cls):
    return [r for r in result.rejected if cls.__name__ in r[2]]


def test_tampered_ciphertext_rejected_sum_intact(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 14, 50)
    victim, sender = 3, 7

    def tamper(stage, direction, party, msg):
        if stage == "masked_input" and direction == "down" and party == victim:
            cts = dict(msg.ciphertexts)
            ct = bytearray(cts[sender])
            ct[20] ^= 0x01
            cts[sender] = bytes(ct)
            return dataclasses.replace(msg, ciphertexts=cts)
        return msg

    r = run_protocol(x, mode="secagg", seed=1, interceptor=tamper)
    # the receiver treats the sender as dropped (Bonawitz et al.) instead of aborting itself
    assert r.rejected == [] and victim in r.survivors
    assert sender not in r.survivors and "rejected by [3]" in r.ejected[sender]
    assert same(r.sum, modsum(x, r.survivors))


def test_misrouted_ciphertext_rejected(rng, rand_inputs, modsum, same):
    """A ciphertext from u to w forwarded to v (as if addressed to v) fails AES-GCM."""
    x = rand_inputs(rng, 10, 20)
    captured = {}

    def route(stage, direction, party, msg):
        if stage == "masked_input" and direction == "down":
            captured[party] = msg
            if party == 5:  # give client 5 the ciphertext that client 1 sent to client 4
                other = captured[4].ciphertexts[1]
                return dataclasses.replace(msg, ciphertexts={**msg.ciphertexts, 1: other})
        return msg

    r = run_protocol(x, mode="secagg", seed=2, interceptor=route)
    assert 5 in r.survivors and 1 not in r.survivors and "rejected by [5]" in r.ejected[1]
    assert same(r.sum, modsum(x, r.survivors))


def test_replayed_ciphertext_from_other_round_rejected(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 10, 20)
    old = {}

    def record(stage, direction, party, msg):
        if stage == "masked_input" and direction == "down":
            old[party] = msg.ciphertexts
        return msg

    run_protocol(x, mode="secagg", seed=3, interceptor=record, deterministic=True, round_id=b"A" * 16)

    def replay(stage, direction, party, msg):
        if stage == "masked_input" and direction == "down" and party == 2:
            return dataclasses.replace(msg, ciphertexts={**msg.ciphertexts, 6: old[2][6]})
        return msg

    r = run_protocol(x, mode="secagg", seed=3, interceptor=replay, deterministic=True, round_id=b"B" * 16)
    assert 2 in r.survivors and 6 not in r.survivors and "rejected by [2]" in r.ejected[6]
    assert same(r.sum, modsum(x, r.survivors))


def test_associated_data_binds_round_sender_receiver():
    ch = Channel(bytes(range(32)))
    blob = ch.encrypt(b"share", associated_data(b"r" * 16, 1, 2), b"n" * 12)
    assert ch.decrypt(blob, associated_data(b"r" * 16, 1, 2)) == b"share"
    for ad in (associated_data(b"s" * 16, 1, 2), associated_data(b"r" * 16, 2, 1),
               associated_data(b"r" * 16, 1, 3)):
        with pytest.raises(DecryptionError):
            ch.decrypt(blob, ad)
    with pytest.raises(DecryptionError):
        ch.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), associated_data(b"r" * 16, 1, 2))


def test_duplicate_messages_rejected_and_not_double_counted(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 10, 30)

    def dup(stage, direction, party, msg):
        if direction == "up" and party == 4:
            return [msg, msg]  # replay every message of client 4 once
        return msg

    r = run_protocol(x, mode="secagg", seed=4, interceptor=dup)
    dups = _errors(r, DuplicateClientError)
    assert sorted(e[0] for e in dups) == ["advertise_keys", "masked_input", "share_keys", "unmasking"]
    assert r.survivors == list(range(10))
    assert same(r.sum, modsum(x, range(10)))


def test_unknown_client_ids_rejected(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 10, 30)

    def inject(stage, direction, party, msg):
        if stage == "advertise_keys" and direction == "up" and party == 0:
            return [msg, AdvertiseKeys(msg.round_id, 99, b"\x09" * 32, b"\x0a" * 32)]
        if stage == "masked_input" and direction == "up" and party == 1:
            fake = MaskedInput(msg.round_id, (42,), np.zeros_like(msg.vector), msg.bits)
            return [fake, msg]
        return msg

    r = run_protocol(x, mode="secagg", seed=5, interceptor=inject)
    # injected on another client's authenticated link: the forged ids are caught first
    assert [e[0] for e in _errors(r, AuthenticationError)] == ["advertise_keys", "masked_input"]
    assert same(r.sum, modsum(x, range(10)))


def test_malformed_wire_messages():
    adv = AdvertiseKeys(b"r" * 16, 3, b"\x01" * 32, b"\x02" * 32)
    data = adv.encode()
    assert decode(data) == adv
    for bad in (data[:-1], data + b"\x00", b"XXXX" + data[4:], data[:4] + b"\x63" + data[5:], b"", b"FSA1"):
        with pytest.raises(MalformedMessageError):
            decode(bad)
    with pytest.raises(MalformedMessageError):
        decode("not bytes")
    parts = tuple(MaskedPart(i, (), bytes(32)) for i in (1, 2))
    mi = MaskedInput(b"r" * 16, (1, 2), np.arange(5, dtype=np.uint32), 32, parts=parts)
    enc = mi.encode()
    back = decode(enc)
    assert back.client_ids == (1, 2) and np.array_equal(back.vector, mi.vector)
    with pytest.raises(MalformedMessageError):  # count field claims more elements than present
        decode(enc[:-4])
    with pytest.raises(DuplicateClientError):
        MaskedInput(b"r" * 16, (1, 1), np.arange(5, dtype=np.uint32), 32, parts=parts).validate()
    with pytest.raises(MalformedMessageError, match="one part per covered client"):
        MaskedInput(b"r" * 16, (1, 2), np.arange(5, dtype=np.uint32), 32).validate()
    with pytest.raises(MalformedMessageError, match="cannot exclude itself"):
        MaskedInput(b"r" * 16, (1,), np.arange(5, dtype=np.uint32), 32, excluded=(1,)).validate()
    with pytest.raises(MalformedMessageError):  # entry >= 2^bits
        MaskedInput(b"r" * 16, (1,), np.array([256], dtype=np.uint32), 8).validate()
    with pytest.raises(MalformedMessageError):
        MaskedInput(b"r" * 16, (1,), np.zeros(3, dtype=np.float64), 32).validate()
    with pytest.raises(MalformedMessageError):
        UnmaskResponse(b"r" * 16, 1, {2: 5}, {2: 6}).validate()
    with pytest.raises(MalformedMessageError):
        AdvertiseKeys(b"r" * 16, 3, b"\x01" * 31, b"\x02" * 32).validate()


def test_malformed_messages_in_a_round(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 10, 30)

    def mangle(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up" and party == 6:
            return dataclasses.replace(msg, vector=msg.vector[:-1])  # wrong length
        if stage == "share_keys" and direction == "up" and party == 8:
            cts = dict(msg.ciphertexts)
            cts.pop(next(iter(cts)))  # does not address all neighbours
            return dataclasses.replace(msg, ciphertexts=cts)
        return msg

    r = run_protocol(x, mode="secagg", seed=6, interceptor=mangle)
    bad = _errors(r, MalformedMessageError)
    assert sorted((e[0], e[1]) for e in bad) == [("masked_input", 6), ("share_keys", 8)]
    assert 6 not in r.survivors and 8 not in r.survivors
    assert same(r.sum, modsum(x, r.survivors))


def test_never_both_shares_revealed_in_rounds(rng, rand_inputs, modsum, same):
    x = rand_inputs(rng, 20, 10)
    responses = []

    def spy(stage, direction, party, msg):
        if stage == "unmasking" and direction == "up":
            responses.append(msg)
        return msg

    drop = [2, 9, 13]
    r = run_protocol(x, mode="secagg+", k=8, threshold=5, security_bits=SMALL_GRAPH_BITS, seed=7, dropouts={"masked_input": drop}, interceptor=spy)
    assert same(r.sum, modsum(x, r.survivors))
    kinds = {}
    for resp in responses:
        assert not (resp.self_mask_shares.keys() & resp.key_shares.keys())
        for u in resp.self_mask_shares:
            kinds.setdefault(u, set()).add("b")
        for u in resp.key_shares:
            kinds.setdefault(u, set()).add("s")
    assert all(len(v) == 1 for v in kinds.values())
    assert {u for u, v in kinds.items() if v == {"s"}} == set(drop)


def _drive_to_unmask(n=6, m=8, t=3):
    cfg = make_config(n, m, mode="secagg", threshold=t, round_id=b"q" * 16)
    srv = SecAggServer(cfg)
    cl = [SecAggClient(i, cfg, DeterministicRandomSource(i)) for i in range(n)]
    for c in cl:
        srv.receive_advertise(c.advertise_keys())
    for i, msg in srv.broadcast_keys().items():
        srv.receive_share_keys(cl[i].share_keys(msg))
    fw = srv.forward_shares()
    return cfg, srv, cl, fw


def test_client_refuses_to_reveal_both_shares():
    cfg, srv, cl, fw = _drive_to_unmask()
    masked = {i: cl[i].masked_input(fw[i], np.zeros(cfg.m, np.uint32)) for i in range(6)}
    c = cl[0]
    with pytest.raises(ClientCheckError, match="both"):
        c.unmask(UnmaskRequest(cfg.round_id, 0, (0, 1, 2, 3), (3, 4, 5)))
    assert c.revealed == {} and c.stage == "aborted"
    # a fresh client answers once, and a second request (e.g. claiming 3 dropped) is refused
    c1 = cl[1]
    resp = c1.unmask(UnmaskRequest(cfg.round_id, 1, (0, 1, 2, 3), (4, 5)))
    assert set(resp.self_mask_shares) == {0, 1, 2, 3} and set(resp.key_shares) == {4, 5}
    with pytest.raises(ProtocolStateError):
        c1.unmask(UnmaskRequest(cfg.round_id, 1, (0, 1, 2), (3, 4, 5)))
    assert c1.revealed[3] == "b"
    with pytest.raises(ClientCheckError, match="dropped"):  # server claims the client itself dropped
        cl[2].unmask(UnmaskRequest(cfg.round_id, 2, (0, 1, 3), (2, 4, 5)))
    with pytest.raises(ClientCheckError, match="77"):
        cl[3].unmask(UnmaskRequest(cfg.round_id, 3, (0, 1, 2, 3, 77), (4, 5)))
    assert all(cl[i].revealed == {} for i in (2, 3))
    assert masked  # all produced


def test_state_machine_order_and_server_checks():
    cfg, srv, cl, fw = _drive_to_unmask()
    with pytest.raises(ProtocolStateError):
        cl[0].advertise_keys()  # already done
    with pytest.raises(ProtocolStateError):
        srv.broadcast_keys()  # stage already closed
    with pytest.raises(UnknownClientError):
        cl[0].masked_input(ForwardedShares(cfg.round_id, 1, fw[1].ciphertexts), np.zeros(cfg.m, np.uint32))
    with pytest.raises(UnknownClientError):
        SecAggClient(cfg.n, cfg)


def test_worker_presum_accepted_by_server():
    """A worker pre-sums the masked vectors of several clients; the server
    accepts the pre-sum with its id list, rejects overlaps, and the total is exact."""
    n, m = 8, 33
    x = np.random.default_rng(5).integers(0, 2**32, size=(n, m), dtype=np.uint64).astype(np.uint32)
    cfg, srv, cl, fw = _drive_to_unmask(n, m, 4)
    masked = [cl[i].masked_input(fw[i], x[i]) for i in range(n - 1)]  # client 7 drops
    w1, w2 = presum(masked[:4]), presum(masked[4:])
    assert w1.client_ids == (0, 1, 2, 3)
    with pytest.raises(DuplicateClientError):
        presum([masked[0], masked[0]])
    srv.receive_masked_input(w1)
    with pytest.raises(DuplicateClientError):
        srv.receive_masked_input(presum([masked[3], masked[4]]))  # overlaps w1
    srv.receive_masked_input(w2)
    for i, req in srv.unmask_requests().items():
        srv.receive_unmask(cl[i].unmask(req))
    total = srv.finalize()
    want = (x[:n - 1].astype(np.uint64).sum(axis=0) % 2**32).astype(np.uint32)
    assert np.array_equal(total, want)


def test_single_masked_vector_is_uniform():
    """Chi-square on the byte histogram of one client's masked vector (input all
    zeros plus a ramp): indistinguishable from uniform; the raw input is not."""
    n, m = 6, 1 << 15
    x = np.zeros((n, m), dtype=np.uint32)
    x[:, :] = np.arange(m, dtype=np.uint32) % 7  # highly non-uniform input
    seen = {}

    def grab(stage, direction, party, msg):
        if stage == "masked_input" and direction == "up":
            seen[party] = msg.vector.copy()
        return msg

    run_protocol(x, mode="secagg", seed=2024, deterministic=True, interceptor=grab, round_id=b"u" * 16)
    for party in (0, 3):
        counts = np.bincount(np.frombuffer(seen[party].tobytes(), dtype=np.uint8), minlength=256)
        p = stats.chisquare(counts).pvalue
        assert p > 1e-4, p
        # also uniform over 64 buckets of the full 32-bit word
        buckets = np.bincount((seen[party] >> 26).astype(np.int64), minlength=64)
        assert stats.chisquare(buckets).pvalue > 1e-4
    raw = np.bincount(np.frombuffer(x[0].tobytes(), dtype=np.uint8), minlength=256)
    assert stats.chisquare(raw).pvalue < 1e-10  # the test can detect non-uniformity
