"""KL geometry on softmax tables: ``D(θ, θ_k) = Σ_s d(s) KL(π_θ(·|s), π_θk(·|s))``.

Near ``θ_k`` it is the Fisher metric: ``KL(π_θ, π_θ+Δ) ≈ ½ Δᵀ F_θ Δ`` with
``F_θ = E_{a∼π_θ}[∇log π_θ(a) ∇log π_θ(a)ᵀ]`` (:func:`proxrl.policies.softmax.fisher`).
"""

from __future__ import annotations

import jax.numpy as jnp

from proxrl.policies import softmax
from proxrl.types import Array


def table_kl(theta: Array, theta_k: Array, d: Array | float = 1.0) -> Array:
    """``Σ_s d(s) KL(π_θ(·|s), π_θk(·|s))`` (a scalar)."""
    return jnp.sum(jnp.asarray(d) * softmax.kl(theta, theta_k))
