"""`proxrl train` and `proxrl evaluate` end to end on a tiny PPO budget (gymnax CartPole).

Commands that compute run in a subprocess with a generous limit (a run takes ~15 s). A run past the limit is a
failure, never retried: the process gets SIGABRT, on which Python's faulthandler prints every thread's stack,
and the test fails showing them.
"""

import csv
import json
import os
import signal
import subprocess
import sys

import pytest

from proxrl.cli import main


def cli(args: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``proxrl ARGS`` in a fresh process; past ``timeout`` s it is stopped with SIGABRT and the test fails
    with the thread stacks faulthandler printed."""
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    command = [sys.executable, "-m", "proxrl.cli", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            out, err = proc.communicate()
            pytest.fail(f"proxrl {' '.join(args)} ran past {timeout} s; its thread stacks:\n{err}")
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


TINY = [
    "--num-envs",
    "2",
    "--num-steps",
    "64",
    "--num-minibatches",
    "2",
    "--update-epochs",
    "2",
    "--no-progress",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "ppo"
    args = ["train", "ppo", "--env", "CartPole-v1", "--num-seeds", "2", "--total-steps", "1024"]
    assert (
        cli([*args, "--eval-every", "512", "--eval-episodes", "2", *TINY, "--out", str(out)]).returncode == 0
    )
    return out


def test_train_writes_records(run_dir):
    for f in (
        "config.json",
        "metrics.csv",
        "eval.csv",
        "summary.md",
        "learning_curve.png",
        "checkpoint.safetensors",
    ):
        assert (run_dir / f).exists(), f
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["512", "1024"]  # --log-every 1000: the mean of 4 updates per row
    assert {"episodic_return", "approx_kl", "clip_frac", "explained_variance"} <= set(rows[0])
    cfg = json.loads((run_dir / "config.json").read_text())
    assert (
        cfg["algo"] == "ppo"
        and cfg["run"]["total_steps"] == 1024
        and "total_timesteps" not in cfg["algo_config"]
    )
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))


def test_evaluate_and_resume(run_dir):
    gif = run_dir / "episode.gif"
    assert (
        cli(["evaluate", str(run_dir), "--episodes", "2", "--gif", str(gif), "--gif-steps", "30"]).returncode
        == 0
    )
    assert "per seed" in (run_dir / "evaluation.md").read_text()
    from PIL import Image

    with Image.open(
        gif
    ) as image:  # one rendered episode of seed 0, at most --gif-steps frames (+ the reset's)
        assert image.format == "GIF" and image.size[0] > 100 and 2 <= image.n_frames <= 31, image.n_frames
    args = ["train", "ppo", "--env", "CartPole-v1", "--num-seeds", "2", "--total-steps", "2048"]
    assert (
        cli(
            [*args, "--eval-every", "512", "--eval-episodes", "2", *TINY, "--resume", str(run_dir)]
        ).returncode
        == 0
    )
    rows = list(csv.DictReader((run_dir / "eval.csv").open()))
    assert [r["step"] for r in rows] == ["512", "1024", "1536", "2048"]
    # resuming with other hyperparameters is refused
    other = [
        *args,
        "--lr",
        "0.1",
        *TINY,
        "--eval-every",
        "512",
        "--eval-episodes",
        "2",
        "--resume",
        str(run_dir),
    ]
    refused = cli(other)
    assert refused.returncode == 2 and "another configuration" in refused.stderr


def test_a_resume_takes_the_runs_options(run_dir, capsys):
    """`proxrl train ppo --resume RUN_DIR --total-steps N` alone continues the run with the environment and
    options of its config.json (here all but the budget differ from the defaults); an option typed beside it must
    equal the run's, and a resume under another algorithm or into another --out is refused, each in one line."""
    before = json.loads((run_dir / "config.json").read_text())
    steps = int(list(csv.DictReader((run_dir / "eval.csv").open()))[-1]["step"])
    total = steps + 512
    assert (
        cli(
            ["train", "ppo", "--resume", str(run_dir), "--total-steps", str(total), "--no-progress"]
        ).returncode
        == 0
    )
    rows = list(csv.DictReader((run_dir / "eval.csv").open()))
    assert [int(r["step"]) for r in rows][-2:] == [steps, total]
    after = json.loads((run_dir / "config.json").read_text())
    assert after["run"].pop("total_steps") == total
    before["run"].pop("total_steps")
    assert after == before
    for argv, message in [
        (
            ["train", "ppo", "--resume", str(run_dir), "--num-envs", "4"],
            "--num-envs was 2, now 4; leave it out",
        ),
        (["train", "td3", "--resume", str(run_dir)], "holds a 'ppo' run, not 'td3': continue it with"),
        (
            ["train", "ppo", "--resume", str(run_dir), "--out", "elsewhere"],
            "a resumed run writes into its own",
        ),
        (["train", "ppo", "--resume", str(run_dir), "--preset", "classic"], "--lr was 0.00025, now 0.001"),
        (["train", "ppo", "--resume", str(run_dir), "--preset", "atari"], "'atari' is not a preset of ppo"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_evaluation_md_holds_the_agents_evaluation(run_dir):
    """`proxrl evaluate` writes what Agent.evaluate returns for the same checkpoint, episodes and seed: the
    per-seed returns, and their mean over seeds; another evaluation seed is another evaluation."""
    import numpy as np

    from proxrl.agents import Agent

    done = cli(["evaluate", str(run_dir), "--episodes", "3", "--seed", "7"])
    assert done.returncode == 0 and f"summary:       {run_dir / 'evaluation.md'}" in done.stdout, done.stdout
    lines = (run_dir / "evaluation.md").read_text().splitlines()
    step = list(csv.DictReader((run_dir / "eval.csv").open()))[-1]["step"]
    assert (
        f"The checkpoint at step {int(step):,} (per seed); 3 deterministic episodes per seed, evaluation seed 7."
        in lines
    )
    per_seed = next(line for line in lines if line.startswith("- per seed: "))
    written = [float(x) for x in per_seed.removeprefix("- per seed: ").split(", ")]
    agent = Agent.load(run_dir)
    returns = agent.evaluate(episodes=3, seed=7)
    assert per_seed == "- per seed: " + ", ".join(f"{r:.2f}" for r in returns)
    mean = next(line for line in lines if line.startswith("- mean return over seeds: "))
    assert mean.startswith(f"- mean return over seeds: {np.mean(returns):.2f} (")
    assert len(written) == 2
    # CartPole's episodes from other start states: a short-trained policy's returns move with the seed
    others = [agent.evaluate(episodes=3, seed=s) for s in (8, 9, 10)]
    assert any(not np.allclose(o, returns) for o in others)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["train", "ppo", "--env", "CartPol-v1"], "did you mean CartPole-v1"),
        (["train", "ppo", "--total-steps", "0"], "--total-steps must be an integer >= 1, got 0"),
        (["train", "ppo", "--num-seeds", "-1"], "--num-seeds must be an integer >= 1"),
        (["train", "ppo", "--seed", "-1"], "--seed must be an integer in [0, 2^31), got -1"),
        (["train", "td3", "--env", "Pendulum-v1", "--num-actors", "2"], "a replay learner keeps its buffer"),
        (["train", "appo", "--backend", "gymnax"], "env-runner actors step Gymnasium environments"),
        (["train", "ppo", "--seed", "3000000000"], "--seed must be an integer in [0, 2^31), got 3000000000"),
        (["train", "ppo", "--lr", "0"], "--lr must be a finite number > 0"),
        (["train", "ppo", "--clip-eps", "0"], "--clip-eps must be a finite number > 0"),
        (["train", "ppo", "--gamma", "1.5"], "--gamma must lie in [0, 1]"),
        (["train", "ppo", "--gae-lambda", "-0.1"], "--gae-lambda must lie in [0, 1]"),
        (["train", "sarsa"], "unknown algorithm 'sarsa'; choose one of"),
        (["train", "ppo", "--backend", "jax"], "--backend must be one of"),
        (
            ["train", "ppo", "--env", "HalfCheetah-v5", "--backend", "gymnax"],
            "not a registered gymnax environment",
        ),
        (["train", "qac", "--env", "Pendulum-v1", "--gradient", "all_actions"], "all_actions"),
        (
            ["train", "td3", "--env", "CartPole-v1"],
            "TD3 needs a continuous (Box) action space, got Discrete(2) (CartPole-v1)",
        ),
        (["train", "ddpg", "--env", "Pendulum-v1", "--tau", "0"], "tau"),
        (
            ["train", "sac", "--env", "Acrobot-v1"],
            "SAC needs a continuous (Box) action space, got Discrete(3) (Acrobot-v1)",
        ),
        (
            ["train", "offpolicy_ac", "--env", "Pendulum-v1"],
            "needs a discrete action space, got Box(-2, 2, (1,)) (Pendulum-v1)",
        ),
        (
            ["train", "td3", "--env", "Pendulum-v1", "--buffer-size", "100"],
            "--buffer-size must be >= batch_size = 256, got 100",
        ),
        (["train", "ppo", "--resume", "/nonexistent/run"], "is not a run directory"),
        (["evaluate", "/nonexistent/run"], "is not a training run directory"),
        # tyro's own parse errors, as one line
        (["train", "ppo", "--num-envs", "abc"], "--num-envs takes INT; invalid literal for int()"),
        (
            ["train", "ppo", "--bogus", "1"],
            "Unrecognized options: --bogus, 1 (see 'proxrl train ppo --help')",
        ),
        (["train", "ppo", "--env"], "Missing value for argument '--env'"),
        (["train", "a2c", "--hidden", "64", "x"], "--hidden takes [INT [INT ...]]; "),
        (["lecture"], "Expected one of {expert, bandit, conditioning, mdp, one-point}"),
        (["lecture", "bandit", "--no-such-option"], "Unrecognized options: --no-such-option"),
        (["evaluate"], "Missing from proxrl evaluate"),
        # options that mean nothing at NaN or infinity, and counts of zero
        (
            ["train", "ppo", "--env", "Pendulum-v1", "--log-std-init", "nan"],
            "--log-std-init must be a finite number",
        ),
        (
            ["train", "sac", "--env", "Pendulum-v1", "--target-entropy", "inf"],
            "--target-entropy must be a finite",
        ),
        (["train", "ppo", "--num-envs", "0"], "--num-envs must be an integer >= 1, got 0"),
        (["train", "npg", "--num-steps", "0"], "--num-steps must be an integer >= 1, got 0"),
    ],
)
def test_train_bad_input(args, fragment, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert fragment in err and "\n" not in err and "Traceback" not in err
