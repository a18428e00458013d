"""Action distributions built from network outputs: categorical, diagonal Gaussian, tanh-squashed.

Networks (:mod:`proxrl.deep.networks`) output parameters — logits, or ``(mean, log_std)`` — and
these pure functions turn them into distributions, so the same head serves PPO (log-prob, entropy,
KL via distrax) and SAC (reparameterised sample with its log-prob).

For continuous actions the lecture gives two ways to set σ in π_θ(·|s) = N(μ_θ(s), σ²):
σ a policy parameter (learned; :class:`~proxrl.deep.networks.GaussianPolicy`), or σ a
hyperparameter that decreases over time (:func:`sigma_schedule` with
:class:`~proxrl.deep.networks.ScheduledGaussianPolicy`).
"""

from __future__ import annotations

import math
from typing import Literal

import distrax
import jax
import jax.numpy as jnp

from proxrl.errors import check_choice, check_int_at_least, check_not_above, check_positive
from proxrl.types import Array, PRNGKey, ScheduleFn

LOG_2PI_E = math.log(2 * math.pi * math.e)


def categorical(logits: Array) -> distrax.Categorical:
    """π(a|s) = softmax(logits)_a; ``logits[..., A]``."""
    return distrax.Categorical(logits=logits)


def diag_gaussian(mean: Array, log_std: Array) -> distrax.MultivariateNormalDiag:
    """N(μ, diag σ²) over the last axis; ``mean``, ``log_std``: ``[..., d]`` (broadcastable).

    log π(a) = −½ Σ_i ((a_i − μ_i)/σ_i)² − Σ_i log σ_i − (d/2)·log 2π
    """
    mean, log_std = jnp.broadcast_arrays(mean, log_std)
    return distrax.MultivariateNormalDiag(loc=mean, scale_diag=jnp.exp(log_std))


def gaussian_entropy(log_std: Array) -> Array:
    """Closed form H(N(μ, diag σ²)) = Σ_i (½·log(2πe) + log σ_i), over the last axis."""
    return jnp.sum(0.5 * LOG_2PI_E + log_std, axis=-1)


def tanh_log_det_jacobian(u: Array) -> Array:
    """Elementwise log |d tanh(u)/du| = log(1 − tanh(u)²), computed stably as

        log(1 − tanh(u)²) = 2·(log 2 − u − softplus(−2u)),

    (from 1 − tanh² = 4/(e^u + e^{−u})²), which stays finite where tanh(u) rounds to ±1.
    """
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def scale_to_bounds(y: Array, low: Array | float, high: Array | float) -> Array:
    """Map y ∈ [−1, 1] affinely onto [low, high]: ``low + (y + 1)·(high − low)/2``."""
    return low + 0.5 * (y + 1.0) * (high - low)


def tanh_gaussian_log_prob(
    u: Array, mean: Array, log_std: Array, low: Array | float = -1.0, high: Array | float = 1.0
) -> Array:
    """Log-density of a = scale_to_bounds(tanh(u)) where u ∼ N(μ, diag σ²), given the pre-squash u.

    By the change of variables a = c + s·tanh(u) (s = (high − low)/2, elementwise),

        log π(a) = log N(u; μ, σ²) − Σ_i log(1 − tanh(u_i)²) − Σ_i log s_i.

    Shapes: ``u``, ``mean``, ``log_std``: ``[..., d]``; returns ``[...]``.
    """
    half_range = jnp.broadcast_to(0.5 * (jnp.asarray(high) - jnp.asarray(low)), u.shape)
    log_n = diag_gaussian(mean, log_std).log_prob(u)
    return log_n - jnp.sum(tanh_log_det_jacobian(u) + jnp.log(half_range), axis=-1)


def tanh_gaussian_sample(
    key: PRNGKey,
    mean: Array,
    log_std: Array,
    low: Array | float = -1.0,
    high: Array | float = 1.0,
) -> tuple[Array, Array]:
    """Reparameterised sample of the squashed Gaussian and its log-probability (SAC's actor).

        u = μ + σ ⊙ ε,  ε ∼ N(0, I);    a = low + (tanh(u) + 1)·(high − low)/2.

    Gradients flow to ``mean`` and ``log_std`` through u. Returns ``(a[..., d], log π(a)[...])``.
    """
    u = mean + jnp.exp(log_std) * jax.random.normal(key, jnp.shape(mean))
    return scale_to_bounds(jnp.tanh(u), low, high), tanh_gaussian_log_prob(u, mean, log_std, low, high)


def sigma_schedule(
    sigma_0: float,
    sigma_min: float,
    num_steps: int,
    kind: Literal["linear", "exponential"] = "exponential",
) -> ScheduleFn:
    """A decreasing exploration scale σ_k for a Gaussian policy whose σ is a hyperparameter.

        linear:       σ_k = σ_0 + (σ_min − σ_0)·min(k/K, 1)
        exponential:  σ_k = σ_0·(σ_min/σ_0)^{min(k/K, 1)}    (geometric interpolation)

    Both start at σ_0, reach σ_min at k = K = ``num_steps`` and stay there. The returned function
    maps an iteration count (int or traced array) to σ_k.
    """
    sigma_0 = check_positive("sigma_0", sigma_0)
    sigma_min = check_positive("sigma_min", sigma_min)
    sigma_min = check_not_above("sigma_min", sigma_min, "sigma_0", sigma_0)  # a traced value passes
    num_steps = check_int_at_least("num_steps", num_steps, 1)
    check_choice("kind", kind, ("linear", "exponential"))

    def schedule(k: Array) -> Array:
        frac = jnp.clip(jnp.asarray(k, jnp.float32) / num_steps, 0.0, 1.0)
        if kind == "linear":
            return sigma_0 + (sigma_min - sigma_0) * frac
        return sigma_0 * (sigma_min / sigma_0) ** frac

    return schedule
