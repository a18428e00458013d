"""`proxrl lecture one-point`: regret slopes of bandit gradient descent, and the command end to end.

The slopes are fitted on a small configuration (d = 2, T = 1000 … 8000, 100 seeds). Their bootstrap intervals
over seeds are about ±0.01 wide; the margins below are wider for a stated reason: at these horizons the
one-point regret is R_T ≈ a·T^{3/4} − b·T^{1/2} (the crossing of the ball takes ∝ T^{3/4} rounds and the per-round
cost after it is paid over T − ∝T^{3/4} rounds), so its local slope lies above 3/4, most for the linear loss whose
minimiser is on the boundary. Each margin still separates T^{3/4} from T^{1/2}.
"""

from __future__ import annotations

import numpy as np
import pytest

from proxrl.cli import main
from proxrl.lecture.one_point import (
    LOSSES,
    METHODS,
    OnePointConfig,
    fit_slope,
    local_slopes,
    regret_runs,
    step_sizes,
)

HORIZONS = (1000, 2000, 4000, 8000)
CFG = OnePointConfig(dim=2, seeds=100, horizons=HORIZONS, checkpoints=4)
# (low, high) per (loss, method): 1/2 ± 0.05 and 3/4 ± 0.05, widened where a lower-order term is known: the
# one-point linear slope upward by the crossing (+0.12), the two-point linear slope downward by the shrinkage
# cost δ·T = ln T on a boundary minimiser (−0.08)
BOUNDS = {
    ("convex", "one_point"): (0.70, 0.80),
    ("linear", "one_point"): (0.70, 0.87),
    ("linear", "two_point"): (0.42, 0.55),
    **{
        (loss, m): (0.45, 0.55)
        for loss, m in [
            ("convex", "two_point"),
            ("convex", "full_information"),
            ("linear", "full_information"),
        ]
    },
}


@pytest.fixture(scope="module")
def command(tmp_path_factory):
    """The command on the small configuration (its compiled runs are reused by the direct calls below)."""
    out = tmp_path_factory.mktemp("one-point")
    args = ["lecture", "one-point", "--dim", "2", "--seeds", "100", "--checkpoints", "4", "--draws", "256"]
    args += ["--horizons", *map(str, HORIZONS), "--deltas", "0.1", "0.5", "--out", str(out)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def slopes(command):
    out = {}
    for loss in LOSSES.values():
        for method in METHODS:
            runs = regret_runs(loss, method, CFG)
            out[(loss.name, method)] = (fit_slope(np.asarray(HORIZONS), runs.final), runs)
    return out


@pytest.mark.parametrize("key", list(BOUNDS), ids=lambda k: "-".join(k))
def test_regret_slopes(slopes, key):
    s, runs = slopes[key]
    local = local_slopes(np.asarray(HORIZONS), runs.final)
    print(f"{key}: slope {s.slope:.3f} [{s.lo:.3f}, {s.hi:.3f}], local {np.round(local, 3).tolist()}")
    low, high = BOUNDS[key]
    assert low <= s.slope <= high, (key, s)
    assert s.hi - s.lo < 0.04, (key, s)  # the spread over seeds is well inside the margin
    assert np.all(runs.final > 0)


def test_one_point_pays_more_and_its_slope_falls_toward_three_quarters(slopes):
    for loss in ("linear", "convex"):
        one, two, full = (slopes[(loss, m)][1].final[-1].mean() for m in METHODS)
        assert one > two > full, (loss, one, two, full)
        local = local_slopes(np.asarray(HORIZONS), slopes[(loss, "one_point")][1].final)
        assert local[-1] < local[0], (loss, local)


def test_step_sizes_follow_the_papers():
    s = step_sizes("one_point", 10_000, 5, 1.0, 1.0)
    assert s.delta == pytest.approx(0.1 * np.sqrt(5 / 6))
    assert s.alpha == s.delta
    assert s.eta == pytest.approx(s.delta / (100 * 5))  # ν = 1/(C√T), η = νδ/d
    assert step_sizes("full_information", 10_000, 5, 1.0, 2.0) == (pytest.approx(1 / 200), 0.0, 0.0)


def test_command_writes_its_run_with_the_same_numbers(command, slopes):
    """The command's files, and its regret table equal to a separate call of the same runs (same seed)."""
    for name in ("summary.md", "estimators.png", "regret.png", "regret.csv", "estimator.csv"):
        assert (command / name).is_file(), name
    rows = np.genfromtxt(command / "regret.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert len(rows) == len(slopes) * len(HORIZONS)  # every (loss, method) at every horizon
    for row in rows:
        runs = slopes[(row["loss"], row["method"])][1]
        i = HORIZONS.index(int(row["horizon"]))
        np.testing.assert_allclose(
            row["regret_mean"], runs.final[i].mean(dtype=np.float64), rtol=5e-6
        )  # 6 significant digits
    summary = (command / "summary.md").read_text()
    assert "measured slope" in summary and "| convex | one_point | T^0.75 |" in summary


@pytest.mark.parametrize(
    "bad, message",
    [
        (["--dim", "0"], "dim must be an integer >= 1"),
        (["--deltas", "0.1", "0"], "deltas must be finite numbers > 0"),
        (["--horizons", "100"], "at least two horizons"),
        (["--seeds", "1"], "seeds must be an integer >= 2"),
    ],
)
def test_bad_input_is_one_line(capsys, bad, message):
    assert main(["lecture", "one-point", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err


def test_fit_slope_is_least_squares_on_the_log_means_and_its_interval_resamples_seeds():
    """The slope is numpy's least-squares fit of log(mean R_T) on log T; exact power laws give their exponent
    whatever the seeds' spread of constants, and the bootstrap interval is the quantiles of the fits of
    seed-resampled means (recomputed here with the same draws)."""
    horizons = np.array([10.0, 100.0, 1000.0, 10000.0])
    rng = np.random.default_rng(5)
    final = rng.uniform(0.5, 2.0, size=(1, 7)) * horizons[:, None] ** 0.75  # R_T = c_seed · T^0.75
    s = fit_slope(horizons, final, resamples=300, seed=3)
    assert (
        s.slope == pytest.approx(0.75, abs=1e-12)
        and s.lo == pytest.approx(0.75)
        and s.hi == pytest.approx(0.75)
    )
    noisy = final * rng.lognormal(0.0, 0.3, size=final.shape)
    s = fit_slope(horizons, noisy, resamples=300, seed=3)
    assert s.slope == pytest.approx(np.polyfit(np.log(horizons), np.log(noisy.mean(axis=1)), 1)[0], rel=1e-12)
    idx = np.random.default_rng(3).integers(0, 7, size=(300, 7))
    boot = [np.polyfit(np.log(horizons), np.log(noisy[:, i].mean(axis=1)), 1)[0] for i in idx]
    np.testing.assert_allclose([s.lo, s.hi], np.quantile(boot, [0.025, 0.975]), rtol=1e-10)
    assert s.lo < s.slope < s.hi
