"""A2C: learning on CartPole, seeds, continuous actions, bad input (its surrogate's gradient: tests/test_prox.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import (
    assert_learns,
    assert_one_line_config_error,
    assert_seeds_differ_and_repeat,
    gymnax_loop,
    train_seeds,
)
from proxrl.config import override
from proxrl.deep.on_policy.a2c import A2CConfig
from proxrl.run.train import RunConfig, make_evaluate, make_runner, make_train

# SB3 defaults (8 envs × 5 steps, RMSprop lr 7e-4), 200k steps, 7 seeds (two calls of 4 vmapped seeds,
# helpers.train_seeds), deterministic evaluation over 10 episodes. A2C is noisier than PPO: a seed can
# collapse late (47.7 for one of 8 seeds of split(key(0), 8) here, 500 for the other 7).
CARTPOLE = A2CConfig()
CARTPOLE_STEPS = 200_000

SMALL = override(A2CConfig(), num_envs=4, num_steps=5, hidden=(16,))
SMALL_STEPS = 2_000


def test_learns_cartpole():
    train = jax.jit(jax.vmap(make_train(CARTPOLE, "CartPole-v1", CARTPOLE_STEPS)))
    evaluate = jax.jit(jax.vmap(make_evaluate(CARTPOLE, "CartPole-v1", episodes=10)))
    runs = train_seeds(train, evaluate, lanes=4)
    # measured here (AMD EPYC, 2 cores), per seed: 500, 500, 500, 500, 44.5, 500, 500 (median 500)
    assert_learns(runs.returns, 300.0, "A2C CartPole-v1, 200k steps")
    assert_seeds_differ_and_repeat(runs, "policy_loss")
    metrics = runs.metrics[0]
    kl = metrics["kl"]
    assert np.all(kl >= -1e-6) and np.all(np.isfinite(kl))
    assert kl.shape == (4, (CARTPOLE_STEPS // CARTPOLE.rollout.size))
    assert (
        float(metrics["env_steps"][0, -1])
        == (CARTPOLE_STEPS // CARTPOLE.rollout.size) * CARTPOLE.rollout.size
    )


def test_same_seed_same_metrics_and_trainer_contract():
    trainer = gymnax_loop(SMALL, "CartPole-v1", 2)
    runner = make_runner(SMALL, "CartPole-v1", RunConfig(eval_episodes=2))
    assert runner.name == "a2c" and runner.steps_per_update == SMALL.rollout.size == 20
    train = jax.jit(make_train(SMALL, "CartPole-v1", SMALL_STEPS))
    (s1, m1), (s2, m2) = train(jax.random.key(3)), train(jax.random.key(3))
    expected = {"episodic_return", "explained_variance", "entropy", "value_loss", "policy_loss"}
    assert expected | {"learning_rate", "kl", "surrogate_gain", "step_norm"} <= set(m1)
    for name in m1:
        np.testing.assert_array_equal(m1[name], m2[name], err_msg=name)
    raw = lambda x: jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x
    for a, b in zip(jax.tree.leaves(s1.carry.learner), jax.tree.leaves(s2.carry.learner), strict=True):
        np.testing.assert_array_equal(raw(a), raw(b))
    _, m3 = train(jax.random.key(4))
    assert not np.array_equal(m1["policy_loss"], m3["policy_loss"])
    # the driver's use: vmapped init / update / evaluate keep the tree structure
    states = jax.vmap(trainer.init)(jax.random.split(jax.random.key(0), 2))
    new_states, _ = jax.jit(jax.vmap(trainer.update))(states)
    assert jax.tree.structure(new_states) == jax.tree.structure(states)
    ret = jax.jit(jax.vmap(trainer.evaluate))(new_states, jax.random.split(jax.random.key(1), 2))
    assert ret.shape == (2,) and np.all(np.isfinite(ret))


def test_continuous_actions_step():
    config = override(SMALL, optimiser="adam", gae_lambda=0.95, ent_coef=0.01, norm_adv=True)
    trainer = gymnax_loop(config, "Pendulum-v1", 1)
    state = trainer.init(jax.random.key(0))
    state, metrics = jax.jit(trainer.update)(state)
    for name in ("kl", "policy_loss", "value_loss", "entropy", "step_norm"):
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["step_norm"]) > 0


@pytest.mark.parametrize("change", [{"optimiser": "sgd"}, {"rms_decay": 1.5}, {"vf_coef": -1.0}])
def test_bad_config_raises(change):
    """A2C's own fields; the checks every algorithm shares are in test_configs.py."""
    config = override(A2CConfig(), **change)
    assert_one_line_config_error(config, make_train, "CartPole-v1")
