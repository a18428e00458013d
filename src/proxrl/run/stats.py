"""Statistics over seeds: means with confidence intervals from :mod:`scipy.stats`, and known return ranges.

Two interval methods, each named in every summary line that prints an interval (:meth:`MeanCI.interval`):

- ``"t"`` (the default), Student's t: ``mean ± t_{(1+c)/2, n−1} · s / √n`` with ``s`` the sample standard
  deviation (``ddof = 1``) and the quantile from ``scipy.stats.t.ppf``. Exact coverage ``c`` for normal
  returns; with 2–4 seeds the quantile is large (12.7 at n = 2, 4.30 at n = 3, 3.18 at n = 4) and so is the
  interval.
- ``"bootstrap"``: the percentile bootstrap of the mean, ``scipy.stats.bootstrap`` with
  :data:`BOOTSTRAP_RESAMPLES` resamples and a fixed generator seed (same data, same interval). It stays inside
  the range of the data, and covers less than ``c`` with few seeds (it cannot see past the extreme seeds).

One seed gives no interval: its bounds are NaN, not the mean (a zero-width interval would claim certainty).
Seeds that all agree give bounds equal to the mean (no spread to scale an interval by); the printed forms,
:meth:`MeanCI.interval` and :meth:`MeanCI.short`, then say "all seeds equal" rather than print that interval.

Clipping to a known range ``[a, b]`` of the quantity (e.g. an environment's return range,
:func:`return_range`) replaces ``[lo, hi]`` by ``[max(lo, a), min(hi, b)]``. The true mean lies in
``[a, b]``, so it lies in the clipped interval exactly when it lies in the unclipped one: the coverage is
unchanged and the interval no longer claims values the environment cannot return.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import scipy.stats

METHODS = ("t", "bootstrap")
BOOTSTRAP_RESAMPLES = 10_000
"""Resamples drawn by the ``"bootstrap"`` method."""
BOOTSTRAP_SEED = 0
"""Seed of the ``"bootstrap"`` method's generator."""

Range = tuple[float, float]
"""A closed range ``(low, high)`` of a quantity; either end may be infinite."""

# Pendulum-v1: the cost per step is θ² + 0.1·θ̇² + 0.001·u² with θ ∈ [−π, π], |θ̇| ≤ 8, |u| ≤ 2 (clipped).
_PENDULUM_MAX_COST = math.pi**2 + 0.1 * 8.0**2 + 0.001 * 2.0**2

RETURN_RANGES: dict[str, Range] = {
    "CartPole-v1": (0.0, 500.0),  # +1 per step, at most 500 steps
    "Acrobot-v1": (-500.0, 0.0),  # −1 per step until the goal, at most 500 steps
    "MountainCar-v0": (-200.0, 0.0),  # −1 per step, at most 200 steps
    "Pendulum-v1": (-200 * _PENDULUM_MAX_COST, 0.0),  # 200 steps of cost ≤ π² + 6.4 + 0.004
    # −0.1·a² per step on the unclipped action (no lower bound), +100 once at the goal
    "MountainCarContinuous-v0": (-math.inf, 100.0),
}
"""Undiscounted episode returns possible in classic-control environments (gymnax and Gymnasium ids alike)
under their default time limits. An id not listed has no known range."""


def return_range(env_id: str) -> Range | None:
    """The range of an episode's undiscounted return in ``env_id`` under its default time limit, or ``None``
    when it is not known (see :data:`RETURN_RANGES`)."""
    return RETURN_RANGES.get(env_id)


def format_range(bounds: Range) -> str:
    """``"[0, 500]"``, ``"(−∞, 100]"``: a range in interval notation."""
    lo, hi = bounds
    left = "(−∞" if lo == -math.inf else f"[{lo:g}"
    right = "∞)" if hi == math.inf else f"{hi:g}]"
    return f"{left}, {right}"


def method_label(method: str) -> str:
    """The name of an interval method as summaries print it."""
    if method == "t":
        return "Student t (scipy.stats.t)"
    if method == "bootstrap":
        return f"percentile bootstrap (scipy.stats.bootstrap, {BOOTSTRAP_RESAMPLES:,} resamples)"
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


CI_LABEL = "95% Student-t confidence intervals (scipy.stats.t)"
"""What the default :func:`mean_ci` computes, for summaries that print its bounds themselves."""


class MeanCI(NamedTuple):
    """A mean over ``n`` samples and its confidence interval ``[lo, hi]`` (NaN bounds when ``n < 2``)."""

    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int
    method: str = "t"
    confidence: float = 0.95
    bounds: Range | None = None
    """The known range the interval was clipped to, or ``None``."""

    def interval(self, digits: int = 1) -> str:
        """``"95% CI [lo, hi], Student t (scipy.stats.t) over 5 seeds"`` for a scalar mean (``", clipped to
        [a, b]"`` appended when clipped), ``"one seed: no interval"`` when ``n < 2``, or ``"all 3 seeds equal: no
        interval"`` when the seeds agree exactly."""
        if self.n < 2:
            return "one seed: no interval"
        if float(self.lo) == float(self.hi):
            return f"all {self.n} seeds equal: no interval"
        text = (
            f"{self.confidence:.0%} CI [{float(self.lo):.{digits}f}, {float(self.hi):.{digits}f}], "
            f"{method_label(self.method)} over {self.n} seeds"
        )
        if self.bounds is not None:
            text += f", clipped to the known range {format_range(self.bounds)}"
        return text

    def short(self, spec: str = ".1f") -> str:
        """A table cell for a scalar mean, each number formatted by ``spec``: ``"12.3 [10.1, 14.5]"``,
        ``"12.3 (one seed)"`` when ``n < 2``, or ``"500.0 (all seeds equal)"`` when the seeds agree exactly
        (no spread, so no interval: a zero-width one would claim certainty)."""
        m = format(float(self.mean), spec)
        if self.n < 2:
            return f"{m} (one seed)"
        if float(self.lo) == float(self.hi):
            return f"{m} (all seeds equal)"
        return f"{m} [{format(float(self.lo), spec)}, {format(float(self.hi), spec)}]"


def mean_ci(
    x: np.ndarray,
    axis: int = 0,
    *,
    confidence: float = 0.95,
    method: str = "t",
    bounds: Range | None = None,
) -> MeanCI:
    """Mean of ``x`` along ``axis`` (the seed axis) and its ``confidence`` interval by ``method`` (``"t"`` or
    ``"bootstrap"``, see the module docstring), clipped to ``bounds`` when given. NaN bounds for one seed.

    Example: ``mean_ci(np.array([1.0, 2.0, 3.0]))`` has mean 2 and bounds ``2 ∓ t_{0.975, 2} · 1 / √3``
    = ``[−0.484, 4.484]``; with ``bounds=(0, 500)`` they become ``[0, 4.484]``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    if bounds is not None and not bounds[0] <= bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds!r}")
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    m = x.mean(axis=axis)
    if n < 2:
        nan = np.full_like(m, np.nan)[()]
        return MeanCI(m, nan, nan, n, method, confidence, bounds)
    if method == "t":
        half = scipy.stats.t.ppf(0.5 + confidence / 2, df=n - 1) * x.std(axis=axis, ddof=1) / np.sqrt(n)
        lo, hi = m - half, m + half
    else:
        lo, hi = _bootstrap(x, axis, confidence)
    if bounds is not None:
        lo, hi = np.clip(lo, bounds[0], bounds[1]), np.clip(hi, bounds[0], bounds[1])
    # [()] keeps a scalar mean's bounds scalars (np.float64), as the mean is
    return MeanCI(
        m, np.asarray(lo, dtype=float)[()], np.asarray(hi, dtype=float)[()], n, method, confidence, bounds
    )


def _bootstrap(x: np.ndarray, axis: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile-bootstrap bounds of the mean along ``axis``; where all samples are equal, both are the mean."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's DegenerateDataWarning for constant samples: handled below
        res = scipy.stats.bootstrap(
            (x,),
            np.mean,
            axis=axis,
            confidence_level=confidence,
            n_resamples=BOOTSTRAP_RESAMPLES,
            method="percentile",
            batch=max(1, 4_000_000 // x.size),  # resamples held in memory at once
            rng=np.random.default_rng(BOOTSTRAP_SEED),
        )
    m = x.mean(axis=axis)
    constant = np.ptp(x, axis=axis) == 0
    lo = np.where(constant, m, res.confidence_interval.low)
    hi = np.where(constant, m, res.confidence_interval.high)
    return lo, hi
