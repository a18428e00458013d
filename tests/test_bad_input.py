"""Every bad command line is one line on stderr and exit status 2, before any work starts.

A generated table: every option of every ``proxrl train ALGO`` (each algorithm's options and the run's), of
``proxrl evaluate`` and of every ``proxrl lecture NAME``, given values that no option of its type accepts (zero or
negative counts, NaN and infinities, huge sizes, wrong types, unknown choices), plus unknown environments, missing
paths and corrupted run directories. Each case runs the real CLI in this process; training itself is replaced by a
stub that fails the test, so a case that is wrongly accepted fails at once instead of training.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json

import pytest

import proxrl.cli as cli
from proxrl.config import get, options
from proxrl.deep.jax_envs import make_jax_env
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.host import HostRunner
from proxrl.run.train import JaxRunner, RunConfig

HUGE = "1" + "0" * 30


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bad_values(value: object) -> list[str]:
    """Values no option of ``value``'s type accepts."""
    if isinstance(value, bool):
        return []  # --flag / --no-flag: nothing to get wrong but the name
    if isinstance(value, int):
        return ["abc", "1.5", "-7", HUGE]
    if isinstance(value, float) or value is None:
        return ["nan", "inf", "-inf", "abc"]
    if isinstance(value, str):
        return ["bogus-choice"]
    if isinstance(value, tuple):
        return ["0", "-3", "abc"]
    return []


@functools.cache
def _env(algo: str) -> str:
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        env = make_jax_env(env_id)
        try:
            TRAINERS[algo].make_learner(
                TRAINERS[algo].config(), env.observation_space, env.action_space, 10**5
            )
        except ConfigError:
            continue
        return env_id
    raise AssertionError(algo)


def _train_cases() -> list:
    cases = []
    for algo in TRAINERS:
        config = TRAINERS[algo].config()
        for name in options(config):
            for bad in _bad_values(get(config, name)):
                argv = ["train", algo, "--env", _env(algo), _flag(name), bad]
                cases.append(pytest.param(argv, name, id=f"train-{algo}-{name}={bad[:8]}"))
    run = RunConfig()
    for f in dataclasses.fields(RunConfig):
        if f.name in ("out", "resume", "compile_cache_dir"):
            continue
        for bad in _bad_values(getattr(run, f.name)):
            cases.append(
                pytest.param(["train", "ppo", _flag(f.name), bad], f.name, id=f"train-run-{f.name}={bad[:8]}")
            )
    extra = [
        (["train", "ppo", "--seed", str(2**63)], "seed"),
        (["train", "ppo", "--total-steps", "1024", "--eval-every", "0"], "eval_every"),
        (["train", "ppo", "--env", "CartPol-v1"], "CartPol-v1"),
        (["train", "ppo", "--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
        (["train", "ppo", "--env", ""], "env"),
        (["train", "ppo", "--env", "Blackjack-v1"], "Blackjack-v1"),  # a Tuple observation space
        (["train", "ppo", "--address", "127.0.0.1:1"], "address"),  # no actors to send there
        (["train", "appo", "--env", "CartPole-v1", "--address", "127.0.0.1:1"], "address"),  # nothing listens
        (["train", "ppo", "--out", ""], "out"),
        (["train", "ppo", "--out", "FILE"], "out"),  # a file, not a directory
        (["train", "ppo", "--env", "Pendulum-v1", "--sigma", "linear", "--sigma-end", "2.0"], "sigma_end"),
        (["train", "ppo", "--resume", "/nonexistent/run"], "resume"),
        (["train", "ppo", "--preset", "bogus"], "preset"),
        (
            ["train", "es", "--env", "Pendulum-v1", "--normalize-obs"],
            "normalize_obs",
        ),  # and es's own obs_norm
        (["train", "ppo", "--surrogate", "kl_adaptive", "--beta", "0"], "beta"),
        (["train", "sarsa"], "sarsa"),
        (["train", "td3", "--env", "CartPole-v1"], "CartPole-v1"),
        (["train", "offpolicy_ac", "--env", "Pendulum-v1"], "Pendulum-v1"),
        (["train", "ppo", "--num-envs", HUGE], "num_envs"),
        (["train", "ppo", "--num-envs", "100000", "--num-steps", "100000"], "num_envs"),
        (
            ["train", "sac", "--env", "Pendulum-v1", "--buffer-size", str(10**12), "--batch-size", "256"],
            "buffer_size",
        ),
    ]
    cases += [pytest.param(argv, name, id="train-" + "-".join(argv[1:])[:40]) for argv, name in extra]
    box2d = importlib.util.find_spec("Box2D") is not None
    cases.append(
        pytest.param(
            ["train", "ppo", "--env", "CarRacing-v3"],
            "CarRacing-v3",
            id="train-missing-dependency",
            marks=pytest.mark.skipif(box2d, reason="Box2D is installed: CarRacing-v3 can be made"),
        )
    )
    return cases


def _lecture_cases() -> list:
    cases = [pytest.param(["lecture", "expert", "--p"], "p", id="lecture-expert-p-empty")]
    for lecture, (cls, _) in cli.LECTURES.items():
        config = cls()
        for f in dataclasses.fields(cls):
            if f.name == "out":
                continue  # any string is a path; the out cases are below
            for bad in _bad_values(getattr(config, f.name)):
                argv = ["lecture", lecture, _flag(f.name), bad]
                cases.append(pytest.param(argv, f.name, id=f"lecture-{lecture}-{f.name}={bad[:8]}"))
    return cases


EVALUATE = [
    (["evaluate", "/nonexistent/run"], "/nonexistent/run"),
    (["evaluate", "RUN", "--episodes", "0"], "episodes"),
    (["evaluate", "RUN", "--episodes", "-3"], "episodes"),
    (["evaluate", "RUN", "--episodes", "abc"], "episodes"),
    (["evaluate", "RUN", "--gif-steps", "-5"], "gif_steps"),
    (["evaluate", "RUN", "--gif-steps", "0"], "gif_steps"),
    (["evaluate", "RUN", "--seed", "-1"], "seed"),
    (["evaluate", "RUN", "--seed", str(2**63)], "seed"),
    (["evaluate", "EMPTY"], "EMPTY"),
    (["evaluate", "GARBAGE"], "config.json"),
    (["evaluate", "TRUNCATED"], "config.json"),
    (["evaluate", "FILE"], "FILE"),
]


@pytest.fixture
def no_training(monkeypatch, tmp_path):
    """Run in an empty directory; any case that reaches training or a lecture's computation fails."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")

    def accepted(*args, **kwargs):
        raise AssertionError("the bad input was accepted: training started")

    monkeypatch.setattr(JaxRunner, "chunk", accepted)
    monkeypatch.setattr(HostRunner, "chunk", accepted, raising=False)
    monkeypatch.setattr(JaxRunner, "init", accepted)
    lectures = {}
    for name, (cls, _) in cli.LECTURES.items():

        def validate_only(cfg, _cls=cls):
            cfg.validate()
            raise AssertionError("the bad input was accepted: the lecture started")

        lectures[name] = (cls, validate_only)
    monkeypatch.setattr(cli, "LECTURES", lectures)
    (tmp_path / "EMPTY").mkdir()
    (tmp_path / "GARBAGE").mkdir()
    (tmp_path / "GARBAGE" / "config.json").write_text("{not json")
    (tmp_path / "TRUNCATED").mkdir()
    record = json.dumps({"algo": "ppo", "env": "CartPole-v1", "run": {}, "algo_config": {}})
    (tmp_path / "TRUNCATED" / "config.json").write_text(record[: len(record) // 2])
    (tmp_path / "FILE").write_text("not a run directory")
    (tmp_path / "RUN").mkdir()
    return tmp_path


def _check(argv: list[str], name: str, capsys) -> None:
    status = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert status == 2, (status, err)
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("proxrl: error: "), err
    if _flag(name) in argv:  # the option the user typed, as typed
        assert _flag(name) in err, (name, err)
    else:
        assert name in err, (name, err)
    assert any(hint in err for hint in ALLOWED_HINTS), err  # and what is allowed


ALLOWED_HINTS = ("must", "one of", " takes ", "choose", "allowed", "needs", "did you mean", "is not a", "use it with",
                 "turn one", "holds", "lower them", "no run", "not a run", "cannot")  # fmt: skip
"""Phrases by which a message says what is allowed (a bound, a choice, a type, a remedy)."""


@pytest.mark.parametrize(("argv", "name"), _train_cases())
def test_train_bad_option(argv, name, no_training, capsys):
    _check(argv, name, capsys)


@pytest.mark.parametrize(("argv", "name"), _lecture_cases())
def test_lecture_bad_option(argv, name, no_training, capsys):
    _check(argv, name, capsys)


@pytest.mark.parametrize(("argv", "name"), EVALUATE, ids=lambda x: "-".join(x) if isinstance(x, list) else x)
def test_evaluate_bad_input(argv, name, no_training, capsys):
    _check(argv, name, capsys)


def test_the_table_is_large():
    assert len(_train_cases()) + len(_lecture_cases()) + len(EVALUATE) >= 300


def test_messages_name_the_flags_typed(no_training, capsys):
    """The fields a message names become the flags the user typed; the rest keep their names; an unknown
    environment's suggestions are distinct."""
    argv = ["--batch-size", "7", "--env", "X"]
    assert cli.as_typed("buffer_size must be >= batch_size = 7, got 4", argv) == (
        "buffer_size must be >= --batch-size = 7, got 4"
    )
    assert cli.as_typed("lr must be a finite number > 0, got -1.0", ["--lr=-1"]).startswith("--lr must")
    assert cli.as_typed("lr must be a finite number > 0, got -1.0", ["--set", "lr=-1"]).startswith("lr must")
    assert cli.as_typed(
        "cell ppo on CartPole-v1: num_seeds must be an integer >= 1, got 0", ["--seeds", "0"]
    ) == ("cell ppo on CartPole-v1: --seeds must be an integer >= 1, got 0")
    assert (
        cli.as_typed("the seed and the env: nothing", ["--seed", "1", "--env", "x"])
        == "the seed and the env: nothing"
    )
    assert cli.main(["train", "ppo", "--env", "CartPol-v1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("proxrl: error: --env 'CartPol-v1' is not a registered"), err
    suggested = err.split("did you mean ")[1].rstrip("?\n").split(", ")
    assert "CartPole-v1" in suggested and len(suggested) == len(set(suggested)), err
