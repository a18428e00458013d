"""The softmax-table identities the lecture derives, and the ProxStep invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.prox.solvers import conjugate_gradient, pinv_solve
from proxrl.tabular import softmax
from proxrl.tabular import steps as st
from proxrl.types import TableBatch

KEY = jax.random.key(0)


def _random_table(key, shape=(4, 5)):
    k1, k2, k3 = jax.random.split(key, 3)
    return (
        jax.random.normal(k1, shape) * 1.5,
        jax.random.uniform(k2, shape),
        jax.random.uniform(k3, shape[:-1]) + 0.1,
    )


def test_pg_closed_form_equals_autodiff_expert():
    """(∇_θ V^{π_θ})_i = π_θ(i)(R(i) − Σ_a π_θ(a)R(a)) for V(θ) = Σ_a π_θ(a)R(a)."""
    theta = jnp.array([0.3, -1.2, 2.0, 0.0])
    r = jnp.array([0.6, 0.4, 0.1, 0.9])
    auto = jax.grad(lambda th: jnp.sum(softmax.pi(th) * r))(theta)
    closed = softmax.pi(theta) * (r - jnp.sum(softmax.pi(theta) * r))
    np.testing.assert_allclose(softmax.policy_gradient(theta, r), auto, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(closed, auto, rtol=1e-6, atol=1e-7)


def test_pg_closed_form_equals_autodiff_with_state_weights():
    theta, q, d = _random_table(KEY)
    auto = jax.grad(lambda th: jnp.sum(d[:, None] * softmax.pi(th) * q))(theta)
    np.testing.assert_allclose(softmax.policy_gradient(theta, q, d), auto, rtol=1e-5, atol=1e-7)


def test_fisher_two_ways_and_kl_curvature():
    """F = diag π − ππᵀ = Σ_a π(a) ∇log π(a) ∇log π(a)ᵀ = the Hessian of KL(π_θk, π_θ) at θ = θk."""
    theta = jnp.array([0.5, -0.3, 1.1, -2.0, 0.2])
    p = softmax.pi(theta)
    jac = jax.jacobian(softmax.log_pi)(theta)  # row a: ∇_θ log π_θ(a) by autodiff
    outer = jnp.einsum("a,ai,aj->ij", p, jac, jac)
    np.testing.assert_allclose(softmax.fisher(theta), outer, atol=1e-6)
    np.testing.assert_allclose(softmax.fisher(theta), jnp.diag(p) - jnp.outer(p, p), atol=1e-7)
    np.testing.assert_allclose(softmax.score(theta), jac, atol=1e-6)
    hess = jax.hessian(lambda th: softmax.kl(theta, th))(theta)
    np.testing.assert_allclose(hess, softmax.fisher(theta), atol=1e-5)
    # Monte Carlo form E_{a∼π}[∇log π ∇log πᵀ]: 200k draws, tolerance 6 standard errors per entry.
    a = jax.random.categorical(KEY, theta, shape=(200_000,))
    s = jac[a]
    samples = s[:, :, None] * s[:, None, :]
    se = samples.std(axis=0) / np.sqrt(a.shape[0])
    assert np.all(np.abs(samples.mean(axis=0) - softmax.fisher(theta)) <= 6 * se + 1e-7)


@pytest.mark.parametrize("solve", ["pinv", "lstsq"])
def test_npg_equals_ew_up_to_constant_shift(solve):
    """θ + η F⁺∇V = θ + η A = θ + η R − const: NPG under softmax is the EW step."""
    theta, q, d = _random_table(KEY)
    eta = 0.7
    batch = TableBatch(q, d)
    th_npg, _, _ = _run(st.natural_policy_gradient(eta, solve), theta, batch, KEY)
    th_ew, _, _ = _run(st.exponential_weights(eta), theta, batch, KEY)
    shift = th_npg - th_ew
    np.testing.assert_allclose(shift - shift.mean(axis=-1, keepdims=True), 0.0, atol=2e-5)
    np.testing.assert_allclose(softmax.pi(th_npg), softmax.pi(th_ew), atol=1e-5)


def test_npg_regularised_many_inner_steps_approach_ew():
    theta, q, d = _random_table(KEY)
    batch = TableBatch(q, d)
    th_ew, _, _ = _run(st.exponential_weights(0.5), theta, batch, KEY)
    errs = []
    for m in (10, 100, 3000):
        step = st.npg_regularised(0.5, 0.1, m)
        th, _, metrics = jax.jit(step.update)(theta, step.init(theta), batch, KEY)
        errs.append(float(jnp.max(jnp.abs(softmax.pi(th) - softmax.pi(th_ew)))))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-4
    assert float(metrics["inner_grad_norm"]) < 1e-3  # float32 floor


STEPS = {
    "ew": lambda eta: st.exponential_weights(eta),
    "pg": lambda eta: st.policy_gradient(eta),
    "npg": lambda eta: st.natural_policy_gradient(eta),
    "npg_lstsq": lambda eta: st.natural_policy_gradient(eta, "lstsq"),
    "npg_reg": lambda eta: st.npg_regularised(eta, 0.5 * eta, 20),  # stable: α < 4η
}


@pytest.mark.parametrize("name", list(STEPS))
def test_prox_step_invariants(name):
    """Every step jits, vmaps over η, keeps the tree structure, reports the shared diagnostics,
    improves the surrogate, and returns θ_k as η → 0."""
    theta, q, d = _random_table(KEY)
    batch = TableBatch(q, d)

    def f(eta):
        step = STEPS[name](eta)
        return step.update(theta, step.init(theta), batch, KEY)

    thetas, _, metrics = jax.jit(jax.vmap(f))(jnp.array([1e-7, 0.3]))
    assert thetas.shape == (2, *theta.shape)
    assert {"surrogate_gain", "kl", "step_norm"} <= set(metrics)
    np.testing.assert_allclose(softmax.pi(thetas[0]), softmax.pi(theta), atol=1e-6)
    assert float(metrics["surrogate_gain"][1]) > 0
    assert float(metrics["kl"][1]) > 0 and float(metrics["step_norm"][1]) > 0
    # the diagnostics are of the step taken: ‖θ_{k+1} − θ_k‖, Σ_s d(s)⟨π_{k+1} − π_k, q⟩, Σ_s d(s) KL(π_{k+1}, π_k)
    new, p_new, p_k = thetas[1], softmax.pi(thetas[1]), softmax.pi(theta)
    np.testing.assert_allclose(metrics["step_norm"][1], jnp.linalg.norm(new - theta), rtol=1e-4)
    gain = jnp.sum(d[:, None] * (p_new - p_k) * q)
    np.testing.assert_allclose(metrics["surrogate_gain"][1], gain, rtol=1e-3, atol=1e-6)
    kl = jnp.sum(d * jnp.sum(p_new * (jnp.log(p_new) - jnp.log(p_k)), axis=-1))
    np.testing.assert_allclose(metrics["kl"][1], kl, rtol=1e-3, atol=1e-7)


def test_pinv_and_conjugate_gradient_solve_spd_system():
    a = jax.random.normal(KEY, (6, 6))
    m = a @ a.T + 0.1 * jnp.eye(6)
    b = jnp.arange(6.0)
    x, res = conjugate_gradient(lambda v: m @ v, b, iters=30)
    np.testing.assert_allclose(m @ x, b, atol=1e-3)
    assert float(res) < 1e-5
    np.testing.assert_allclose(pinv_solve(m, b), x, atol=1e-3)


def _run(step, theta, batch, key):
    """One proximal step from a fresh state (the optax convention: ``init`` then ``update``)."""
    return step.update(theta, step.init(theta), batch, key)


def test_npg_moves_an_underflowed_best_action_like_ew():
    """One state, θ = (0, −800, 5, 2): π(1) = exp(−805)/Z is 0.0 in float64, yet action 1 has the largest q.
    The log-space Fisher solves move θ(1) by η A(1) like EW, so after one step of η = 100 action 1 dominates;
    the plain block solve pinv(diag π − ππᵀ)(π ⊙ A) sees a zero row and leaves π(1) at 0."""
    with jax.enable_x64(True):
        theta = jnp.array([[0.0, -800.0, 5.0, 2.0]])
        q = jnp.array([[0.0, 10.0, 1.0, 0.5]])
        assert float(softmax.pi(theta)[0, 1]) == 0.0
        batch = TableBatch(q, jnp.array([1.0]))
        th_ew, _, _ = _run(st.exponential_weights(100.0), theta, batch, KEY)
        assert float(softmax.pi(th_ew)[0, 1]) > 1 - 1e-12
        for solve in ("pinv", "lstsq"):
            th, _, _ = _run(st.natural_policy_gradient(100.0, solve), theta, batch, KEY)
            np.testing.assert_allclose(softmax.pi(th), softmax.pi(th_ew), atol=1e-12, rtol=0)
            w = st.fisher_direction(theta[0], q[0], jnp.asarray(1.0), solve)
            adv = softmax.advantage(theta[0], q[0])
            np.testing.assert_allclose(w, adv - adv.mean(), atol=1e-12)  # the minimum-norm F⁺∇V
        p = softmax.pi(theta[0])
        plain = pinv_solve(jnp.diag(p) - jnp.outer(p, p), p * softmax.advantage(theta[0], q[0]), rcond=1e-8)
        assert float(softmax.pi(theta[0] + 100.0 * plain)[1]) == 0.0
