"""Policy heads, critics and distributions: closed forms, change of variables, shapes, init."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.deep.distributions import (
    categorical,
    diag_gaussian,
    gaussian_entropy,
    scale_to_bounds,
    sigma_schedule,
    tanh_gaussian_log_prob,
    tanh_gaussian_sample,
    tanh_log_det_jacobian,
)
from proxrl.deep.networks import (
    CategoricalPolicy,
    DeterministicPolicy,
    DiscreteQNetwork,
    GaussianPolicy,
    QNetwork,
    ScheduledGaussianPolicy,
    StateDependentGaussianPolicy,
    ValueNetwork,
    flatten_obs,
    orthogonal,
    orthonormal_columns,
)
from proxrl.errors import ConfigError

OBS_DIM, ACT_DIM, NUM_ACTIONS = 4, 2, 3
SMALL = (16, 16)


@pytest.fixture(scope="module")
def obs():
    return jax.random.normal(jax.random.key(0), (5, OBS_DIM))


# --- distributions against closed forms -----------------------------------------------------------------


def test_categorical_log_prob_and_entropy():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    dist = categorical(logits)
    p = np.exp(np.array(logits)) / np.exp(np.array(logits)).sum(-1, keepdims=True)
    np.testing.assert_allclose(dist.log_prob(jnp.array([1, 2])), np.log([p[0, 1], p[1, 2]]), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy(), -(p * np.log(p)).sum(-1), rtol=1e-6)
    np.testing.assert_allclose(dist.entropy()[1], math.log(3), rtol=1e-6)


def test_diag_gaussian_log_prob_and_entropy_closed_form():
    mean = jnp.array([0.5, -1.0])
    log_std = jnp.array([0.0, math.log(0.5)])
    a = jnp.array([1.0, -1.5])
    # −½Σ((a−μ)/σ)² − Σ log σ − (d/2) log 2π, by hand: z = (0.5, −1)
    want = -0.5 * (0.25 + 1.0) - math.log(0.5) - math.log(2 * math.pi)
    np.testing.assert_allclose(diag_gaussian(mean, log_std).log_prob(a), want, rtol=1e-6)
    h = 2 * 0.5 * math.log(2 * math.pi * math.e) + math.log(0.5)
    np.testing.assert_allclose(gaussian_entropy(log_std), h, rtol=1e-6)
    np.testing.assert_allclose(diag_gaussian(mean, log_std).entropy(), h, rtol=1e-6)


def test_tanh_log_det_is_stable_and_exact():
    u = jnp.linspace(-4.0, 4.0, 17)
    exact = np.log(1 - np.tanh(np.asarray(u, np.float64)) ** 2)
    np.testing.assert_allclose(tanh_log_det_jacobian(u), exact, rtol=1e-6)
    # naive log(1 − tanh²) is −inf at u = 20 in float32; the stable form gives log 4 − 2u + O(e^{−2u})
    far = tanh_log_det_jacobian(jnp.array([20.0, -20.0]))
    np.testing.assert_allclose(far, [math.log(4) - 40, math.log(4) - 40], rtol=1e-6)
    # and it matches distrax's Tanh bijector
    np.testing.assert_allclose(
        tanh_log_det_jacobian(u), distrax.Tanh().forward_log_det_jacobian(u), atol=1e-6
    )


def test_tanh_correction_against_numerical_change_of_variables():
    """log π(a) = log N(u) − log |da/du|, with da/du from autodiff of u ↦ scale(tanh(u))."""
    mean, log_std = jnp.array([0.3, -0.2]), jnp.array([-0.5, 0.1])
    low, high = jnp.array([-2.0, 0.0]), jnp.array([2.0, 1.0])
    u = jnp.array([0.7, -1.3])
    a_of_u = jax.vmap(jax.grad(lambda x, lo, hi: scale_to_bounds(jnp.tanh(x), lo, hi)))
    jac = a_of_u(u, low, high)
    want = diag_gaussian(mean, log_std).log_prob(u) - jnp.sum(jnp.log(jac))
    np.testing.assert_allclose(tanh_gaussian_log_prob(u, mean, log_std, low, high), want, rtol=1e-5)


def test_squashed_density_integrates_to_one():
    """In 1-D, ∫ π(a) da over [low, high] = 1 (trapezoid in a, with u = atanh of the rescaled a)."""
    low, high, mean, log_std = -3.0, 1.0, jnp.array([0.4]), jnp.array([-0.3])
    a = np.linspace(low, high, 200_001)[1:-1]
    u = np.arctanh(2 * (a - low) / (high - low) - 1)[:, None]
    logp = tanh_gaussian_log_prob(jnp.asarray(u), mean, log_std, low, high)
    np.testing.assert_allclose(np.trapezoid(np.exp(np.asarray(logp, np.float64)), a), 1.0, atol=1e-3)


def test_tanh_gaussian_sample_in_bounds_with_matching_log_prob():
    mean, log_std = jnp.zeros((1000, 2)), jnp.full((1000, 2), 0.5)
    low, high = jnp.array([-1.0, 0.0]), jnp.array([1.0, 3.0])
    a, logp = tanh_gaussian_sample(jax.random.key(1), mean, log_std, low, high)
    assert a.shape == (1000, 2) and logp.shape == (1000,)
    assert bool(jnp.all((a >= low) & (a <= high)))
    # recover u from the same noise and check the log-prob
    u = mean + jnp.exp(log_std) * jax.random.normal(jax.random.key(1), mean.shape)
    np.testing.assert_allclose(logp, tanh_gaussian_log_prob(u, mean, log_std, low, high), rtol=1e-6)
    # it agrees with distrax's Transformed distribution when the bounds are [−1, 1]
    base = distrax.MultivariateNormalDiag(mean[:3], jnp.exp(log_std[:3]))
    squashed = distrax.Transformed(base, distrax.Block(distrax.Tanh(), 1))
    want = squashed.log_prob(jnp.tanh(u[:3]))
    np.testing.assert_allclose(tanh_gaussian_log_prob(u[:3], mean[:3], log_std[:3]), want, rtol=1e-4)


# --- σ schedule -----------------------------------------------------------------------------------------


def test_sigma_schedule_values():
    lin = sigma_schedule(1.0, 0.1, 10, "linear")
    exp = sigma_schedule(1.0, 0.1, 10, "exponential")
    ks = jnp.array([0, 5, 10, 20])
    np.testing.assert_allclose(lin(ks), [1.0, 0.55, 0.1, 0.1], rtol=1e-6)
    np.testing.assert_allclose(exp(ks), [1.0, math.sqrt(0.1), 0.1, 0.1], rtol=1e-6)
    assert float(jax.jit(lin)(2)) == pytest.approx(0.82)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((0.0, 0.1, 10), "sigma_0 must be a finite number > 0"),
        ((0.1, 1.0, 10), "sigma_min must be <= sigma_0"),
        ((1.0, 0.1, 0), "num_steps must be an integer >= 1"),
        ((1.0, 0.1, 10, "cosine"), "kind must be one of linear, exponential"),
    ],
)
def test_sigma_schedule_rejects_bad_values(args, match):
    with pytest.raises(ConfigError, match=match):
        sigma_schedule(*args)


# --- networks: shapes, init, heads ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def categorical_params(obs):
    return CategoricalPolicy(NUM_ACTIONS).init(jax.random.key(1), obs)


def test_orthogonal_init(categorical_params):
    p = categorical_params["params"]
    w0 = np.asarray(p["MLP_0"]["hidden_0"]["kernel"])  # [4, 64]: orthonormal rows, gain √2
    w1 = np.asarray(p["MLP_0"]["hidden_1"]["kernel"])  # [64, 64]: orthogonal, gain √2
    head = np.asarray(p["logits"]["kernel"])  # [64, 3]: orthonormal columns, gain 0.01
    np.testing.assert_allclose(w0 @ w0.T, 2.0 * np.eye(OBS_DIM), atol=1e-5)
    np.testing.assert_allclose(w1.T @ w1, 2.0 * np.eye(64), atol=1e-5)
    np.testing.assert_allclose(head.T @ head, 1e-4 * np.eye(NUM_ACTIONS), atol=1e-9)
    assert all(float(jnp.abs(b).max()) == 0.0 for b in jax.tree.leaves(p) if b.ndim == 1)
    v = ValueNetwork().init(jax.random.key(2), jnp.zeros(OBS_DIM))["params"]["value"]["kernel"]
    np.testing.assert_allclose(np.linalg.norm(v), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", [(17, 256), (256, 256), (256, 6), (64, 1), (3, 4, 5)])
def test_orthogonal_matches_flax_without_lapack(shape):
    """Same key → flax's orthogonal init (QR via LAPACK) up to rounding; orthonormal columns or rows."""
    key = jax.random.key(3)
    ours = np.asarray(orthogonal(2.0)(key, shape))
    theirs = np.asarray(jax.nn.initializers.orthogonal(2.0)(key, shape))
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    m = ours.reshape(-1, shape[-1]) / 2.0
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-5)
    jaxpr = str(jax.make_jaxpr(lambda k: orthogonal(1.0)(k, shape))(key))
    assert not re.search(r"\b(qr|geqrf|householder_product)\b", jaxpr)


def test_orthogonal_rejects_vectors_and_wide_factorisations():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        orthogonal()(jax.random.key(0), (5,))
    with pytest.raises(ValueError, match="tall matrix"):
        orthonormal_columns(jnp.zeros((2, 3)))


DEADLOCK_SCRIPT = """
import jax, proxrl
from proxrl.deep.networks import orthogonal
init = orthogonal(1.0)
g = jax.jit(jax.vmap(lambda k: [init(s, (64, 64)) for s in jax.random.split(k, 4)]))
for i in range(300):
    jax.block_until_ready(g(jax.random.split(jax.random.key(i), 4)))
print("done")
"""


def test_vmapped_orthogonal_init_does_not_deadlock():
    """Four independent orthogonal inits in one program, vmapped over seeds, 300 calls. With flax's
    LAPACK-based initialiser this hung on the first calls in 3 of 3 runs on a 2-core machine (jaxlib 0.10.2:
    two batched QRs each block a pool thread waiting for work queued on the same pool); here it takes ≈ 2 s."""
    out = subprocess.run([sys.executable, "-c", DEADLOCK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "done" in out.stdout, out.stderr[-2000:]


def test_categorical_policy_starts_near_uniform(categorical_params, obs):
    logits = CategoricalPolicy(NUM_ACTIONS).apply(categorical_params, obs)
    assert logits.shape == (5, NUM_ACTIONS)
    np.testing.assert_allclose(categorical(logits).entropy(), math.log(NUM_ACTIONS), atol=1e-3)


def test_gaussian_policy_learned_log_std(obs):
    net = GaussianPolicy(ACT_DIM, SMALL, log_std_init=-0.5)
    params = net.init(jax.random.key(3), obs)
    mean, log_std = net.apply(params, obs)
    assert mean.shape == log_std.shape == (5, ACT_DIM)
    np.testing.assert_allclose(log_std, -0.5)
    # the gradient of E[log π] reaches the log-std parameter (it is learned)
    a = jnp.ones((5, ACT_DIM))
    grads = jax.grad(lambda p: diag_gaussian(*net.apply(p, obs)).log_prob(a).sum())(params)
    assert float(jnp.abs(grads["params"]["log_std"]).min()) > 0.0


def test_scheduled_gaussian_uses_the_given_sigma(obs):
    net = ScheduledGaussianPolicy(ACT_DIM, SMALL)
    params = net.init(jax.random.key(4), obs, 1.0)
    assert "log_std" not in params["params"]
    sigma = sigma_schedule(1.0, 0.1, 10)(5)
    mean, log_std = net.apply(params, obs, sigma)
    np.testing.assert_allclose(log_std, np.full((5, ACT_DIM), math.log(math.sqrt(0.1))), rtol=1e-5)
    assert mean.shape == (5, ACT_DIM)


def test_state_dependent_gaussian_bounds_log_std(obs):
    net = StateDependentGaussianPolicy(ACT_DIM, SMALL, log_std_min=-5.0, log_std_max=2.0)
    params = net.init(jax.random.key(5), obs)
    _, log_std = net.apply(params, 100.0 * obs)
    assert log_std.shape == (5, ACT_DIM)
    assert bool(jnp.all((log_std >= -5.0) & (log_std <= 2.0)))
    # with a 0.01 head, log σ starts near the midpoint (−5 + 2)/2
    _, log_std0 = net.apply(params, obs)
    np.testing.assert_allclose(log_std0, -1.5, atol=0.2)


def test_deterministic_policy_respects_bounds(obs):
    net = DeterministicPolicy((-2.0, 0.0), (2.0, 1.0), SMALL)
    params = net.init(jax.random.key(6), obs)
    a = net.apply(params, 1e4 * obs)
    assert a.shape == (5, 2)
    assert bool(jnp.all((a >= jnp.array([-2.0, 0.0])) & (a <= jnp.array([2.0, 1.0]))))
    np.testing.assert_allclose(net.apply(params, obs), np.tile([0.0, 0.5], (5, 1)), atol=0.05)


def test_critics_shapes(obs):
    v_net, q_net, qd_net = ValueNetwork(SMALL), QNetwork(SMALL), DiscreteQNetwork(NUM_ACTIONS, SMALL)
    action = jnp.ones((5, ACT_DIM))
    v_params = v_net.init(jax.random.key(7), obs)
    q_params = q_net.init(jax.random.key(8), obs, action)
    qd_params = qd_net.init(jax.random.key(9), obs)
    assert v_net.apply(v_params, obs).shape == (5,)
    assert v_net.apply(v_params, obs[0]).shape == ()
    assert q_net.apply(q_params, obs, action).shape == (5,)
    assert q_params["params"]["MLP_0"]["hidden_0"]["kernel"].shape == (OBS_DIM + ACT_DIM, SMALL[0])
    assert qd_net.apply(qd_params, obs).shape == (5, NUM_ACTIONS)
    assert qd_net.apply(qd_params, obs.reshape(5, 1, OBS_DIM)).shape == (5, 1, NUM_ACTIONS)


def test_flatten_obs():
    x = jnp.arange(2 * 3 * 10 * 5).reshape(2, 3, 10, 5)
    assert flatten_obs(x, 2).shape == (2, 3, 50)
    assert flatten_obs(x[0, 0], 2).shape == (50,)
