"""The softmax-table surrogate of the lecture's unified proximal step.

    L_k(θ) = Σ_s d(s) Σ_a (π_θ(a|s) − π_θk(a|s)) q̂(s,a)

(the performance-difference approximation of ``V^{π_θ}(ρ) − V^{π_θk}(ρ)``); in the expert and
bandit settings there is one state and ``d = 1``, so ``L_k(θ) = ⟨π_θ − π_θk, R̂⟩``.
"""

from __future__ import annotations

import jax.numpy as jnp

from proxrl.geometry.kl import table_kl
from proxrl.policies import softmax
from proxrl.types import Array, TableBatch


def surrogate(theta: Array, theta_k: Array, batch: TableBatch) -> Array:
    """``L_k(θ) = Σ_s d(s) ⟨π_θ(·|s) − π_θk(·|s), q̂(s,·)⟩`` (a scalar)."""
    diff = softmax.pi(theta) - softmax.pi(theta_k)
    return jnp.sum(softmax.per_state(batch.d) * diff * batch.q)


def kl_regularised(theta: Array, theta_k: Array, batch: TableBatch, eta: Array | float) -> Array:
    """``W_k(θ) = L_k(θ) − (1/η) Σ_s d(s) KL(π_θ(·|s), π_θk(·|s))``: the NPG regularisation form."""
    return surrogate(theta, theta_k, batch) - table_kl(theta, theta_k, batch.d) / eta
