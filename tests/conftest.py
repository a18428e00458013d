"""Shared test settings: small, deterministic, CPU."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# proxrl sets its XLA flags on import (see proxrl/__init__.py); import it before any test runs JAX code.
import proxrl  # noqa: F401
