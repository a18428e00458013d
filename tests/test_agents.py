"""The Stable-Baselines3-style agents (proxrl.agents): a thin layer on the one driver, so an agent's run equals
``proxrl train``'s byte for byte; learn() twice equals one run of the sum; save/load round trips; predict's
shapes, policies and clipping; callbacks stop a run; bad input is one line naming the argument."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proxrl import PPO, SAC, Agent
from proxrl.agents import AGENTS, CLASS_NAMES
from proxrl.cli import main
from proxrl.deep.jax_envs import BoxSpace
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.train import make_runner, train

# A tiny PPO on CartPole; anneal_lr off, so that the learning rate does not depend on the planned budget
OPTIONS = dict(num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1, hidden=(16,), anneal_lr=False)
RUN = dict(num_seeds=2, eval_every=128, eval_episodes=1)
FLAGS = ["--num-envs", "2", "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--hidden", "16",
         "--no-anneal-lr", "--num-seeds", "2", "--eval-every", "128", "--eval-episodes", "1", "--no-progress"]  # fmt: skip
TABLES = ("metrics.csv", "eval.csv")


def _tables(run_dir):
    return {t: (run_dir / t).read_bytes() for t in TABLES}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An agent trained 256 steps per seed, then 256 more (two learn() calls)."""
    agent = PPO("CartPole-v1", out=tmp_path_factory.mktemp("agent") / "run", **OPTIONS, **RUN)
    agent.learn(256).learn(256)
    yield agent
    agent.close()


def test_an_agent_run_is_the_cli_run_and_two_learns_are_one_run(trained, tmp_path):
    """learn(256) then learn(256) writes the records of `proxrl train ppo --total-steps 512`, byte for byte."""
    assert trained.num_timesteps == 512
    out = tmp_path / "cli"
    assert (
        main(["train", "ppo", "--env", "CartPole-v1", *FLAGS, "--total-steps", "512", "--out", str(out)]) == 0
    )
    assert _tables(trained.run_dir) == _tables(out)
    rows = (trained.run_dir / "eval.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["128", "256", "384", "512"]


def test_predict_shapes_policies_and_seeds(trained):
    obs = np.array([0.01, -0.02, 0.03, 0.04], np.float32)
    action, state = trained.predict(obs)
    assert state is None and action.shape == () and np.issubdtype(action.dtype, np.integer)
    batch, _ = trained.predict(np.stack([obs] * 5))
    assert batch.shape == (5,) and (batch == action).all()
    # the deterministic policy is the one evaluation uses: the runner's mode for that seed
    runner, state = trained._loaded()
    many = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    modes = runner.mode(state, np.broadcast_to(many, (2, 64, 4)))
    for seed in (0, 1):
        assert (
            trained.predict(obs, seed_index=seed)[0]
            == runner.mode(state, np.broadcast_to(obs, (2, 1, 4)))[seed, 0]
        )
        np.testing.assert_array_equal(trained.predict(many, seed_index=seed)[0], modes[seed])
    # an RL Zoo loop's call (recurrent state and episode starts by name) acts alike and gets no state back
    sb3, none = trained.predict(many, state=None, episode_start=np.ones(64, bool), deterministic=True)
    np.testing.assert_array_equal(sb3, modes[0])
    assert none is None
    assert (modes[0] != modes[1]).any()  # the two seeds' policies differ, so seed_index is seen to matter
    # the behaviour policy samples: over 200 draws of a policy that is not yet deterministic, both actions
    draws = [int(trained.predict(obs, deterministic=False)[0]) for _ in range(200)]
    assert 0 < sum(draws) < 200
    assert trained.evaluate(episodes=2).shape == (2,)


def test_continuous_actions_are_clipped_to_the_action_space(tmp_path):
    agent = SAC("Pendulum-v1", learning_starts=64, batch_size=16, hidden=(16,), eval_every=128, eval_episodes=1,
                out=tmp_path / "sac")  # fmt: skip
    agent.learn(128)
    obs = np.array([1.0, 0.0, 0.0], np.float32)
    raw, _ = agent.predict(obs)
    assert raw.shape == (1,)
    agent.action_space = BoxSpace(np.float32([-1e-4]), np.float32([1e-4]), (1,))
    for deterministic in (True, False):
        clipped, _ = agent.predict(obs, deterministic=deterministic)
        assert abs(clipped[0]) <= 1e-4
    agent.close()


def test_save_and_load_round_trip_and_continue_alike(trained, tmp_path):
    """A saved agent predicts as the original; loaded from the file (a new run directory) or from the run
    directory, 128 more steps give the last evaluation row of one uninterrupted `--total-steps 640` run."""
    path = trained.save(tmp_path / "ppo.safetensors")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32) * 0.1
    from_file = PPO.load(path, out=tmp_path / "loaded")
    assert from_file.num_timesteps == 512 and from_file.run_dir == tmp_path / "loaded"
    np.testing.assert_array_equal(from_file.predict(obs)[0], trained.predict(obs)[0])
    loaded = Agent.load(path, out=tmp_path / "any")
    assert type(loaded) is PPO and repr(loaded).startswith("PPO('CartPole-v1', steps=512")
    nested = trained.save(tmp_path / "new" / "folder" / "ppo.safetensors")
    assert nested.read_bytes() == path.read_bytes()
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(trained.run_dir, copy)
    from_dir = PPO.load(copy)
    for agent in (from_file, from_dir):
        agent.learn(128)
        assert agent.num_timesteps == 640
    # a run directory made from the file holds config.json and the checkpoint, no tables; resumed at its budget,
    # nothing runs and nothing is written
    at_budget = PPO.load(path, out=tmp_path / "bare")

    run = dataclasses.replace(at_budget.run_config, total_steps=512, out=None, resume=at_budget.run_dir)
    train(make_runner(at_budget.config, "CartPole-v1", run), run, at_budget.config, "CartPole-v1")
    assert sorted(p.name for p in (tmp_path / "bare").iterdir()) == [
        ".lock",
        "checkpoint.safetensors",
        "config.json",
    ]
    last = lambda d: (d / "eval.csv").read_text().splitlines()[-1]
    assert last(tmp_path / "loaded") == last(copy) and last(copy).startswith("640,")
    out = tmp_path / "cli"
    assert (
        main(["train", "ppo", "--env", "CartPole-v1", *FLAGS, "--total-steps", "640", "--out", str(out)]) == 0
    )
    assert last(copy) == last(out)
    from_file.close(), from_dir.close()


def test_a_callback_stops_the_run_and_learn_continues_it(tmp_path):
    seen = []
    agent = PPO("CartPole-v1", out=tmp_path / "run", **OPTIONS, **RUN)
    agent.learn(
        512, callback=lambda report: seen.append((report.step, report.total_steps)) or report.step < 256
    )
    assert seen == [(128, 512), (256, 512)] and agent.num_timesteps == 256
    assert "2 seeds × 256 environment steps" in (tmp_path / "run" / "summary.md").read_text()
    agent.learn(128)
    assert agent.num_timesteps == 384
    agent.close()


def test_every_algorithm_has_an_agent_class():
    assert set(AGENTS) == set(TRAINERS) == set(CLASS_NAMES)
    assert PPO.algo == "ppo" and issubclass(SAC, Agent) and len(set(CLASS_NAMES.values())) == len(TRAINERS)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda tmp: PPO("CartPole-v1", lr="0.1"), "lr must be a number, got '0.1'"),
        (lambda tmp: PPO("CartPole-v1", no_such=1), "PPOConfig has no option 'no_such'"),
        (lambda tmp: SAC("CartPole-v1"), "SAC needs a continuous (Box) action space"),
        (lambda tmp: Agent("ppx"), "algo 'ppx' is not a proxrl algorithm; choose one of reinforce"),
        (lambda tmp: PPO("CartPole-v1", total_steps=5), "total_steps is learn()'s argument"),
        (lambda tmp: PPO(3), "env must be an environment id (a string), got 3"),
        (
            lambda tmp: PPO("CartPol-v1"),
            "env 'CartPol-v1' is not a registered gymnax or Gymnasium environment; did",
        ),
        (lambda tmp: PPO("CartPole-v1").predict(np.zeros(4)), "the agent has not been trained yet"),
        (lambda tmp: PPO("CartPole-v1").save(tmp / "x"), "the agent has not been trained yet"),
        (lambda tmp: PPO("CartPole-v1").learn(0), "total_steps must be an integer >= 1, got 0"),
        (lambda tmp: PPO("CartPole-v1").learn(10, callback=3), "callback must be callable"),
        (lambda tmp: PPO.load(tmp / "nothing.safetensors"), "does not exist"),
        (lambda tmp: PPO.load(tmp), "holds no run (no config.json, no checkpoint.safetensors)"),
        (lambda tmp: PPO.load(tmp, out=tmp / "x"), "out is for loading a file; the run directory"),
        (lambda tmp: PPO.load(tmp / "f", eval_every=3), "load() takes the run options out, progress"),
        (lambda tmp: PPO("CartPole-v1", address="localhost:1"), "address joins a Ray cluster for env-runner"),
        # Stable-Baselines3 habits: each is one line saying what proxrl takes instead
        (
            lambda tmp: PPO("MlpPolicy", "CartPole-v1"),
            "PPO takes the environment id first and no policy name",
        ),
        (lambda tmp: PPO("MlpPolicy"), "PPO takes the environment id first and no policy name"),
        (lambda tmp: PPO("MlpPolicy", env="CartPole-v1"), "PPO takes the environment id first and no policy"),
        (lambda tmp: PPO(policy="MlpPolicy", env="CartPole-v1"), "PPO takes the environment id first and no"),
        (lambda tmp: PPO("CartPole-v1", n_steps=2048), "n_steps needs estimator 'n_step' or 'q_n_step'"),
        (lambda tmp: PPO("CartPole-v1").learn(total_timesteps=64), "total_steps is Stable-Baselines3's"),
        (lambda tmp: PPO("CartPole-v1").learn(64, log_interval=4), "learn() has no argument 'log_interval'"),
        (lambda tmp: PPO("CartPole-v1").learn(), "learn() needs total_steps"),
        (lambda tmp: PPO("CartPole-v1", verbose=1), "proxrl agents take no verbose level: progress=True"),
        (lambda tmp: PPO.load(tmp / "f", verbose=1), "proxrl agents take no verbose level: progress=True"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(make, message, tmp_path):
    with pytest.raises(ConfigError) as err:
        make(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_input_after_training(trained, tmp_path):
    for call, message in [
        (
            lambda: trained.predict(np.zeros(3)),
            "observation must have shape (4,) or [batch >= 1, *(4,)], got (3,)",
        ),
        (lambda: trained.predict(np.zeros(4), seed_index=2), "seed_index must be < num_seeds = 2, got 2"),
        (lambda: SAC.load(trained.run_dir), "holds a 'ppo' agent, not 'sac'"),
        (lambda: trained.save(tmp_path), "is a directory; give a file name"),
        (
            lambda: trained.predict(np.zeros((0, 4))),
            "observation must have shape (4,) or [batch >= 1, *(4,)]",
        ),
        (lambda: trained.predict(["a", "b", "c", "d"]), "observation must be numbers of shape (4,)"),
        (lambda: trained.evaluate(seed=-1), "seed must be"),
        (lambda: trained.predict(np.zeros(4), deterministic="no"), "deterministic must be True or False"),
    ]:
        with pytest.raises(ConfigError) as err:
            call()
        assert message in str(err.value)


def test_learn_continues_after_a_short_interval_and_after_an_error(tmp_path, capsys):
    """learn(192) ends with a cut interval (128, 192); learn(128) goes on to 320. A callback that raises stops
    the run with its last checkpoint kept, and learn() continues from it. A budget of part of an update is
    noted in learn()'s terms: the steps asked for in this call, rounded down to whole updates."""
    agent = PPO("CartPole-v1", out=tmp_path / "short", **OPTIONS, **RUN)
    agent.learn(192).learn(128)
    assert "note" not in capsys.readouterr().err
    assert agent.num_timesteps == 320
    steps = [r.split(",")[0] for r in (tmp_path / "short" / "eval.csv").read_text().splitlines()[1:]]
    assert steps == ["128", "192", "320"]

    def fail(report):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        agent.learn(256, callback=fail)
    assert agent.num_timesteps == 448  # the chunk before the callback was checkpointed
    agent.learn(256, callback=lambda report: np.bool_(False))  # a false NumPy bool stops as False does
    assert agent.num_timesteps == 576  # one interval of the two
    with pytest.raises(ConfigError, match=r"total_steps must add at least one update of 64 steps .* got 63"):
        agent.learn(63)
    capsys.readouterr()
    agent.learn(100)
    note = "note: total_steps 100 is not a multiple of the 64 steps of one update (num_envs·num_steps); "
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note")]
    assert notes == [note + "training 64 steps (1 update)"]
    assert agent.num_timesteps == 640
    agent.close()
    # two handles on one run: each learn() goes on from the run's checkpoint, whichever handle trained last
    other = PPO.load(tmp_path / "short")
    other.learn(64)
    agent.learn(64)
    assert (other.num_timesteps, agent.num_timesteps) == (704, 768)
    steps = [r.split(",")[0] for r in (tmp_path / "short" / "eval.csv").read_text().splitlines()[1:]]
    assert steps[-3:] == ["640", "704", "768"]
    other.close()
    agent.close()
