"""Host-side (Gymnasium) runs resume exactly: the checkpoint holds the record of every environment copy's episode
and the resume replays it.

Each case kills a ``proxrl train --backend gymnasium`` subprocess (SIGKILL) right after a checkpoint taken in the
middle of episodes, resumes it in this process and compares its records byte for byte with an uninterrupted run
(:func:`tests.test_reliability.assert_same_records`). Without the replay the resumed episodes restart from fresh
resets and the records differ; the last test shows that on a checkpoint whose record was removed.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from proxrl.cli import main
from proxrl.deep.gym_envs import make_gym_env
from proxrl.run.checkpoints import encode, read_checkpoint
from proxrl.run.train import CHECKPOINT
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


def test_a_checkpoint_without_the_record_resumes_on_fresh_episodes_and_says_so(tmp_path, capsys):
    """The same TD3 run, its checkpoint rewritten without the episode record (as an older proxrl wrote it): the
    resume completes, says in one line that its episodes restart, and its later records differ."""
    args = CASES["td3-pendulum"]
    reference = _run(args, tmp_path / "reference")
    assert reference.returncode == 0, reference.stderr
    killed = _run(args, tmp_path / "run", fault=KILL)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    path = tmp_path / "run" / CHECKPOINT
    old = read_checkpoint(path)
    meta = {k: v for k, v in old.metadata.items() if k != "host"}
    path.write_bytes(encode({k: v for k, v in old.arrays.items() if not k.startswith("host/")}, meta))
    capsys.readouterr()
    assert main(["train", *args, *COMMON, "--resume", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if "fresh resets" in line] == [
        "td3 Pendulum-v1: the checkpoint holds no record of the environments' episodes; its episodes restart "
        "from fresh resets, so from here on its records differ from an uninterrupted run's"
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
