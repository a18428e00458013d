"""Geometries ``D(θ, θ_k)`` of the proximal step, as terms ``(θ, π_θ, θ_k, batch) -> (D, metrics)``.

- Euclidean, ``D = ½‖θ − θ_k‖²`` (vanilla policy gradient): :func:`euclidean`;
- KL on softmax tables (EW, NPG-reg): :func:`proxrl.tabular.steps.table_kl`, with the tables;
- KL between distribution heads over sampled states, ``D = (1/N) Σ_i KL(π_θ(·|s_i), π_θk(·|s_i))``
  (PPO-KL, NPG regularisation form): :func:`head_kl`; its sampled estimate from the stored actions
  (Schulman's k3): :func:`sampled_kl`;
- the Fisher quadratic form ``½(θ − θ_k)ᵀF(θ − θ_k)``, the second-order expansion of the KL, never formed:
  :func:`fisher_vector_product` gives ``v ↦ F v`` as the Hessian-vector product of ``KL(π_θk ‖ π_θ)`` at θ_k.

Also the adaptive coefficient of PPO (:func:`adaptive_beta`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from proxrl.prox.step import Coefficient, Term, global_norm
from proxrl.types import Array, Metrics, Params


def sq_distance(theta: Params, theta_k: Params) -> Array:
    """``½‖θ − θ_k‖²`` over a pytree."""
    return 0.5 * sum(
        jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(theta_k), strict=True)
    )


def step_norm(theta: Params, theta_k: Params) -> Array:
    """``‖θ − θ_k‖₂`` over a pytree."""
    return global_norm(jax.tree.map(jnp.subtract, theta, theta_k))


def euclidean() -> Term:
    """``D(θ, θ_k) = ½‖θ − θ_k‖²``."""
    return lambda theta, pi, theta_k, batch: (sq_distance(theta, theta_k), {})


def head_kl(old: Callable[[Any], Any], dist: Callable[[Any], Any] | None = None) -> Term:
    """``(1/N) Σ_i KL(π_θ(·|s_i), π_θk(·|s_i))``, exact for categorical and Gaussian heads.

    ``π_θ`` is the term's policy evaluation (mapped to a distribution by ``dist`` if given); ``old(batch)``
    gives ``π_θk`` on the same states (e.g. from the head outputs stored with the batch).
    """

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, Metrics]:
        pi = pi if dist is None else dist(pi)
        return jnp.mean(pi.kl_divergence(old(batch))), {}

    return term


def sampled_kl(logp: Array, logp_old: Array) -> Array:
    """Sampled estimate of ``KL(π_θk, π_θ)`` from actions ``a ∼ π_θk``, always ≥ 0:
    ``mean[(ratio − 1) − log ratio]`` (Schulman's low-variance "k3" estimator)."""
    log_ratio = logp - logp_old
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def fisher_vector_product(
    kl_fn: Callable[[Array], Array], theta_k: Array, damping: Array | float = 0.0
) -> Callable[[Array], Array]:
    """``v ↦ (F + λI) v`` with F the Hessian of ``kl_fn`` at ``theta_k`` (flat vectors ``[P]``).

    ``F v = ∂/∂ε ∇KL̄(θ_k + εv)|_{ε=0}``: forward-mode (``jax.jvp``) over reverse-mode (``jax.grad``), one
    product costs about two backward passes. For ``kl_fn(θ) = mean_s KL(π_θk(·|s) ‖ π_θ(·|s))`` the Hessian
    at θ_k is the Fisher matrix ``mean_s Σ_a π_θk(a|s) ∇log π_θk(a|s) ∇log π_θk(a|s)ᵀ``: the second-order
    term of the lecture's expansion KL(π_θ, π_θ+Δθ) ≈ ½ΔθᵀFΔθ (the first-order term vanishes).
    """
    grad_kl = jax.grad(kl_fn)

    def fvp(v: Array) -> Array:
        return jax.jvp(grad_kl, (theta_k,), (v,))[1] + damping * v

    return fvp


BETA_MIN = 1.0 / 35.0
"""Default floor of PPO's adaptive KL coefficient β (as in PPO-paper-era implementations, e.g. Patrick
Coady's 2017 TRPO/PPO code, which keeps β within [1/35, 35])."""
BETA_MAX = 35.0
"""Default ceiling of PPO's adaptive KL coefficient β (see :data:`BETA_MIN`)."""


def adapt_beta(
    beta: Array | float,
    kl: Array | float,
    kl_target: Array | float,
    beta_min: Array | float = 0.0,
    beta_max: Array | float = float("inf"),
) -> Array:
    """The PPO paper's adaptive KL coefficient, applied once per update with d = the measured KL, kept within
    ``[beta_min, beta_max]``:

    d < d_targ / 1.5  ⇒  β ← max(β / 2, β_min)   (the step moved too little: penalise less)
    d > d_targ · 1.5  ⇒  β ← min(β · 2, β_max)   (it moved too far: penalise more)
    otherwise            β unchanged.

    Without the bounds β can only halve while the step is limited by something else (the optimiser's step
    size, the number of epochs): it then collapses toward 0 (the penalty vanishes) and needs as many
    doublings to recover when the KL overshoots. The defaults leave β unbounded; PPO passes
    :data:`BETA_MIN` and :data:`BETA_MAX` (its options ``beta_min``, ``beta_max``).
    """
    beta = jnp.asarray(beta, jnp.float32)
    beta = jnp.where(kl < kl_target / 1.5, beta / 2.0, beta)
    beta = jnp.where(kl > kl_target * 1.5, beta * 2.0, beta)
    return jnp.clip(beta, beta_min, beta_max)


def adaptive_beta(
    beta: Array | float,
    kl_target: Array | float,
    beta_min: Array | float = 0.0,
    beta_max: Array | float = float("inf"),
) -> Coefficient:
    """β starting at ``beta``, adapted after each step from the KL it moved (``metrics["kl"]``) and kept within
    ``[beta_min, beta_max]`` (:func:`adapt_beta`)."""

    def adapt(b: Array, metrics: Metrics) -> Array:
        return adapt_beta(b, metrics["kl"], kl_target, beta_min, beta_max)

    return Coefficient(beta, adapt)
