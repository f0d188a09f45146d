"""TrieHH: privacy parameters (Corollary 1), trie growth, end marker, threshold, secure votes."""
import math

import numpy as np
import pytest

from analytics.secure_histogram import SecAggSettings
from analytics.triehh import (END, Trie, TrieHHError, TrieHHParams, VocabVoter, delta_for_theta, device_vote,
                              epsilon_for, gamma_for, run_triehh, theta_for, triehh_params)


def test_paper_numbers_eps4_L10():
    # the authors' setting: max word length L=10 rounds, delta=2.3e-12 -> theta=15, gamma=2.2% at eps=4
    p = triehh_params(4.0, 2.3e-12, max_word_len=9)
    assert p.rounds == 10 and p.theta == 15
    assert p.gamma == pytest.approx(0.02198, abs=5e-5)
    assert p.epsilon == pytest.approx(4.0, rel=1e-9)
    assert p.delta <= 2.3e-12 < delta_for_theta(14)


def test_theta_gamma_formulas():
    for eps in (0.5, 1, 2, 4, 8, 30):
        for L in (5, 11):
            th = theta_for(eps, 1e-9, L)
            assert math.log((th - 3) / (th - 2)) + math.lgamma(th + 1) >= math.log(1e9)
            assert th >= math.exp(eps / L) - 1
            g = gamma_for(eps, th, L)
            assert epsilon_for(th, g, L) == pytest.approx(eps, rel=1e-9)
    # larger epsilon -> larger sampling rate; larger L -> smaller per-round budget
    assert gamma_for(8, 15, 11) > gamma_for(4, 15, 11) > gamma_for(1, 15, 11)
    assert gamma_for(4, 15, 11) < gamma_for(4, 15, 10)
    # with max_word_len=10 the end marker makes L=11 rounds
    assert triehh_params(4.0, 2.3e-12, 10).gamma == pytest.approx(gamma_for(4.0, 15, 11))


@pytest.mark.parametrize("eps", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_epsilon(eps):
    with pytest.raises(TrieHHError, match="epsilon"):
        triehh_params(eps, 1e-9, 10)


def test_impossible_theta_gamma():
    with pytest.raises(TrieHHError, match="impossible"):
        epsilon_for(15, 0.07, 10)  # theta*gamma >= 1
    with pytest.raises(TrieHHError, match="impossible"):
        triehh_params(4.0, 2.3e-12, 10, theta=15, gamma=0.2)
    with pytest.raises(TrieHHError, match="impossible"):
        triehh_params(4.0, 2.3e-12, 10, theta=8)  # too small for delta
    with pytest.raises(TrieHHError, match="epsilon="):
        triehh_params(1.0, 2.3e-12, 10, theta=15, gamma=0.02)  # gives eps > 1
    p = triehh_params(4.0, 2.3e-12, 10, theta=20, gamma=0.01)
    assert p.epsilon < 4.0 and p.theta == 20


def test_trie_growth_threshold_and_end_marker():
    t = Trie()
    c0 = t.candidates(0)
    assert len(c0) == 26 and END not in c0
    counts = np.zeros(26, int)
    counts[c0.index("c")] = 30
    counts[c0.index("d")] = 29
    assert t.grow(0, counts, theta=30) == ["c"]  # >= theta kept, below dropped
    c1 = t.candidates(1)
    assert len(c1) == 27 and c1[-1] == "c" + END
    v = np.zeros(27, int)
    v[c1.index("ca")] = 40
    v[c1.index("c$")] = 35
    assert sorted(t.grow(1, v, 30)) == ["c$", "ca"]
    # closed prefixes are not extended
    assert t.open_prefixes(2) == ["ca"] and all(not c.startswith("c$") for c in t.candidates(2))
    assert t.words() == ["c"] and "ca" in t and "d" not in t
    with pytest.raises(ValueError, match="candidates"):
        t.grow(2, np.zeros(3), 30)


def test_device_vote_reference():
    t = Trie()
    c0 = t.candidates(0)
    counts = np.zeros(26, int)
    counts[c0.index("b")] = 50
    t.grow(0, counts, 10)
    # only items whose depth-1 prefix is in the trie are eligible
    assert device_vote(["apple", "bison"], t, 1, 0.0) == "bi"
    assert device_vote(["apple", "axe"], t, 1, 0.5) is None
    assert device_vote(["b"], t, 1, 0.3) == "b" + END
    # u picks uniformly among eligible items
    got = {device_vote(["bat", "bee", "bog"], t, 1, u) for u in (0.0, 0.4, 0.9)}
    assert got == {"ba", "be", "bo"}


def test_vectorised_voter_matches_reference():
    rng = np.random.default_rng(3)
    vocab = ["cat", "car", "cart", "dog", "do", "door", "zebra", "ca", "x1y", "averyveryverylongword"]
    voter = VocabVoter(vocab, max_word_len=8)
    t = Trie()
    for depth, theta in ((0, 1), (1, 1), (2, 1)):
        cands = t.candidates(depth)
        kept = rng.random(len(cands)) < 0.6
        # keep every real prefix so the trie is rich
        real = {(w + END)[:depth + 1] for w in vocab}
        counts = np.array([5 if (c in real and k) or c in ("c", "ca", "d", "do") else 0
                           for c, k in zip(cands, kept)])
        items = rng.integers(-1, len(vocab), size=(200, 3))
        u = rng.random(200)
        wc = voter.word_candidates(t, depth)
        fast = voter.votes(items, wc, u)
        for i in range(200):
            words = [vocab[j] for j in items[i] if j >= 0 and voter.valid[j]]
            ref = device_vote(words, t, depth, u[i])
            assert (cands[fast[i]] if fast[i] >= 0 else None) == ref
        t.grow(depth, counts, theta)


def _toy(n_cat=60, n_car=40, n_dog=20, n_ca=30):
    vocab = ["cat", "car", "dog", "ca"]
    items = np.concatenate([np.full(n_cat, 0), np.full(n_car, 1), np.full(n_dog, 2), np.full(n_ca, 3)])[:, None]
    return vocab, (lambda ids: items[ids]), (lambda depth, gamma: np.arange(len(items)))


def test_run_triehh_plain_and_secure_agree():
    vocab, items, sample = _toy()
    params = TrieHHParams(theta=25, gamma=1.0, rounds=5, epsilon=float("inf"), delta=0.0)
    plain = run_triehh(vocab, items, sample, params, seed=1, secagg=None)
    # 'dog' (20 devices) stays below theta; 'ca' is closed by the end marker in round 3
    assert set(plain.words) == {"cat", "car", "ca"}
    assert plain.votes == {"cat": 60, "car": 40, "ca": 30}
    assert plain.words[0] == "cat"
    secure = run_triehh(vocab, items, sample, params, seed=1,
                        secagg=SecAggSettings(group_size=60, dropout_rate=0.05, corrupt_fraction=0.02))
    assert secure.words == plain.words and secure.votes == plain.votes
    assert [r["groups"] for r in secure.per_round] == [3] * secure.rounds_run
    assert secure.rounds_run == 4  # "cat$"/"car$" close in round 4; nothing left open


def test_run_triehh_sampling_is_deterministic():
    vocab, items, _ = _toy()
    params = TrieHHParams(theta=5, gamma=0.5, rounds=5, epsilon=1.0, delta=0.0)

    def sample(depth, gamma):
        return np.flatnonzero(np.random.default_rng(depth).random(150) < gamma)

    a = run_triehh(vocab, items, sample, params, seed=2, secagg=None)
    b = run_triehh(vocab, items, sample, params, seed=2, secagg=None)
    assert a.words == b.words and a.votes == b.votes
