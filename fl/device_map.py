"""Per-device computations outside a training round, fanned out over Ray workers.

A study sometimes asks every device for one small result computed on its own data with a
given model -- a personalized accuracy, a layer's statistics -- with nothing else leaving the
device.  `map_devices` runs ``fn(*args)`` for each argument tuple as a Ray task on one CPU
(Ray reuses its worker processes, so a process serves many devices) and returns the results
in submission order, so the outcome does not depend on which worker finishes first.
"""
from __future__ import annotations

import sys
from contextlib import contextmanager


@contextmanager
def ray_running(num_workers: int = 0):
    """A Ray to put shared values in and run tasks on: the running one, or a local one with
    ``num_workers`` CPUs (0: all) started here and stopped on exit."""
    import ray

    from fl.pool import start_ray, stop_ray

    started = not ray.is_initialized()
    if started:
        start_ray(num_cpus=num_workers or None)
    try:
        yield
    finally:
        if started:
            stop_ray()


def map_devices(fn, calls: list[tuple], num_workers: int = 0, desc: str = "devices", progress: bool = True
                ) -> list:
    """``[fn(*args) for args in calls]``, each call a Ray task. Arguments that are `ray.put`
    references are resolved on the worker (put large shared values once). A local Ray with
    ``num_workers`` CPUs (0: all) is started if none runs, and stopped after."""
    import ray
    from tqdm import tqdm

    if not calls:
        return []
    with ray_running(num_workers):
        remote = ray.remote(num_cpus=1)(fn)
        futures = [remote.remote(*args) for args in calls]
        out = []
        with tqdm(total=len(futures), desc=desc, disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
            for fut in futures:
                out.append(ray.get(fut))
                bar.update(1)
        return out
