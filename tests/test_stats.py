"""Statistics over seeds: intervals against closed forms, coverage by simulation, clipping to known return
ranges, per-seed lines when seeds are few, and the training summary that uses them."""

import math
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from proxrl.run.plots import MIN_BAND_SEEDS, band, describe_plot, figure
from proxrl.run.records import RunDir
from proxrl.run.stats import RETURN_RANGES, mean_ci, return_range
from proxrl.run.summary import finish_run

# t_{0.975, ν} in closed form: ν = 1 (Cauchy) tan(π(p − ½)); ν = 2, with α = 2p − 1, α·√(2 / (1 − α²)).
T975_DF1 = math.tan(math.pi * 0.475)
T975_DF2 = 0.95 * math.sqrt(2 / (1 - 0.95**2))
T975_DF4 = 2.7764451051977987  # tabulated to 16 digits (e.g. R: qt(0.975, 4))


@pytest.mark.parametrize(
    "x, t", [([1.0, 4.0], T975_DF1), ([1.0, 2.0, 6.0], T975_DF2), ([1, 2, 3, 4, 5.0], T975_DF4)]
)
def test_t_interval_half_width_is_t_quantile_times_standard_error(x, t):
    x = np.array(x)
    n = len(x)
    s = math.sqrt(sum((v - x.mean()) ** 2 for v in x) / (n - 1))
    ci = mean_ci(x)
    np.testing.assert_allclose([ci.mean, ci.lo, ci.hi], [x.mean(), x.mean() - t * s / math.sqrt(n), x.mean() + t * s / math.sqrt(n)], rtol=1e-12)  # fmt: skip
    assert ci.n == n and ci.method == "t"


def test_t_interval_along_an_axis_and_other_confidence():
    x = np.array([[1.0, 10.0], [2.0, 30.0], [6.0, 20.0]])  # 3 seeds, 2 quantities
    ci = mean_ci(x, axis=0, confidence=0.5)
    # t_{0.75, 2} = α·√(2 / (1 − α²)) with α = 0.5
    half = 0.5 * math.sqrt(2 / 0.75) * x.std(axis=0, ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(ci.lo, x.mean(axis=0) - half, rtol=1e-12)
    np.testing.assert_allclose(ci.hi, x.mean(axis=0) + half, rtol=1e-12)
    assert mean_ci(x[:, 0], confidence=0.5).interval().startswith("50% CI")


def test_interval_text_names_the_method_and_one_seed_has_none():
    ci = mean_ci(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert ci.interval(2) == f"95% CI [{ci.lo:.2f}, {ci.hi:.2f}], Student t (scipy.stats.t) over 5 seeds"
    assert (
        "percentile bootstrap (scipy.stats.bootstrap"
        in mean_ci(np.arange(5.0), method="bootstrap").interval()
    )
    one = mean_ci(np.array([[7.0, -1.0]]))  # one seed, two quantities
    np.testing.assert_array_equal(one.mean, [7.0, -1.0])
    assert one.n == 1 and np.isnan(one.lo).all() and np.isnan(one.hi).all()
    assert mean_ci(np.array([7.0])).interval() == "one seed: no interval"
    with pytest.raises(ValueError, match="method must be one of t, bootstrap"):
        mean_ci(np.arange(3.0), method="z")


COVERAGE_TRIALS, COVERAGE_N = 2000, 5
# 3 binomial standard deviations of the observed coverage of an exact 95% interval
COVERAGE_TOL = 3 * math.sqrt(0.95 * 0.05 / COVERAGE_TRIALS)


def _coverage(lo: np.ndarray, hi: np.ndarray, mu: float) -> float:
    return float(np.mean((lo <= mu) & (mu <= hi)))


def test_t_interval_covers_the_mean_95_percent_of_the_time():
    mu = 3.0
    x = np.random.default_rng(0).normal(mu, 2.0, size=(COVERAGE_N, COVERAGE_TRIALS))
    ci = mean_ci(x, axis=0)
    assert abs(_coverage(ci.lo, ci.hi, mu) - 0.95) < COVERAGE_TOL
    # The test can fail: the normal quantile 1.96 in place of t_{0.975, 4} covers about 88% at n = 5.
    half = 1.959963984540054 * x.std(axis=0, ddof=1) / math.sqrt(COVERAGE_N)
    assert abs(_coverage(ci.mean - half, ci.mean + half, mu) - 0.95) > COVERAGE_TOL
    # Clipping to a range that holds the mean leaves coverage unchanged, trial by trial.
    clipped = mean_ci(x, axis=0, bounds=(mu - 0.5, math.inf))
    covered = (ci.lo <= mu) & (mu <= ci.hi)
    np.testing.assert_array_equal((clipped.lo <= mu) & (mu <= clipped.hi), covered)
    assert clipped.lo.min() == mu - 0.5 and (clipped.lo >= mu - 0.5).all()


def test_bootstrap_interval_is_reproducible_inside_the_data_and_near_t_for_many_seeds():
    rng = np.random.default_rng(1)
    x = rng.normal(0.0, 1.0, size=(4, 3))
    a, b = mean_ci(x, method="bootstrap"), mean_ci(x, method="bootstrap")
    np.testing.assert_array_equal(a.lo, b.lo)
    assert (a.lo >= x.min(axis=0)).all() and (a.hi <= x.max(axis=0)).all() and (a.lo < a.mean).all()
    same = mean_ci(np.full(6, 2.5), method="bootstrap")
    assert same.lo == same.hi == 2.5
    many = rng.normal(10.0, 1.0, size=400)
    boot, t = mean_ci(many, method="bootstrap"), mean_ci(many)
    np.testing.assert_allclose([boot.lo, boot.hi], [t.lo, t.hi], atol=0.1 * (t.hi - t.lo))


def test_known_return_ranges():
    assert return_range("CartPole-v1") == (0.0, 500.0)
    assert return_range("Acrobot-v1") == (-500.0, 0.0)
    assert return_range("MountainCar-v0") == (-200.0, 0.0)
    lo, hi = return_range("Pendulum-v1")
    assert hi == 0.0 and lo == pytest.approx(-200 * 16.2736044, rel=1e-8)
    assert return_range("MountainCarContinuous-v0") == (-math.inf, 100.0)
    assert return_range("HalfCheetah-v5") is None
    assert all(lo <= hi for lo, hi in RETURN_RANGES.values())


def test_interval_clipped_to_the_return_range():
    # CartPole with 3 seeds: the t interval runs from −500 to above 900; the returns lie in [0, 500].
    x = np.array([500.0, 500.0, 20.0])
    raw = mean_ci(x)
    assert raw.lo < 0 and raw.hi > 500
    ci = mean_ci(x, bounds=return_range("CartPole-v1"))
    assert (ci.lo, ci.hi) == (0.0, 500.0) and ci.mean == raw.mean
    assert ci.interval().endswith("over 3 seeds, clipped to the known range [0, 500]")
    with pytest.raises(ValueError, match="low <= high"):
        mean_ci(x, bounds=(1.0, 0.0))


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _band_extent(ax) -> tuple[float, float]:
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    y = np.concatenate([p.vertices[:, 1] for p in poly.get_paths()])
    return float(y.min()), float(y.max())


def test_band_is_clipped_to_the_given_range():
    x = np.arange(4.0)
    samples = np.array([[500.0, 500, 20, 0]] * 3 + [[10.0, 490, 500, 500]] * 3)  # 6 seeds
    _, ax = figure()
    drawn = band(ax[0, 0], x, samples, "clipped", bounds=(0.0, 500.0))
    assert drawn.kind == "band" and drawn.bounds == (0.0, 500.0)
    assert _band_extent(ax[0, 0]) == (0.0, 500.0)
    assert len(ax[0, 0].lines) == 1
    _, ax = figure()
    band(ax[0, 0], x, samples, "unclipped")
    lo, hi = _band_extent(ax[0, 0])
    assert lo < 0 and hi > 500  # the same band without the range leaves [0, 500]
    assert "clipped to the known range [0, 500]" in drawn.describe()


@pytest.mark.parametrize("n", [1, 2, MIN_BAND_SEEDS - 1])
def test_few_seeds_are_drawn_as_per_seed_lines(n):
    _, ax = figure()
    x = np.arange(10.0)
    samples = np.random.default_rng(n).normal(size=(n, 10))
    drawn = band(ax[0, 0], x, samples, "few", bounds=(0.0, 1.0))
    assert drawn.kind == "per-seed lines" and drawn.bounds is None
    assert len(ax[0, 0].lines) == (1 if n == 1 else n + 1)  # each seed and the mean
    assert not ax[0, 0].collections  # no band
    np.testing.assert_allclose(ax[0, 0].lines[0].get_ydata(), samples.mean(axis=0))
    assert [t.get_text() for t in ax[0, 0].legend().get_texts()] == ["few"]
    assert drawn.describe() == describe_plot(n)


def _fake_run(tmp_path, returns_per_eval: list[list[float]]) -> RunDir:
    rd = RunDir("t", tmp_path / "run")
    for e, returns in enumerate(returns_per_eval):
        rd.log(
            {"step": 1000 * (e + 1), "eval_return_mean": np.mean(returns)}
            | {f"eval_return_seed{i}": r for i, r in enumerate(returns)},
            table="eval",
        )
        rd.log({"step": 1000 * (e + 1), "chunk_seconds": 0.5}, table="timing")
    return rd


def test_finish_run_few_seeds_clipped_interval_and_per_seed_lines(tmp_path):
    rd = _fake_run(tmp_path, [[20.0, 30.0, 10.0], [500.0, 500.0, 20.0]])
    finish_run(rd, "ppo", "CartPole-v1", SimpleNamespace(eval_episodes=10))
    text = (rd.path / "summary.md").read_text()
    assert (
        "- final evaluation return: 340.0 (95% CI [0.0, 500.0], Student t (scipy.stats.t) over 3 seeds, "
        in text
    )
    assert "clipped to the known range [0, 500])" in text
    assert "each of the 3 seeds' curves and their mean, no confidence band" in text
    assert "- per seed: 500.0, 500.0, 20.0" in text and "2,000 environment steps" in text
    assert "- training time: 1.0 s" in text
    assert (rd.path / "learning_curve.png").stat().st_size > 0


def test_finish_run_many_seeds_band_unknown_range(tmp_path):
    rd = _fake_run(tmp_path, [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    finish_run(rd, "sac", "HalfCheetah-v5", SimpleNamespace(eval_episodes=5))
    text = (rd.path / "summary.md").read_text()
    ci = mean_ci(np.arange(1.0, 7.0))
    assert f"- final evaluation return: 3.5 ({ci.interval()}), 5 deterministic episodes per seed" in text
    assert "clipped" not in ci.interval()
    assert "mean over 6 seeds and its pointwise 95% confidence band, Student t (scipy.stats.t) " in text
    assert "(no known range: not clipped)" in text


def test_seeds_that_agree_exactly_print_no_interval():
    """Equal seeds give bounds equal to the mean (no spread); the printed forms say so instead of claiming a
    zero-width interval, and table cells name one seed or an interval as they are."""
    same = mean_ci(np.array([500.0, 500.0, 500.0]), bounds=(0.0, 500.0))
    assert same.lo == same.hi == 500.0
    assert same.interval() == "all 3 seeds equal: no interval"
    assert same.short() == "500.0 (all seeds equal)"
    assert mean_ci(np.array([7.0])).short(".2f") == "7.00 (one seed)"
    ci = mean_ci(np.array([1.0, 2.0, 3.0]))  # 2 ∓ t_{0.975, 2}/√3 = [−0.484, 4.484]
    assert ci.short(".3g") == "2 [-0.484, 4.48]"


def test_plot_titles_say_what_the_band_plot_draws():
    from proxrl.run.plots import seeds_tag

    assert seeds_tag(1) == "1 seed"
    assert seeds_tag(MIN_BAND_SEEDS - 1) == f"{MIN_BAND_SEEDS - 1} seeds, each drawn"
    assert seeds_tag(200) == "200 seeds, 95% CI"
    fig, ax = figure()
    assert band(ax[0, 0], np.arange(3), np.ones((MIN_BAND_SEEDS - 1, 3)), "x").kind == "per-seed lines"
    plt.close(fig)
