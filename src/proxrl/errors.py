"""Input validation with one-line messages.

Every check names the bad value and what is allowed, so that the CLI can print the message alone
(exit code 2, no traceback). The checks run on host values at construction time. A value that is being
traced (a hyperparameter vmapped by ``train(key, hyper)``, checked on its concrete config first) passes through
the numeric checks unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


class ConfigError(ValueError):
    """A bad input value. ``str(err)`` is a single line naming the value and what is allowed."""


def _fmt(value: Any) -> str:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return repr(value.item() if hasattr(value, "item") else value)
    if arr.size <= 8:
        return np.array2string(arr, separator=", ", threshold=8).replace("\n", "")
    return f"array of shape {arr.shape}"


def _traced(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def check_positive(name: str, value: float) -> float:
    """``value > 0`` (finite)."""
    if _traced(value):
        return value
    v = float(value)
    if not np.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {_fmt(value)}")
    return v


def check_positive_all(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Every entry finite and > 0, at least one entry."""
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ConfigError(f"{name} must hold at least one value > 0, got an empty list")
    bad = arr[~(np.isfinite(arr) & (arr > 0))]
    if bad.size:
        raise ConfigError(f"{name} must be finite numbers > 0, got {_fmt(bad[0])}")
    return arr


def check_int_at_least(name: str, value: int, low: int = 1) -> int:
    """An integer ``>= low``."""
    try:
        bad = isinstance(value, bool) or int(value) != value or int(value) < low
    except (TypeError, ValueError, OverflowError):  # None, a string, an infinity
        bad = True
    if bad:
        raise ConfigError(f"{name} must be an integer >= {low}, got {_fmt(value)}")
    return int(value)


def check_in_range(
    name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False
) -> float:
    """``low (<|<=) value (<|<=) high``."""
    if _traced(value):
        return value
    v = float(value)
    ok = np.isfinite(v) and (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    if not ok:
        lb = "(" if low_open else "["
        rb = ")" if high_open else "]"
        raise ConfigError(f"{name} must lie in {lb}{low:g}, {high:g}{rb}, got {_fmt(value)}")
    return v


def check_not_below(name: str, value: float, other_name: str, other: float) -> float:
    """``value >= other``, where ``other`` is the value of the option ``other_name`` (a traced value passes)."""
    if _traced(value) or _traced(other):
        return value
    if not float(value) >= float(other):
        raise ConfigError(f"{name} must be >= {other_name} = {float(other):g}, got {_fmt(value)}")
    return float(value)


def check_not_above(name: str, value: float, other_name: str, other: float) -> float:
    """``value <= other``, where ``other`` is the value of the option ``other_name`` (a traced value passes)."""
    if _traced(value) or _traced(other):
        return value
    if not float(value) <= float(other):
        raise ConfigError(f"{name} must be <= {other_name} = {float(other):g}, got {_fmt(value)}")
    return float(value)


def check_distribution(name: str, p: Sequence[float] | np.ndarray, size: int | None = None) -> np.ndarray:
    """A probability vector: finite, non-negative, summing to 1 (to 1e-6), of length ``size`` if given."""
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D probability vector, got shape {arr.shape}")
    if size is not None and arr.shape[0] != size:
        raise ConfigError(f"{name} must have length {size} (one entry per action), got length {arr.shape[0]}")
    if arr.shape[0] == 0:
        raise ConfigError(f"{name} must have at least one entry, got an empty vector")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ConfigError(f"{name} must have finite entries >= 0, got {_fmt(arr)}")
    if abs(arr.sum() - 1.0) > 1e-6:
        raise ConfigError(f"{name} must sum to 1, got {_fmt(arr)} (sum {arr.sum():.6g})")
    return arr


def check_bounded(name: str, x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Every entry finite and within ``[low, high]``."""
    arr = np.asarray(x, dtype=float)
    bad = ~np.isfinite(arr) | (arr < low) | (arr > high)
    if np.any(bad):
        raise ConfigError(f"{name} must lie in [{low:g}, {high:g}], got {_fmt(arr[bad][0])}")
    return arr


def check_shape(name: str, x: np.ndarray, shape: tuple[int | None, ...], meaning: str = "") -> np.ndarray:
    """``x.shape`` matches ``shape`` (``None`` is any size)."""
    arr = np.asarray(x)
    ok = arr.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, arr.shape, strict=True))
    if not ok:
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        extra = f" ({meaning})" if meaning else ""
        raise ConfigError(f"{name} must have shape {want}{extra}, got {arr.shape}")
    return arr


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def check_policy(name: str, p: Sequence[float] | np.ndarray, size: int) -> np.ndarray:
    """A softmax-reachable policy: a distribution of length ``size`` with every entry > 0."""
    arr = check_distribution(name, p, size)
    if np.any(arr <= 0):
        raise ConfigError(
            f"{name} must give every action probability > 0 (softmax policies do), got {_fmt(arr)}"
        )
    return arr


class NonFiniteError(RuntimeError):
    """A training run produced a NaN or an infinity (in a metric, a parameter or an evaluation return) and
    stopped. ``str(err)`` is a single line naming the value, the update and the seed; the CLI exits with
    status 3."""


def available_memory() -> int:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**62


def check_memory(nbytes: float, what: str, options: str) -> None:
    """Refuse, before anything is allocated, work whose arrays need more than the memory available (one line
    with the estimate, naming the options that size it)."""
    available = available_memory()
    if nbytes > available:
        raise ConfigError(
            f"{options} ask for about {_bytes(nbytes)} of {what}, more than the {_bytes(available)} of memory "
            "available; lower them"
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} PiB"


SEED_LIMIT = 2**31
"""Seeds are integers in [0, 2³¹): what a signed 32-bit integer holds, the bound every integer option has
(:func:`proxrl.config.check_numbers`)."""


def check_seed(name: str, value: int) -> int:
    """An integer seed in [0, 2³¹)."""
    if isinstance(value, bool) or int(value) != value or not 0 <= int(value) < SEED_LIMIT:
        raise ConfigError(f"{name} must be an integer in [0, 2^31), got {_fmt(value)}")
    return int(value)
