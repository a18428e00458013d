"""PPO with a Gaussian policy learns Pendulum-v1 (its own file: a fresh process, see scripts/test.sh)."""

import jax
import numpy as np

from proxrl.algos.ppo import PPOConfig, make_ppo, make_train

# Pendulum with a Gaussian policy (learned state-independent log σ), RL-Zoo-like shapes without gSDE; value
# clipping off: with raw Pendulum returns (≈ −100 per state at γ = 0.9) a value step clipped to ±ε stalls the
# critic (with clipping on, 4 seeds stayed at −1000 to −1200 after 100k steps; off: −104 to −294).
PENDULUM = PPOConfig(
    total_timesteps=100_352,
    num_envs=4,
    num_steps=1024,
    update_epochs=10,
    num_minibatches=16,
    lr=1e-3,
    gamma=0.9,
    ent_coef=0.0,
    clip_vloss=False,
)


def test_gaussian_ppo_learns_pendulum():
    evaluate = make_ppo(PENDULUM, "Pendulum-v1", eval_episodes=10).evaluate
    train = jax.jit(jax.vmap(make_train(PENDULUM, "Pendulum-v1")))
    state, metrics = jax.block_until_ready(train(jax.random.split(jax.random.key(0), 2)))
    returns = np.asarray(jax.jit(jax.vmap(evaluate))(state, jax.random.split(jax.random.key(1), 2)))
    first = np.nanmean(np.asarray(metrics["episodic_return"])[:, :3])
    assert first < -1000.0, first  # a random Gaussian policy: about −1200 per episode
    assert np.all(returns > -500.0), returns
