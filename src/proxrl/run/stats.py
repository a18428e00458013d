"""Statistics over seeds: means with 95% confidence intervals.

The interval is ``mean ± t_{0.975, n−1} · s / √n`` (Student's t; the normal 1.96 for n > 120). One seed
gives no interval: its bounds are NaN, not the mean (a zero-width interval would claim certainty).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Two-sided 95% quantiles of Student's t, t_{0.975, df}, for df = 1..30, then a few beyond.
_T975 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    11: 2.201,
    12: 2.179,
    13: 2.160,
    14: 2.145,
    15: 2.131,
    16: 2.120,
    17: 2.110,
    18: 2.101,
    19: 2.093,
    20: 2.086,
    21: 2.080,
    22: 2.074,
    23: 2.069,
    24: 2.064,
    25: 2.060,
    26: 2.056,
    27: 2.052,
    28: 2.048,
    29: 2.045,
    30: 2.042,
    40: 2.021,
    60: 2.000,
    120: 1.980,
}


def t_quantile_975(df: int) -> float:
    """``t_{0.975, df}`` (conservative: rounds df down to the nearest tabulated value)."""
    if df < 1:
        return float("nan")
    if df > 120:
        return 1.960
    return _T975[max(k for k in _T975 if k <= df)]


class MeanCI(NamedTuple):
    mean: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    n: int

    def interval(self, digits: int = 1) -> str:
        """``"95% CI [lo, hi]"`` for a scalar mean, or ``"one seed: no interval"`` when n < 2."""
        if self.n < 2:
            return "one seed: no interval"
        return f"95% CI [{float(self.lo):.{digits}f}, {float(self.hi):.{digits}f}]"


def mean_ci(x: np.ndarray, axis: int = 0) -> MeanCI:
    """Mean and 95% confidence interval of ``x`` along ``axis`` (the seed axis); NaN bounds for one seed."""
    x = np.asarray(x, dtype=float)
    n = x.shape[axis]
    m = x.mean(axis=axis)
    if n < 2:
        nan = np.full_like(m, np.nan)
        return MeanCI(m, nan, nan, n)
    half = t_quantile_975(n - 1) * x.std(axis=axis, ddof=1) / np.sqrt(n)
    return MeanCI(m, m - half, m + half, n)
