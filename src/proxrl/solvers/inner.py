"""Approximate proximal steps by ``m`` inner gradient-ascent steps.

The lecture's NPG regularisation form (and PPO with a KL penalty)::

    θ ← θ_k;  repeat m times:  θ ← θ + α ∇_θ W_k(θ);   θ_{k+1} ← θ
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from proxrl.types import Array, Params


def gradient_ascent(
    objective: Callable[[Params], Array], theta: Params, alpha: Array | float, m: int
) -> tuple[Params, Array]:
    """``m`` steps ``θ ← θ + α ∇W(θ)`` from ``theta``; returns ``(θ_m, ‖∇W(θ_m−1)‖)``."""
    grad = jax.grad(objective)

    def body(th, _):
        g = grad(th)
        th = jax.tree.map(lambda t, gi: t + alpha * gi, th, g)
        return th, _global_norm(g)

    theta, norms = jax.lax.scan(body, theta, None, length=m)
    return theta, norms[-1]


def _global_norm(tree: Params) -> Array:
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))
