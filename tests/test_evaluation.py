"""Evaluation returns are the numbers they claim to be: the gymnax loop counts each episode to its first end,
a run's evaluation is reproduced exactly from its checkpoint (the state ``proxrl evaluate`` and the agent API
load), and the deterministic policy sees observations standardised with the run's statistics."""

from __future__ import annotations

import csv

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.config import override
from proxrl.deep import loops
from proxrl.deep.jax_envs import make_jax_env
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.run.commands import load_run
from proxrl.run.train import RunConfig, make_runner, train

TINY = override(PPOConfig(), num_envs=2, num_steps=32, num_minibatches=2, update_epochs=1, hidden=(16,))


def test_gymnax_evaluation_counts_each_episode_to_its_first_end():
    """Always pushing left ends CartPole within a few steps: each episode's return is its own length (reward 1 per
    step, the terminal step included), stepped here one by one from the same resets; the rewards of the
    episodes the batch starts after an end are not counted."""
    env = make_jax_env("CartPole-v1")
    left = lambda obs: jnp.zeros(obs.shape[0], jnp.int32)
    key = jax.random.key(7)
    returns = np.asarray(jax.jit(lambda k: loops.evaluate(env, left, k, 4))(key))
    k_reset, k_run = jax.random.split(key)
    obs, state = env.reset_batch(k_reset, 4)
    lengths, alive = np.zeros(4), np.ones(4, bool)
    for k in jax.random.split(k_run, 500):
        out, state = env.step_batch(k, state, left(obs))
        lengths += alive
        alive &= ~np.asarray(out.terminated | out.truncated)
        obs = out.obs
        if not alive.any():
            break
    assert np.all((lengths >= 5) & (lengths < 30)), lengths
    np.testing.assert_array_equal(returns, lengths)


def _last_evaluation(run_dir) -> tuple[int, np.ndarray]:
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    seeds = sorted(k for k in rows[-1] if k.startswith("eval_return_seed"))
    return len(rows) - 1, np.array([float(rows[-1][k]) for k in seeds])


@pytest.mark.parametrize("backend", ["gymnax", "gymnasium"])
def test_a_loaded_run_reproduces_its_last_evaluation_and_standardises_observations(backend, tmp_path):
    """Pendulum (continuous actions: the policy's mean shows any change of its input). A run with observation
    normalisation, 2 seeds, 2 evaluation rounds of 3 episodes: the state loaded from
    its checkpoint (:func:`proxrl.run.commands.load_run`, as ``proxrl evaluate`` and the agent API do) evaluated
    with round 1's keys gives eval.csv's last row; its deterministic policy acts on (obs − μ)/√(σ² + 1e-8),
    clipped at ±10, with the statistics the checkpoint holds (which are not the identity)."""
    run_cfg = RunConfig(num_seeds=2, total_steps=256, eval_every=128, eval_episodes=3, normalize_obs=True,
                        backend=backend, progress=False, out=tmp_path)  # fmt: skip
    runner = make_runner(TINY, "Pendulum-v1", run_cfg)
    try:
        rd = train(runner, run_cfg, TINY, "Pendulum-v1")
    finally:
        runner.close()
    last, recorded = _last_evaluation(rd.path)
    assert last == 1
    _, _, _, loaded, state = load_run(rd.path, eval_episodes=3)
    try:
        keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 1_000_003), last), 2)
        np.testing.assert_allclose(loaded.evaluate(state, keys, last), recorded, rtol=1e-5)
        carry = state.carry if backend == "gymnax" else state
        obs = np.asarray(jax.random.normal(jax.random.key(3), (2, 5, 3)) * 2.0, np.float32)
        stats = carry.obs_stats
        assert np.all(np.abs(np.asarray(stats.mean)) > 1e-6)
        for s in range(2):
            z = np.clip((obs[s] - stats.mean[s]) / np.sqrt(stats.var[s] + 1e-8), -10, 10)
            params = jax.tree.map(lambda x, s=s: x[s], carry.learner)
            want = loaded.learner.mode(params, jnp.asarray(z, jnp.float32))
            np.testing.assert_allclose(loaded.mode(state, obs)[s], want, rtol=1e-5, atol=1e-6)
    finally:
        loaded.close()
