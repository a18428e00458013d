"""CLI, run records and statistics."""

import csv
import json
import subprocess
import sys

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
    assert "EW is at least as good" in (out / "summary.md").read_text()
    assert str(out / "summary.md") in capsys.readouterr().out


def test_lecture_bandit_and_conditioning_end_to_end(tmp_path):
    assert main(["lecture", "bandit", "--seeds", "4", "--rounds", "200", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "regret.png").exists()
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
    assert "Newton" in (tmp_path / "c" / "summary.md").read_text()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["lecture", "expert", "--eta-min", "0"], "eta_min must be a finite number > 0, got 0.0"),
        (["lecture", "expert", "--init", "0.5", "0.6"], "init must sum to 1"),
        (["lecture", "expert", "--init", "-0.5", "1.5"], "init must have finite entries >= 0"),
        (["lecture", "expert", "--init", "0.2", "0.3", "0.5"], "init must have length 2"),
        (["lecture", "expert", "--p", "0.6", "1.5"], "bernoulli means must lie in [0, 1], got 1.5"),
        (["lecture", "bandit", "--reg-m", "0"], "m must be an integer >= 1, got 0"),
        (["lecture", "bandit", "--npg-n", "0"], "n must be an integer >= 1, got 0"),
        (["lecture", "bandit", "--pg-eta", "-1"], "eta must be a finite number > 0"),
        (["lecture", "conditioning", "--kappas", "0.5"], "kappas must be > 1"),
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
    assert bad.stderr.strip() == "proxrl: error: rounds must be an integer >= 1, got 0"
