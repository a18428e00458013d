"""Host-side training on Gymnasium environments, back-end selection, and normalisation in checkpoints."""

import csv

import jax
import numpy as np
import pytest

from helpers import assert_learns
from proxrl.config import override
from proxrl.deep.gym_envs import resolve_backend
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.errors import ConfigError
from proxrl.run.checkpoints import load_checkpoint
from proxrl.run.host import HostRunner
from proxrl.run.train import CHECKPOINT, JaxRunner, RunConfig, make_runner, train

CARTPOLE = override(PPOConfig(), num_envs=4, num_steps=128, lr=1e-3, ent_coef=0.0)
CARTPOLE_STEPS = 153_600


def _evals(rd):
    return list(csv.DictReader((rd.path / "eval.csv").open()))


def test_ppo_learns_gymnasium_cartpole(tmp_path):
    """The gymnax learning check, on Gymnasium's CartPole-v1 (host-side, SAME_STEP autoreset): 5 seeds trained
    together, the final evaluation of each (10 episodes, deterministic policy)."""
    seeds = 5
    run = RunConfig(
        backend="gymnasium",
        num_seeds=seeds,
        total_steps=153_600,
        eval_every=51_200,
        out=tmp_path / "cp",
        progress=False,
    )
    runner = make_runner(CARTPOLE, "CartPole-v1", run)
    assert isinstance(runner, HostRunner) and runner.steps_per_update == 512
    rd = train(runner, run, CARTPOLE, "CartPole-v1")
    evals = _evals(rd)
    assert [int(r["step"]) for r in evals] == [51_200, 102_400, 153_600]
    final = np.array([float(evals[-1][f"eval_return_seed{i}"]) for i in range(seeds)])
    np.testing.assert_allclose(final.mean(), float(evals[-1]["eval_return_mean"]), atol=0.05)
    # measured here (AMD EPYC, 2 cores), per seed: 500, 500, 500, 500, 500; one seed on another AMD EPYC host: 330.7
    assert_learns(final, 250.0, "PPO Gymnasium CartPole-v1 (host), 153.6k steps")


def test_host_runs_are_deterministic_and_normalisation_is_checkpointed(tmp_path):
    config = override(PPOConfig(), num_envs=2, num_steps=64, hidden=(16,))

    def run(name):
        cfg = RunConfig(
            backend="gymnasium",
            num_seeds=2,
            total_steps=1024,
            eval_every=512,
            eval_episodes=2,
            normalize_obs=True,
            normalize_reward=True,
            out=tmp_path / name,
            progress=False,
        )
        return train(make_runner(config, "Pendulum-v1", cfg), cfg, config, "Pendulum-v1")

    a, b = run("a"), run("b")
    rows = lambda rd: [{k: v for k, v in r.items() if k != "chunk_seconds"} for r in _evals(rd)]
    assert rows(a) == rows(b)
    ma, mb = (list(csv.DictReader((rd.path / "metrics.csv").open())) for rd in (a, b))
    assert ma == mb and len(ma) == 2  # one row per --log-every 1000 steps: 2 chunks of 4 updates
    # the checkpoint holds the running statistics: 2 seeds × (1024 steps + 2 first observations) each
    cfg = RunConfig(
        backend="gymnasium", num_seeds=2, normalize_obs=True, normalize_reward=True, progress=False
    )
    runner = make_runner(config, "Pendulum-v1", cfg)
    template = runner.init(jax.random.split(jax.random.key(0), 2))
    state, _ = load_checkpoint(a.path / CHECKPOINT, template)
    runner.close()
    np.testing.assert_array_equal(np.asarray(state.obs_stats.count), [1024 + 2, 1024 + 2])
    assert np.all(np.asarray(state.obs_stats.var) > 0)
    assert np.all(np.asarray(state.reward_norm.stats.count) == 1024)


def test_gymnax_normalisation_statistics_count_every_observation():
    config = override(PPOConfig(), num_envs=2, num_steps=64, hidden=(16,))
    cfg = RunConfig(num_seeds=1, normalize_obs=True, normalize_reward=True, progress=False)
    runner = make_runner(config, "Pendulum-v1", cfg)
    assert isinstance(runner, JaxRunner)
    state = runner.init(jax.random.split(jax.random.key(0), 1))
    state, metrics = runner.chunk(state, 4)
    assert metrics["episodic_return"].shape == (1, 4)
    stats = state.carry.obs_stats
    assert float(stats.count[0]) == 4 * 128 + 2
    # Pendulum observations are (cos θ, sin θ, θ̇): |mean| ≤ 1 for the first two, variance > 0
    assert np.all(np.abs(np.asarray(stats.mean)[0, :2]) <= 1.0) and np.all(np.asarray(stats.var) > 0)


@pytest.mark.parametrize(
    ("env_id", "backend", "fragment"),
    [
        ("CartPole-v1", "auto", None),
        ("HalfCheetah-v5", "auto", None),
        ("HalfCheetah-v5", "gymnax", "not a registered gymnax environment"),
        ("HalfCheetah-v9", "auto", "did you mean"),
        ("CartPol-v1", "gymnasium", "did you mean CartPole-v1"),
    ],
)
def test_backend_resolution(env_id, backend, fragment):
    if fragment is None:
        expected = "gymnax" if env_id == "CartPole-v1" else "gymnasium"
        assert resolve_backend(env_id, backend) == expected
    else:
        with pytest.raises(ConfigError, match=fragment) as info:
            resolve_backend(env_id, backend)
        assert "\n" not in str(info.value)


def test_bad_backend_name():
    with pytest.raises(ConfigError, match="backend"):
        RunConfig(backend="jax").validate()


def test_evaluation_rounds_never_share_an_episode_seed():
    """Round r seeds its N·E evaluation episodes from base + max(1000, N·E)·r on: with 2 seeds × 600 episodes the
    rounds' seed ranges are disjoint (a stride of 1000 would give rounds 0 and 1 the seeds 1000–1199 twice), and
    with 2 × 10 the stride stays 1000, so small runs evaluate on the episodes they always did."""
    config = override(PPOConfig(), num_envs=1, num_steps=8, hidden=(8,))
    calls = []

    class Episodes:
        def episodes(self, policy, seed, max_steps):
            calls.append(seed)
            return np.zeros(n * e)

        def close(self):
            pass

    for n, e, stride, seed in ((2, 600, 1200, 0), (2, 10, 1000, 0), (2, 10, 1000, 7)):
        run_cfg = RunConfig(num_seeds=n, eval_episodes=e, backend="gymnasium", seed=seed)
        runner = make_runner(config, "CartPole-v1", run_cfg)
        assert isinstance(runner, HostRunner)
        runner._eval_env = Episodes()
        calls.clear()
        for r in range(3):
            runner.evaluate(None, None, r)
        # the run's seed shifts every round's episode seeds (runs of other seeds evaluate on other episodes)
        assert calls == [seed + 10_000_000 + stride * r for r in range(3)]
        runner.close()


def test_the_host_runner_acts_with_the_gymnax_loops_keys():
    """Step t of a host rollout samples the behaviour policy with the key the gymnax loop gives step t
    (loops.loop_update's rollout keyed fold_in(K, 1), the policy's half of each step's split), never with the
    carry's successor key: on the observations of a gymnax rollout the host's actions are that rollout's own."""
    from proxrl.deep import loops
    from proxrl.deep.jax_envs import make_jax_env

    config = override(PPOConfig(), num_envs=2, num_steps=32, hidden=(8,))
    run_cfg = RunConfig(num_seeds=1, backend="gymnasium", progress=False)
    runner = make_runner(config, "CartPole-v1", run_cfg)
    try:
        carry = runner.init(jax.random.split(jax.random.key(5), 1))
        one = jax.tree.map(lambda x: x[0], carry)
        env = make_jax_env("CartPole-v1")
        obs, env_state = env.reset_batch(jax.random.key(6), 2)
        policy = lambda c, o, k: loops.act(runner.learner, runner.norm, c, o, k)
        traj, _, _ = env.rollout(jax.random.fold_in(one.key, 1), env_state, obs, policy, one, 32)
        keys = runner._rollout_keys(carry)
        host = np.stack([np.asarray(runner._act(carry, traj.obs[t][None], keys, t))[0] for t in range(32)])
        np.testing.assert_array_equal(host, traj.action)
        # with the successor key's draws instead, about half the actions of this near-uniform policy differ
        successor = jax.random.split(one.key)[0]
        other = np.stack(
            [
                np.asarray(
                    loops.act(runner.learner, runner.norm, one, traj.obs[t], jax.random.fold_in(successor, t))
                )
                for t in range(32)
            ]
        )
        assert np.mean(other != np.asarray(traj.action)) > 0.2
    finally:
        runner.close()
