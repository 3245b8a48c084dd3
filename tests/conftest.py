"""Test settings: float32 everywhere, a bounded hypothesis budget for a 2-core CI."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")

from hypothesis import HealthCheck, settings

# derandomize: every run draws the same examples, so a CI result is reproducible
# (`--hypothesis-profile=explore` draws fresh ones, with more of them).
settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")


import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
  """One fresh TFDS data dir per test session: the embedded datasets are built from scratch."""
  path = str(tmp_path_factory.mktemp("tfds"))
  os.environ["CNN_LAB_DATA_DIR"] = path
  return path
