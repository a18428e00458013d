"""CLI, run records and statistics."""

import csv
import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from proxrl.cli import main
from proxrl.errors import ConfigError
from proxrl.run.records import RunDir


def test_run_dir_appends_and_refuses_overwrite(tmp_path):
    rd = RunDir("t", tmp_path / "run")
    rd.write_config({"a": 1, "b": (1, 2)})
    rd.log({"k": 1, "v": 0.5})
    rd.log({"k": 2, "v": np.float32(0.25)})
    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert [r["k"] for r in rows] == ["1", "2"] and rows[1]["v"] == "0.25"
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {"a": 1, "b": [1, 2]}
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir("t", tmp_path / "run")


def test_lecture_expert_end_to_end(tmp_path, capsys):
    out = tmp_path / "e"
    rc = main(["lecture", "expert", "--seeds", "16", "--rounds", "50", "--num-etas", "3", "--out", str(out)])
    assert rc == 0
    for f in (
        "config.json",
        "metrics.csv",
        "summary.md",
        "total_reward_vs_eta.png",
        "pi_action1_over_rounds.png",
        "final_action_fraction.png",
    ):
        assert (out / f).exists(), f
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 6
    summary = (out / "summary.md").read_text()
    assert summary.count("holds here") == 3  # the three claims, each with its verdict
    assert str(out / "summary.md") in capsys.readouterr().out


def test_lecture_bandit_and_conditioning_end_to_end(tmp_path):
    assert main(["lecture", "bandit", "--seeds", "4", "--rounds", "200", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "regret.png").exists()
    # the records hold the runs' numbers: every algorithm on both instances, each row's mean and interval those
    # of the final regrets of the same seeds run again here (metrics.csv keeps 6 significant digits), and the
    # summary's table the same cells
    from proxrl.lecture.bandit import BanditConfig
    from proxrl.run.stats import mean_ci
    from proxrl.tabular import bandit as B
    from proxrl.tabular import rewards as rewards_lib

    cfg = BanditConfig(seeds=4, rounds=200)
    rows = list(csv.DictReader((tmp_path / "b" / "metrics.csv").open()))
    names = [a.name for a in cfg.algorithms()]
    assert [(r["instance"], r["algo"]) for r in rows] == [
        (inst, name) for inst in ("stochastic", "adversarial") for name in names
    ]
    summary = (tmp_path / "b" / "summary.md").read_text()
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(np.arange(4))
    models = {
        "stochastic": rewards_lib.bernoulli(cfg.arms),
        "adversarial": rewards_lib.switching_sequence(200, len(cfg.arms), cfg.switch_frac),
    }
    for row, (inst, algo) in zip(rows, [(i, a) for i in models for a in cfg.algorithms()], strict=True):
        final = np.asarray(B.make_runner(algo, models[inst], None, 200)(keys).regret)[:, -1]
        ci = mean_ci(final)
        np.testing.assert_allclose(
            [float(row[c]) for c in ("final_regret_mean", "ci_lo", "ci_hi")],
            [ci.mean, ci.lo, ci.hi],
            rtol=1e-5,
            atol=1e-6,
        )
        assert f"| {inst} | {algo.name} | {algo.eta:.3g} | {algo.n} | {ci.short()} |" in summary
    args = [
        "lecture",
        "conditioning",
        "--kappas",
        "2",
        "10",
        "--init-p",
        "0.1",
        "0.01",
        "--out",
        str(tmp_path / "c"),
    ]
    assert main(args) == 0
    summary = (tmp_path / "c" / "summary.md").read_text()
    # GD within the bound at both κ, Newton in one step, and NPG's count per factor 10 in 1/p from the rows
    assert (
        "at most the theory's bound at 2 of 2 κ values" in summary
        and "Newton needs one step at every κ." in summary
    )
    rows = list(csv.DictReader((tmp_path / "c" / "expert.csv").open()))
    assert [r["init_p"] for r in rows] == ["0.1", "0.01"]
    per_decade = int(rows[1]["npg_iters"]) - int(
        rows[0]["npg_iters"]
    )  # two points: the fit is their difference
    assert f"NPG's by {per_decade:.1f} iterations per\nfactor 10 in 1/p" in summary


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["lecture", "expert", "--eta-min", "0"], "--eta-min must be a finite number > 0, got 0.0"),
        (["lecture", "expert", "--init", "0.5", "0.6"], "--init must sum to 1"),
        (["lecture", "expert", "--init", "-0.5", "1.5"], "init must have finite entries >= 0"),
        (["lecture", "expert", "--init", "0.2", "0.3", "0.5"], "init must have length 2"),
        (["lecture", "expert", "--p", "0.6", "1.5"], "--p must lie in [0, 1], got 1.5"),
        (["lecture", "bandit", "--reg-m", "0"], "--reg-m must be an integer >= 1, got 0"),
        (["lecture", "bandit", "--npg-n", "0"], "--npg-n must be an integer >= 1, got 0"),
        (["lecture", "bandit", "--pg-eta", "-1"], "--pg-eta must be a finite number > 0"),
        (["lecture", "conditioning", "--kappas", "0.5"], "--kappas must be > 1"),
        (["frobnicate"], "unknown command 'frobnicate'"),
    ],
)
def test_cli_bad_input_exit_2_one_line(args, fragment, capsys, tmp_path):
    assert main([*args, *(["--out", str(tmp_path / "x")] if args[0] == "lecture" else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err


def test_console_script_help_and_error():
    """The installed entry point: --help lists commands; bad input exits 2 without a traceback."""
    ok = subprocess.run([sys.executable, "-m", "proxrl.cli", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "lecture" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "proxrl.cli", "lecture", "expert", "--rounds", "0"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "proxrl: error: --rounds must be an integer >= 1, got 0"


def test_lecture_expert_summary_says_when_a_claim_does_not_hold():
    """Each claim of the summary carries the verdict of the numbers under it: with totals where PG beats EW
    by far at one η, claim 3 reads "does not hold here"; with EW ahead everywhere, "holds here"."""
    from proxrl.lecture.expert import ExpertConfig, _summary

    cfg = ExpertConfig(seeds=8, rounds=10, num_etas=2)
    etas = np.array([0.01, 1000.0])
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.1, size=(2, 8))
    pi1 = {"ew": np.full((2, 8), 0.9), "pg": np.array([[1e-4] * 8, [1e-5] * 8])}
    pg_ahead = _summary(cfg, etas, {"ew": 5.0 + noise, "pg": np.array([[5.0] * 8, [9.0] * 8])}, pi1)
    ew_ahead = _summary(cfg, etas, {"ew": 9.0 + noise, "pg": np.array([[5.0] * 8, [6.0] * 8])}, pi1)
    claim = "**EW is at least as good as PG at every η** ("
    assert claim + "does not hold here: PG significantly better at 1 η values)" in pg_ahead
    assert claim + "holds here: PG significantly better at 0 η values)" in ew_ahead
    for text in (pg_ahead, ew_ahead):  # PG ends below EW at the small η, and locks at the large one
        assert "**PG at small η is too slow to leave action 2** (holds here)" in text
        assert "**PG at large η commits too fast** (holds here)" in text
    still = {"ew": pi1["ew"], "pg": np.full((2, 8), 0.95)}
    text = _summary(cfg, etas, {"ew": 9.0 + noise, "pg": np.full((2, 8), 6.0)}, still)
    assert "too slow to leave action 2** (does not hold here)" in text
    assert "commits too fast** (does not hold here)" in text
    assert "PG leaves action 2 in most seeds at every η of the grid" in text
    # PG behind EW at the small η but off action 2 all the same: not "too slow to leave" it
    left = {"ew": np.full((2, 8), 0.99), "pg": np.array([[0.9] * 8, [1e-5] * 8])}
    text = _summary(cfg, etas, {"ew": 9.0 + noise, "pg": np.full((2, 8), 6.0)}, left)
    assert "too slow to leave action 2** (does not hold here)" in text
    # the η values at which PG stays on action 2 are counted from the smallest on, up to the first it leaves
    three = np.array([0.01, 1.0, 1000.0])
    gaps = {"ew": np.full((3, 8), 0.9), "pg": np.array([[1e-4] * 8, [0.9] * 8, [1e-5] * 8])}
    text = _summary(
        ExpertConfig(seeds=8, rounds=10, num_etas=3), three, {k: np.full((3, 8), 5.0) for k in gaps}, gaps
    )
    assert "PG ends on action 2 in most seeds for every η ≤ 0.01;" in text


def test_lecture_summaries_with_one_seed_say_a_claim_is_not_tested():
    """One seed has no interval: the expert's significance claim and the bandit's bound column say so rather
    than "holds" or "no"."""
    from proxrl.lecture.expert import ExpertConfig
    from proxrl.lecture.expert import _summary as expert_summary

    cfg = ExpertConfig(seeds=1, rounds=10, num_etas=2)
    pi1 = {"ew": np.full((2, 1), 0.9), "pg": np.full((2, 1), 1e-4)}
    text = expert_summary(
        cfg, np.array([0.01, 1000.0]), {"ew": np.full((2, 1), 5.0), "pg": np.full((2, 1), 9.0)}, pi1
    )
    assert "**EW is at least as good as PG at every η** (one seed: not tested)" in text
    assert "| 0.01 | 5.0 (one seed) | 9.0 (one seed) | -4.00 (one seed) |" in text


def test_lecture_bandit_summary_verdicts_follow_the_numbers():
    """The bound's formula is printed as used (√(2TK ln K) only at the standard η); with one seed the bound
    column compares the value and claim 1 is not tested; with many seeds the paired NPG comparison names its
    side of 0."""
    from proxrl.lecture.bandit import BanditConfig, _summary

    instances = ["stochastic", "adversarial"]

    def summary(cfg, regret_of):
        algos = cfg.algorithms()
        regrets = {(i, a.name): regret_of(i, j) for i in instances for j, a in enumerate(algos)}
        return _summary(cfg, algos, regrets, instances, 69.5)

    one = BanditConfig(seeds=1, rounds=300, exp3_eta=0.1)
    text = summary(one, lambda i, j: np.full((1, 3), 17.6))
    assert "ln K/η + ηKT/2 = 69.5." in text and "√(2TK ln K)" not in text
    assert "| 17.6 (one seed) | yes (one seed) |" in text
    assert "stays under its bound** (one seed: not tested)" in text
    many = BanditConfig(seeds=6, rounds=300)
    rng = np.random.default_rng(0)
    noise = rng.normal(scale=0.1, size=(6, 1))
    # regularisation form (index 4) 10 above the exact step (index 3) on every seed: it lags
    text = summary(many, lambda i, j: 40.0 + noise + (10.0 if j == 4 else 0.0))
    assert "(= √(2TK ln K), the standard tuning of η)" in text
    assert (
        "stays under its bound** (holds here)" in text
        and "(the regularisation form lags the exact step)" in text
    )
    text = summary(many, lambda i, j: 80.0 + noise - (10.0 if j == 4 else 0.0))
    assert "stays under its bound** (does not hold here)" in text
    assert "(the regularisation form is ahead of the exact step)" in text
    # with another η the regularisation form approximates another step: no comparison
    other = BanditConfig(seeds=6, rounds=300, reg_eta=0.2)
    text = summary(other, lambda i, j: 40.0 + noise + (10.0 if j == 4 else 0.0))
    assert (
        "lags" not in text
        and "not compared: NPG runs η = 0.05, n = 10 and the regularisation form η = 0.2" in text
    )
