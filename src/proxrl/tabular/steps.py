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

import math
from typing import Any, Literal

import jax
import jax.numpy as jnp
import optax

from proxrl.errors import check_choice
from proxrl.prox import Problem, ProxStep, Term, prox_step
from proxrl.prox.geometry import euclidean
from proxrl.prox.solvers import (
    closed_form,
    conjugate_gradient,
    euclidean_step,
    gradient_steps,
    mirror_step,
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

    Composition: surrogate :func:`table_surrogate`, geometry table KL, solver the closed
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


def newton_schulz_pinv(m: Array, iters: int) -> Array:
    """The Moore-Penrose pseudo-inverse ``M⁺`` of ``m`` ``[P, P]`` by the Newton-Schulz (Ben-Israel-Cohen)
    iteration ``X ← X(2I − MX)`` from ``X_0 = α Mᵀ``, ``α = 1/(‖M‖_1‖M‖_∞) ≤ 1/σ_max²``, ``iters`` times.

    Each iteration squares the residual ``1 − α σ²`` of every nonzero singular value σ and keeps the zero ones
    at zero (``X`` stays a polynomial in ``MᵀM`` times ``Mᵀ``), so after ``k`` iterations the error is
    ``(1 − α σ_min²)^(2^k)`` for the smallest nonzero σ; the iteration corrects its own rounding. Matrix
    products only: no LAPACK call, whose batched kernels in jaxlib 0.10 split a vmapped factorisation across
    XLA's CPU thread pool and can deadlock it when two run at once (proxrl.deep.networks.orthonormal_columns).
    """
    alpha = 1.0 / jnp.maximum(jnp.max(jnp.sum(jnp.abs(m), 0)) * jnp.max(jnp.sum(jnp.abs(m), 1)), 1e-300)
    eye2 = 2.0 * jnp.eye(m.shape[-1], dtype=m.dtype)
    x, _ = jax.lax.scan(lambda x, _: (x @ (eye2 - m @ x), None), alpha * m.T, None, length=iters)
    return x


def fisher_direction(theta_s: Array, q_s: Array, d_s: Array, solve: FisherSolve = "pinv") -> Array:
    """``F(s)⁺ g(s)`` for one state's block, ``F(s) = d(s)(diag π − ππᵀ)``, ``g(s) = d(s) π ⊙ A(s,·)``, ``[A]``.

    Solved in log-space so that it stays exact when some ``π(a|s)`` underflows to 0. Row ``a`` of the
    Fisher block is ``d(s) π(a) (e_a − π)ᵀ`` and row ``a`` of the gradient is ``d(s) π(a) A(s, a)``: both
    carry the factor ``d(s) π(a) = d(s) exp(log π(a))``, which is positive for every finite θ. Dividing it
    out (analytically, never by a computed ``π(a)``) leaves the equivalent system::

        S w = A(s, ·),    S = I − 1 πᵀ  (row a: the score ∇_θ log π(a|s) = e_a − π)

    with the same solution set ``{A(s,·) + c 1}`` (``⟨π, A⟩ = 0``). ``S`` is a projector (``S² = S``), so
    its singular values are one 0 (the direction ``1``, a per-state shift) and the rest in
    ``[1, √(2(A−1))]``: well conditioned, whatever π is. The plain block solve fails instead once ``π(a)``
    is below float64's smallest positive number (≈ 5e-324, reached when ``θ(s,a)`` trails the best by about
    745): row and right side both round to 0, so the minimum-norm solve moves ``θ(a)`` by the per-state shift
    rather than by ``A(s, a)``, and a best action whose probability has underflowed never comes back — the
    departures from EW, and the violations of Agarwal et al.'s bound, that the tests measure for it.
    ``solve`` (both without LAPACK, see :func:`newton_schulz_pinv`):

    - ``"pinv"``: ``S⁺ A``, the pseudo-inverse of the rescaled Fisher block by :func:`newton_schulz_pinv`
      (``⌈log₂(150·A)⌉ + 2`` iterations: with ``α ≥ 1/(2(A−1))`` and ``σ_min ≥ 1`` that leaves an error below
      ``e^{−75}``);
    - ``"lstsq"``: the lecture's least-squares form ``argmin_w Σ_a π(a|s)(∇log π(a|s)ᵀw − A(s,a))²``.
      The regression is consistent (``w = A`` has zero residual), so its minimisers are the solutions of
      ``∇log π(a|s)ᵀw = A(s,a)`` for every ``a``, whatever the positive weights ``π(a|s)``: each weighted
      row is divided by ``√π(a|s)`` and the unweighted problem ``min ‖S w − A‖²`` solved by conjugate
      gradients on its normal equations ``SᵀS w = SᵀA`` from ``w = 0`` (CGLS;
      :func:`~proxrl.prox.solvers.conjugate_gradient`, ``A + 1`` iterations: ``SᵀS`` has at most two distinct
      nonzero eigenvalues, so CG is exact after two in exact arithmetic; it stops once ``‖SᵀS w − SᵀA‖`` is
      within ``8ε·‖SᵀA‖``).

    Both return the minimum-norm solution ``A(s,·) − mean_a A(s,a)`` (the iterates stay in the row space,
    ``1^⊥``); ``d(s) = 0`` (a state of zero weight, whose block is 0) gives ``w = 0``.
    """
    score = softmax.score(theta_s)
    adv = softmax.advantage(theta_s, q_s)
    n = theta_s.shape[-1]
    if solve == "pinv":
        w = newton_schulz_pinv(score, math.ceil(math.log2(150 * n)) + 2) @ adv
    else:
        b = score.T @ adv
        tol = (8 * float(jnp.finfo(b.dtype).eps)) ** 2 * (b @ b)  # stop at a rounding-level residual
        w, _ = conjugate_gradient(lambda v: score.T @ (score @ v), b, iters=n + 1, tol=tol)
    return jnp.where(d_s > 0, w, 0.0)


def natural_policy_gradient(eta: Array | float, solve: FisherSolve = "pinv") -> ProxStep:
    """Natural policy gradient in gradient form, ``θ_{k+1} = θ_k + η F_θk⁺ ∇_θ V^{π_θk}`` (lecture, "NPG
    (Gradient-Update Form)": ``F_θ = Σ_s d_ρ^{π_θ}(s) F_θ(s)``, ``F_θ(s) = Σ_a π(a|s) ∇log π ∇log πᵀ``).

    Composition: surrogate table, geometry the Fisher quadratic form, solver the closed-form Fisher solve.
    ``F = Σ_s d(s) F(s)`` with ``F(s) = diag π(·|s) − π(·|s)π(·|s)ᵀ`` is block-diagonal over states, so
    ``F⁺∇V`` is taken block by block (:func:`fisher_direction`, in log-space: exact when some ``π(a|s)``
    underflows). ``solve``: ``"pinv"`` (pseudo-inverse) or ``"lstsq"`` (the lecture's least-squares form).

    Under softmax both give ``θ_k + η (A_θk − mean_a A_θk)``: the EW step ``θ_k + η Q_θk`` up to a per-state
    constant, so ``π_{k+1}`` is EW's at every η (tested over a grid of η up to the largest the lecture's
    command accepts, on random MDPs, through iterates where some ``π(a|s)`` is 0 in float64).
    """

    def formula(theta: Array, batch: TableBatch) -> Array:
        d = jnp.broadcast_to(jnp.asarray(batch.d, theta.dtype), theta.shape[:-1])
        flat = theta.reshape(-1, theta.shape[-1])
        direction = jax.vmap(lambda t, q, ds: fisher_direction(t, q, ds, solve))
        w = direction(flat, batch.q.reshape(flat.shape), d.reshape(-1)).reshape(theta.shape)
        return euclidean_step(theta, w, eta)

    check_choice("solve", solve, ("pinv", "lstsq"))
    return prox_step(Problem(table_surrogate(), table_kl_term()), closed_form(formula), moved=table_kl_term())


def npg_regularised(eta: Array | float, alpha: Array | float, m: int) -> ProxStep:
    """NPG in regularisation form, solved by ``m`` inner gradient steps of size ``α``::

        θ ← θ_k;  repeat m:  θ ← θ + α ∇_θ [ Σ_s d(s)⟨π_θ − π_k, q̂⟩ − (1/η) Σ_s d(s) KL(π_θ, π_k) ]

    Composition: surrogate table, geometry table KL with β = 1/η, solver
    :func:`~proxrl.prox.solvers.gradient_steps` (plain gradient ascent, m steps). As ``m → ∞`` (small α) it
    reaches the exact maximiser, the EW step ``θ_k + η q̂``. The KL term's curvature in θ is at most
    ``max_s d(s)/(2η)`` (the largest eigenvalue of ``diag π − ππᵀ`` is ≤ ½), so gradient ascent on it alone is
    stable for ``α < 4η / max_s d(s)``; the surrogate adds curvature of order ``d(s)·max|q̂|``, so the rule of
    thumb used here is ``α · max_s d(s) / η ≲ 1`` (a guide, not a guarantee;
    :func:`proxrl.tabular.exact.run` defaults α to η(1−γ), which meets it since ``Σ_s d(s) = 1/(1−γ)``).
    Low-probability actions, whose curvature is ``≈ d(s)π(a|s)/η``, converge slowly — the conditioning problem
    of softmax PG.
    Extra metric ``inner_grad_norm``: ``‖∇W‖`` at the last inner step (0 at the exact maximiser).
    """
    solver = gradient_steps(optax.sgd(alpha), m)
    return prox_step(
        Problem(table_surrogate(), table_kl_term()), solver, beta=1.0 / eta, moved=table_kl_term()
    )
