"""Shared test settings: small, deterministic, CPU."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# proxrl sets its XLA flags on import (see proxrl/__init__.py); import it before any test runs JAX code.
import logging

import pytest

import proxrl  # noqa: F401


@pytest.fixture(scope="module")
def local_ray():
    """Ray started in this process for the module: 2 CPUs, no dashboard, a new instance even where another
    cluster's record exists (``address="local"``)."""
    import ray

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    yield
    ray.shutdown()
