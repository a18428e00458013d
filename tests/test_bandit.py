"""Bandit feedback: the importance-weighted estimator, the score-function identity, EXP3's bound."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.estimators.importance import ipw_rewards
from proxrl.tabular import bandit as B
from proxrl.tabular import rewards as R
from proxrl.tabular import softmax
from proxrl.tabular import steps as st

KEY = jax.random.key(0)


@pytest.mark.parametrize(("b", "c"), [(0.0, 0.0), (0.5, 0.0), (0.0, 1.0), (0.3, (0.2, 0.9, 0.5))])
def test_ipw_estimator_unbiased(b, c):
    """E[R̂(a)] = μ(a) − b; tolerance 5 standard errors from the closed-form variance
    Var R̂(a) = E[(r − b − c(a))²]/π(a) − (μ(a) − b − c(a))² (one draw, Bernoulli r)."""
    mu = np.array([0.7, 0.2, 0.5])
    pi = np.array([0.6, 0.1, 0.3])
    n_rep = 200_000
    ka, kr = jax.random.split(KEY)
    a = jax.random.categorical(ka, jnp.log(pi), shape=(n_rep,))
    r = jax.random.bernoulli(kr, jnp.asarray(mu)[a]).astype(jnp.float32)
    est = jax.vmap(
        lambda ai, ri: ipw_rewards(ai[None], ri[None], jnp.asarray(pi, jnp.float32), b, jnp.asarray(c))
    )(a, r)
    cc = np.broadcast_to(np.asarray(c, float), 3)
    second = mu * (1 - b - cc) ** 2 + (1 - mu) * (b + cc) ** 2
    var = second / pi - (mu - b - cc) ** 2
    se = np.sqrt(var / n_rep)
    assert np.all(np.abs(np.asarray(est).mean(axis=0) - (mu - b)) <= 5 * se)


def test_score_function_gradient_is_gradient_of_ipw_surrogate():
    """(1/n) Σ_i (r_i − b) ∇log π_θ(a_i) = ∇_θ ⟨π_θ, R̂⟩ with R̂ the IPW estimate (shift 0)."""
    theta = jnp.array([0.2, -0.4, 1.0, 0.1])
    a = jnp.array([0, 2, 2, 3, 1, 2])
    r = jnp.array([1.0, 0.0, 1.0, 0.5, 0.2, 1.0])
    b = 0.3
    score = jax.vmap(lambda ai: jax.grad(lambda th: softmax.log_pi(th)[ai])(theta))(a)
    g = jnp.mean((r - b)[:, None] * score, axis=0)
    r_hat = ipw_rewards(a, r, softmax.pi(theta), b)
    np.testing.assert_allclose(g, jax.grad(lambda th: jnp.sum(softmax.pi(th) * r_hat))(theta), atol=1e-6)
    th_new, _, _ = _run(st.policy_gradient(0.1), theta, st.TableBatch(r_hat), KEY)
    np.testing.assert_allclose(th_new, theta + 0.1 * g, atol=1e-6)


def test_exp3_under_its_bound_on_fixed_adversarial_sequence():
    """EXP3 (loss-based, η = √(2 ln K/(KT))) has E[regret] ≤ √(2TK ln K) for any fixed sequence.
    The sequence is drawn once (an oblivious adversary); 100 seeds; the 95% upper confidence limit
    must sit under the bound, and the regret must be substantial (the test measures something)."""
    T, K = 3000, 4
    table = np.asarray(jax.random.bernoulli(KEY, jnp.array([0.55, 0.5, 0.45, 0.4]), (T, K)), float)
    model = R.sequence(table)
    eta = B.optimal_exp3_eta(K, T)
    res = B.make_runner(B.exp3(eta, "loss"), model, None, T)(jax.random.split(KEY, 100))
    final = np.asarray(res.regret[:, -1])
    bound = float(B.exp3_regret_bound(K, eta, T))
    np.testing.assert_allclose(bound, np.sqrt(2 * T * K * np.log(K)), rtol=1e-9)
    upper = final.mean() + 1.984 * final.std(ddof=1) / np.sqrt(final.size)
    assert upper < bound
    assert final.mean() > 0.2 * bound


def test_npg_bandit_equals_loss_based_exp3_with_n_draws():
    """NPG (exact Fisher, b = 1) and EXP3 (c = 1) take the same step from the same draws."""
    model = R.bernoulli([0.5, 0.4, 0.3])
    keys = jax.random.split(KEY, 8)
    a = B.make_runner(B.npg(0.05, 10, 1.0), model, None, 500)(keys)
    b = B.make_runner(B.exp3(0.05, "loss", 10), model, None, 500)(keys)
    np.testing.assert_allclose(np.asarray(a.regret), np.asarray(b.regret), atol=1e-2)


def test_npg_regularised_with_many_inner_steps_is_npg_from_the_same_draws():
    """NPG-reg's m inner steps maximise ⟨π_θ, q̂⟩ − KL(π_θ, π_k)/η, whose maximiser is NPG's step θ_k + η·q̂ (up
    to a constant): from the same draws, m = 2000 (α = η, inside α < 4η) ends at NPG's policy, m = 1 does not."""
    model = R.bernoulli([0.5, 0.4, 0.3])
    keys = jax.random.split(KEY, 4)
    npg = B.make_runner(B.npg(0.05, 10, 1.0), model, None, 300)(keys)
    far = [
        float(jnp.max(jnp.abs(B.make_runner(B.npg_reg(0.05, 10, m, 0.05, 1.0), model, None, 300)(keys).final_pi
                              - npg.final_pi)))
        for m in (1, 2000)
    ]  # fmt: skip
    assert far[0] > 1e-2 and far[1] < 1e-4, far


def test_pg_learns_stochastic_bandit():
    model = R.bernoulli([0.7, 0.5, 0.3])
    res = B.make_runner(B.pg(0.5, 1, 0.5), model, None, 2000)(jax.random.split(KEY, 32))
    assert np.asarray(res.final_pi[:, 0]).mean() > 0.8
    assert np.asarray(res.regret[:, -1]).mean() < 0.2 * 2000 * (0.7 - 0.5)


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: B.make_runner(B.pg(0.5, 0), R.bernoulli([0.5, 0.4]), None, 10), "n must be an integer >= 1"),
        (lambda: B.npg_reg(0.5, 2, 0, 0.1), "m must be an integer >= 1"),
        (lambda: B.make_runner(B.pg(-1.0), R.bernoulli([0.5, 0.4]), None, 10), "eta"),
        (lambda: B.make_runner(B.pg(0.5, 3), R.bernoulli([0.5, 0.4]), None, 10), "multiple"),
        (lambda: B.make_runner(B.pg(0.5), R.bernoulli([0.5, 0.4]), [1.0, 0.0, 0.0], 10), "length 2"),
        (lambda: B.make_runner(B.exp3(0.1), R.sequence([[0.1, 0.2]]), None, 10), "rounds"),
        (lambda: B.exp3(0.1, "gain"), "estimator"),
    ],
)
def test_bad_input_one_line(call, fragment):
    with pytest.raises(ConfigError) as e:
        call()
    assert fragment in str(e.value) and "\n" not in str(e.value)


def _run(step, theta, batch, key):
    """One proximal step from a fresh state (the optax convention: ``init`` then ``update``)."""
    return step.update(theta, step.init(theta), batch, key)
