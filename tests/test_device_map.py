"""fl.device_map: per-device computations as Ray tasks, results in submission order."""
import sys

import numpy as np
import pytest


def _device(shared, device_id, delay):
    import time

    time.sleep(delay)  # later submissions finish first: the order must not follow completion
    if device_id < 0:
        raise ValueError(f"device {device_id} does not exist")
    return {"device_id": device_id, "value": float(shared[device_id])}


def test_results_come_back_in_submission_order_and_errors_surface():
    import ray

    from fl.device_map import map_devices
    from fl.pool import start_ray, stop_ray

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    start_ray(num_cpus=2)
    try:
        shared = ray.put(np.arange(10.0) ** 2)  # one copy in the object store, resolved on the worker
        out = map_devices(_device, [(shared, d, 0.3 if d == 0 else 0.0) for d in range(5)], progress=False)
        assert [r["device_id"] for r in out] == list(range(5)) and [r["value"] for r in out] == [0, 1, 4, 9, 16]
        with pytest.raises(Exception, match="device -1 does not exist"):
            map_devices(_device, [(shared, -1, 0.0)], progress=False)
        assert ray.is_initialized()  # a Ray the caller started is left running
    finally:
        stop_ray()
    assert map_devices(_device, [], progress=False) == []
