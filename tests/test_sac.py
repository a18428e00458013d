"""SAC: the squashed-Gaussian log-probability, soft target, actor and temperature losses on hand-built
batches, one full gradient step, learning on Pendulum, seeds, bad input."""

from __future__ import annotations

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import (
    assert_learns,
    assert_one_line_config_error,
    assert_seeds_differ_and_repeat,
    rounded,
    train_seeds,
)
from proxrl.config import override
from proxrl.deep.distributions import diag_gaussian, scale_to_bounds, tanh_gaussian_log_prob
from proxrl.deep.jax_envs import BoxSpace
from proxrl.deep.loops import SEED_AXIS
from proxrl.deep.off_policy import sac
from proxrl.deep.off_policy.sac import SACConfig
from proxrl.errors import ConfigError
from proxrl.prox.surrogates import soft
from proxrl.run.train import make_evaluate, make_train
from proxrl.types import Transition

PENDULUM_BOX = BoxSpace(np.array([-2.0], np.float32), np.array([2.0], np.float32), (1,))

# ------------------------------------------------------------------------------------------- the pieces


def test_log_prob_is_the_change_of_variables_with_numerical_jacobian():
    """log π(a) = log N(u; μ, σ²) − log|da/du| with da/du = d/du[low + (tanh u + 1)(high − low)/2] by autodiff,
    on Pendulum's bounds [−2, 2] and on a 2-D box with different bounds per dimension."""
    u = jnp.array([-3.0, -0.5, 0.0, 0.7, 2.5])
    mean, log_std = jnp.array([0.3]), jnp.array([-0.4])
    squash = lambda x: scale_to_bounds(jnp.tanh(x), -2.0, 2.0)
    jac = jax.vmap(jax.grad(squash))(u)
    expected = diag_gaussian(mean, log_std).log_prob(u[:, None]) - jnp.log(jac)
    got = tanh_gaussian_log_prob(u[:, None], mean, log_std, -2.0, 2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # central finite difference of the squash, in float64 numpy
    un = np.asarray(u, np.float64)
    fd = (2 * np.tanh(un + 1e-6) - 2 * np.tanh(un - 1e-6)) / 2e-6
    np.testing.assert_allclose(np.asarray(jac), fd, rtol=1e-4)

    low, high = jnp.array([-1.0, 0.0]), jnp.array([3.0, 0.5])
    u2 = jnp.array([[0.2, -1.0], [1.5, 0.3]])
    m2, s2 = jnp.array([0.1, -0.2]), jnp.array([0.0, -1.0])
    jac2 = 0.5 * (high - low) * (1.0 - jnp.tanh(u2) ** 2)
    expected2 = diag_gaussian(m2, s2).log_prob(u2) - jnp.sum(jnp.log(jac2), axis=-1)
    np.testing.assert_allclose(tanh_gaussian_log_prob(u2, m2, s2, low, high), expected2, rtol=1e-5)


def test_soft_target_terminated_vs_truncated():
    """y = r + γ(1 − terminated)(min_j Q̄_j − α log π); a truncation still bootstraps."""
    reward = jnp.array([1.0, 2.0, 3.0])
    terminated = jnp.array([False, True, False])  # the third step is truncated: not terminated
    q_next = jnp.array([[5.0, 1.0, 2.0], [4.0, 3.0, 0.0]])
    logp_next = jnp.array([-1.0, 0.5, 2.0])
    y = sac.soft_target(reward, terminated, 0.9, q_next, logp_next, 0.2)
    np.testing.assert_allclose(y, [1 + 0.9 * (4 + 0.2), 2.0, 3 + 0.9 * (0 - 0.4)], rtol=1e-6)
    g = jax.grad(lambda q: jnp.sum(sac.soft_target(reward, terminated, 0.9, q, logp_next, 0.2)))(q_next)
    np.testing.assert_array_equal(g, 0.0)  # the target is held fixed


def actor_loss(alpha, logp, q_pi):
    """SAC's actor loss −L(θ) from the kit's soft surrogate, at given log-probabilities and critic values."""
    term = soft(lambda batch, action: q_pi)
    return -term(None, (None, logp), None, SimpleNamespace(alpha=alpha))[0]


def test_critic_and_actor_losses_on_a_hand_built_batch():
    q, y = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([0.0, 1.0])
    # ½·mean((1, 1)²) + ½·mean((3, 3)²)
    np.testing.assert_allclose(sac.critic_loss(q, y), 0.5 + 4.5, rtol=1e-6)
    # α = 0.5, log π = (−1, 1), min_j Q = (1, 0): mean(−0.5 − 1, 0.5 − 0) = −0.5
    logp, q_pi = jnp.array([-1.0, 1.0]), jnp.array([[1.0, 3.0], [2.0, 0.0]])
    np.testing.assert_allclose(actor_loss(0.5, logp, q_pi), -0.5, rtol=1e-6)
    g_logp, g_q = jax.grad(actor_loss, argnums=(1, 2))(0.5, logp, q_pi)
    np.testing.assert_allclose(g_logp, [0.25, 0.25])  # α/n
    np.testing.assert_allclose(g_q, [[-0.5, 0.0], [0.0, -0.5]])  # −1/n on the smaller critic only


@pytest.mark.parametrize(("logp", "target", "grad"), [(-2.0, -1.0, 3.0), (2.0, -1.0, -1.0), (1.0, -1.0, 0.0)])
def test_temperature_gradient_sign(logp, target, grad):
    """∂/∂log α of −log α·(log π + H̄) is H(π) − H̄ (H ≈ −log π): α falls while the entropy is above the target."""
    g = jax.grad(sac.temperature_loss)(jnp.float32(0.3), jnp.full(4, logp), target)
    np.testing.assert_allclose(g, grad, rtol=1e-6)


@pytest.fixture(scope="module")
def one_step():
    config = override(SACConfig(), hidden=(16, 16), batch_size=8, tau=0.25, alpha=0.5)
    nets = sac.make_nets(config, PENDULUM_BOX)
    k_obs, k_act, k_init, k_step = jax.random.split(jax.random.key(3), 4)
    obs = jax.random.normal(k_obs, (8, 3))
    batch = Transition(
        obs=obs,
        action=jax.random.uniform(k_act, (8, 1), minval=-2.0, maxval=2.0),
        reward=jnp.linspace(-1.0, 0.0, 8),
        terminated=jnp.arange(8) % 3 == 0,
        truncated=jnp.zeros(8, bool),
        next_obs=obs[::-1],
    )
    state = jax.jit(lambda k, o: sac.sac_init(config, nets, k, o))(k_init, obs)
    return config, nets, state, batch, k_step


def test_sac_update_step(one_step):
    """Polyak φ̄ = τφ' + (1 − τ)φ̄, fresh actions inside the bounds, α moves opposite to H − H̄, fixed α stays."""
    config, nets, state, batch, key = one_step
    new, metrics = jax.jit(lambda s, b, k: sac.sac_update(config, nets, s, b, k))(state, batch, key)
    for t_new, t_old, phi in zip(
        *map(jax.tree.leaves, (new.params.target, state.params.target, new.params.critic)), strict=True
    ):
        np.testing.assert_allclose(t_new, 0.75 * t_old + 0.25 * phi, rtol=1e-5, atol=1e-6)
    assert jax.tree.leaves(new.params.critic)[0].shape[0] == 2  # twin critics
    assert not np.allclose(*(jax.tree.leaves(p.params.critic)[0] for p in (new, state)))
    np.testing.assert_allclose(metrics["alpha"], 0.5, rtol=1e-6)
    # the entropy estimate is −mean log π_θk(ã|s) of fresh actions drawn with the step's second key, by hand
    _, k_pi = jax.random.split(key)
    entropy = -float(np.mean(nets.sample(state.params.actor, batch.obs, k_pi)[1]))
    np.testing.assert_allclose(metrics["entropy"], entropy, rtol=1e-5)
    # Adam's first step moves log α by −lr·sign(grad); grad = H − H̄ with H̄ = −1 (one action dimension)
    above = entropy > -1.0
    np.testing.assert_allclose(
        new.params.log_alpha - state.params.log_alpha, (-1e-3 if above else 1e-3), rtol=1e-3
    )
    a, logp = nets.sample(state.params.actor, batch.obs, key)
    assert a.shape == (8, 1) and logp.shape == (8,) and np.all(np.abs(a) <= 2.0)
    for name in ("critic_loss", "actor_loss", "alpha_loss", "entropy", "q_mean", "target_mean"):
        assert np.isfinite(metrics[name]), name

    fixed = override(SACConfig(), hidden=(16, 16), batch_size=8, alpha=0.5, autotune=False)
    new_fixed, _ = jax.jit(lambda s, b, k: sac.sac_update(fixed, nets, s, b, k))(state, batch, key)
    assert float(new_fixed.params.log_alpha) == float(state.params.log_alpha)


def test_sac_critic_target_matches_hand_computation(one_step):
    """The critic loss inside the step equals ½Σ_j mean(Q_j(s, a) − y)² with y rebuilt from the networks."""
    config, nets, state, batch, key = one_step
    _, metrics = jax.jit(lambda s, b, k: sac.sac_update(config, nets, s, b, k))(state, batch, key)
    k_next, _ = jax.random.split(key)
    p = state.params
    a_next, logp_next = nets.sample(p.actor, batch.next_obs, k_next)
    q_next = np.asarray(nets.q(p.target, batch.next_obs, a_next))
    y = batch.reward + 0.99 * (1 - batch.terminated) * (q_next.min(0) - 0.5 * logp_next)
    q = np.asarray(nets.q(p.critic, batch.obs, batch.action))
    np.testing.assert_allclose(metrics["target_mean"], np.mean(y), rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], 0.5 * np.sum(np.mean((q - y) ** 2, axis=1)), rtol=1e-4)


# --------------------------------------------------------------------------------------------- learning

# Small networks and 6k steps keep the suite fast on CPU; 5 seeds (two calls of 3 vmapped seeds,
# helpers.train_seeds), deterministic evaluation over 10 episodes. The 5-seed, 20k-step checks are in
# docs/methods/sac.md. A random policy scores about −1200 on Pendulum-v1.
PENDULUM = override(SACConfig(), hidden=(64, 64))
PENDULUM_STEPS = 6_000


@pytest.fixture(scope="module")
def pendulum_runs():
    train = jax.jit(jax.vmap(make_train(PENDULUM, "Pendulum-v1", PENDULUM_STEPS), axis_name=SEED_AXIS))
    evaluate = jax.jit(jax.vmap(make_evaluate(PENDULUM, "Pendulum-v1", episodes=10)))
    return train_seeds(train, evaluate, lanes=3)


def test_sac_learns_pendulum(pendulum_runs):
    metrics = pendulum_runs.metrics[0]
    # measured here (AMD EPYC, 2 cores), per seed: −135.2, −98.3, −210.1, −100.3, −206.6 (median −135.2)
    assert_learns(pendulum_runs.returns, -400.0, "SAC Pendulum-v1, 6k steps")
    n = PENDULUM_STEPS // PENDULUM.rollout.size
    assert metrics["episodic_return"].shape == (3, n)
    starts = PENDULUM.replay.learning_starts
    assert np.all(np.isnan(metrics["critic_loss"][:, : starts - 1]))  # no update before learning_starts
    assert np.all(np.isfinite(metrics["critic_loss"][:, starts:]))
    np.testing.assert_array_equal(metrics["buffer_size"][:, -1], n)
    alpha = metrics["alpha"][:, starts:]
    late = np.nanmean(metrics["episodic_return"][:, -2000:], axis=1)  # episodes of the last 2000 steps
    print(f"SAC final α per seed: {rounded(alpha[:, -1], 3)}; last 2000 steps' returns: {rounded(late)}")
    np.testing.assert_allclose(alpha[:, 0], 1.0, rtol=1e-2)
    assert np.all(alpha[:, -1] < 0.2), alpha[:, -1]  # α tuned down from 1; measured 0.067, 0.080, 0.076
    assert np.median(late) > -500.0, late  # measured −146.3, −163.1, −176.8


def test_seeds_differ_and_same_seed_is_identical(pendulum_runs):
    assert_seeds_differ_and_repeat(pendulum_runs, "critic_loss")


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("alpha_lr", -1.0, "alpha_lr must be"),
        ("alpha", 0.0, "alpha must be"),
        ("target_entropy", math.inf, "target_entropy must be"),
    ],
)
def test_bad_config_is_a_one_line_config_error(field, value, fragment):
    """SAC's own fields; the checks every algorithm shares are in test_configs.py."""
    config = override(SACConfig(), **{field: value})
    assert_one_line_config_error(config, make_train, "Pendulum-v1", fragment)


def test_discrete_action_space_is_rejected():
    with pytest.raises(ConfigError, match="Box") as err:
        make_train(SACConfig(), "CartPole-v1", 1000)
    assert "\n" not in str(err.value)
