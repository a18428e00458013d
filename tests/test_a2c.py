"""A2C: two updates against a reference with PyTorch-style RMSprop, learning on CartPole, seeds, continuous actions, bad
input (its surrogate's gradient: tests/test_prox.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import (
    assert_learns,
    assert_one_line_config_error,
    assert_seeds_differ_and_repeat,
    gae_by_hand,
    gymnax_loop,
    hand_rollout,
    train_seeds,
)
from proxrl.config import override
from proxrl.deep.networks import CategoricalPolicy, ValueNetwork
from proxrl.deep.on_policy.a2c import A2CConfig, make_learner
from proxrl.deep.on_policy.common import as_env
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


def test_two_updates_equal_a_reference_a2c_with_pytorch_rmsprop():
    """Two updates of the learner (GAE(λ = 1) under V_φk, −(1/N)Σ log π·Â − c·H + c_v·½(V − R)², one global-norm
    clip over actor and critic, RMSprop PyTorch-style: v ← ρv + (1 − ρ)g², θ ← θ − lr·g/(√v + ε), v₀ = 0)
    equal a reference written here with that rule by hand, to float32 rounding. The first RMSprop step is
    lr·g/(√(1 − ρ)|g| + ε) ≈ 10·lr·sign(g), ten times Adam's, so the rule is told apart from Adam's; the
    gradient norm is clipped in both updates (checked)."""
    lr, gamma, c_ent, c_v, max_norm, rho, eps = 7e-4, 0.99, 0.01, 0.5, 0.5, 0.99, 1e-5
    env = as_env("CartPole-v1")
    config = override(A2CConfig(), num_envs=2, num_steps=8, hidden=(8,), lr=lr, gamma=gamma, ent_coef=c_ent,
                      vf_coef=c_v, max_grad_norm=max_norm, rms_decay=rho)  # fmt: skip
    learner = make_learner(config, env.observation_space, env.action_space)
    rollouts = [hand_rollout(0), hand_rollout(1)]
    state = learner.init(jax.random.key(1), rollouts[0].obs[0])
    params0 = state.params
    for traj in rollouts:
        state, metrics = jax.jit(learner.learn)(state, traj)

    policy, critic = CategoricalPolicy(num_actions=2, hidden=(8,)), ValueNetwork(hidden=(8,))
    params, v_acc, norms = params0, jax.tree.map(jnp.zeros_like, params0), []
    for traj in rollouts:
        obs, actions = traj.obs.reshape(16, 4), traj.action.reshape(16)
        v = critic.apply(params["critic"], traj.obs)
        adv, returns = gae_by_hand(traj, v, critic.apply(params["critic"], traj.next_obs), gamma, 1.0)
        adv, returns = (jnp.asarray(x.reshape(16), jnp.float32) for x in (adv, returns))

        def loss(p, obs=obs, actions=actions, adv=adv, returns=returns):
            logp = jax.nn.log_softmax(policy.apply(p["actor"], obs))
            entropy = jnp.mean(-jnp.sum(jnp.exp(logp) * logp, axis=-1))
            v_loss = 0.5 * jnp.mean((critic.apply(p["critic"], obs) - returns) ** 2)
            return -jnp.mean(logp[jnp.arange(16), actions] * adv) - c_ent * entropy + c_v * v_loss

        g = jax.grad(loss)(params)
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g)))
        norms.append(float(norm))
        scale = jnp.minimum(1.0, max_norm / norm)
        g = jax.tree.map(lambda x, s=scale: x * s, g)
        v_acc = jax.tree.map(lambda a, x: rho * a + (1 - rho) * x**2, v_acc, g)
        params = jax.tree.map(lambda p, x, a: p - lr * x / (jnp.sqrt(a) + eps), params, g, v_acc)
    assert min(norms) > max_norm  # the clip binds in both updates
    for got, want, before in zip(*map(jax.tree.leaves, (state.params, params, params0)), strict=True):
        ulp = np.spacing(np.abs(np.asarray(before)))  # each step is rounded to θ's float32 spacing
        np.testing.assert_array_less(
            np.abs(np.asarray(got - want)), 1e-3 * np.abs(np.asarray(want - before)) + 4 * ulp + 1e-9
        )
    np.testing.assert_allclose(metrics["grad_norm"], norms[-1], rtol=1e-4)
    # the first step of every parameter with a gradient is ≈ 10·lr (√(1 − ρ) = 0.1): not Adam's lr
    moved = np.concatenate(
        [
            np.abs(np.asarray(a - b)).ravel()
            for a, b in zip(*map(jax.tree.leaves, (params, params0)), strict=True)
        ]
    )
    assert np.median(moved) > 5 * lr
