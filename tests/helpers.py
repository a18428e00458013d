"""Assertions several test files share (imported as ``from helpers import ...``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from proxrl.errors import ConfigError


def assert_seeds_differ_and_repeat(metrics: dict[str, Any], name: str) -> None:
    """For runs vmapped over the keys ``[k0, k1, k0]``: seeds 0 and 1 differ in ``metrics[name]`` (NaN read
    as 0), and seeds 0 and 2 agree exactly in every metric (same seed, same numbers)."""
    first, second = np.nan_to_num(metrics[name][0]), np.nan_to_num(metrics[name][1])
    assert not np.allclose(first, second), f"seeds 0 and 1 gave the same {name}"
    for key, value in metrics.items():
        np.testing.assert_array_equal(value[0], value[2], err_msg=key)


def assert_one_line_config_error(
    config: Any, make: Callable[[Any, str], Any], env_id: str, fragment: str | None = None
) -> str:
    """``config.validate()`` raises a one-line :class:`ConfigError` (containing ``fragment`` if given), and so
    does building the algorithm with ``make(config, env_id)``; returns the message."""
    with pytest.raises(ConfigError) as err:
        config.validate()
    message = str(err.value)
    assert "\n" not in message, message
    if fragment is not None:
        assert fragment in message, message
    with pytest.raises(ConfigError):
        make(config, env_id)
    return message
