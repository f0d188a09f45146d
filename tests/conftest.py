import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("device-cache"))


@pytest.fixture
def ray_local():
    """One local Ray per test session (started lazily; a cluster test may replace it)."""
    import ray

    from fl.pool import start_ray

    start_ray(object_store_mb=256, num_cpus=2)
    yield ray
