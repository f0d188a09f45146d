"""The lazy population (fl/population.py): traits are pure functions of (seed, device id),
cohorts cost O(cohort) at any size, and population-wide figures come from closed forms."""
import time

import numpy as np
import pytest

from fl.cohort import ACCEPTED, plan_round, select_cohort
from fl.config import CohortSection, PopulationSection
from fl.population import TRAITS, Population
from fl.seeding import rng_for

BILLION = 1_000_000_000


def test_traits_are_pure_functions_of_seed_and_id():
    pop = Population.build(PopulationSection(size=10_000), seed=5)
    ids = np.array([9_999, 3, 17, 3, 512])
    full = pop.traits(np.arange(pop.size))
    part = pop.traits(ids)
    for k in TRAITS:
        np.testing.assert_array_equal(part[k], full[k][ids], err_msg=k)
        assert pop.columns[k][int(ids[0])] == full[k][ids[0]]
    # a larger population with the same seed gives its first devices the same traits
    big = Population.build(PopulationSection(size=BILLION), seed=5)
    np.testing.assert_array_equal(big.trait("compute_speed", ids), full["compute_speed"][ids])
    other = Population.build(PopulationSection(size=10_000), seed=6)
    assert not np.array_equal(other.trait("compute_speed", ids), full["compute_speed"][ids])


def test_a_billion_devices_hold_no_memory_and_build_in_constant_time():
    t = time.perf_counter()
    pop = Population.build(PopulationSection(size=BILLION), seed=0)
    assert time.perf_counter() - t < 0.1 and pop.nbytes() == 0 and len(pop) == BILLION
    with pytest.raises(MemoryError, match="index it"):
        np.asarray(pop.columns["num_examples"])
    with pytest.raises(IndexError):
        pop.trait("locale", np.array([BILLION]))
    with pytest.raises(KeyError, match="known: locale"):
        pop.columns["height"]


def test_cohort_at_a_billion_is_o_cohort_and_deterministic():
    pop = Population.build(PopulationSection(size=BILLION), seed=0)
    cfg = CohortSection(goal=1000, over_selection=1.3)
    t = time.perf_counter()
    plan = plan_round(pop, cfg, 4, 0, 1, 4000)
    assert time.perf_counter() - t < 1.0  # a few ms on a quiet core
    assert len(plan.device_ids) == 1300 and len(np.unique(plan.device_ids)) == 1300
    assert (plan.status == ACCEPTED).sum() == 1000 and plan.device_ids.max() > BILLION // 2
    assert pop.eligible(plan.device_ids, plan.t_start).all()
    again = plan_round(pop, cfg, 4, 0, 1, 4000)
    np.testing.assert_array_equal(plan.device_ids, again.device_ids)
    always = Population.build(PopulationSection(size=BILLION, availability="always"), seed=0)
    ids = plan_round(always, cfg, 0, 0, 1, 4000).device_ids
    assert len(np.unique(ids)) == 1000


def test_select_cohort_excludes_devices():
    pop = Population.build(PopulationSection(size=3000, availability="always"), seed=1)
    first = select_cohort(pop, 2000, 0.0, rng_for(0, "a"))
    rest = select_cohort(pop, 2000, 0.0, rng_for(0, "b"), exclude=first[::-1])
    assert len(rest) == 1000 and not np.intersect1d(first, rest).size
    assert len(np.union1d(first, rest)) == 3000


@pytest.mark.parametrize("hour", [0, 5, 11, 17, 22])
def test_eligible_fraction_closed_form_matches_the_devices(hour):
    pop = Population.build(PopulationSection(size=BILLION), seed=2)
    ids = pop.sample_ids(200_000)
    t = hour * 3600.0
    empirical = pop.eligible(ids, t).mean()
    f = pop.eligible_fraction(t)
    assert abs(empirical - f) < 4 * np.sqrt(f * (1 - f) / len(ids))


def test_eligible_count_is_a_lower_bound_of_the_realized_pool():
    for seed in range(3):
        pop = Population.build(PopulationSection(size=20_000), seed=seed)
        for hour in (2, 14):
            realized = pop.eligible(np.arange(pop.size), hour * 3600.0).sum()
            bound = pop.eligible_count(hour * 3600.0)
            assert 0.9 * realized < bound <= realized
    assert Population.build(PopulationSection(size=BILLION, availability="always"), 0).eligible_count(0.0) == BILLION


def test_mean_examples_closed_form():
    cfg = PopulationSection(size=BILLION, examples_median=30, examples_sigma=1.0, examples_min=10, examples_max=90)
    pop = Population.build(cfg, seed=3)
    sample = pop.trait("num_examples", pop.sample_ids(200_000))
    assert sample.min() == 10 and sample.max() == 90
    assert pop.mean_examples() == pytest.approx(sample.mean(), rel=0.01)
    assert pop.total_examples() == pytest.approx(BILLION * pop.mean_examples())


def test_a_datasets_explicit_client_list_is_kept():
    sizes = np.array([5, 7, 3, 9])
    pop = Population.build(PopulationSection(size=999), seed=0, num_examples=sizes)
    assert len(pop) == 4 and pop.availability == "always" and pop.mean_examples() == 6.0
    np.testing.assert_array_equal(pop.columns["num_examples"][np.arange(4)], sizes)
    assert pop.frame()["num_examples"].tolist() == [5, 7, 3, 9]


def test_frame_of_a_huge_population_is_a_documented_sample(monkeypatch):
    import fl.population as population

    monkeypatch.setattr(population, "FRAME_SAMPLE", 1000)
    pop = Population.build(PopulationSection(size=BILLION), seed=0)
    df = pop.frame()
    assert len(df) == 1000 and df["device_id"].iloc[1] == BILLION // 1000
    assert "1,000 evenly spaced devices" in df.attrs["sample"]
    small = Population.build(PopulationSection(size=500), seed=0).frame()
    assert len(small) == 500 and "sample" not in small.attrs
