"""Proximal steps on a softmax table, shared by the expert, bandit and tabular-MDP settings.

Each consumes a :class:`~proxrl.types.TableBatch` ``(q̂, d)`` — an estimate of ``Q^{π_k}(s,·)`` (or of
the reward vector ``R``) and state weights — and maximises, exactly or approximately::

    θ_{k+1} = argmax_θ  Σ_s d(s) ⟨π_θ(·|s) − π_k(·|s), q̂(s,·)⟩ − (1/η)·D(θ, θ_k)

================================  ==========================  ===================================
step                              geometry D                  solver
================================  ==========================  ===================================
:func:`exponential_weights`       Σ_s KL (no d weighting)     closed form ``θ_k + η q̂``
:func:`policy_gradient`           ½‖θ − θ_k‖²                 closed form ``θ_k + η d·π·A``
:func:`natural_policy_gradient`   ½‖θ − θ_k‖²_F               ``θ_k + η F⁺ ∇V`` (pinv or lstsq)
:func:`npg_regularised`           Σ_s d(s) KL                 m inner gradient steps of size α
================================  ==========================  ===================================

``η`` may be a traced value, so one compiled function sweeps a grid of step sizes under ``vmap``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from proxrl.errors import check_choice
from proxrl.geometry.euclidean import step_norm
from proxrl.geometry.kl import table_kl
from proxrl.objectives.table import kl_regularised, surrogate
from proxrl.policies import softmax
from proxrl.solvers.closed_form import euclidean_step, mirror_step
from proxrl.solvers.inner import gradient_ascent
from proxrl.solvers.natural import lstsq_solve, pinv_solve
from proxrl.types import Array, Metrics, PRNGKey, ProxStep, TableBatch

FisherSolve = Literal["pinv", "lstsq"]


def _diagnostics(theta_new: Array, theta_k: Array, batch: TableBatch) -> Metrics:
    """The diagnostics every proximal step reports."""
    return {
        "surrogate_gain": surrogate(theta_new, theta_k, batch),
        "kl": table_kl(theta_new, theta_k, batch.d),
        "step_norm": step_norm(theta_new, theta_k),
    }


def _no_state(params: Array) -> tuple[()]:
    return ()


def exponential_weights(eta: Array | float) -> ProxStep:
    """Exponential weights / policy mirror descent, in every state::

        π_{k+1}(a|s) = π_k(a|s) exp(η q̂(s,a)) / Σ_b π_k(b|s) exp(η q̂(s,b))   ⇔   θ_{k+1} = θ_k + η q̂

    With ``q̂ = A_θk`` instead of ``q̂ = R`` the update differs by a per-state constant in θ only,
    which ``π_θ`` ignores (the lecture's ``exp(−c)`` argument).
    """

    def update(theta: Array, state: tuple[()], batch: TableBatch, key: PRNGKey):
        del key
        theta_new = mirror_step(theta, batch.q, eta)
        return theta_new, state, _diagnostics(theta_new, theta, batch)

    return ProxStep(_no_state, update)


def policy_gradient(eta: Array | float) -> ProxStep:
    """Softmax policy gradient, ``θ_{k+1}(s,a) = θ_k(s,a) + η d(s) π_θk(a|s) A_θk(s,a)``.

    This is ``θ_k + η ∇_θ L_k(θ)|_{θ_k}``: in the expert problem ``∇V = π ⊙ A``; in an MDP with
    ``d = d_ρ^{π_k}`` and ``q̂ = Q^{π_k}``, the policy gradient theorem.
    """

    def update(theta: Array, state: tuple[()], batch: TableBatch, key: PRNGKey):
        del key
        g = softmax.policy_gradient(theta, batch.q, batch.d)
        theta_new = euclidean_step(theta, g, eta)
        return theta_new, state, _diagnostics(theta_new, theta, batch)

    return ProxStep(_no_state, update)


def natural_policy_gradient(eta: Array | float, solve: FisherSolve = "pinv") -> ProxStep:
    """Natural policy gradient in gradient form, ``θ_{k+1} = θ_k + η F_θk⁺ ∇_θ V^{π_θk}``.

    ``F = Σ_s d(s) F(s)`` with ``F(s) = diag π(·|s) − π(·|s)π(·|s)ᵀ`` is block-diagonal over states, so
    ``F⁺`` is taken block by block. ``solve``:

    - ``"pinv"``: the Moore-Penrose pseudo-inverse of each block, keeping singular values above
      ``√ε·σ_max`` (ε the dtype's machine epsilon). A computed singular value σ carries an absolute error of
      about ``ε·σ_max``, so one near the default cutoff (``A·ε·σ_max``) is mostly rounding: inverted, it sent
      one state's step to ±10¹⁵·noise once some π(a|s) fell near 10⁻¹⁵ (slippery FrozenLake, float64,
      iteration 46 on one host). With ``√ε`` every kept σ is known to about half its digits; an action
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

    def update(theta: Array, state: tuple[()], batch: TableBatch, key: PRNGKey):
        del key
        d = jnp.broadcast_to(jnp.asarray(batch.d, theta.dtype), theta.shape[:-1])
        flat = theta.reshape(-1, theta.shape[-1])
        w = jax.vmap(direction)(flat, batch.q.reshape(flat.shape), d.reshape(-1)).reshape(theta.shape)
        theta_new = euclidean_step(theta, w, eta)
        return theta_new, state, _diagnostics(theta_new, theta, batch)

    check_choice("solve", solve, ("pinv", "lstsq"))
    return ProxStep(_no_state, update)


def npg_regularised(eta: Array | float, alpha: Array | float, m: int) -> ProxStep:
    """NPG in regularisation form, solved by ``m`` inner gradient steps of size ``α``::

        θ ← θ_k;  repeat m:  θ ← θ + α ∇_θ [ Σ_s d(s)⟨π_θ − π_k, q̂⟩ − (1/η) Σ_s d(s) KL(π_θ, π_k) ]

    As ``m → ∞`` (small α) it reaches the exact maximiser, the EW step ``θ_k + η q̂``. The KL term's
    curvature in θ is at most ``max_s d(s)/(2η)`` (the largest eigenvalue of ``diag π − ππᵀ`` is ≤ ½),
    so gradient ascent is stable for ``α < 4η / max_s d(s)``; low-probability actions, whose curvature
    is ``≈ d(s)π(a|s)/η``, converge slowly — the conditioning problem of softmax PG.
    Extra metric ``inner_grad_norm``: ``‖∇W‖`` at the last inner step (0 at the exact maximiser).
    """

    def update(theta: Array, state: tuple[()], batch: TableBatch, key: PRNGKey):
        del key
        objective = lambda th: kl_regularised(th, theta, batch, eta)
        theta_new, grad_norm = gradient_ascent(objective, theta, alpha, m)
        metrics = _diagnostics(theta_new, theta, batch)
        metrics["inner_grad_norm"] = grad_norm
        return theta_new, state, metrics

    return ProxStep(_no_state, update)
