import numpy as np

from fl.cohort import ACCEPTED, DROPPED, STRAGGLER, plan_round, select_cohort
from fl.config import CohortSection, PopulationSection
from fl.population import Population
from fl.seeding import rng_for


def test_population_is_deterministic_columns():
    a = Population.build(PopulationSection(size=5000), seed=3)
    b = Population.build(PopulationSection(size=5000), seed=3)
    c = Population.build(PopulationSection(size=5000), seed=4)
    for k in a.columns:
        assert len(a.columns[k]) == 5000
        np.testing.assert_array_equal(a.columns[k], b.columns[k])
    assert not np.array_equal(a.columns["compute_speed"], c.columns["compute_speed"])
    df = a.frame([1, 2, 3])
    assert list(df["device_id"]) == [1, 2, 3] and "locale" in df


def test_availability_follows_local_night():
    pop = Population.build(PopulationSection(size=20000, eligible_prob=1.0), seed=0)
    ids = np.arange(pop.size)
    us = ids[pop.frame()["locale"].to_numpy() == "en_US"]
    # 02:00 local in the US is 08:00 UTC; 14:00 local is 20:00 UTC
    night, day = pop.eligible(us, 8 * 3600).mean(), pop.eligible(us, 20 * 3600).mean()
    assert night > 0.8 and day < 0.1


def test_select_cohort_distinct_eligible():
    pop = Population.build(PopulationSection(size=10000), seed=1)
    ids = select_cohort(pop, 200, 3 * 3600, rng_for(0, "t"))
    assert len(ids) == 200 and len(np.unique(ids)) == 200
    assert pop.eligible(ids, 3 * 3600).all()


def test_plan_round_statuses_and_clock():
    pop = Population.build(PopulationSection(size=5000, dropout_per_hour=60.0), seed=2)
    cfg = CohortSection(goal=50, over_selection=1.3, deadline_s=5.0, min_reports=10)
    plan = plan_round(pop, cfg, round_num=3, seed=2, epochs=1, model_bytes=400_000)
    assert len(plan.device_ids) == 65
    acc = plan.status == ACCEPTED
    assert acc.sum() <= cfg.goal and (plan.status == DROPPED).sum() > 0
    assert np.all(plan.finish_s[acc] <= cfg.deadline_s)
    assert np.all(np.isinf(plan.finish_s[plan.status == DROPPED]))
    late = plan.status == STRAGGLER
    assert np.all(plan.finish_s[late] >= plan.finish_s[acc].max())
    again = plan_round(pop, cfg, 3, 2, 1, 400_000)
    np.testing.assert_array_equal(plan.device_ids, again.device_ids)
    np.testing.assert_array_equal(plan.status, again.status)
