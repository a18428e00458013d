"""Euclidean geometry: ``D(θ, θ_k) = ½‖θ − θ_k‖²`` (vanilla policy gradient)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proxrl.types import Array, Params


def sq_distance(theta: Params, theta_k: Params) -> Array:
    """``½‖θ − θ_k‖²`` over a pytree."""
    return 0.5 * sum(
        jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta_k), strict=True)
    )


def step_norm(theta: Params, theta_k: Params) -> Array:
    """``‖θ − θ_k‖₂`` over a pytree."""
    return jnp.sqrt(2.0 * sq_distance(theta, theta_k))
