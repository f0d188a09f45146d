"""A user's dataset trains as its user expects: every client available by default, coverage
reported, and rounds that cannot do what was asked warn once per cause."""
import warnings

import numpy as np
import pytest

import fedpop
from fl.cohort import ACCEPTED, plan_round
from fl.config import CohortSection, PopulationSection
from fl.population import Population
from tiny_tasks import NoData


def _clients(n, seed=0):
    rng = np.random.default_rng(seed)
    return {f"c{i:02d}": {"x": rng.normal(size=(8 + i % 5, 3)), "y": rng.integers(0, 2, 8 + i % 5)} for i in range(n)}


def _run(data, cfg, rounds):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fedpop.build_process(NoData, cfg, data=data) as process:
            process.run(rounds=rounds)
            process.availability = process.engine.population.availability
    return process, [w for w in caught if issubclass(w.category, fedpop.RunWarning)]


def test_small_user_dataset_trains_every_client_with_coverage(ray_local):
    data = fedpop.FederatedData.from_clients(_clients(20))
    cfg = {"experiment.rounds": 12, "cohort.goal": 5, "cohort.min_reports": 3, "eval.every": 0, "workers.num": 2}
    process, caught = _run(data, cfg, 12)
    assert process.cfg.population.availability == "auto" and process.availability == "always"
    rounds, cov = process.rounds, process.coverage
    assert rounds["accepted"].eq(5).all() and rounds["updated"].all()
    assert len({tuple(g) for _, g in process.clients.groupby("round")["device_id"]}) > 1  # not one cohort
    assert len(cov) >= 17 and cov["rounds"].sum() == 60
    assert set(cov["client_id"]) <= set(data.client_ids)
    assert rounds["clients_trained"].is_monotonic_increasing and rounds["clients_trained"].iloc[-1] == len(cov)
    assert caught == []
    import ray

    before = ray.available_resources().get("CPU")
    assert len(process.population) == 20  # read after the with block: starts no new workers
    assert ray.available_resources().get("CPU") == before


def test_availability_switch_and_uniform_cohorts():
    sizes = np.full(20, 10)
    section = PopulationSection()
    assert Population.build(section, 0, num_examples=sizes).availability == "always"
    assert Population.build(section, 0).availability == "phone"  # a simulated population keeps the phone model
    phone = Population.build(PopulationSection(availability="phone"), 0, num_examples=sizes)
    assert phone.availability == "phone" and not phone.eligible(np.arange(20), 0.0).all()
    always = Population.build(PopulationSection(size=50, availability="always"), 0)
    seen = set()
    for r in range(6):
        plan = plan_round(always, CohortSection(goal=5, min_reports=1, over_selection=1.3), r, 0, 1, 1000)
        assert len(plan.device_ids) == 5 == len(set(plan.device_ids.tolist()))
        assert (plan.status == ACCEPTED).all() and np.isfinite(plan.finish_s).all()
        seen.update(plan.device_ids.tolist())
    assert len(seen) > 15


def test_bad_availability_names_key_and_allowed_values():
    with pytest.raises(fedpop.ConfigError, match=r"'population\.availability'.*allowed: auto, always, phone"):
        fedpop.load_config({"population": {"availability": "sometimes"}, "experiment": {"task": "mlp"}})


def test_small_pool_and_rounds_without_update_warn_once_per_cause(ray_local):
    data = fedpop.FederatedData.from_clients(_clients(3))
    cfg = {"experiment.rounds": 3, "cohort.goal": 5, "cohort.min_reports": 4, "eval.every": 0, "workers.num": 2}
    process, caught = _run(data, cfg, 3)
    texts = [str(w.message) for w in caught]
    assert len(texts) == 2, texts
    assert "the population has 3 devices, fewer than cohort.goal=5" in texts[0]
    assert "round 0 made no update: only 3 devices reported, cohort.min_reports is 4" in texts[1]
    assert (~process.rounds["updated"]).all() and process.rounds["clients_trained"].eq(0).all()
    assert len(process.coverage) == 0
    assert "rounds: 3, with an update: 0, without: 3" in process.status_summary()
    assert "train devices per status: accepted 9" in process.status_summary()


def test_failing_devices_are_named_in_the_warning_and_kept_with_tracebacks(ray_local):
    cfg = {"experiment.rounds": 2, "population.size": 6, "cohort.goal": 3, "cohort.min_reports": 2,
           "population.availability": "always", "eval.every": 0, "workers.num": 2}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with fedpop.build_process("first_hour_tasks:WrongShape", cfg) as process:
            process.run()
    texts = [str(w.message) for w in caught if issubclass(w.category, fedpop.RunWarning)]
    assert len(texts) == 1 and "round 0 made no update" in texts[0]
    assert "3 devices failed, the first (device" in texts[0] and "InvalidArgumentError" in texts[0]
    clients = process.clients
    assert clients["status"].eq("failed").all() and clients["traceback"].str.startswith("Traceback").all()
    summary = process.status_summary()
    assert "train devices per status: failed 6" in summary and "failed x6, first: device" in summary
    assert '  File "' in summary
