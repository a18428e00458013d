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


def _results(tmp_path, rows, scores):
    """A sweep directory with ``sweep.json``'s score bounds and a results table of finished ``rows``."""
    import csv
    import json

    from proxrl.run.sweep import COLUMNS

    (tmp_path / "sweep.json").write_text(json.dumps({"scores": scores}))
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
        w.writeheader()
        for key, label, env, steps, finals in rows:
            w.writerow(
                dict(
                    key=key,
                    label=label,
                    algo="ppo",
                    env=env,
                    seeds=len(finals),
                    status="ok",
                    final_per_seed=json.dumps(finals),
                    steps=steps,
                    run_dir=f"cells/{key}",
                )
            )
    return tmp_path


def test_report_keeps_cells_of_different_budgets_apart_and_scores_every_run(tmp_path) -> None:
    """A directory holding one setting at two budgets (two sweeps into it) reports each budget as its own row;
    no row replaces or truncates another, and each task's normalised mean is (mean return − min)/(max − min)
    over all its runs."""
    from proxrl.run.sweep_report import load_table, report, score_matrix

    scores = {"CartPole-v1": [0.0, 500.0], "Acrobot-v1": [-500.0, 0.0]}
    d = _results(
        tmp_path,
        [
            ("k1", "ppo", "CartPole-v1", 100000, [500.0, 450.0, 400.0]),
            ("k2", "ppo", "Acrobot-v1", 100000, [-80.0, -90.0, -100.0]),
            ("k3", "ppo", "CartPole-v1", 20000, [30.0, 40.0, 50.0, 500.0, 480.0]),
        ],
        scores,
    )
    table = load_table(d)
    big, small = "ppo (100,000 steps, 3 seeds)", "ppo (20,000 steps, 5 seeds)"
    assert table.labels == [big, small]
    np.testing.assert_array_equal(table.returns[small]["CartPole-v1"], [30.0, 40.0, 50.0, 500.0, 480.0])
    np.testing.assert_allclose(
        score_matrix(table, big, ["CartPole-v1", "Acrobot-v1"]).mean(axis=0), [0.9, 0.82]
    )
    text = report(d, reps=200).summary.read_text()
    # all 5 runs 0.06, 0.08, 0.1, 1, 0.96: IQM (one trimmed from each end) 0.38, mean 0.44, median 0.10
    assert f"| {small} | CartPole-v1 | 0.38 [0.07, 0.99] | 0.44 [" in text
    assert f"| {big} | CartPole-v1 | 0.90 [" in text and "here as few as 3" in text
    # raw returns: the t interval of 30 … 500 (220 ± 297) is clipped to what a CartPole return can be
    row = next(line for line in text.splitlines() if line.startswith(f"| {small} | 220.0 ("))
    assert "[0.0, 500.0]" in row and "clipped to the known range [0, 500]" in row, row
    # a sweep with no finished cell says so instead of an empty table
    (tmp_path / "none").mkdir()
    none = _results(tmp_path / "none", [], scores)
    assert "No cell has finished: nothing to show yet." in report(none, reps=200).summary.read_text()
    # one budget, one name; the same name twice on one task is told apart by the cell key
    (tmp_path / "same").mkdir()
    same = _results(
        tmp_path / "same",
        [("a1", "x", "CartPole-v1", 10, [1.0, 2.0]), ("b2", "x", "CartPole-v1", 10, [3.0, 4.0])],
        scores,
    )
    assert load_table(same).labels == ["x [a1]", "x [b2]"]


def test_score_matrix_refuses_a_setting_with_unequal_runs_per_task() -> None:
    """A results table edited by hand can give one setting different run counts per task; the aggregate is
    refused with the counts rather than computed on a cut."""
    from proxrl.errors import ConfigError
    from proxrl.run.sweep_report import Table, score_matrix

    envs = ["CartPole-v1", "Acrobot-v1"]
    returns = {"ppo": {"CartPole-v1": np.array([1.0, 2.0, 3.0]), "Acrobot-v1": np.array([-1.0, -2.0])}}
    table = Table(["ppo"], envs, returns, {"CartPole-v1": (0.0, 500.0), "Acrobot-v1": (-500.0, 0.0)}, {}, [])
    with pytest.raises(
        ConfigError, match=r"different numbers of runs per task \(CartPole-v1: 3, Acrobot-v1: 2\)"
    ):
        score_matrix(table, "ppo", envs)
    np.testing.assert_allclose(score_matrix(table, "ppo", envs[:1])[:, 0], [0.002, 0.004, 0.006])
