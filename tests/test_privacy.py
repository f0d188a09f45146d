"""The one privacy accountant (fl/privacy) against values computed independently."""
import math
from statistics import NormalDist

import numpy as np
import pytest

from fl.privacy import Ledger, NoAccountantError, Sampling, epsilon_of_events, gaussian_epsilon

PHI = NormalDist().cdf


def _exact_gaussian_delta(eps, z):
    """Balle & Wang 2018, Theorem 8: the Gaussian mechanism's exact delta(eps) (sensitivity 1)."""
    return PHI(-eps * z + 1 / (2 * z)) - math.exp(eps) * PHI(-eps * z - 1 / (2 * z))


def _exact_gaussian_eps(z, delta):
    lo, hi = 0.0, 100.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _exact_gaussian_delta(mid, z) > delta else (lo, mid)
    return hi


def _rdp_subsampled_gaussian_eps(q, z, steps, delta, orders=range(2, 257)):
    """Mironov, Talwar & Zhang 2019 (integer orders): A_a = sum_k C(a,k) (1-q)^(a-k) q^k
    exp((k^2 - k) / (2 z^2)), RDP(a) = steps * log(A_a) / (a - 1), then the classic
    conversion eps = min_a RDP(a) + log(1/delta) / (a - 1): an upper bound on the true eps."""
    best = math.inf
    for a in orders:
        logs = [math.lgamma(a + 1) - math.lgamma(k + 1) - math.lgamma(a - k + 1)
                + (a - k) * math.log1p(-q) + k * math.log(q) + (k * k - k) / (2 * z * z) for k in range(a + 1)]
        m = max(logs)
        log_a = m + math.log(sum(math.exp(v - m) for v in logs))
        best = min(best, steps * log_a / (a - 1) + math.log(1 / delta) / (a - 1))
    return best


@pytest.mark.parametrize("z,delta", [(1.0, 1e-5), (2.0, 1e-6), (0.7, 1e-3)])
def test_single_gaussian_matches_the_analytic_gaussian_mechanism(z, delta):
    exact = _exact_gaussian_eps(z, delta)
    assert gaussian_epsilon(z, delta, accountant="pld") == pytest.approx(exact, rel=0.01)
    rdp = gaussian_epsilon(z, delta)
    assert exact <= rdp <= 1.35 * exact  # RDP is an upper bound, and not a loose one


def test_abadi_et_al_dp_sgd_example():
    """Abadi et al. 2016 (sec. 5): q = 0.01, sigma = 4, 10,000 steps, delta = 1e-5 -> eps 1.26 with
    their moments accountant. Tighter conversions give less, never more; PLD is tightest."""
    s = Sampling("poisson", 0.01)
    rdp = gaussian_epsilon(4.0, 1e-5, rounds=10_000, sampling=s)
    pld = gaussian_epsilon(4.0, 1e-5, rounds=10_000, sampling=s, accountant="pld")
    independent = _rdp_subsampled_gaussian_eps(0.01, 4.0, 10_000, 1e-5)
    assert pld < rdp <= independent <= 1.26
    assert independent == pytest.approx(rdp, rel=0.25)


def test_fixed_size_sampling_without_amplification_is_the_plain_gaussian_under_replace_one():
    whole = gaussian_epsilon(1.0, 1e-6, sampling=Sampling("fixed", sample=50, pool=50))
    # replace-one moves a sum of C-clipped updates by 2C: the plain Gaussian with z/2
    assert whole == pytest.approx(gaussian_epsilon(0.5, 1e-6), rel=1e-6)
    sub = gaussian_epsilon(1.0, 1e-6, sampling=Sampling("fixed", sample=50, pool=5000))
    assert sub < whole


def test_uncovered_schemes_are_refused_not_guessed():
    with pytest.raises(NoAccountantError, match="does not cover"):
        gaussian_epsilon(1.0, 1e-6, sampling=Sampling("fixed", sample=5, pool=100), accountant="pld")
    with pytest.raises(NoAccountantError, match="mix"):
        epsilon_of_events([(1.0, Sampling("poisson", 0.1)), (1.0, Sampling("fixed", sample=5, pool=50))], 1e-6)
    with pytest.raises(ValueError):
        Sampling("fixed", sample=10, pool=5)


def test_ledger_round_trips_and_composes_varying_rounds():
    ledger = Ledger()
    rounds = [(1.1, Sampling("fixed", sample=13, pool=p)) for p in (900, 1000, 1149, 1000)]
    for z, s in rounds:
        ledger.add(z, s)
    again = Ledger({k: np.array(v) for k, v in ledger.state().items()})
    assert again.rounds() == rounds  # the real pools are recorded ...
    assert [s.pool for _, s in again.accounted_rounds()] == [900, 1000, 1100, 1000]  # ... and rounded down
    assert again.epsilon(1e-6) == pytest.approx(epsilon_of_events(again.accounted_rounds(), 1e-6), rel=1e-9)
    assert again.epsilon(1e-6) >= epsilon_of_events(rounds, 1e-6)  # rounding is conservative
    assert epsilon_of_events(rounds[:2], 1e-6) < again.epsilon(1e-6)


def test_accounted_pool_rounds_down_to_two_significant_digits():
    from fl.privacy.accounting import accounted_pool

    assert [accounted_pool(n) for n in (7, 99, 100, 1149, 123_456)] == [7, 99, 100, 1100, 120_000]


@pytest.mark.parametrize("availability", ["always", "phone"])
def test_dp_fedavg_at_a_billion_devices_accounts_the_true_sampling_rate(availability):
    """DP-FedAvg (fl/aggregators.py) over a lazy population of 1e9 devices, cohort 1,000:
    the engine's round_info (fl/process.py: ``selected`` of the ``eligible`` pool) goes
    into the one accountant; ε is checked against dp_accounting called directly."""
    import dp_accounting
    from dp_accounting import rdp

    from fl.aggregators import gaussian_dp
    from fl.cohort import plan_round
    from fl.config import CohortSection, PopulationSection
    from fl.population import Population
    from fl.privacy.accounting import accounted_pool

    z, delta, rounds = 2.0, 1e-9, 50
    pop = Population.build(PopulationSection(size=1_000_000_000, availability=availability), seed=0)
    cohort = CohortSection(goal=1000, over_selection=1.3, round_interval_s=0.0)  # every round at the same hour
    agg = gaussian_dp(z, 1.0, 1000, delta, pop.size)
    state, events = agg.init(), []
    for r in range(rounds):
        plan = plan_round(pop, cohort, r, 0, 1, 400)
        info = {"selected": len(plan.device_ids),
                "eligible": max(pop.eligible_count(plan.t_start), len(plan.device_ids))}
        _, state, metrics = agg.finalize(state, np.zeros(3), 1000.0, 1000, r, info)
        events.append((info["selected"], info["eligible"]))
    selected, pool = events[0]
    assert len(set(events)) == 1
    q = metrics["dp_sampling_q"]
    if availability == "always":
        assert (selected, pool) == (1000, 1_000_000_000) and q == pytest.approx(1e-6)
    else:  # the pool is the devices eligible at 02:00 UTC: ~23% of the population
        assert 2e8 < pool < 2.5e8 and 1300 / 2.5e8 < q < 1300 / 2e8
    acc = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    acc.compose(dp_accounting.SampledWithoutReplacementDpEvent(accounted_pool(pool), selected,
                                                               dp_accounting.GaussianDpEvent(z / 2.0)), rounds)
    independent = acc.get_epsilon(delta)
    assert metrics["dp_epsilon"] == pytest.approx(independent, rel=1e-9)
    assert 0 < metrics["dp_epsilon"] < 1.0  # amplification by sampling at q ~ 1e-6
    # the same releases unsampled would cost far more
    assert gaussian_epsilon(z / 2.0, delta, rounds=rounds) > 50 * metrics["dp_epsilon"]
