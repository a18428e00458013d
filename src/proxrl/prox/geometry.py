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


def adapt_beta(beta: Array | float, kl: Array | float, kl_target: Array | float) -> Array:
    """The PPO paper's adaptive KL coefficient, applied once per update with d = the measured KL:

    d < d_targ / 1.5  ⇒  β ← β / 2        (the step moved too little: penalise less)
    d > d_targ · 1.5  ⇒  β ← β · 2        (it moved too far: penalise more)
    otherwise            β unchanged.
    """
    beta = jnp.asarray(beta, jnp.float32)
    beta = jnp.where(kl < kl_target / 1.5, beta / 2.0, beta)
    return jnp.where(kl > kl_target * 1.5, beta * 2.0, beta)


def adaptive_beta(beta: Array | float, kl_target: Array | float) -> Coefficient:
    """β starting at ``beta``, adapted after each step from the KL it moved (``metrics["kl"]``)."""

    def adapt(b: Array, metrics: Metrics) -> Array:
        return adapt_beta(b, metrics["kl"], kl_target)

    return Coefficient(beta, adapt)
