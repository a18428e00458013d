"""The direct softmax parameterisation ``π_θ(a|s) = exp θ(s,a) / Σ_b exp θ(s,b)``.

``θ`` has shape ``[..., A]``: ``[A]`` in the expert and bandit settings, ``[S, A]`` for a tabular
MDP. Every function acts on the last axis; leading axes are states (or a batch).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proxrl.types import Array


def pi(theta: Array) -> Array:
    """``π_θ(a) = exp θ(a) / Σ_b exp θ(b)``, shape ``[..., A]``."""
    return jax.nn.softmax(theta, axis=-1)


def log_pi(theta: Array) -> Array:
    """``log π_θ(a)``, computed stably, shape ``[..., A]``."""
    return jax.nn.log_softmax(theta, axis=-1)


def value(theta: Array, q: Array) -> Array:
    """``V^{π_θ} = Σ_a π_θ(a) q(a)`` (per state), shape ``[...]``."""
    return jnp.sum(pi(theta) * q, axis=-1)


def advantage(theta: Array, q: Array) -> Array:
    """``A_θ(a) = q(a) − Σ_b π_θ(b) q(b)``, shape ``[..., A]``."""
    return q - value(theta, q)[..., None]


def policy_gradient(theta: Array, q: Array, d: Array | float = 1.0) -> Array:
    """``∇_θ Σ_s d(s) Σ_a π_θ(a|s) q(s,a)`` in closed form: ``d(s)·π_θ(a|s)·A_θ(s,a)``.

    For the expert problem (no states, ``d = 1``) this is the lecture's
    ``(∇_θ V^{π_θ})_i = π_θ(i)(R(i) − Σ_a π_θ(a) R(a))``; for an MDP with ``d = d_ρ^{π_θ}`` and
    ``q = Q^{π_θ}`` it is the policy gradient theorem.
    """
    return per_state(d) * pi(theta) * advantage(theta, q)


def per_state(d: Array | float) -> Array:
    """State weights ``d(s)`` of shape ``[...]`` (or a scalar) made to broadcast against ``[..., A]``."""
    return jnp.expand_dims(jnp.asarray(d), -1)


def score(theta: Array) -> Array:
    """``∇_θ log π_θ(a) = e_a − π_θ`` for every action: row ``a`` of the ``[..., A, A]`` result."""
    p = pi(theta)
    eye = jnp.eye(p.shape[-1], dtype=p.dtype)
    return eye - p[..., None, :]


def fisher(theta: Array) -> Array:
    """``F_θ = Σ_a π_θ(a) ∇log π_θ(a) ∇log π_θ(a)ᵀ = diag π_θ − π_θ π_θᵀ``, shape ``[..., A, A]``.

    Singular: ``F_θ 1 = 0`` (adding a constant to θ does not change π_θ).
    """
    p = pi(theta)
    return (
        jnp.einsum("...a,ab->...ab", p, jnp.eye(p.shape[-1], dtype=p.dtype))
        - p[..., :, None] * p[..., None, :]
    )


def kl(theta: Array, theta_k: Array) -> Array:
    """``KL(π_θ, π_θk) = Σ_a π_θ(a) log(π_θ(a) / π_θk(a))`` (per state), shape ``[...]``."""
    return jnp.sum(pi(theta) * (log_pi(theta) - log_pi(theta_k)), axis=-1)


def entropy(theta: Array) -> Array:
    """``H(π_θ) = −Σ_a π_θ(a) log π_θ(a)`` (per state), shape ``[...]``."""
    return -jnp.sum(pi(theta) * log_pi(theta), axis=-1)


def from_probs(p: Array) -> Array:
    """A θ with ``π_θ = p``: ``θ = log p`` (entries of p must be > 0)."""
    return jnp.log(jnp.asarray(p))
