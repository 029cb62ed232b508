"""Test setup: 8 simulated CPU devices (for the data-parallel tests), no GPU for TF."""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # pylint: disable=wrong-import-position


@pytest.fixture(scope="session")
def full_model():
  """The default BFM-sim model (fetched and built on first use, then cached)."""
  from jaxface import morphable  # pylint: disable=import-outside-toplevel
  return morphable.default_model("full")


@pytest.fixture(scope="session")
def front_model():
  from jaxface import morphable  # pylint: disable=import-outside-toplevel
  return morphable.default_model("front")
