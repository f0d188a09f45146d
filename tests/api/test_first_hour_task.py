"""One task contract, checked before work: a duck-typed class and a subclass that skips
super().__init__ train with Task's defaults; what cannot work is refused up front."""
import numpy as np
import pytest

import fedpop
from first_hour_tasks import BadModel, Duck, NoSuper

CFG = {"experiment.rounds": 2, "experiment.seed": 4, "population.size": 6, "population.availability": "always",
       "population.examples_min": 10, "population.examples_max": 10, "cohort.goal": 3, "cohort.min_reports": 2,
       "eval.every": 1, "eval.cohort": 3, "workers.num": 2}


@pytest.mark.parametrize("task", [Duck, NoSuper, "first_hour_tasks:Duck"])
def test_minimal_tasks_train(ray_local, cache_dir, task):
    with fedpop.build_process(task, {**CFG, "workers.cache_dir": cache_dir}) as process:
        state = process.initialize()
        start = state.weights.copy()
        state = process.run(state=state)
    rounds = process.rounds
    assert state.round == 2 and rounds["updated"].all() and not np.array_equal(start, state.weights)
    assert rounds["eval_devices"].eq(3).all() and np.isfinite(rounds["eval_loss"]).all()


def test_task_contract_is_checked_before_work():
    import ray

    was_running = ray.is_initialized()

    class OnlyModel:
        def build_model(self):
            return None

    class Nothing:
        pass

    class BadInit(fedpop.Task):
        def __init__(self, config, seed, extra):
            pass

        def build_model(self):
            return None

        def device_data(self, device_id, n, split="train"):
            return {}

    with pytest.raises(fedpop.ConfigError, match=r"missing required method\(s\): device_data"):
        fedpop.build_process(OnlyModel, CFG)
    with pytest.raises(fedpop.ConfigError, match=r"missing required method\(s\): build_model, device_data"):
        fedpop.build_process(Nothing, CFG)
    with pytest.raises(fedpop.ConfigError, match=r"cannot be called as BadInit\(config, seed\) or BadInit\(\)"):
        fedpop.build_process(BadInit, CFG)
    assert ray.is_initialized() == was_running


def test_task_defaults_do_not_depend_on_init():
    from fl.task import make_task

    for cls in (Duck, NoSuper):
        task = make_task(cls, None, 4)
        assert isinstance(task, fedpop.Task) and isinstance(task, cls)
        assert task.config is None and task.seed == 4 and task.cache_namespace.startswith("task-")
        assert task.example_lengths({}) is None and cls.__name__ == type(task).__name__
    assert fedpop.Task.config is None and fedpop.Task.seed == 0


def test_a_task_that_fails_on_the_workers_says_why(ray_local, cache_dir):
    with pytest.raises(fedpop.TaskError, match="ValueError: this model cannot be built") as err:
        with fedpop.build_process(BadModel, {**CFG, "workers.cache_dir": cache_dir}) as process:
            process.initialize()
    assert "first_hour_tasks.py" in str(err.value)  # the traceback's frames come with it
