"""The proximal-step kit against known answers: surrogate gradients, solver fixed points, the assembled step.

Every policy update in proxrl is ``prox_step(Problem(surrogate, geometry, extras, policy), solver, β)``; these
tests hold the pieces to hand-derived values, so each algorithm's own tests can take them as given.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from proxrl.deep.distributions import categorical
from proxrl.deep.networks import CategoricalPolicy
from proxrl.prox import Coefficient, Problem, prox_step
from proxrl.prox.geometry import adapt_beta, euclidean, head_kl, sampled_kl
from proxrl.prox.solvers import (
    NaturalStep,
    closed_form,
    fit,
    gradient_steps,
    linear_anneal,
    minibatch_epochs,
    natural_gradient,
    optimiser,
)
from proxrl.prox.surrogates import clipped_ratio, entropy_bonus, ratio, score_function
from proxrl.tabular import steps as softmax_table
from proxrl.types import TableBatch


class Batch(NamedTuple):
    obs: Any
    action: Any
    adv: Any
    logp_old: Any
    dist_old: Any


@pytest.fixture(scope="module")
def policy_batch():
    """A small categorical MLP and a batch of 32 samples from it (advantages arbitrary)."""
    k_init, k_obs, k_act, k_adv = jax.random.split(jax.random.key(0), 4)
    net = CategoricalPolicy(num_actions=3, hidden=(8,))
    obs = jax.random.normal(k_obs, (32, 4))
    theta = net.init(k_init, obs)
    logits = net.apply(theta, obs)
    actions = jax.random.randint(k_act, (32,), 0, 3)
    adv = jax.random.normal(k_adv, (32,))
    batch = Batch(obs, actions, adv, categorical(logits).log_prob(actions), logits)
    head = lambda th, b, key=None: categorical(net.apply(th, b.obs))
    return net, theta, batch, head


def _leaves_close(a, b, **kw):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kw)


def _grad_of(term, head, theta_k, batch):
    return jax.grad(lambda th: term(th, head(th, batch), theta_k, batch)[0])(theta_k)


def test_score_function_gradient_is_the_hand_derived_policy_gradient(policy_batch):
    """∇L = (1/N) Σ_i ∇log π_θ(a_i|s_i)·Â_i, the per-sample gradients taken one by one."""
    net, theta, batch, head = policy_batch

    def logp_one(th, s, a):  # log π_θ(a|s) for one sample, as a log-softmax
        return jax.nn.log_softmax(net.apply(th, s[None])[0])[a]

    per_sample = jax.vmap(jax.grad(logp_one), in_axes=(None, 0, 0))(theta, batch.obs, batch.action)
    by_hand = jax.tree.map(lambda g: jnp.tensordot(batch.adv, g, axes=1) / 32, per_sample)
    _leaves_close(_grad_of(score_function(), head, theta, batch), by_hand, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(by_hand)) > 1e-4  # not trivially zero


def test_every_sampled_surrogate_has_the_policy_gradient_at_theta_k(policy_batch):
    """At θ_k the ratio is 1 and ∇ratio = ∇log π: ratio, clipped ratio and score function share one gradient;
    the KL geometry's gradient vanishes there (its minimum)."""
    _, theta, batch, head = policy_batch
    pg = _grad_of(score_function(), head, theta, batch)
    for term in (ratio(), clipped_ratio(0.2)):
        _leaves_close(_grad_of(term, head, theta, batch), pg, rtol=1e-5, atol=1e-7)
    kl = head_kl(lambda b: categorical(b.dist_old))
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(_grad_of(kl, head, theta, batch))) < 1e-6


def test_clipped_surrogate_stops_the_gradient_where_the_clip_binds(policy_batch):
    """With every ratio pushed beyond 1 + ε in the advantage's direction, the clipped surrogate is flat."""
    _, theta, batch, head = policy_batch
    moved = batch._replace(logp_old=batch.logp_old - 1.0 * jnp.sign(batch.adv))  # ratio = e^{±1}
    g = _grad_of(clipped_ratio(0.2), head, theta, moved)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g)) == 0.0
    value, metrics = clipped_ratio(0.2)(theta, head(theta, moved), theta, moved)
    assert float(metrics["clip_frac"]) == 1.0
    np.testing.assert_allclose(value, jnp.mean(jnp.where(moved.adv > 0, 1.2, 0.8) * moved.adv), rtol=1e-6)


def test_sampled_kl_is_nonnegative_and_zero_at_theta_k():
    logp_old = jnp.log(jnp.array([0.2, 0.5, 0.3]))
    assert float(sampled_kl(logp_old, logp_old)) == 0.0
    logp = jax.nn.log_softmax(logp_old + jnp.array([0.3, -0.2, 0.1]))
    # under a ∼ π_θk the estimate's expectation is KL(π_θk, π_θ) exactly (Σ_a π_θk(a)·ratio(a) = 1)
    per_action = jnp.stack([sampled_kl(logp[a : a + 1], logp_old[a : a + 1]) for a in range(3)])
    expected = jnp.sum(jnp.exp(logp_old) * per_action)
    exact = jnp.sum(jnp.exp(logp_old) * (logp_old - logp))
    assert float(expected) == pytest.approx(float(exact), rel=1e-5) and float(exact) > 1e-3


def test_gradient_ascent_on_a_euclidean_proximal_problem_reaches_its_closed_form():
    """W(θ) = ⟨θ − θ_k, g⟩ − (1/2η)‖θ − θ_k‖² has its maximiser at θ_k + ηg (the PG step); m small
    gradient-ascent steps of size α converge there geometrically, as (1 − α/η)^m."""
    theta_k = {"w": jnp.array([0.5, -1.0, 2.0]), "b": jnp.array(0.3)}
    g = {"w": jnp.array([1.0, 2.0, -0.5]), "b": jnp.array(-1.0)}
    eta = 0.5

    def linear(th, pi, th_k, batch):
        return sum(
            jnp.vdot(a - b, c) for a, b, c in zip(*map(jax.tree.leaves, (th, th_k, g)), strict=True)
        ), {}

    step = prox_step(Problem(linear, euclidean()), gradient_steps(optax.sgd(0.1), 200), beta=1.0 / eta)
    theta, _, metrics = jax.jit(step.update)(theta_k, step.init(theta_k), None, None)
    _leaves_close(theta, jax.tree.map(lambda t, gi: t + eta * gi, theta_k, g), rtol=1e-5, atol=1e-6)
    assert float(metrics["inner_grad_norm"]) < 1e-6 < float(metrics["grad_norm"])
    assert float(metrics["beta"]) == pytest.approx(1.0 / eta)


def test_the_step_reports_its_diagnostics_exactly(policy_batch):
    """surrogate_gain, step_norm and kl of an assembled step equal the quantities recomputed by hand."""
    _, theta, batch, head = policy_batch
    old = lambda b: categorical(b.dist_old)
    problem = Problem(ratio(), extras=(entropy_bonus(0.01),), policy=head)
    step = prox_step(problem, gradient_steps(optimiser(0.05)), moved=head_kl(old))
    new, _, metrics = step.update(theta, step.init(theta), batch, None)
    lk = lambda th: jnp.mean(jnp.exp(head(th, batch).log_prob(batch.action) - batch.logp_old) * batch.adv)
    np.testing.assert_allclose(metrics["surrogate_gain"], lk(new) - lk(theta), rtol=1e-4, atol=1e-7)
    assert float(metrics["surrogate_gain"]) > 0  # a small ascent step improves the surrogate
    diff = jax.tree.map(jnp.subtract, new, theta)
    np.testing.assert_allclose(metrics["step_norm"], optax.global_norm(diff), rtol=1e-6)
    np.testing.assert_allclose(metrics["kl"], jnp.mean(head(new, batch).kl_divergence(old(batch))), rtol=1e-6)
    assert set(metrics) >= {"policy_loss", "approx_kl", "entropy", "grad_norm"}
    assert jax.tree.structure(new) == jax.tree.structure(theta)


def test_a_zero_step_size_returns_theta_k_and_steps_vmap_over_eta():
    """η → 0 leaves θ_k unchanged; one compiled step sweeps η under vmap (tables: EW, PG, NPG)."""
    theta = jax.random.normal(jax.random.key(1), (3, 4))
    batch = TableBatch(jax.random.normal(jax.random.key(2), (3, 4)), jnp.array([0.5, 0.3, 0.2]))
    for make in (softmax_table.exponential_weights, softmax_table.policy_gradient):
        step0 = make(0.0)
        same, _, metrics = step0.update(theta, step0.init(theta), batch, None)
        np.testing.assert_array_equal(same, theta)
        assert float(metrics["step_norm"]) == 0.0 and float(metrics["surrogate_gain"]) == 0.0

        def run(eta, make=make):
            step = make(eta)
            return step.update(theta, step.init(theta), batch, None)[0]

        etas = jnp.array([0.1, 0.5, 2.0])
        np.testing.assert_allclose(jax.jit(jax.vmap(run))(etas), jnp.stack([run(e) for e in etas]), rtol=1e-6)


def test_adaptive_coefficient_follows_the_ppo_rule():
    """β halves below d_targ/1.5 and doubles above 1.5·d_targ, applied after the step from the KL it moved."""
    assert float(adapt_beta(1.0, 0.001, 0.01)) == 0.5
    assert float(adapt_beta(1.0, 0.02, 0.01)) == 2.0
    assert float(adapt_beta(1.0, 0.01, 0.01)) == 1.0
    moved = lambda th, pi, th_k, b: (b, {})  # report the batch itself as the KL moved
    coef = Coefficient(4.0, lambda beta, m: adapt_beta(beta, m["kl"], 0.01))
    step = prox_step(
        Problem(lambda *a: (jnp.zeros(()), {}), euclidean()), closed_form(lambda t, b: t), coef, moved
    )
    state = step.init(jnp.zeros(2))
    _, state, metrics = step.update(jnp.zeros(2), state, jnp.asarray(0.1), None)
    assert (
        float(metrics["beta"]) == 4.0 and float(state.beta) == 8.0
    )  # in force during the step, then doubled


def test_fit_visits_every_sample_once_per_epoch_in_minibatches():
    """fit = epochs × minibatches of optimiser steps on a fresh permutation each epoch: with plain SGD on
    ½(w − x_i)² each epoch's minibatch means average to the data mean, and the result equals a hand loop."""
    data = jnp.arange(12.0)
    key = jax.random.key(3)

    def loss(w, x):
        return 0.5 * jnp.mean((w - x) ** 2), {}

    w, _, metrics = fit(
        loss, optax.sgd(0.5), jnp.zeros(()), optax.sgd(0.5).init(jnp.zeros(())), data, key, 3, 4
    )
    assert metrics["loss"].shape == (3, 4)
    manual = 0.0
    for k in jax.random.split(key, 3):
        for mb in data[jax.random.permutation(k, 12)].reshape(4, 3):
            manual = manual - 0.5 * (manual - float(jnp.mean(mb)))
    assert float(w) == pytest.approx(manual, rel=1e-6)


def test_minibatch_epochs_and_a_linear_anneal(policy_batch):
    """PPO's solver takes epochs × minibatches steps (reported), and the annealed learning rate is
    lr·(1 − k/K) during update k: its first update moves exactly as the constant rate does."""
    _, theta, batch, head = policy_batch
    schedule = linear_anneal(1e-2, updates=4, steps_per_update=6)
    assert [float(schedule(c)) for c in (0, 5, 6, 23, 24)] == pytest.approx([1e-2, 1e-2, 7.5e-3, 2.5e-3, 0.0])
    problem = Problem(clipped_ratio(0.2), policy=head)
    first, second = [], []
    stepped = lambda c: jnp.where(c < 6, 1e-2, 7.5e-3)  # the anneal's first two updates, by hand
    for lr in (schedule, 1e-2, stepped):
        step = prox_step(problem, minibatch_epochs(optimiser(lr, 0.5), 3, 2))
        new, state, metrics = step.update(theta, step.init(theta), batch, jax.random.key(4))
        assert float(metrics["inner_steps"]) == 6.0 and float(metrics["surrogate_gain"]) > 0
        first.append(new)
        second.append(
            step.update(new, state, batch, jax.random.key(5))[0]
        )  # the state carries the step count
    _leaves_close(first[0], first[1], rtol=0, atol=0)
    _leaves_close(second[0], second[2], rtol=1e-6, atol=1e-9)  # update 1 runs at 7.5e-3 ...
    gap = max(
        float(jnp.max(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(second[0]), jax.tree.leaves(second[1]), strict=True)
    )
    assert gap > 1e-5  # ... not at the constant 1e-2


@pytest.mark.parametrize("step", ["fixed", "trust_region"])
def test_natural_gradient_is_the_explicit_damped_fisher_solve(policy_batch, step):
    """On the small categorical net (67 parameters) the natural step equals the one computed with F formed
    explicitly, F = (1/N) Σ_i Σ_a π(a|s_i) ∇log π(a|s_i) ∇log π(a|s_i)ᵀ (the score outer products, not the KL's
    Hessian that the solver differentiates): Δθ = η·(F + λI)⁻¹g with η = lr, or η = √(2δ / wᵀ(F + λI)w)."""
    net, theta, batch, head = policy_batch
    old = lambda b: categorical(b.dist_old)
    region = NaturalStep(step=step, lr=0.05, max_kl=0.01, line_search=False, cg_iters=150, cg_damping=0.1)

    def fisher_kl(th, b):
        return jnp.mean(old(b).kl_divergence(head(th, b)))

    step_ = prox_step(Problem(ratio(), head_kl(old), policy=head), natural_gradient(fisher_kl, region))
    new, _, metrics = step_.update(theta, step_.init(theta), batch, jax.random.key(0))
    flat, unravel = ravel_pytree(theta)
    g = jax.grad(
        lambda f: jnp.mean(
            jnp.exp(head(unravel(f), batch).log_prob(batch.action) - batch.logp_old) * batch.adv
        )
    )(flat)

    def log_pi(f, obs):  # [3] log-probabilities of one state
        return jax.nn.log_softmax(net.apply(unravel(f), obs[None])[0])

    scores = jax.vmap(lambda o: jax.jacobian(log_pi)(flat, o))(batch.obs)  # [N, 3, P]
    probs = jnp.exp(jax.vmap(lambda o: log_pi(flat, o))(batch.obs))  # [N, 3]
    fisher = np.einsum(
        "na,nap,naq->pq", np.asarray(probs, np.float64), *(np.asarray(scores, np.float64),) * 2
    )
    fisher /= batch.obs.shape[0]
    damped = fisher + 0.1 * np.eye(flat.size)
    w = np.linalg.solve(damped, np.asarray(g, np.float64))
    eta = 0.05 if step == "fixed" else np.sqrt(2 * 0.01 / (w @ damped @ w))
    moved = np.asarray(ravel_pytree(new)[0] - flat, np.float64)
    np.testing.assert_allclose(moved, eta * w, rtol=2e-3, atol=2e-3 * np.abs(eta * w).max())
    np.testing.assert_allclose(float(metrics["quad_kl"]), 0.5 * eta**2 * (w @ damped @ w), rtol=2e-3)
    if step == "trust_region":
        assert float(metrics["quad_kl"]) == pytest.approx(0.01, rel=1e-4)
    # the damping matters here: without it, w and wᵀFw would differ far beyond the tolerances above
    w_plain = np.linalg.lstsq(fisher, np.asarray(g, np.float64), rcond=None)[0]
    assert np.linalg.norm(w_plain - w) > 0.1 * np.linalg.norm(w)
    assert w @ damped @ w > 1.1 * (w @ fisher @ w)


def test_shuffled_minibatches_cut_one_permutation_of_the_batch():
    """Every sample lands in exactly one minibatch, the leaves of a sample stay together, and one minibatch is
    the batch in its own order."""
    from proxrl.prox.solvers import shuffled_minibatches

    data = {"x": jnp.arange(32.0), "y": jnp.arange(32.0)[:, None] * jnp.array([1.0, -1.0])}
    cut = shuffled_minibatches(data, jax.random.key(3), 4)
    assert cut["x"].shape == (4, 8) and cut["y"].shape == (4, 8, 2)
    flat = np.asarray(cut["x"]).reshape(-1)
    assert sorted(flat.tolist()) == list(range(32)) and flat.tolist() != list(range(32))
    np.testing.assert_array_equal(np.asarray(cut["y"]).reshape(-1, 2), flat[:, None] * np.array([1.0, -1.0]))
    whole = shuffled_minibatches(data, jax.random.key(3), 1)
    np.testing.assert_array_equal(whole["x"][0], data["x"])


def test_value_regression_is_minus_c_times_half_the_squared_error_and_leaves_the_policy_alone():
    """−c_v·½·mean (V_φ(s) − R̂)², with the value clip when asked; its gradient reaches φ only."""
    from proxrl.prox.surrogates import value_regression

    class B(NamedTuple):
        obs: Any
        value_old: Any
        returns: Any

    batch = B(jnp.array([[1.0], [2.0], [3.0]]), jnp.array([2.0, 2.0, 2.0]), jnp.array([0.0, 1.0, 5.0]))
    critic = lambda phi, obs: phi["w"] * obs[:, 0]
    theta = {"actor": jnp.array(0.7), "critic": {"w": jnp.array(1.5)}}
    value, metrics = value_regression(critic, 0.5)(theta, None, theta, batch)
    sq = (np.array([1.5, 3.0, 4.5]) - np.array([0.0, 1.0, 5.0])) ** 2  # 2.25, 4, 0.25
    assert float(metrics["value_loss"]) == pytest.approx(0.5 * sq.mean())
    assert float(value) == pytest.approx(-0.5 * 0.5 * sq.mean())
    grad = jax.grad(lambda th: value_regression(critic, 0.5)(th, None, theta, batch)[0])(theta)
    assert float(grad["actor"]) == 0.0
    # d/dw of −¼·mean (w·s − R)² = −½·mean (w·s − R)·s
    assert float(grad["critic"]["w"]) == pytest.approx(
        -0.5 * np.mean((np.array([1.5, 3.0, 4.5]) - [0, 1, 5]) * [1, 2, 3])
    )
    # clipped at ε = 0.2 around V_φk = 2: V_clip = 1.8, 2.2, 2.2; the larger squared error counts
    clipped = value_regression(critic, 1.0, clip_eps=0.2)(theta, None, theta, batch)[1]["value_loss"]
    worst = np.maximum(sq, (np.array([1.8, 2.2, 2.2]) - np.array([0.0, 1.0, 5.0])) ** 2)
    assert float(clipped) == pytest.approx(0.5 * worst.mean())


def test_linear_surrogate_is_the_inner_product_with_the_fixed_estimate():
    """L_k(θ) = ⟨θ − θ_k, ĝ_k⟩ over a pytree, gradient ĝ_k at every θ (ĝ_k held fixed)."""
    from proxrl.prox.zeroth_order import linear_surrogate

    class B(NamedTuple):
        grad: Any

    theta_k = {"a": jnp.array([1.0, 2.0]), "b": jnp.array(0.5)}
    batch = B({"a": jnp.array([3.0, -1.0]), "b": jnp.array(2.0)})
    theta = {"a": jnp.array([2.0, 0.0]), "b": jnp.array(1.5)}
    value, metrics = linear_surrogate()(theta, None, theta_k, batch)
    assert float(value) == pytest.approx(1 * 3.0 + (-2) * (-1.0) + 1.0 * 2.0)  # 7
    assert float(metrics["grad_estimate_norm"]) == pytest.approx(np.sqrt(9 + 1 + 4))
    grad = jax.grad(lambda th: linear_surrogate()(th, None, theta_k, batch)[0])(theta)
    _leaves_close(grad, batch.grad, rtol=0, atol=0)
