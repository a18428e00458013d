"""PPO: surrogate identities and known answers, the adaptive-β rule, learning on CartPole (categorical policy) and
Pendulum (Gaussian policy), seeds, bad input."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import (
    PPO_PENDULUM,
    PPO_PENDULUM_STEPS,
    assert_learns,
    assert_one_line_config_error,
    assert_seeds_differ_and_repeat,
    gae_by_hand,
    hand_rollout,
    rounded,
    train_seeds,
)
from proxrl.config import override
from proxrl.deep.distributions import categorical
from proxrl.deep.networks import CategoricalPolicy, ValueNetwork
from proxrl.deep.on_policy.common import as_env
from proxrl.deep.on_policy.ppo import PPOConfig, make_learner
from proxrl.errors import ConfigError
from proxrl.prox import Problem
from proxrl.prox.critic import value_loss
from proxrl.prox.geometry import adapt_beta, head_kl, sampled_kl
from proxrl.prox.surrogates import clip_fraction, clipped_objective, clipped_ratio, importance_ratio, ratio
from proxrl.run.train import make_evaluate, make_train

# Learning checks: 7 seeds each (two calls of 4 vmapped seeds, helpers.train_seeds), deterministic evaluation
# over 10 episodes; the measured per-seed returns are beside each threshold.
CARTPOLE = override(PPOConfig(), num_envs=4, num_steps=128, lr=1e-3, ent_coef=0.0)
CARTPOLE_STEPS = 200_000
PENDULUM_STEPS, PENDULUM = PPO_PENDULUM_STEPS, PPO_PENDULUM


# ---------------------------------------------------------------------------------------------- objectives


class _Batch(NamedTuple):
    obs: jax.Array
    action: jax.Array
    adv: jax.Array
    logp_old: jax.Array
    dist_old: jax.Array


def _kit(kind: str):
    """PPO's problem for ``kind``, as ppo_step composes it (without the entropy and value terms)."""
    surrogate = clipped_ratio(0.2) if kind == "clip" else ratio()
    geometry = head_kl(lambda b: categorical(b.dist_old)) if kind.startswith("kl") else None
    return surrogate, geometry


@pytest.mark.parametrize("kind", ["none", "clip", "kl_fixed", "kl_adaptive"])
def test_gradient_at_theta_k_is_the_policy_gradient(kind):
    """ratio = 1 at θ = θ_k ⇒ ∇(ratio·A) = ∇log π·A; the clip does not bind and ∇KL = 0 there (β = 3)."""
    k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.key(0), 4)
    policy = CategoricalPolicy(num_actions=3, hidden=(8,))
    obs = jax.random.normal(k_obs, (32, 4))
    actions = jax.random.randint(k_act, (32,), 0, 3)
    adv = jax.random.normal(k_adv, (32,))
    theta_k = policy.init(k_init, obs)
    logits_k = policy.apply(theta_k, obs)
    batch = _Batch(obs, actions, adv, categorical(logits_k).log_prob(actions), logits_k)
    surrogate, geometry = _kit(kind)
    problem = Problem(surrogate, geometry, policy=lambda th, b, key: categorical(policy.apply(th, b.obs)))

    def pg(theta):
        return jnp.mean(categorical(policy.apply(theta, obs)).log_prob(actions) * adv)

    g_sur = jax.grad(lambda th: problem.objective(th, theta_k, batch, None, 3.0)[0])(theta_k)
    g_pg = jax.grad(pg)(theta_k)
    for a, b in zip(jax.tree.leaves(g_sur), jax.tree.leaves(g_pg), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_pg)) > 1e-4  # not trivially zero


def test_clipped_surrogate_known_answers():
    ratios = jnp.array([0.5, 1.0, 1.1, 1.5])
    logp_old = jnp.zeros(4)
    logp = jnp.log(ratios)
    # A = +2: min(r·A, clip(r, 0.8, 1.2)·A)
    pos = clipped_objective(logp, logp_old, 2.0 * jnp.ones(4), 0.2)
    np.testing.assert_allclose(pos, [1.0, 2.0, 2.2, 2.4], rtol=1e-6)
    # A = −2: the pessimistic side flips
    neg = clipped_objective(logp, logp_old, -2.0 * jnp.ones(4), 0.2)
    np.testing.assert_allclose(neg, [-1.6, -2.0, -2.2, -3.0], rtol=1e-6)
    np.testing.assert_allclose(importance_ratio(logp, logp_old) * 2.0, 2.0 * ratios, rtol=1e-6)
    np.testing.assert_allclose(clip_fraction(logp, logp_old, 0.2), 0.5)


def test_kl_penalised_objective_is_ratio_times_advantage_minus_beta_kl():
    """W(θ) = (1/N) Σ ratio·A − β·(1/N) Σ KL(π_θ, π_θk), from the kit's ratio surrogate and head-KL geometry."""
    logits_k = jnp.log(jnp.array([[0.2, 0.8], [0.5, 0.5], [0.9, 0.1]]))
    logits = jnp.log(jnp.array([[0.3, 0.7], [0.4, 0.6], [0.8, 0.2]]))
    actions, adv = jnp.array([0, 1, 0]), jnp.array([1.0, -2.0, 0.5])
    batch = _Batch(jnp.zeros((3, 1)), actions, adv, categorical(logits_k).log_prob(actions), logits_k)
    surrogate, geometry = _kit("kl_fixed")
    problem = Problem(surrogate, geometry, policy=lambda th, b, key: categorical(th))
    r = jnp.exp(categorical(logits).log_prob(actions) - batch.logp_old)
    p, q = jax.nn.softmax(logits), jax.nn.softmax(logits_k)
    kl = jnp.sum(p * jnp.log(p / q), axis=-1)
    value, _ = problem.objective(logits, logits_k, batch, None, 2.0)
    np.testing.assert_allclose(value, jnp.mean(r * adv) - 2.0 * jnp.mean(kl), rtol=1e-5)


def test_value_loss_and_approx_kl():
    v, v_old, ret = jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0]), jnp.array([2.0, 2.0])
    np.testing.assert_allclose(value_loss(v, v_old, ret), 0.5 * (1 + 1) / 2)
    # clipped at ±0.5: V_clip = (0.5, 0.5); max{(v−R)², (V_clip−R)²} = (2.25, 2.25)
    np.testing.assert_allclose(value_loss(v, v_old, ret, 0.5), 0.5 * 2.25)
    assert float(sampled_kl(jnp.zeros(3), jnp.zeros(3))) == 0.0
    # k3 by hand: mean[(0.5 − 1) − ln 0.5, (2 − 1) − ln 2] = 0.25 (k2, ½ mean log², would give 0.240)
    assert float(sampled_kl(jnp.log(jnp.array([0.5, 2.0])), jnp.zeros(2))) == pytest.approx(0.25, abs=1e-6)


@pytest.mark.parametrize(
    ("kl", "expected"), [(0.001, 0.5), (0.0066, 0.5), (0.007, 1.0), (0.01, 1.0), (0.015, 1.0), (0.0151, 2.0)]
)
def test_adaptive_beta_halves_and_doubles(kl, expected):
    assert float(adapt_beta(1.0, kl, 0.01)) == expected
    assert float(jax.jit(adapt_beta)(4.0, kl, 0.01)) == 4.0 * expected


# ---------------------------------------------------------------------------------------------- learning


def _runs(config, env_id, total_steps):
    train = jax.jit(jax.vmap(make_train(config, env_id, total_steps)))
    evaluate = jax.jit(jax.vmap(make_evaluate(config, env_id, episodes=10)))
    return train_seeds(train, evaluate, lanes=4)


@pytest.fixture(scope="module")
def cartpole_runs():
    return _runs(CARTPOLE, "CartPole-v1", CARTPOLE_STEPS)


def test_ppo_learns_cartpole(cartpole_runs):
    metrics = cartpole_runs.metrics[0]
    # measured here (AMD EPYC, 2 cores), per seed: 500, 426.9, 500, 500, 500, 500, 500 (median 500)
    assert_learns(cartpole_runs.returns, 300.0, "PPO CartPole-v1, 200k steps")
    assert metrics["episodic_return"].shape == (4, (CARTPOLE_STEPS // CARTPOLE.rollout.size))
    late = np.nanmean(metrics["episodic_return"][:, -10:], axis=1)  # the last 10 updates' episodes
    print("PPO CartPole-v1, last 10 updates' episodes per seed:", rounded(late))
    assert np.median(late) > 250.0, late  # measured 500, 464.1, 500, 500
    np.testing.assert_array_equal(
        metrics["env_steps"][0, -1], (CARTPOLE_STEPS // CARTPOLE.rollout.size) * CARTPOLE.rollout.size
    )
    for name in (
        "approx_kl",
        "clip_frac",
        "explained_variance",
        "entropy",
        "value_loss",
        "policy_loss",
        "surrogate_gain",
        "step_norm",
        "kl",
    ):
        assert np.all(np.isfinite(metrics[name])), name


def test_seeds_differ_and_same_seed_is_identical(cartpole_runs):
    assert_seeds_differ_and_repeat(cartpole_runs, "episodic_return")


def test_gaussian_ppo_learns_pendulum():
    runs = _runs(PENDULUM, "Pendulum-v1", PENDULUM_STEPS)
    first = np.nanmean(runs.metrics[0]["episodic_return"][:, :3], axis=1)
    print("PPO Pendulum-v1, first 3 updates per seed:", rounded(first))
    # a random Gaussian policy scores about −1200; measured −1296.5, −1268.5, −1271.8, −1302.2
    assert np.all(first < -900.0), first
    # measured here (AMD EPYC, 2 cores), per seed: −164.9, −103.7, −305.8, −236.7, −104.1, −284.3, −262.2
    # (median −236.7)
    assert_learns(runs.returns, -500.0, "PPO Pendulum-v1, 100k steps")
    assert_seeds_differ_and_repeat(runs, "episodic_return")


def test_gaussian_policy_and_adaptive_kl_run_under_vmap():
    """Continuous actions (learned log σ) with the adaptive-KL surrogate: compiles, vmaps, β moves by ×2."""
    config = override(
        PPOConfig(),
        num_envs=2,
        num_steps=128,
        update_epochs=2,
        num_minibatches=2,
        hidden=(16,),
        surrogate="kl_adaptive",
        kl_target=1e-9,
    )
    state, metrics = jax.jit(jax.vmap(make_train(config, "Pendulum-v1", 3 * 256)))(
        jax.random.split(jax.random.key(0), 2)
    )
    beta = np.asarray(metrics["beta"])
    assert beta.shape == (2, 3) and np.all(beta[:, 0] == 1.0)
    assert np.all(np.isin(beta, [0.25, 0.5, 1.0, 2.0, 4.0]))
    assert np.all(beta[:, 1] == 2.0)  # any step moves KL far beyond a 1e-9 target ⇒ β doubles
    assert state.carry.learner.params["actor"]["params"]["log_std"].shape == (2, 1)
    evaluate = make_evaluate(config, "Pendulum-v1", episodes=2)
    returns = jax.jit(jax.vmap(evaluate))(state, jax.random.split(jax.random.key(0), 2))
    assert returns.shape == (2,) and np.all(np.isfinite(returns))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("clip_eps", 0.0, "clip_eps must be"),
        ("num_minibatches", 3, "num_minibatches must divide"),
        ("surrogate", "trust", "surrogate must be one of"),
    ],
)
def test_bad_config_is_a_one_line_config_error(field, value, fragment):
    """PPO's own fields; the checks every algorithm shares are in test_configs.py."""
    config = override(PPOConfig(), **{field: value})
    message = assert_one_line_config_error(config, make_train, "CartPole-v1", fragment)
    assert repr(value) in message or str(value) in message


def test_unknown_env_is_a_config_error():
    with pytest.raises(ConfigError, match="CartPole-v1"):
        make_train(PPOConfig(), "CartPol-v1", 10_000)


# ---------------------------------------------------------------------------------------------- one update


def test_one_update_equals_a_reference_ppo_written_from_the_paper():
    """The learner's whole update (GAE(λ) under V_φk, advantages standardised, the clipped surrogate, the clipped
    value loss, the entropy bonus, one global-norm clip over actor and critic, Adam ε = 1e-5, 4 epochs of one
    minibatch) equals a reference written here from the PPO paper's objective with optax, to float32 rounding.
    The step is large (lr 0.05) so that the clip binds in the later epochs and the gradient norm is clipped:
    both are checked, so the comparison covers them."""
    epochs, lr, gamma, lam, eps, c_ent, c_v, max_norm = 4, 0.05, 0.99, 0.95, 0.2, 0.01, 0.5, 0.25
    env = as_env("CartPole-v1")
    config = override(
        PPOConfig(), num_envs=2, num_steps=8, hidden=(8,), update_epochs=epochs, num_minibatches=1, lr=lr,
        anneal_lr=False, gamma=gamma, gae_lambda=lam, clip_eps=eps, ent_coef=c_ent, vf_coef=c_v,
        max_grad_norm=max_norm,
    )  # fmt: skip
    learner = make_learner(config, env.observation_space, env.action_space)
    traj = hand_rollout()
    state = learner.init(jax.random.key(1), traj.obs[0])
    new_state, metrics = jax.jit(learner.learn)(state, traj)

    policy, critic = CategoricalPolicy(num_actions=2, hidden=(8,)), ValueNetwork(hidden=(8,))
    params0 = state.params
    obs, actions = traj.obs.reshape(16, 4), traj.action.reshape(16)
    v = critic.apply(params0["critic"], traj.obs)
    adv, returns = gae_by_hand(traj, v, critic.apply(params0["critic"], traj.next_obs), gamma, lam)
    adv, returns = jnp.asarray(adv.reshape(16), jnp.float32), jnp.asarray(returns.reshape(16), jnp.float32)
    v_old = v.reshape(16)
    logp_old = jax.nn.log_softmax(policy.apply(params0["actor"], obs))[jnp.arange(16), actions]
    norm_adv = (adv - adv.mean()) / (adv.std() + 1e-8)

    def loss(params):  # minimised: −(clipped surrogate) − c·entropy + c_v·(clipped value loss)
        logits = jax.nn.log_softmax(policy.apply(params["actor"], obs))
        ratio = jnp.exp(logits[jnp.arange(16), actions] - logp_old)
        surrogate = jnp.mean(jnp.minimum(ratio * norm_adv, jnp.clip(ratio, 1 - eps, 1 + eps) * norm_adv))
        entropy = jnp.mean(-jnp.sum(jnp.exp(logits) * logits, axis=-1))
        value = critic.apply(params["critic"], obs)
        clipped = v_old + jnp.clip(value - v_old, -eps, eps)
        v_loss = 0.5 * jnp.mean(jnp.maximum((value - returns) ** 2, (clipped - returns) ** 2))
        return -surrogate - c_ent * entropy + c_v * v_loss, ratio

    tx = optax.chain(optax.clip_by_global_norm(max_norm), optax.adam(lr, eps=1e-5))
    params, opt_state = params0, tx.init(params0)
    norms, clipped_frac = [], []
    for _ in range(epochs):
        grads, ratio = jax.grad(loss, has_aux=True)(params)
        norms.append(float(optax.global_norm(grads)))
        clipped_frac.append(float(jnp.mean(jnp.abs(ratio - 1) > eps)))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    assert max(norms) > 2 * max_norm and max(clipped_frac) > 0.2  # both clips bind, so both are compared
    for got, want in zip(jax.tree.leaves(new_state.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # its diagnostics: the clip fraction averaged over the inner steps, the rate, the exact KL(π_θ_{k+1}, π_θk)
    np.testing.assert_allclose(metrics["clip_frac"], np.mean(clipped_frac), rtol=1e-6)
    np.testing.assert_allclose(metrics["learning_rate"], lr, rtol=1e-6)
    logp_new = jax.nn.log_softmax(policy.apply(params["actor"], obs))
    logp_k = jax.nn.log_softmax(policy.apply(params0["actor"], obs))
    kl = jnp.mean(jnp.sum(jnp.exp(logp_new) * (logp_new - logp_k), axis=-1))
    np.testing.assert_allclose(metrics["kl"], kl, rtol=1e-3)
    # and the reference is not the identity: the update moved every leaf
    assert all(
        float(jnp.max(jnp.abs(a - b))) > 1e-3
        for a, b in zip(*map(jax.tree.leaves, (params, params0)), strict=True)
    )
