"""Zeroth-order estimators against closed forms: unbiased for ∇f_δ, their variances, and the step on them.

For f(x) = Σ_i c_i x_i³ + aᵀx the smoothed gradients are known exactly (E v_i² = 1/(d + 2) for v uniform in
the unit ball, E ε_i² = 1 for ε ∼ N(0, I); odd moments vanish):

    ball:      ∇f_δ(x)_i = 3c_i x_i² + 3c_i δ²/(d + 2) + a_i
    Gaussian:  ∇f_σ(x)_i = 3c_i x_i² + 3c_i σ² + a_i

which differ from ∇f(x) by the smoothing term, so the tests tell ∇f_δ from ∇f. For a linear f(x) = aᵀx + b the
estimators' covariance traces are exact (‖u‖ = 1, E uuᵀ = I/d):

    one-point (sphere)  d²f(x)²/δ² + (d − 1)‖a‖²        two-point (sphere)  (d − 1)‖a‖²  (no f(x), no δ)
    one-point (Gauss.)  d f(x)²/σ² + (d + 1)‖a‖²        two-point (Gauss.)  (d + 1)‖a‖²

Tolerances are z = 5 standard errors of the Monte Carlo mean, the standard error measured from the same draws.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.estimators import zeroth_order as zo
from proxrl.prox.zeroth_order import EstimateBatch, zeroth_order_step

D = 4
N = 200_000
Z = 5.0
C = jnp.array([1.0, -0.5, 0.8, 0.3])
A = jnp.array([0.2, -0.1, 0.4, 0.5])
X = jnp.array([0.3, -0.6, 0.1, 0.5])


def cubic(x):
    return jnp.sum(C * x**3) + jnp.dot(A, x)


def cubic_grad(x):
    return 3 * C * x**2 + A


def smoothed_grad(x, delta, direction):
    second_moment = delta**2 / (D + 2) if direction == "sphere" else delta**2
    return 3 * C * x**2 + 3 * C * second_moment + A


@pytest.fixture(scope="module")
def draws():
    """N draws of each estimator at X on the cubic (δ = σ = 0.8), one vmapped call each."""
    keys = jax.random.split(jax.random.key(0), N)
    out = {}
    for (kind, direction), g in zo.ESTIMATORS.items():
        out[(kind, direction)] = np.asarray(jax.jit(jax.vmap(lambda k, g=g: g(cubic, X, k, 0.8)))(keys))
    return out


@pytest.mark.parametrize("kind", zo.KINDS)
@pytest.mark.parametrize("direction", zo.DIRECTIONS)
def test_unbiased_for_the_smoothed_gradient_not_the_gradient(draws, kind, direction):
    g = draws[(kind, direction)]
    mean, se = g.mean(axis=0), g.std(axis=0) / np.sqrt(N)
    target = np.asarray(smoothed_grad(X, 0.8, direction))
    print(kind, direction, "mean", mean.round(3), "∇f_δ", target.round(3), "se", se.round(4))
    assert np.all(np.abs(mean - target) <= Z * se), (mean, target, se)
    # the smoothing term is many standard errors away: the test tells ∇f_δ from ∇f
    assert np.all(np.abs(np.asarray(cubic_grad(X)) - target) > 3 * Z * se)


def _trace_cov(samples: np.ndarray) -> tuple[float, float]:
    """tr Cov(g) and its standard error (from the per-draw ‖g − ḡ‖²)."""
    sq = np.sum((samples - samples.mean(axis=0)) ** 2, axis=1)
    return float(sq.mean()), float(sq.std() / np.sqrt(sq.size))


@pytest.fixture(scope="module")
def linear_variances():
    """tr Cov of each estimator on f(x) = aᵀx + b at x = X for several (d, δ, b), 50k draws each."""
    rows = []
    for d, delta, b in [(2, 0.5, 1.0), (8, 0.5, 1.0), (8, 0.1, 1.0), (8, 0.1, 0.0), (32, 0.2, 1.0)]:
        a = jnp.linspace(-1.0, 1.0, d)
        x = jnp.full((d,), 0.1)
        f = lambda y, a=a, b=b: jnp.dot(a, y) + b
        keys = jax.random.split(jax.random.key(d), 50_000)
        for (kind, direction), g in zo.ESTIMATORS.items():
            s = np.asarray(jax.vmap(lambda k, g=g, f=f, x=x, delta=delta: g(f, x, k, delta))(keys))
            rows.append((kind, direction, d, delta, b, float(f(x)), float(jnp.sum(a**2)), *_trace_cov(s)))
    return rows


def _theory(kind, direction, d, delta, fx, a2):
    if kind == "one_point":
        return (
            d**2 * fx**2 / delta**2 + (d - 1) * a2
            if direction == "sphere"
            else d * fx**2 / delta**2 + (d + 1) * a2
        )
    return (d - 1) * a2 if direction == "sphere" else (d + 1) * a2


def test_variances_match_the_closed_forms(linear_variances):
    for kind, direction, d, delta, b, fx, a2, var, se in linear_variances:
        want = _theory(kind, direction, d, delta, fx, a2)
        print(
            f"{kind:9s} {direction:8s} d={d:2d} δ={delta} b={b}: tr Cov {var:10.2f} ± {se:.2f}, theory {want:10.2f}"
        )
        assert abs(var - want) <= Z * se + 1e-3 * want, (kind, direction, d, delta, b, var, want, se)


def test_one_point_std_scales_as_d_over_delta_two_point_does_not(linear_variances):
    """At f(x) ≠ 0 the one-point std is ≈ d|f(x)|/δ (within the (d − 1)‖a‖² term); two-point's is
    independent of δ and of the constant b; at equal δ two-point's variance is the smaller."""
    by = {(k, dr, d, delta, b): (var, fx, a2) for k, dr, d, delta, b, fx, a2, var, _ in linear_variances}
    one = lambda d, delta, b=1.0: by[("one_point", "sphere", d, delta, b)]
    two = lambda d, delta, b=1.0: by[("two_point", "sphere", d, delta, b)]
    # δ: 0.5 → 0.1 at d = 8 multiplies the std by ≈ 5 (d|f(x)|/δ dominates)
    ratio = np.sqrt(one(8, 0.1)[0] / one(8, 0.5)[0])
    assert 4.5 < ratio < 5.1, ratio
    # d: 2 → 8 at δ = 0.5 (f(x) differs with d: compare to d|f(x)|/δ)
    (v2, f2, _), (v8, f8, _) = one(2, 0.5), one(8, 0.5)
    assert np.sqrt(v8) / np.sqrt(v2) == pytest.approx((8 * abs(f8)) / (2 * abs(f2)), rel=0.15)
    # two-point: the same variance at δ = 0.5 and 0.1, and with b = 1 or 0
    assert two(8, 0.1)[0] == pytest.approx(two(8, 0.5)[0], rel=0.05)
    assert two(8, 0.1, 1.0)[0] == pytest.approx(two(8, 0.1, 0.0)[0], rel=0.05)
    for d, delta in [(2, 0.5), (8, 0.5), (8, 0.1), (32, 0.2)]:
        assert two(d, delta)[0] < one(d, delta)[0]


def test_antithetic_estimate_ignores_the_constant_exactly():
    """The two-point estimate of f and of f + 100 with the same directions: equal up to float32 rounding,
    while the one-point estimates move by 100·d/δ·u."""
    f = lambda y: jnp.dot(A, y)
    keys = jax.random.split(jax.random.key(3), 1000)
    for g in (zo.two_point, zo.gaussian_two_point):
        g0 = jax.vmap(lambda k, g=g: g(f, X, k, 0.3))(keys)
        g1 = jax.vmap(lambda k, g=g: g(lambda y: f(y) + 100.0, X, k, 0.3))(keys)
        np.testing.assert_allclose(g1, g0, atol=2e-3 * D / 0.3)
    p0 = jax.vmap(lambda k: zo.one_point(f, X, k, 0.3))(keys)
    p1 = jax.vmap(lambda k: zo.one_point(lambda y: f(y) + 100.0, X, k, 0.3))(keys)
    np.testing.assert_allclose(jnp.linalg.norm(p1 - p0, axis=1), 100.0 * D / 0.3, rtol=1e-4)


def test_population_estimates_are_the_mean_of_the_single_ones():
    """antithetic_gradient / one_point_gradient on evaluated directions equal the mean of the Gaussian
    two-point / one-point estimates with the same ε."""
    eps = jax.random.normal(jax.random.key(5), (16, D))
    fp, fm = jax.vmap(lambda e: cubic(X + 0.2 * e))(eps), jax.vmap(lambda e: cubic(X - 0.2 * e))(eps)
    want = jnp.mean(((fp - fm) / 0.4)[:, None] * eps, axis=0)
    np.testing.assert_allclose(zo.antithetic_gradient(eps, fp, fm, 0.2), want, rtol=1e-5, atol=1e-6)
    want1 = jnp.mean((fp / 0.2)[:, None] * eps, axis=0)
    np.testing.assert_allclose(
        zo.one_point_gradient(eps, fp, 0.2, baseline=False), want1, rtol=1e-5, atol=1e-6
    )
    # dropping pairs by weight = averaging the others
    w = jnp.array([1.0, 0.0] * 8)
    np.testing.assert_allclose(
        zo.antithetic_gradient(eps, fp, fm, 0.2, w),
        zo.antithetic_gradient(eps[::2], fp[::2], fm[::2], 0.2),
        rtol=1e-5,
    )


def test_fitness_shaping():
    x = jnp.array([3.0, -1.0, 10.0, 0.0, 5.0])
    np.testing.assert_allclose(zo.centered_ranks(x), [0.0, -0.5, 0.5, -0.25, 0.25])
    valid = jnp.array([True, True, False, True, True])
    np.testing.assert_allclose(zo.centered_ranks(x, valid), [1 / 6, -0.5, 0.0, -1 / 6, 0.5], atol=1e-6)
    fp, fm = jnp.array([1.0, 5.0, 2.0, 0.0]), jnp.array([4.0, 0.0, 3.0, 1.0])
    np.testing.assert_array_equal(zo.top_pairs(fp, fm, 2), [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        zo.top_pairs(fp, fm, 2, jnp.array([True, False, True, True])), [1.0, 0.0, 1.0, 0.0]
    )
    np.testing.assert_array_equal(zo.top_pairs(fp, fm, 9), [1.0, 1.0, 1.0, 1.0])


def test_estimate_averages_and_refuses_bad_input():
    g = zo.estimate(cubic, X, jax.random.key(0), 0.5, n=4, kind="two_point")
    keys = jax.random.split(jax.random.key(0), 4)
    np.testing.assert_allclose(
        g, jnp.mean(jax.vmap(lambda k: zo.two_point(cubic, X, k, 0.5))(keys), axis=0), rtol=1e-6
    )
    for bad in (0.0, -0.1, float("nan")):
        with pytest.raises(ConfigError, match="delta must be a finite number > 0"):
            zo.estimate(cubic, X, jax.random.key(0), bad)
    with pytest.raises(ConfigError, match="kind must be one of"):
        zo.estimate(cubic, X, jax.random.key(0), 0.5, kind="three_point")
    with pytest.raises(ConfigError, match="n must be"):
        zo.estimate(cubic, X, jax.random.key(0), 0.5, n=0)


def test_sphere_directions_are_unit_and_isotropic():
    u = jax.vmap(lambda k: zo.sphere_direction(k, (D,)))(jax.random.split(jax.random.key(1), 20_000))
    np.testing.assert_allclose(jnp.linalg.norm(u, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(u.T @ u / u.shape[0], np.eye(D) / D, atol=0.01)


def test_zeroth_order_step_is_the_euclidean_step_on_the_estimate():
    theta = {"w": jnp.array([1.0, -2.0]), "b": jnp.array(0.5)}
    g = {"w": jnp.array([0.3, 0.4]), "b": jnp.array(-1.0)}
    step = zeroth_order_step(0.1, "sgd")
    new, _, metrics = step.update(theta, step.init(theta), EstimateBatch(g), None)
    np.testing.assert_allclose(new["w"], [1.03, -1.96], rtol=1e-6)
    np.testing.assert_allclose(new["b"], 0.4, rtol=1e-6)
    gsq = 0.3**2 + 0.4**2 + 1.0
    np.testing.assert_allclose(metrics["surrogate_gain"], 0.1 * gsq, rtol=1e-5)  # ⟨ηĝ, ĝ⟩
    np.testing.assert_allclose(metrics["step_norm"], 0.1 * np.sqrt(gsq), rtol=1e-5)
    np.testing.assert_allclose(metrics["grad_estimate_norm"], np.sqrt(gsq), rtol=1e-5)
    # one Adam step of size η from fresh moments moves every coordinate by ≈ η in the direction of ĝ
    adam = zeroth_order_step(0.1, "adam")
    new, _, _ = adam.update(theta, adam.init(theta), EstimateBatch(g), None)
    np.testing.assert_allclose(new["w"], [1.1, -1.9], rtol=1e-5)
    np.testing.assert_allclose(new["b"], 0.4, rtol=1e-5)
    with pytest.raises(ConfigError, match="solver must be one of"):
        zeroth_order_step(0.1, "newton")
