"""Aggregates of a sweep's results table: normalised scores, IQM / mean / median with stratified-bootstrap 95%
confidence intervals, performance profiles, learning curves; summary.md and PNG plots.

Scores follow the PPO paper's normalisation: with bounds ``[min, max]`` per task (from the sweep file's
``[scores]`` table, e.g. random = 0 and best = 1), run r's final return G on task m scores
``x_{r,m} = (G − min_m) / (max_m − min_m)``. The statistics are those of Agarwal et al. (2021, "Deep RL at the
edge of the statistical precipice"), computed by their library, rliable (``rliable.metrics`` and
``rliable.library``):

- IQM: the mean of all n = runs × tasks scores ``x_{r,m}`` after dropping the ⌊n/4⌋ lowest and the ⌊n/4⌋
  highest (``scipy.stats.trim_mean`` with 25 % cut from each end): the middle 50 % when 4 divides n, and the
  plain mean when n < 4 (so a task's IQM over 3 runs is its mean); mean: the mean over tasks of each task's
  mean score; median: the median over tasks of each task's mean score (rliable's definitions);
- stratified bootstrap: each resample draws the runs of every task with replacement, task by task (strata),
  so every resample keeps each task's share; the 95 % interval is the 2.5 and 97.5 percentiles of the
  statistic over the resamples;
- performance profile: ``P(τ) = (1/M) Σ_m (1/N) Σ_r 1[x_{r,m} > τ]``, the fraction of runs above τ averaged
  over tasks, with a stratified-bootstrap band.

Per task the same statistics of its runs are given, the median being the median over runs.

A setting is one row of the report only when all its cells ran under the same run options: a directory that
holds cells of the same setting from sweeps with different steps or seeds (each ``proxrl sweep`` into it adds
its cells) shows them as separate rows, ``label (N steps, S seeds)``, so no row mixes budgets or replaces another.

rliable draws its resamples from NumPy's global generator (its ``random_state`` argument does not reach the
draws); :func:`seeded` sets that generator to ``seed`` around each call and restores it afterwards, so the same
results table always gives the same intervals.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from proxrl.errors import ConfigError
from proxrl.run.plots import band, figure
from proxrl.run.records import atomic_write_text
from proxrl.run.stats import mean_ci, return_range
from proxrl.run.sweep import RESULTS, SPEC, read_results
from proxrl.run.train import latest_per_step

CONFIDENCE = 0.95


def _metrics() -> Any:
    from rliable import metrics

    return metrics


def iqm(x: np.ndarray) -> float:
    """Interquartile mean of every entry of a score matrix ``[runs, tasks]`` (``rliable.metrics.aggregate_iqm``)."""
    return float(_metrics().aggregate_iqm(np.asarray(x, np.float64)))


def mean(x: np.ndarray) -> float:
    """Mean over tasks of each task's mean score (``rliable.metrics.aggregate_mean``)."""
    return float(_metrics().aggregate_mean(np.asarray(x, np.float64)))


def median(x: np.ndarray) -> float:
    """Median over tasks of each task's mean score (``rliable.metrics.aggregate_median``)."""
    return float(_metrics().aggregate_median(np.asarray(x, np.float64)))


def run_median(x: np.ndarray) -> float:
    """Median of every entry: on one task's column ``[runs, 1]``, the median over runs (rliable's
    :func:`median` of a single task would be its mean)."""
    return float(np.median(np.asarray(x, np.float64)))


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {"IQM": iqm, "mean": mean, "median": median}
"""The aggregates over tasks, as rliable defines them."""
PER_TASK: dict[str, Callable[[np.ndarray], float]] = {"IQM": iqm, "mean": mean, "median": run_median}
"""The same statistics of one task's runs."""


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """NumPy's global generator set to ``seed`` inside the block (rliable's resamples come from it), restored
    after; rliable's deprecation warnings about arch's ``random_state`` are silenced inside."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        np.random.set_state(saved)


class Interval(NamedTuple):
    """A point estimate and its stratified-bootstrap interval (NaN bounds when there is nothing to resample)."""

    value: float
    lo: float
    hi: float

    def text(self, digits: int = 2) -> str:
        if not np.isfinite(self.lo):
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def stratified_interval(
    scores: np.ndarray, statistic: Callable[[np.ndarray], float], reps: int = 2000, seed: int = 0
) -> Interval:
    """``statistic(scores)`` of a score matrix ``[runs, tasks]`` and its 95 % percentile interval over ``reps``
    stratified-bootstrap resamples (runs redrawn within each task), by ``rliable.library.get_interval_estimates``.
    One run per task, or identical scores, give no interval."""
    from rliable import library as rly

    scores = np.asarray(scores, np.float64)
    value = statistic(scores)
    if scores.shape[0] < 2 or np.all(scores == scores[0]):
        return Interval(value, float("nan"), float("nan"))
    with seeded(seed):
        _, intervals = rly.get_interval_estimates(
            {"x": scores},
            lambda x: np.array([statistic(x)]),
            reps=reps,
            confidence_interval_size=CONFIDENCE,
            method="percentile",
        )
    lo, hi = np.asarray(intervals["x"], np.float64).ravel()
    return Interval(value, float(lo), float(hi))


def performance_profile(
    scores: np.ndarray, taus: np.ndarray, reps: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``P(τ)`` for each τ (the fraction of runs with score > τ, averaged over tasks; ``scores [runs, tasks]``)
    and its 95 % stratified-bootstrap band ``[2, len(taus)]``, by ``rliable.library.create_performance_profile``."""
    from rliable import library as rly

    scores = np.asarray(scores, np.float64)
    with seeded(seed):
        profile, band_ = rly.create_performance_profile(
            {"x": scores}, np.asarray(taus, np.float64), reps=reps, confidence_interval_size=CONFIDENCE
        )
    return np.asarray(profile["x"], np.float64), np.asarray(band_["x"], np.float64)


class Table(NamedTuple):
    """Final returns of the finished cells: ``returns[label][env]`` per seed, and the bounds per task."""

    labels: list[str]
    envs: list[str]
    returns: dict[str, dict[str, np.ndarray]]
    bounds: dict[str, tuple[float, float]]
    run_dirs: dict[tuple[str, str], Path]
    failed: list[dict[str, str]]


def load_table(sweep_dir: str | Path) -> Table:
    """The results table of a sweep directory and the score bounds of its sweep.json."""
    sweep_dir = Path(sweep_dir)
    if not (sweep_dir / RESULTS).is_file():
        raise ConfigError(f"{str(sweep_dir)!r} is not a sweep directory (no {RESULTS})")
    spec = json.loads((sweep_dir / SPEC).read_text()) if (sweep_dir / SPEC).is_file() else {}
    rows = read_results(sweep_dir / RESULTS)
    ok = [r for r in rows if r["status"] == "ok"]
    names = _row_names(ok)
    labels = list(dict.fromkeys(names))
    envs = list(dict.fromkeys(r["env"] for r in ok))
    returns: dict[str, dict[str, np.ndarray]] = {label: {} for label in labels}
    run_dirs = {}
    for name, r in zip(names, ok, strict=True):
        returns[name][r["env"]] = np.asarray(json.loads(r["final_per_seed"]), np.float64)
        run_dirs[(name, r["env"])] = sweep_dir / r["run_dir"]
    bounds = {env: (float(lo), float(hi)) for env, (lo, hi) in spec.get("scores", {}).items()}
    return Table(labels, envs, returns, bounds, run_dirs, [r for r in rows if r["status"] != "ok"])


def _row_names(rows: list[dict[str, str]]) -> list[str]:
    """The report's name of each finished row: its label, qualified by ``(N steps, S seeds)`` when the label's
    rows differ in steps or seeds, and further by the cell key when two rows would still share a name on one
    environment. No row replaces or joins another of a different run."""
    budgets: dict[str, set[tuple[str, str]]] = {}
    for r in rows:
        budgets.setdefault(r["label"], set()).add((r["steps"], r["seeds"]))
    names = []
    for r in rows:
        name = r["label"]
        if len(budgets[name]) > 1:
            name = f"{name} ({int(float(r['steps'])):,} steps, {r['seeds']} seeds)"
        names.append(name)
    count: dict[tuple[str, str], int] = {}
    for name, r in zip(names, rows, strict=True):
        count[(name, r["env"])] = count.get((name, r["env"]), 0) + 1
    return [
        f"{name} [{r['key']}]" if count[(name, r["env"])] > 1 else name
        for name, r in zip(names, rows, strict=True)
    ]


def _iqm_note(table: Table, labels: list[str], envs: list[str]) -> str:
    """The sentence summary.md adds when some task has fewer than 4 runs (its IQM trims nothing)."""
    few = min(len(table.returns[lab][env]) for lab in labels for env in envs if env in table.returns[lab])
    if few >= 4:
        return ""
    return (
        f" A task with fewer than 4 runs (here as few as {few}) trims nothing, so its IQM is its mean; the IQM "
        "over all tasks drops ⌊n/4⌋ scores from each end of all n."
    )


def score_matrix(table: Table, label: str, envs: list[str]) -> np.ndarray:
    """Normalised scores ``[runs, tasks]`` of a setting on ``envs``. Every task must have the same number of
    runs (the stratified bootstrap resamples a rectangle); a one-line ConfigError names the counts otherwise."""
    columns = []
    for env in envs:
        lo, hi = table.bounds[env]
        columns.append((table.returns[label][env] - lo) / (hi - lo))
    counts = {len(c) for c in columns}
    if len(counts) > 1:
        raise ConfigError(
            f"setting {label!r} has different numbers of runs per task ("
            + ", ".join(f"{env}: {len(c)}" for env, c in zip(envs, columns, strict=True))
            + "); aggregates over tasks need the same number on each"
        )
    return np.stack(columns, axis=1)


class Report(NamedTuple):
    """What :func:`report` wrote (``path`` is the sweep directory, as for a run)."""

    path: Path
    summary: Path
    plots: list[Path]
    failed: int = 0
    """Cells of the sweep recorded as failed (``proxrl sweep`` then exits 1)."""


def report(sweep_dir: str | Path, reps: int = 2000, seed: int = 0) -> Report:
    """Rebuild summary.md and the PNG plots of a sweep directory from its results table."""
    import matplotlib.pyplot as plt

    sweep_dir = Path(sweep_dir)
    table = load_table(sweep_dir)
    lines = [f"# Sweep {sweep_dir.name}", ""]
    n_ok = sum(len(v) for v in table.returns.values())
    lines += [f"{n_ok} finished cells, {len(table.failed)} failed; results table: `{RESULTS}`.", ""]
    plots: list[Path] = []

    # per task: raw final returns (mean over seeds, t interval) and, with bounds, normalised IQM/mean/median
    lines += ["## Final return per task", "", "Mean over seeds of the last evaluation (95 % t interval).", ""]
    if not table.envs:
        lines.append("No cell has finished: nothing to show yet.")
    else:
        lines += ["| setting | " + " | ".join(table.envs) + " |", "|---" * (len(table.envs) + 1) + "|"]
    for label in table.labels if table.envs else ():
        cells = []
        for env in table.envs:
            r = table.returns[label].get(env)
            ci = (
                None if r is None else mean_ci(r, bounds=return_range(env))
            )  # clipped to what a return can be
            cells.append("–" if ci is None else f"{ci.mean:.1f} ({ci.interval()})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")

    normed = [e for e in table.envs if e in table.bounds]
    scored = [lab for lab in table.labels if any(e in table.returns[lab] for e in normed)]
    complete = [lab for lab in scored if all(e in table.returns[lab] for e in normed)]
    if normed and scored:
        lines += [
            "## Normalised scores",
            "",
            "Score = (return − min) / (max − min) with the bounds "
            + ", ".join(f"{e}: [{table.bounds[e][0]:g}, {table.bounds[e][1]:g}]" for e in normed)
            + f". Point estimate [95 % stratified-bootstrap interval, {reps} resamples]."
            + _iqm_note(table, scored, normed)
            + (
                " Aggregates over all tasks only for settings that ran on every task."
                if len(complete) < len(scored) and len(normed) > 1
                else ""
            ),
            "",
            "| setting | task | IQM | mean | median |",
            "|---|---|---|---|---|",
        ]
        aggregate: dict[str, dict[str, Interval]] = {}
        for label in scored:
            envs = [e for e in normed if e in table.returns[label]]
            scores = score_matrix(table, label, envs) if label in complete else None
            for env in envs:
                column = scores[:, envs.index(env)][:, None] if scores is not None else None
                if column is None:
                    column = score_matrix(table, label, [env])
                ivs = [stratified_interval(column, f, reps, seed) for f in PER_TASK.values()]
                lines.append(f"| {label} | {env} | " + " | ".join(iv.text() for iv in ivs) + " |")
            if scores is not None and len(normed) > 1:
                aggregate[label] = {
                    n: stratified_interval(scores, f, reps, seed) for n, f in AGGREGATES.items()
                }
                lines.append(
                    f"| {label} | **all {len(normed)} tasks** | "
                    + " | ".join(iv.text() for iv in aggregate[label].values())
                    + " |"
                )
        lines.append("")
        if complete:
            plots.append(_interval_plot(sweep_dir, table, complete, normed, reps, seed))
            plots.append(_profile_plot(sweep_dir, table, complete, normed, reps, seed))
    else:
        lines += ["No normalised scores: give [min, max] per task in the sweep file's [scores] table.", ""]
    if table.failed:
        lines += ["## Failed cells", "", "| setting | task | error |", "|---|---|---|"]
        lines += [f"| {r['label']} | {r['env']} | {r['error']} |" for r in table.failed]
        lines.append("")
    plots.append(_curves_plot(sweep_dir, table))
    plt.close("all")
    summary = sweep_dir / "summary.md"
    atomic_write_text(summary, "\n".join(lines))
    return Report(sweep_dir, summary, [p for p in plots if p is not None])


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    tmp.replace(path)
    plt.close(fig)
    return path


def _interval_plot(
    sweep_dir: Path, table: Table, labels: list[str], envs: list[str], reps: int, seed: int
) -> Path:
    """One panel per aggregate: each setting's point estimate and interval over all normalised tasks."""
    fig, ax = figure(ncols=len(AGGREGATES), width=3.6, height=0.6 + 0.45 * len(labels))
    for i, (name, f) in enumerate(AGGREGATES.items()):
        a = ax[0, i]
        for y, label in enumerate(labels):
            iv = stratified_interval(score_matrix(table, label, envs), f, reps, seed)
            a.plot([iv.value], [y], "o", color=f"C{y}")
            if np.isfinite(iv.lo):
                a.hlines(y, iv.lo, iv.hi, color=f"C{y}", linewidth=6, alpha=0.5)
        a.set_yticks(range(len(labels)), labels if i == 0 else [""] * len(labels))
        a.set(title=f"{name} over {len(envs)} task{'s' if len(envs) > 1 else ''}", xlabel="normalised score")
        a.grid(axis="x", alpha=0.3)
    ax[0, 0].annotate(
        "bars: 95 % stratified-bootstrap intervals",
        (0, 0),
        xycoords="figure fraction",
        fontsize=8,
        va="bottom",
    )
    return _save(fig, sweep_dir / "aggregates.png")


def _profile_plot(
    sweep_dir: Path, table: Table, labels: list[str], envs: list[str], reps: int, seed: int
) -> Path:
    """Performance profiles with bootstrap bands."""
    taus = np.linspace(0.0, 1.0, 41)
    fig, ax = figure()
    a = ax[0, 0]
    for i, label in enumerate(labels):
        scores = score_matrix(table, label, envs)
        profile, (lo, hi) = performance_profile(scores, taus, reps, seed)
        a.plot(taus, profile, label=label, color=f"C{i}")
        if scores.shape[0] > 1:
            a.fill_between(taus, lo, hi, color=f"C{i}", alpha=0.2, linewidth=0)
    a.set(xlabel="normalised score τ", ylabel="fraction of runs with score > τ", title="performance profile")
    a.legend()
    return _save(fig, sweep_dir / "performance_profile.png")


def _curves_plot(sweep_dir: Path, table: Table) -> Path | None:
    """Evaluation curves per task, one line per setting: the mean over seeds and its 95 % band clipped to the
    task's known return range (each seed's curve when seeds are few; see :func:`proxrl.run.plots.band`)."""
    if not table.envs:
        return None
    fig, ax = figure(ncols=len(table.envs))
    for j, env in enumerate(table.envs):
        a = ax[0, j]
        for i, label in enumerate(table.labels):
            path = table.run_dirs.get((label, env))
            if path is None or not (path / "eval.csv").is_file():
                continue
            rows = latest_per_step(np.atleast_1d(np.genfromtxt(path / "eval.csv", delimiter=",", names=True)))
            cols = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
            band(
                a,
                rows["step"],
                np.stack([rows[n] for n in cols]),
                label,
                color=f"C{i}",
                bounds=return_range(env),
            )
        a.set(title=env, xlabel="environment steps (per seed)", ylabel="evaluation return")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=8)
    return _save(fig, sweep_dir / "learning_curves.png")
