"""PPO: surrogate identities and known answers, the adaptive-β rule, learning on CartPole, seeds, bad input."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_one_line_config_error, assert_seeds_differ_and_repeat
from proxrl.algos.ppo import PPOConfig, make_ppo, make_train
from proxrl.errors import ConfigError
from proxrl.objectives import ppo as obj
from proxrl.policies.distributions import categorical
from proxrl.policies.networks import CategoricalPolicy

# Learns CartPole-v1 to 500 in 150k steps for every seed we tried (8 of 8 with key(0)); ~1 s per seed here.
CARTPOLE = PPOConfig(total_timesteps=200_000, num_envs=4, num_steps=128, lr=1e-3, ent_coef=0.0)


# ---------------------------------------------------------------------------------------------- objectives


@pytest.mark.parametrize("kind", ["none", "clip", "kl_fixed", "kl_adaptive"])
def test_gradient_at_theta_k_is_the_policy_gradient(kind):
    """ratio = 1 at θ = θ_k ⇒ ∇(ratio·A) = ∇log π·A; the clip does not bind and ∇KL = 0 there."""
    k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.key(0), 4)
    policy = CategoricalPolicy(num_actions=3, hidden=(8,))
    obs = jax.random.normal(k_obs, (32, 4))
    actions = jax.random.randint(k_act, (32,), 0, 3)
    adv = jax.random.normal(k_adv, (32,))
    theta_k = policy.init(k_init, obs)
    logits_k = policy.apply(theta_k, obs)
    logp_old = categorical(logits_k).log_prob(actions)

    def surrogate(theta):
        dist = categorical(policy.apply(theta, obs))
        kl = dist.kl_divergence(categorical(logits_k))
        loss, _ = obj.policy_loss(kind, dist.log_prob(actions), logp_old, adv, clip_eps=0.2, kl=kl, beta=3.0)
        return -loss

    def pg(theta):
        return jnp.mean(categorical(policy.apply(theta, obs)).log_prob(actions) * adv)

    g_sur, g_pg = jax.grad(surrogate)(theta_k), jax.grad(pg)(theta_k)
    for a, b in zip(jax.tree.leaves(g_sur), jax.tree.leaves(g_pg), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_pg)) > 1e-4  # not trivially zero


def test_clipped_surrogate_known_answers():
    ratios = jnp.array([0.5, 1.0, 1.1, 1.5])
    logp_old = jnp.zeros(4)
    logp = jnp.log(ratios)
    # A = +2: min(r·A, clip(r, 0.8, 1.2)·A)
    pos = obj.clipped_surrogate(logp, logp_old, 2.0 * jnp.ones(4), 0.2)
    np.testing.assert_allclose(pos, [1.0, 2.0, 2.2, 2.4], rtol=1e-6)
    # A = −2: the pessimistic side flips
    neg = obj.clipped_surrogate(logp, logp_old, -2.0 * jnp.ones(4), 0.2)
    np.testing.assert_allclose(neg, [-1.6, -2.0, -2.2, -3.0], rtol=1e-6)
    np.testing.assert_allclose(obj.ratio_surrogate(logp, logp_old, 2.0), 2.0 * ratios, rtol=1e-6)
    np.testing.assert_allclose(obj.clip_fraction(logp, logp_old, 0.2), 0.5)
    kl = jnp.array([0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(
        obj.kl_penalised_surrogate(logp, logp_old, 1.0, kl, 2.0), ratios - 2.0 * kl, rtol=1e-6
    )


def test_value_loss_and_approx_kl():
    v, v_old, ret = jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0]), jnp.array([2.0, 2.0])
    np.testing.assert_allclose(obj.value_loss(v, v_old, ret), 0.5 * (1 + 1) / 2)
    # clipped at ±0.5: V_clip = (0.5, 0.5); max{(v−R)², (V_clip−R)²} = (2.25, 2.25)
    np.testing.assert_allclose(obj.value_loss(v, v_old, ret, 0.5), 0.5 * 2.25)
    assert float(obj.approx_kl(jnp.zeros(3), jnp.zeros(3))) == 0.0
    assert float(obj.approx_kl(jnp.log(jnp.array([0.5, 2.0])), jnp.zeros(2))) > 0.0


@pytest.mark.parametrize(
    ("kl", "expected"), [(0.001, 0.5), (0.0066, 0.5), (0.007, 1.0), (0.01, 1.0), (0.015, 1.0), (0.0151, 2.0)]
)
def test_adaptive_beta_halves_and_doubles(kl, expected):
    assert float(obj.adapt_beta(1.0, kl, 0.01)) == expected
    assert float(jax.jit(obj.adapt_beta)(4.0, kl, 0.01)) == 4.0 * expected


# ---------------------------------------------------------------------------------------------- learning


@pytest.fixture(scope="module")
def cartpole_runs():
    """Seeds (a, b, a) in ONE vmapped, jitted call: learning, seed differences and determinism at once."""
    train = jax.jit(jax.vmap(make_train(CARTPOLE, "CartPole-v1")))
    ka, kb = jax.random.split(jax.random.key(0), 2)
    keys = jnp.stack([ka, kb, ka])
    state, metrics = train(keys)
    evaluate = make_ppo(CARTPOLE, "CartPole-v1", eval_episodes=10).evaluate
    returns = jax.jit(jax.vmap(evaluate))(state, jax.random.split(jax.random.key(1), 3))
    return state, jax.tree.map(np.asarray, metrics), np.asarray(returns)


def test_ppo_learns_cartpole(cartpole_runs):
    _, metrics, returns = cartpole_runs
    assert returns.shape == (3,)
    assert returns[:2].min() >= 475.0, returns
    assert metrics["episodic_return"].shape == (3, CARTPOLE.num_updates)
    assert np.nanmean(metrics["episodic_return"][:2, -10:]) > 400.0
    np.testing.assert_array_equal(metrics["env_steps"][0, -1], CARTPOLE.num_updates * CARTPOLE.batch_size)
    for name in (
        "approx_kl",
        "clip_frac",
        "explained_variance",
        "entropy",
        "value_loss",
        "policy_loss",
        "beta",
    ):
        assert np.all(np.isfinite(metrics[name])), name


def test_seeds_differ_and_same_seed_is_identical(cartpole_runs):
    _, metrics, _ = cartpole_runs
    assert_seeds_differ_and_repeat(metrics, "episodic_return")


def test_gaussian_policy_and_adaptive_kl_run_under_vmap():
    """Continuous actions (learned log σ) with the adaptive-KL surrogate: compiles, vmaps, β moves by ×2."""
    config = PPOConfig(
        total_timesteps=3 * 256,
        num_envs=2,
        num_steps=128,
        update_epochs=2,
        num_minibatches=2,
        hidden=(16,),
        surrogate="kl_adaptive",
        kl_target=1e-9,
    )
    state, metrics = jax.jit(jax.vmap(make_train(config, "Pendulum-v1")))(
        jax.random.split(jax.random.key(0), 2)
    )
    beta = np.asarray(metrics["beta"])
    assert beta.shape == (2, 3) and np.all(beta[:, 0] == 1.0)
    assert np.all(np.isin(beta, [0.25, 0.5, 1.0, 2.0, 4.0]))
    assert np.all(beta[:, 1] == 2.0)  # any step moves KL far beyond a 1e-9 target ⇒ β doubles
    assert state.carry.learner.params["actor"]["params"]["log_std"].shape == (2, 1)
    evaluate = make_ppo(config, "Pendulum-v1", eval_episodes=2).evaluate
    returns = jax.jit(jax.vmap(evaluate))(state, jax.random.split(jax.random.key(0), 2))
    assert returns.shape == (2,) and np.all(np.isfinite(returns))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("lr", 0.0, "lr must be"),
        ("lr", -1e-3, "lr must be"),
        ("clip_eps", 0.0, "clip_eps must be"),
        ("gamma", 1.5, "gamma must lie in [0, 1]"),
        ("gae_lambda", -0.1, "gae_lambda must lie in [0, 1]"),
        ("total_timesteps", 0, "total_timesteps must be"),
        ("total_timesteps", 100, "total_timesteps must be >= num_envs·num_steps"),
        ("num_envs", 0, "num_envs must be"),
        ("num_minibatches", 3, "num_minibatches must divide"),
        ("surrogate", "trust", "surrogate must be one of"),
        ("max_grad_norm", math.nan, "max_grad_norm must be"),
    ],
)
def test_bad_config_is_a_one_line_config_error(field, value, fragment):
    config = PPOConfig(**{field: value})
    message = assert_one_line_config_error(config, make_train, "CartPole-v1", fragment)
    assert repr(value) in message or str(value) in message


def test_unknown_env_is_a_config_error():
    with pytest.raises(ConfigError, match="CartPole-v1"):
        make_train(PPOConfig(), "CartPol-v1")
