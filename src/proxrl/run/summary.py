"""The end of a training run: the learning-curve plot and summary.md, from eval.csv.

The final evaluation return is the mean over seeds with its 95% confidence interval
(:func:`proxrl.run.stats.mean_ci`, Student t from ``scipy.stats.t``), clipped to the environment's return
range when it is known (:func:`proxrl.run.stats.return_range`). The plot (:func:`proxrl.run.plots.band`)
shows the mean and its clipped band over 5 or more seeds, each seed's curve over fewer. summary.md names the
interval method and says which plot was drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from proxrl.run.plots import band, figure
from proxrl.run.records import RunDir
from proxrl.run.stats import Range, mean_ci, return_range

if TYPE_CHECKING:
    from proxrl.run.train import RunConfig


def latest_per_step(rows: np.ndarray) -> np.ndarray:
    """The rows of a table (a structured array with a ``step`` field) keeping, for each step, the last row
    written, in step order. (A resume cuts the tables back to its checkpoint, so their steps do not repeat.)"""
    steps = rows["step"]
    last = {float(step): i for i, step in enumerate(steps)}
    return rows[sorted(last.values(), key=lambda i: steps[i])]


def finish_run(
    rd: RunDir,
    algo: str,
    env_id: str,
    run_cfg: RunConfig,
    bounds: Range | None = None,
) -> None:
    """Write ``learning_curve.png`` and ``summary.md`` in ``rd`` from its ``eval.csv``.

    ``bounds`` is the range of an episode's return that the band and the final interval are clipped to;
    ``None`` (the default) takes ``return_range(env_id)``, which is ``None`` (no clipping) for an id whose
    range is not known. ``(-math.inf, math.inf)`` turns clipping off.
    """
    rng = return_range(env_id) if bounds is None else bounds
    if rng is not None and rng[0] == -np.inf and rng[1] == np.inf:
        rng = None
    rows = latest_per_step(np.atleast_1d(np.genfromtxt(rd.path / "eval.csv", delimiter=",", names=True)))
    cols = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
    per_seed = np.stack([rows[n] for n in cols], axis=1)  # [E, N]
    steps = rows["step"]
    fig, ax = figure()
    seeds = f"{len(cols)} seed{'s' if len(cols) > 1 else ''}"
    drawn = band(ax[0, 0], steps, per_seed.T, f"{algo} ({seeds})", bounds=rng)
    if rng is not None:
        for b in rng:
            if np.isfinite(b):
                ax[0, 0].axhline(b, color="gray", linestyle=":", linewidth=0.8)
    ax[0, 0].set(
        xlabel="environment steps (per seed)", ylabel="evaluation return", title=f"{algo} on {env_id}"
    )
    ax[0, 0].legend()
    rd.save_figure(fig, "learning_curve")
    final = mean_ci(per_seed[-1], bounds=rng)
    best = per_seed.max(axis=0)
    rd.write_summary(
        f"# {algo} on {env_id}\n\n"
        f"{seeds} × {int(steps[-1]):,} environment steps"
        f"{', seeds trained together (vmapped)' if len(cols) > 1 else ''}.\n\n"
        f"- final evaluation return: {final.mean:.1f} ({final.interval()}), "
        f"{run_cfg.eval_episodes} deterministic episode{'s' if run_cfg.eval_episodes > 1 else ''} per seed\n"
        f"- per seed: {', '.join(f'{r:.1f}' for r in per_seed[-1])}\n"
        f"- best evaluation per seed: {', '.join(f'{r:.1f}' for r in best)}\n"
        f"- training time: {training_seconds(rd):.1f} s (compile included in the first chunk)\n"
        f"- learning curve: {drawn.describe()}\n\n"
        "Files: `metrics.csv` (per update, mean over seeds), `eval.csv`, `timing.csv` (wall-clock seconds per "
        "chunk), `tb/` (TensorBoard), `learning_curve.png`, `checkpoint.safetensors`.\n"
    )


def training_seconds(rd: RunDir) -> float:
    """Wall-clock seconds of the run's chunks (timing.csv)."""
    rows = np.atleast_1d(np.genfromtxt(rd.path / "timing.csv", delimiter=",", names=True))
    return float(latest_per_step(rows)["chunk_seconds"].sum())
