"""The sweep report's statistics (rliable): closed forms for IQM / mean / median and the performance profile,
the stratified bootstrap's strata and its normal-theory width, and reproducibility from the seed."""

from __future__ import annotations

import numpy as np
import pytest

from proxrl.run.sweep_report import (
    AGGREGATES,
    PER_TASK,
    iqm,
    mean,
    median,
    performance_profile,
    run_median,
    stratified_interval,
)


def test_aggregates_have_their_closed_forms() -> None:
    runs = np.arange(8.0)[:, None]  # one task, scores 0..7: IQM = mean of 2, 3, 4, 5
    assert iqm(runs) == pytest.approx(3.5)
    assert run_median(runs) == pytest.approx(3.5)
    m = np.array([[0.0, 1.0, 10.0], [2.0, 5.0, 10.0]])  # task means 1, 3, 10
    assert mean(m) == pytest.approx(14.0 / 3.0)
    assert median(m) == pytest.approx(3.0)
    # sorted 0 1 2 5 10 10: ⌊0.25·6⌋ = 1 trimmed from each end leaves 1 2 5 10
    assert iqm(m) == pytest.approx(4.5)
    assert set(AGGREGATES) == set(PER_TASK) == {"IQM", "mean", "median"}


def test_performance_profile_is_the_fraction_of_runs_above_tau_averaged_over_tasks() -> None:
    scores = np.array([[0.2, 0.8], [0.4, 0.6]])
    profile, band = performance_profile(scores, np.array([0.0, 0.3, 0.5, 0.7, 1.0]), reps=200)
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.5, 0.25, 0.0])
    assert band.shape == (2, 5)
    assert np.all(band[0] <= profile + 1e-12) and np.all(profile <= band[1] + 1e-12)


def test_bootstrap_is_stratified_by_task() -> None:
    # task 0 scores in {0, 0.1}, task 1 in {0.9, 1}: a resample drawing runs within each task keeps the mean in
    # [0.45, 0.55]; one drawing across tasks would reach 0.05 or 0.95
    m = np.stack([np.tile([0.0, 0.1], 5), np.tile([0.9, 1.0], 5)], axis=1)
    iv = stratified_interval(m, mean, reps=2000)
    assert 0.45 <= iv.lo < iv.value < iv.hi <= 0.55


def test_percentile_interval_of_the_mean_matches_normal_theory() -> None:
    # n = 60 draws: the bootstrap distribution of the mean is close to normal with sd s·√((n−1)/n)/√n; the
    # percentile interval's ends lie at ±1.96 of it. With 4000 resamples the 2.5 % quantile's Monte Carlo sd is
    # ≈ √(0.025·0.975/4000)/φ(1.96) ≈ 0.042 standard errors; the skew of a normal sample's bootstrap adds less;
    # 0.2 standard errors is a margin of about 5 such sds.
    x = np.random.default_rng(3).normal(size=(60, 1))
    iv = stratified_interval(x, mean, reps=4000)
    se = x.std() / np.sqrt(len(x))
    assert iv.lo == pytest.approx(x.mean() - 1.96 * se, abs=0.2 * se)
    assert iv.hi == pytest.approx(x.mean() + 1.96 * se, abs=0.2 * se)


def test_same_seed_same_interval_and_the_global_generator_is_restored() -> None:
    m = np.random.default_rng(0).uniform(size=(6, 3))
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = stratified_interval(m, iqm, reps=500, seed=4)
    b = stratified_interval(m, iqm, reps=500, seed=4)
    c = stratified_interval(m, iqm, reps=500, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert a == b and a != c


def test_one_run_or_constant_scores_give_no_interval() -> None:
    assert np.isnan(stratified_interval(np.array([[0.3, 0.4]]), mean).lo)
    iv = stratified_interval(np.full((4, 2), 0.5), mean)
    assert iv.value == 0.5 and np.isnan(iv.lo) and iv.text() == "0.50"
