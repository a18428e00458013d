"""Zeroth-order (bandit-feedback) estimators of the gradient of a smoothed function.

The lecture's "Review: Linear Bandits and One-Point Gradient Estimator": only values f(x) can be queried, not
∇f. Smoothing f over a ball of radius δ,

    f_δ(x) = E_{v ∼ U(ball)} f(x + δv),        ∇f_δ(x) = (d/δ)·E_{u ∼ U(sphere)} [f(x + δu)·u]

(Flaxman, Kalai & McMahan 2005, Lemma 1), so a single query gives an unbiased estimate of ∇f_δ:

    one-point     g = (d/δ)·f(x + δu)·u
    two-point     g = (d/2δ)·(f(x + δu) − f(x − δu))·u                 (antithetic; Agarwal, Dekel & Xiao 2010)

and with Gaussian directions ε ∼ N(0, I), for f_σ(x) = E f(x + σε) (Nesterov & Spokoiny 2017):

    one-point     g = f(x + σε)·ε/σ
    two-point     g = (f(x + σε) − f(x − σε))·ε/(2σ)

Every estimator here is pure and queries ``f`` at one draw; ``jax.vmap`` over keys for many draws
(:func:`estimate` averages ``n`` of them). The one-point estimator's variance grows like d²·f(x)²/δ² (for a linear
f exactly ``d²f(x)²/δ² + (d − 1)‖∇f‖²``); the two-point estimator's does not depend on f(x) (a constant added to f
cancels in the difference) and stays bounded as δ → 0 for smooth f.

Parameter-space estimates for evolution strategies (a population of directions, already evaluated) are
:func:`antithetic_gradient` and :func:`one_point_gradient`, with the fitness shapings :func:`centered_ranks`
and :func:`top_pairs`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from proxrl.errors import ConfigError, check_choice, check_positive
from proxrl.types import Array, PRNGKey

DIRECTIONS = ("sphere", "gaussian")
"""Where the random direction is drawn: uniform on the unit sphere (smoothing over the ball) or N(0, I)."""

KINDS = ("one_point", "two_point")
"""One query f(x + δu), or the antithetic pair f(x + δu), f(x − δu)."""


def sphere_direction(key: PRNGKey, shape: tuple[int, ...]) -> Array:
    """``u`` uniform on the unit sphere of R^d, d = prod(shape): a Gaussian vector divided by its norm."""
    z = jax.random.normal(key, shape)
    return z / jnp.linalg.norm(z.reshape(-1))


def gaussian_direction(key: PRNGKey, shape: tuple[int, ...]) -> Array:
    """``ε ∼ N(0, I)`` of the given shape."""
    return jax.random.normal(key, shape)


def check_delta(delta: float, name: str = "delta") -> float:
    """δ (or σ) > 0: a one-line ConfigError otherwise (at δ = 0 the smoothed function is f and the estimators
    divide by zero)."""
    return check_positive(name, delta)


def one_point(f: Callable[[Array], Array], x: Array, key: PRNGKey, delta: Array | float) -> Array:
    """``g = (d/δ)·f(x + δu)·u``, u uniform on the unit sphere: ``E g = ∇f_δ(x)`` with
    ``f_δ(x) = E_{v ∼ U(ball)} f(x + δv)`` (one query of f)."""
    u = sphere_direction(key, jnp.shape(x))
    d = u.size
    return (d / delta) * f(x + delta * u) * u


def two_point(f: Callable[[Array], Array], x: Array, key: PRNGKey, delta: Array | float) -> Array:
    """``g = (d/2δ)·(f(x + δu) − f(x − δu))·u``, u uniform on the unit sphere: ``E g = ∇f_δ(x)`` (two queries of
    f; a constant added to f cancels)."""
    u = sphere_direction(key, jnp.shape(x))
    d = u.size
    return (d / (2.0 * delta)) * (f(x + delta * u) - f(x - delta * u)) * u


def gaussian_one_point(f: Callable[[Array], Array], x: Array, key: PRNGKey, sigma: Array | float) -> Array:
    """``g = f(x + σε)·ε/σ``, ε ∼ N(0, I): ``E g = ∇f_σ(x)`` with ``f_σ(x) = E f(x + σε)`` (Gaussian smoothing)."""
    eps = gaussian_direction(key, jnp.shape(x))
    return f(x + sigma * eps) * eps / sigma


def gaussian_two_point(f: Callable[[Array], Array], x: Array, key: PRNGKey, sigma: Array | float) -> Array:
    """``g = (f(x + σε) − f(x − σε))·ε/(2σ)``, ε ∼ N(0, I): ``E g = ∇f_σ(x)`` (antithetic pair)."""
    eps = gaussian_direction(key, jnp.shape(x))
    return (f(x + sigma * eps) - f(x - sigma * eps)) * eps / (2.0 * sigma)


ESTIMATORS: dict[
    tuple[str, str], Callable[[Callable[[Array], Array], Array, PRNGKey, Array | float], Array]
] = {
    ("one_point", "sphere"): one_point,
    ("two_point", "sphere"): two_point,
    ("one_point", "gaussian"): gaussian_one_point,
    ("two_point", "gaussian"): gaussian_two_point,
}
"""The estimators by ``(kind, direction)``."""


def estimator(
    kind: str = "one_point", direction: str = "sphere"
) -> Callable[[Callable[[Array], Array], Array, PRNGKey, Array | float], Array]:
    """The estimator ``g(f, x, key, δ)`` of ``(kind, direction)`` (one-line ConfigError for an unknown name)."""
    check_choice("kind", kind, KINDS)
    check_choice("direction", direction, DIRECTIONS)
    return ESTIMATORS[(kind, direction)]


def estimate(
    f: Callable[[Array], Array],
    x: Array,
    key: PRNGKey,
    delta: Array | float,
    n: int = 1,
    kind: str = "one_point",
    direction: str = "sphere",
) -> Array:
    """The mean of ``n`` independent draws of an estimator of ∇f_δ(x) (vmapped over ``n`` keys)."""
    if isinstance(delta, int | float):
        check_delta(delta)
    if n < 1:
        raise ConfigError(f"n must be an integer >= 1, got {n!r}")
    g = estimator(kind, direction)
    return jnp.mean(jax.vmap(lambda k: g(f, x, k, delta))(jax.random.split(key, n)), axis=0)


# --------------------------------------------------------------------------- populations (parameter space)


def antithetic_gradient(
    eps: Array, f_plus: Array, f_minus: Array, sigma: Array | float, weights: Array | None = None
) -> Array:
    """``ĝ = Σ_i w_i (F_i⁺ − F_i⁻)·ε_i / (2σ Σ_i w_i)`` from ``P`` antithetic pairs (``eps[P, d]``, fitness
    ``F⁺ = f(θ + σε_i)``, ``F⁻ = f(θ − σε_i)``, ``[P]``): the mean of the Gaussian two-point estimates, the
    gradient of OpenAI-ES with mirrored sampling. ``weights[P]`` (default 1) drops or weights pairs; with no
    weight at all the estimate is 0."""
    w = jnp.ones_like(f_plus) if weights is None else weights
    coef = w * (f_plus - f_minus) / (2.0 * sigma)
    return jnp.einsum("p,pd->d", coef, eps) / jnp.maximum(jnp.sum(w), 1e-12)


def one_point_gradient(
    eps: Array, fitness: Array, sigma: Array | float, weights: Array | None = None, baseline: bool = True
) -> Array:
    """``ĝ = Σ_i w_i (F_i − b)·ε_i / (σ Σ_i w_i)`` from ``n`` independent directions (``eps[n, d]``, ``F_i =
    f(θ + σε_i)``): the mean of the Gaussian one-point estimates; ``b`` the weighted mean of the fitness with
    ``baseline`` (a control variate that leaves the estimate consistent), 0 without."""
    w = jnp.ones_like(fitness) if weights is None else weights
    total = jnp.maximum(jnp.sum(w), 1e-12)
    b = jnp.sum(w * fitness) / total if baseline else 0.0
    return jnp.einsum("n,nd->d", w * (fitness - b) / sigma, eps) / total


def centered_ranks(x: Array, valid: Array | None = None) -> Array:
    """Fitness shaping of OpenAI-ES: the rank of each entry among the ``valid`` ones (default all), mapped
    linearly onto [−½, ½] (ties broken by position); invalid entries get 0. Invariant to any increasing
    transformation of the fitness."""
    x = jnp.asarray(x, jnp.float32)
    valid = jnp.ones(x.shape, bool) if valid is None else valid
    m = jnp.sum(valid)
    keyed = jnp.where(valid, x, -jnp.inf)  # invalid entries rank first
    ranks = jnp.argsort(jnp.argsort(keyed)).astype(jnp.float32) - (x.size - m)
    shaped = ranks / jnp.maximum(m - 1, 1) - 0.5
    return jnp.where(valid, shaped, 0.0)


def top_pairs(f_plus: Array, f_minus: Array, b: int, valid: Array | None = None) -> Array:
    """ARS's selection: weight 1 on the ``b`` pairs with the largest ``max(F⁺, F⁻)`` among the valid ones, 0
    elsewhere (``[P]``, float). ``b ≥ P`` keeps every valid pair."""
    best = jnp.maximum(f_plus, f_minus)
    valid = jnp.ones(best.shape, bool) if valid is None else valid
    keyed = jnp.where(valid, best, -jnp.inf)
    order = jnp.argsort(-keyed)  # best first
    rank = jnp.argsort(order)
    return ((rank < b) & valid).astype(jnp.float32)
