"""Proximal steps on a softmax table, shared by the expert, bandit and tabular-MDP settings.

Each consumes a :class:`~proxrl.types.TableBatch` ``(q̂, d)`` — an estimate of ``Q^{π_k}(s,·)`` (or of
the reward vector ``R``) and state weights — and maximises, exactly or approximately::

    θ_{k+1} = argmax_θ  Σ_s d(s) ⟨π_θ(·|s) − π_k(·|s), q̂(s,·)⟩ − (1/η)·D(θ, θ_k)

================================  ==========================  ===================================
step                              geometry D                  solver
================================  ==========================  ===================================
:func:`exponential_weights`       Σ_s d(s) KL                 closed form ``θ_k + η q̂``
:func:`policy_gradient`           ½‖θ − θ_k‖²                 closed form ``θ_k + η d·π·A``
:func:`natural_policy_gradient`   ½‖θ − θ_k‖²_F               ``θ_k + η F⁺ ∇V`` (pinv or lstsq)
:func:`npg_regularised`           Σ_s d(s) KL                 m inner gradient steps of size α
================================  ==========================  ===================================

``η`` may be a traced value, so one compiled function sweeps a grid of step sizes under ``vmap``.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from proxrl.errors import check_choice
from proxrl.prox import Problem, ProxStep, Term, prox_step
from proxrl.prox.geometry import euclidean
from proxrl.prox.solvers import (
    closed_form,
    euclidean_step,
    gradient_steps,
    lstsq_solve,
    mirror_step,
    pinv_solve,
)
from proxrl.tabular import softmax
from proxrl.types import Array, TableBatch

FisherSolve = Literal["pinv", "lstsq"]


def table_surrogate() -> Term:
    """``L_k(θ) = Σ_s d(s) ⟨π_θ(·|s) − π_θk(·|s), q̂(s,·)⟩`` on a softmax table, exact (a
    :class:`~proxrl.types.TableBatch` ``(q̂, d)``): the performance-difference approximation of
    ``V^{π_θ}(ρ) − V^{π_θk}(ρ)``; with one state and ``d = 1``, ``⟨π_θ − π_θk, R̂⟩``."""

    def term(theta: Array, pi: Any, theta_k: Array, batch: Any) -> tuple[Array, dict]:
        diff = softmax.pi(theta) - softmax.pi(theta_k)
        return jnp.sum(softmax.per_state(batch.d) * diff * batch.q), {}

    return term


def table_kl(theta: Array, theta_k: Array, d: Array | float = 1.0) -> Array:
    """``Σ_s d(s) KL(π_θ(·|s), π_θk(·|s))`` on softmax tables (a scalar)."""
    return jnp.sum(jnp.asarray(d) * softmax.kl(theta, theta_k))


def table_kl_term() -> Term:
    """:func:`table_kl` weighted by the batch's state weights ``batch.d`` (a :class:`~proxrl.types.TableBatch`)."""
    return lambda theta, pi, theta_k, batch: (table_kl(theta, theta_k, batch.d), {})


def exponential_weights(eta: Array | float) -> ProxStep:
    """Exponential weights / policy mirror descent, in every state::

        π_{k+1}(a|s) = π_k(a|s) exp(η q̂(s,a)) / Σ_b π_k(b|s) exp(η q̂(s,b))   ⇔   θ_{k+1} = θ_k + η q̂

    Composition: surrogate :func:`~proxrl.prox.surrogates.table`, geometry table KL, solver the closed
    form :func:`~proxrl.prox.solvers.mirror_step`. With ``q̂ = A_θk`` instead of ``q̂ = R`` the update differs
    by a per-state constant in θ only, which ``π_θ`` ignores (the lecture's ``exp(−c)`` argument).
    """
    problem = Problem(table_surrogate(), table_kl_term())
    return prox_step(
        problem, closed_form(lambda theta, batch: mirror_step(theta, batch.q, eta)), moved=table_kl_term()
    )


def policy_gradient(eta: Array | float) -> ProxStep:
    """Softmax policy gradient, ``θ_{k+1}(s,a) = θ_k(s,a) + η d(s) π_θk(a|s) A_θk(s,a)``.

    Composition: surrogate table, geometry Euclidean, solver the closed form ``θ_k + η ∇_θ L_k(θ)|_{θ_k}``
    (:func:`~proxrl.prox.solvers.euclidean_step`): in the expert problem ``∇V = π ⊙ A``; in an MDP with
    ``d = d_ρ^{π_k}`` and ``q̂ = Q^{π_k}``, the policy gradient theorem.
    """

    def formula(theta: Array, batch: TableBatch) -> Array:
        return euclidean_step(theta, softmax.policy_gradient(theta, batch.q, batch.d), eta)

    return prox_step(Problem(table_surrogate(), euclidean()), closed_form(formula), moved=table_kl_term())


def natural_policy_gradient(eta: Array | float, solve: FisherSolve = "pinv") -> ProxStep:
    """Natural policy gradient in gradient form, ``θ_{k+1} = θ_k + η F_θk⁺ ∇_θ V^{π_θk}``.

    Composition: surrogate table, geometry the Fisher quadratic form, solver the closed-form Fisher solve.
    ``F = Σ_s d(s) F(s)`` with ``F(s) = diag π(·|s) − π(·|s)π(·|s)ᵀ`` is block-diagonal over states, so
    ``F⁺`` is taken block by block. ``solve``:

    - ``"pinv"``: the Moore-Penrose pseudo-inverse of each block, keeping singular values above
      ``√ε·σ_max`` (ε the dtype's machine epsilon). A computed singular value σ carries an absolute error of
      about ``ε·σ_max``, so one near the default cutoff (``A·ε·σ_max``) is mostly rounding and inverting it
      throws the state's step; with ``√ε`` every kept σ is known to about half its digits, and an action
      below the cutoff moves by the per-state shift only, so its π stays tiny;
    - ``"lstsq"``: the lecture's least-squares form ``argmin_w Σ_a π(a|s)(∇log π(a|s)ᵀw − A(s,a))²``.

    Under softmax both give ``θ_k + η A_θk`` up to a per-state constant: the EW step.
    """

    def direction(theta_s: Array, q_s: Array, d_s: Array) -> Array:
        if solve == "pinv":
            g_s = d_s * softmax.pi(theta_s) * softmax.advantage(theta_s, q_s)
            rtol = float(jnp.finfo(theta_s.dtype).eps) ** 0.5
            return pinv_solve(d_s * softmax.fisher(theta_s), g_s, rcond=rtol)
        # Weighted regression of A(s,·) on the scores; d(s) > 0 scales both sides and cancels.
        w = lstsq_solve(softmax.score(theta_s), softmax.advantage(theta_s, q_s), softmax.pi(theta_s))
        return jnp.where(d_s > 0, w, 0.0)

    def formula(theta: Array, batch: TableBatch) -> Array:
        d = jnp.broadcast_to(jnp.asarray(batch.d, theta.dtype), theta.shape[:-1])
        flat = theta.reshape(-1, theta.shape[-1])
        w = jax.vmap(direction)(flat, batch.q.reshape(flat.shape), d.reshape(-1)).reshape(theta.shape)
        return euclidean_step(theta, w, eta)

    check_choice("solve", solve, ("pinv", "lstsq"))
    return prox_step(Problem(table_surrogate(), table_kl_term()), closed_form(formula), moved=table_kl_term())


def npg_regularised(eta: Array | float, alpha: Array | float, m: int) -> ProxStep:
    """NPG in regularisation form, solved by ``m`` inner gradient steps of size ``α``::

        θ ← θ_k;  repeat m:  θ ← θ + α ∇_θ [ Σ_s d(s)⟨π_θ − π_k, q̂⟩ − (1/η) Σ_s d(s) KL(π_θ, π_k) ]

    Composition: surrogate table, geometry table KL with β = 1/η, solver
    :func:`~proxrl.prox.solvers.gradient_steps` (plain gradient ascent, m steps). As ``m → ∞`` (small α) it
    reaches the exact maximiser, the EW step ``θ_k + η q̂``. The KL term's curvature in θ is at most
    ``max_s d(s)/(2η)`` (the largest eigenvalue of ``diag π − ππᵀ`` is ≤ ½), so gradient ascent is stable for
    ``α < 4η / max_s d(s)``; low-probability actions, whose curvature is ``≈ d(s)π(a|s)/η``, converge
    slowly — the conditioning problem of softmax PG.
    Extra metric ``inner_grad_norm``: ``‖∇W‖`` at the last inner step (0 at the exact maximiser).
    """
    solver = gradient_steps(optax.sgd(alpha), m)
    return prox_step(
        Problem(table_surrogate(), table_kl_term()), solver, beta=1.0 / eta, moved=table_kl_term()
    )
