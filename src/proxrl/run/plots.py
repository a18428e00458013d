"""Plots: mean curves with 95% confidence bands over seeds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from proxrl.run.stats import mean_ci


def band(ax: Axes, x: np.ndarray, samples: np.ndarray, label: str, color: str | None = None, **kw) -> None:
    """Plot ``mean ± 95% CI`` of ``samples[seed, len(x)]`` against ``x``."""
    s = mean_ci(samples, axis=0)
    (line,) = ax.plot(x, s.mean, label=label, color=color, **kw)
    ax.fill_between(x, s.lo, s.hi, color=line.get_color(), alpha=0.25, linewidth=0)


def figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.5, height: float = 4.0
) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes
