"""Plots over seeds: a mean curve with its confidence band, or every seed's curve when seeds are few.

With ``n ≥ MIN_BAND_SEEDS`` seeds, :func:`band` draws the mean and its pointwise confidence band
(:func:`proxrl.run.stats.mean_ci`: Student t by default), clipped to the quantity's known range when one is
given (e.g. :func:`proxrl.run.stats.return_range`). With fewer seeds it draws each seed's curve, thin, and
their mean: a t band over 2–4 seeds is 3–13 standard errors wide and mostly shows the t quantile. Either way
it returns a :class:`Drawn` whose :meth:`~Drawn.describe` says, for a summary, what the plot shows.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from proxrl.run.stats import Range, format_range, mean_ci, method_label

MIN_BAND_SEEDS = 5
"""Fewest seeds for which :func:`band` draws a confidence band rather than each seed's curve."""


class Drawn(NamedTuple):
    """What :func:`band` drew: ``kind`` is ``"band"`` or ``"per-seed lines"``."""

    kind: str
    n: int
    method: str = "t"
    confidence: float = 0.95
    bounds: Range | None = None
    """The range the band was clipped to (``None``: not clipped, or no band)."""

    def describe(self) -> str:
        """One sentence for a summary saying what the plot shows."""
        return describe_plot(self.n, self.bounds, self.method, self.confidence, self.kind)


def describe_plot(
    n: int,
    bounds: Range | None = None,
    method: str = "t",
    confidence: float = 0.95,
    kind: str | None = None,
) -> str:
    """The sentence :meth:`Drawn.describe` gives for a plot of ``n`` seeds (``kind`` inferred from ``n``)."""
    kind = kind or ("band" if n >= MIN_BAND_SEEDS else "per-seed lines")
    if kind == "per-seed lines":
        if n == 1:
            return "The plot shows the one seed's curve (no interval from one seed)."
        return (
            f"The plot shows each of the {n} seeds' curves and their mean, no confidence band "
            f"(fewer than {MIN_BAND_SEEDS} seeds)."
        )
    clip = (
        f", clipped to the known range {format_range(bounds)}"
        if bounds is not None
        else " (no known range: not clipped)"
    )
    return (
        f"The plot shows the mean over {n} seeds and its pointwise {confidence:.0%} confidence band, "
        f"{method_label(method)}{clip}."
    )


def band(
    ax: Axes,
    x: np.ndarray,
    samples: np.ndarray,
    label: str,
    color: str | None = None,
    *,
    bounds: Range | None = None,
    method: str = "t",
    min_band_seeds: int = MIN_BAND_SEEDS,
    **kw: Any,
) -> Drawn:
    """Plot ``samples[seed, len(x)]`` against ``x``: the mean and its 95% band clipped to ``bounds``
    (``mean_ci(samples, axis=0, method=method, bounds=bounds)``) when there are at least ``min_band_seeds``
    seeds, else each seed's curve (thin, unlabelled) and the mean. ``kw`` goes to the mean line."""
    samples = np.asarray(samples, dtype=float)
    n = samples.shape[0]
    s = mean_ci(samples, axis=0, method=method, bounds=bounds)
    (line,) = ax.plot(x, s.mean, label=label, color=color, **kw)
    if n < min_band_seeds:
        if n > 1:
            for curve in samples:
                ax.plot(x, curve, color=line.get_color(), alpha=0.45, linewidth=0.8, label="_nolegend_")
        return Drawn("per-seed lines", n, method, s.confidence, None)
    ax.fill_between(x, s.lo, s.hi, color=line.get_color(), alpha=0.25, linewidth=0)
    return Drawn("band", n, method, s.confidence, bounds)


def seeds_tag(n: int, confidence: float = 0.95, min_band_seeds: int = MIN_BAND_SEEDS) -> str:
    """What a plot title says a :func:`band` plot of ``n`` seeds shows: ``"1 seed"``, ``"3 seeds, each
    drawn"`` (fewer than ``min_band_seeds``) or ``"200 seeds, 95% CI"``."""
    if n == 1:
        return "1 seed"
    if n < min_band_seeds:
        return f"{n} seeds, each drawn"
    return f"{n} seeds, {confidence:.0%} CI"


def figure(
    ncols: int = 1, nrows: int = 1, width: float = 5.5, height: float = 4.0
) -> tuple[Figure, np.ndarray]:
    """A figure and its ``[nrows, ncols]`` array of axes, each ``width × height`` inches."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    return fig, axes
