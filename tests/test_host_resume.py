"""Host-side (Gymnasium) runs resume exactly: the checkpoint holds the record of every environment copy's episode
and the resume replays it.

Each case kills a ``proxrl train --backend gymnasium`` subprocess (SIGKILL) right after a checkpoint taken in the
middle of episodes, resumes it in this process and compares its records byte for byte with an uninterrupted run
(:func:`tests.test_reliability.assert_same_records`). Without the replay the resumed episodes restart from fresh
resets and the records differ, as the tests of a removed or altered record show.
"""

import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.cli import main
from proxrl.config import override
from proxrl.deep import registry
from proxrl.deep.gym_envs import make_gym_env
from proxrl.run.checkpoints import encode, read_checkpoint
from proxrl.run.train import CHECKPOINT, RunConfig, make_runner
from test_reliability import assert_same_records

COMMON = ["--backend", "gymnasium", "--num-seeds", "2", "--eval-episodes", "1", "--no-progress"]
CASES = {
    # Pendulum's episodes last 200 steps: the checkpoint at step 300 falls in the middle of the second one
    "td3-pendulum": [
        "td3", "--env", "Pendulum-v1", "--total-steps", "600", "--eval-every", "150", "--learning-starts", "100",
        "--batch-size", "32", "--buffer-size", "1000", "--hidden", "16", "16",
    ],
    # CartPole's episodes end at random times, several per rollout
    "ppo-cartpole": [
        "ppo", "--env", "CartPole-v1", "--total-steps", "512", "--eval-every", "128", "--num-envs", "2",
        "--num-steps", "32", "--num-minibatches", "2", "--update-epochs", "1", "--hidden", "16",
    ],
    # every generation resets its environments with seeds counted by the generation
    "es-first-pendulum": [
        "es", "--env", "Pendulum-v1", "--total-steps", "6400", "--eval-every", "1600", "--num-envs", "4",
        "--num-steps", "200", "--score-episodes", "first", "--hidden", "8",
    ],
}  # fmt: skip
KILL = "checkpoint#2:kill"


def _run(args: list[str], out, fault: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PROXRL_FAULT=fault or "")
    cmd = [sys.executable, "-m", "proxrl.cli", "train", *args, *COMMON, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_host_run_resumed_equals_the_uninterrupted_run(case, tmp_path, capsys):
    args = CASES[case]
    reference = _run(args, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    killed = _run(args, tmp_path / "run", fault=KILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    checkpoint = read_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert checkpoint.metadata["chunk"] == 2 and "starts" in checkpoint.metadata["host"]
    capsys.readouterr()
    assert main(["train", *args, *COMMON, "--resume", str(tmp_path / "run")]) == 0
    assert "fresh resets" not in capsys.readouterr().err
    assert_same_records(tmp_path / "run", tmp_path / "reference")
    if case == "td3-pendulum":  # the episode record beside the state does not disturb evaluate
        assert main(["evaluate", str(tmp_path / "run"), "--episodes", "1"]) == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("removed", "the checkpoint holds no record of the environments' episodes"),
        ("altered", "replaying the environments' episodes did not arrive at the saved observations"),
    ],
)
def test_a_record_that_is_missing_or_does_not_replay_resumes_on_fresh_episodes_and_says_so(
    change, why, tmp_path, capsys
):
    """The same TD3 run, its checkpoint rewritten without the episode record (as an older proxrl wrote it) or
    with one saved observation altered: the resume completes, says in one line why its episodes restart, and
    its later records differ."""
    args = CASES["td3-pendulum"]
    reference = _run(args, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    killed = _run(args, tmp_path / "run", fault=KILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    path = tmp_path / "run" / CHECKPOINT
    old = read_checkpoint(path)
    if change == "removed":
        meta = {k: v for k, v in old.metadata.items() if k != "host"}
        arrays = {k: v for k, v in old.arrays.items() if not k.startswith("host/")}
    else:
        meta, arrays = old.metadata, dict(old.arrays)
        arrays["host/obs"] = arrays["host/obs"].copy()
        arrays["host/obs"][1, 0, 2] += 1e-3
    path.write_bytes(encode(arrays, meta))
    capsys.readouterr()
    assert main(["train", *args, *COMMON, "--resume", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "fresh resets" in line] == [
        f"td3 Pendulum-v1: {why}; its episodes restart from fresh resets, so from here on its records differ from "
        "an uninterrupted run's"
    ]
    eval_rows = (tmp_path / "run" / "eval.csv").read_text().splitlines()
    ref_rows = (tmp_path / "reference" / "eval.csv").read_text().splitlines()
    assert eval_rows[:3] == ref_rows[:3] and eval_rows[3:] != ref_rows[3:]


def test_replay_rebuilds_every_copy_exactly():
    """Random actions through resets (Hopper's episodes end early); a second environment, reset differently,
    replays the record and then steps exactly like the first on the same actions."""
    rng = np.random.default_rng(0)
    first = make_gym_env("Hopper-v5", num_envs=3, record_episodes=True)
    second = make_gym_env("Hopper-v5", num_envs=3, record_episodes=True)
    low, high = first.action_space.low, first.action_space.high
    obs = first.reset(seed=5)
    ends = 0
    for _ in range(300):
        out = first.step(rng.uniform(low, high, size=(3, *low.shape)).astype(np.float32))
        obs, ends = out.obs, ends + int((out.terminated | out.truncated).sum())
    assert ends >= 3  # the record starts from autoresets, not only from the seeded reset
    record = first.episode_record()
    assert record is not None and all("rng" in s for s in record.starts)
    second.reset(seed=99)
    assert np.array_equal(second.replay(record), obs)
    for _ in range(300):
        action = rng.uniform(low, high, size=(3, *low.shape)).astype(np.float32)
        a, b = first.step(action), second.step(action)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    first.close()
    second.close()


def test_episodes_that_cannot_be_replayed_leave_no_record(monkeypatch):
    """An episode longer than the limit, or begun with reset options, is not recorded (the resume then says its
    episodes restart); the next plain reset records again."""
    from proxrl.deep import gym_envs

    monkeypatch.setattr(gym_envs, "EPISODE_RECORD_LIMIT", 5)
    env = make_gym_env("Pendulum-v1", num_envs=2, record_episodes=True)
    env.reset(seed=0)
    action = np.zeros((2, 1), np.float32)
    for _ in range(5):
        env.step(action)
    assert env.episode_record() is not None
    env.step(action)
    assert env.episode_record() is None
    env.reset(seed=1)
    assert [a.shape for a in env.episode_record().actions] == [(0, 1), (0, 1)]
    env.vec_env.envs[0].reset(options={"x_init": 0.5})
    assert env.episode_record() is None
    env.close()


def test_first_episodes_equals_the_rollout_up_to_each_first_end_and_stops_early():
    """``first_episodes`` (episodic learners) against ``rollout`` from the same reset under the same policy: the
    rows up to each copy's first end are equal, the rest are padding, and the policy is called only until
    every copy has ended."""
    calls: list[int] = []

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        calls.append(t)
        return (obs[:, 2] > 0).astype(np.int64)  # push the pole's way: episodes of 24–38 steps

    full_env, first_env = (make_gym_env("CartPole-v1", num_envs=4) for _ in range(2))
    full, _ = full_env.rollout(full_env.reset(seed=3), policy, 300)
    calls.clear()
    first, obs = first_env.first_episodes(first_env.reset(seed=3), policy, 300)
    done = full.terminated | full.truncated
    ends = done.argmax(axis=0)
    assert done.any(axis=0).all() and len(calls) == ends.max() + 1 < 300
    within = np.cumsum(done, axis=0) - done == 0
    for name, a, b in zip(full._fields, full, first, strict=True):
        assert a.shape == b.shape and np.array_equal(a[within], b[within]), name
    after = ~within
    assert not first.terminated[after].any() and not first.truncated[after].any()
    assert not first.reward[after].any() and not first.action[after].any()
    for i in range(4):  # a copy waits on its reset observation
        assert np.array_equal(first.obs[ends[i] + 1 :, i], np.broadcast_to(obs[i], (299 - ends[i], 4)))
    full_env.close()
    first_env.close()


def test_an_episodic_learner_learns_the_same_without_the_steps_after_each_first_end(tmp_path):
    """ES scoring first episodes (``Learner.episodic``) on Gymnasium CartPole: the host runner that stops at each
    environment's first end and one that simulates the whole window reach the same state and the same
    metrics, bit for bit."""
    config = override(
        registry.TRAINERS["es"].config(), num_envs=4, num_steps=200, hidden=(8,), score_episodes="first"
    )
    run = RunConfig(backend="gymnasium", num_seeds=2, total_steps=2400, progress=False)
    outs = []
    for first_only in (True, False):
        runner = make_runner(config, "CartPole-v1", run)
        assert runner.first_episodes_only
        runner.first_episodes_only = first_only
        carry = runner.init(jax.random.split(jax.random.key(0), 2))
        carry, metrics = runner.chunk(carry, 3)
        keys_as_data = [  # typed PRNG keys compare through their raw data
            jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x
            for x in jax.tree.leaves(carry)
        ]
        outs.append((keys_as_data, metrics))
        runner.close()
    (a, ma), (b, mb) = outs
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert ma.keys() == mb.keys() and all(np.array_equal(ma[k], mb[k], equal_nan=True) for k in ma)
    assert (ma["episodes"] == 4).all()  # the first episode of each environment, nothing after it


@pytest.mark.parametrize("episodic", [False, True])
def test_episode_statistics_of_an_episodic_learner_count_first_episodes_from_the_reset(episodic):
    """Two environments, reward 1 per step, carrying running returns of 10 into the rollout. Environment 0 ends
    episodes at steps 1 and 3, environment 1 at step 3. Running on: episodes of 12, 2 and 14. Episodic (every
    rollout from a reset, first episodes only): 2 and 4, and the observation statistics take in steps 0–1 of
    environment 0 and 0–3 of environment 1 only."""
    from proxrl.deep.loops import Carry, Normalization, absorb, carry_init
    from proxrl.types import Learner, Transition

    learner = Learner(
        "stub", lambda k, o: jnp.zeros(()), None, None, lambda s, tr: (s, {}), 2, 5, episodic=episodic
    )
    norm = Normalization(obs=True)
    obs = np.arange(10, dtype=np.float32).reshape(5, 2, 1)  # step t, environment b: 2t + b
    done = np.zeros((5, 2), bool)
    done[1, 0] = done[3, 0] = done[3, 1] = True
    traj = Transition(obs, np.zeros((5, 2)), np.ones((5, 2), np.float32), done, np.zeros_like(done), obs)
    start = carry_init(learner, jax.random.key(0), np.full((2, 1), 7.0, np.float32), norm)
    carry = Carry(start.learner, start.obs_stats, start.reward_norm, jnp.full(2, 10.0), start.key)
    new, metrics = absorb(learner, norm, carry, traj)
    if episodic:
        assert metrics["episodes"] == 2 and metrics["episodic_return"] == 3.0
        seen = [7.0, 7.0, 0.0, 1.0, 2.0, 3.0, 5.0, 7.0]  # the initial observations, then the counted steps
    else:
        assert metrics["episodes"] == 3 and np.isclose(metrics["episodic_return"], 28.0 / 3)
        seen = [7.0, 7.0, *range(10)]
    np.testing.assert_allclose(new.obs_stats.mean, [np.mean(seen)], rtol=1e-6)
    np.testing.assert_allclose(new.obs_stats.var, [np.var(seen)], rtol=1e-5)
