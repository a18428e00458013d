"""Surrogates ``L_k(θ; Â_k)`` of the proximal step, and the extra terms some methods add to it.

The table surrogate of EW/PG/NPG lives with the tables (:func:`proxrl.tabular.steps.table_surrogate`). Each
constructor here returns a term ``(θ, π_θ, θ_k, batch) -> (value, metrics)`` (:data:`proxrl.prox.step.Term`),
an objective to *maximise*. At θ = θ_k every sampled surrogate has the policy gradient as its gradient
(the lecture's "the ratio is 1 and ∇ratio = ∇log π_θ"), so they differ only in how far they trust it.

| surrogate                  | L_k(θ)                                                   | used by                 |
|----------------------------|----------------------------------------------------------|-------------------------|
| :func:`score_function`     | (1/N) Σ_i w_i log π_θ(a_i|s_i) Â_i  (Â fixed)            | REINFORCE, A2C          |
| :func:`ratio`              | (1/N) Σ_i ratio_i Â_i,  ratio = π_θ(a|s)/π_θk(a|s)       | NPG/TRPO, PPO "none"/KL |
| :func:`clipped_ratio`      | (1/N) Σ_i min(ratio_i Â_i, clip(ratio_i, 1±ε) Â_i)       | PPO-clip                |
| :func:`all_actions`        | (1/N) Σ_i Σ_a π_θ(a|s_i) Q(s_i, a)  (Q fixed)            | Q actor-critic, off-policy AC |
| :func:`deterministic`      | (1/N) Σ_i Q(s_i, μ_θ(s_i))  (Q fixed)                    | DPG, DDPG, TD3          |
| :func:`soft`               | (1/N) Σ_i min_j Q_j(s_i, ã_i) − α log π_θ(ã_i|s_i), ã reparameterised | SAC        |

Extras: :func:`entropy_bonus` ``c·(1/N) Σ_i H(π_θ(·|s_i))`` (``−c·KL(π_θ, π_unif)`` up to a constant) and
:func:`value_regression` ``−c_v·ℓ_V(φ)`` (a critic fitted in the same optimiser steps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from proxrl.estimators import normalize_advantages
from proxrl.prox.critic import value_loss
from proxrl.prox.geometry import sampled_kl
from proxrl.prox.step import Term
from proxrl.types import Array, Params

# ------------------------------------------------------------------------------------ per-sample pieces


def importance_ratio(logp: Array, logp_old: Array) -> Array:
    """``ratio = π_θ(a|s)/π_θk(a|s) = exp(log π_θ(a|s) − log π_θk(a|s))``, elementwise."""
    return jnp.exp(logp - logp_old)


def clipped_objective(logp: Array, logp_old: Array, adv: Array, clip_eps: Array | float) -> Array:
    """The clipped objective, per sample, ``min{ ratio·A, clip_{[1−ε, 1+ε]}(ratio)·A }``.

    For A > 0 it stops rewarding increases of ratio beyond 1 + ε; for A < 0 decreases below 1 − ε.
    It is a pessimistic (lower) bound of ratio·A, so where the clip binds the gradient is zero.
    """
    r = importance_ratio(logp, logp_old)
    return jnp.minimum(r * adv, jnp.clip(r, 1.0 - clip_eps, 1.0 + clip_eps) * adv)


def clip_fraction(logp: Array, logp_old: Array, clip_eps: Array | float) -> Array:
    """Fraction of samples whose ratio lies outside [1 − ε, 1 + ε] (where the clip can bind)."""
    return jnp.mean((jnp.abs(importance_ratio(logp, logp_old) - 1.0) > clip_eps).astype(jnp.float32))


def _advantages(batch: Any, normalize: bool) -> Array:
    return normalize_advantages(batch.adv) if normalize else batch.adv


# ------------------------------------------------------------------------------------------ surrogates


def score_function(
    normalize: bool = False,
    mask: Callable[[Any], Array] | None = None,
    dist: Callable[[Any], Any] | None = None,
) -> Term:
    """``L_k(θ) = (1/N) Σ_i w_i·log π_θ(a_i|s_i)·Â_i`` with Â held fixed (``w_i = mask(batch)``, default 1).

    Its gradient is the score-function estimate ``g = (1/N) Σ_i w_i ∇log π_θ(a_i|s_i) Â_i`` at every θ; at
    θ_k it equals the gradient of :func:`ratio`. ``dist`` maps the policy evaluation to a distribution (default:
    it is one). Metric: ``policy_loss`` (−L).
    """

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        adv = jax.lax.stop_gradient(_advantages(batch, normalize))
        logp = (pi if dist is None else dist(pi)).log_prob(batch.action)
        weighted = logp * adv if mask is None else mask(batch) * logp * adv
        value = jnp.mean(weighted)
        return value, {"policy_loss": -value}

    return term


def ratio(normalize: bool = False) -> Term:
    """``L_k(θ) = (1/N) Σ_i ratio_i·Â_i``: the importance-weighted advantage (the lecture's PPO objective
    before clipping or penalty). Metrics: ``policy_loss`` (−L), ``approx_kl`` (:func:`~proxrl.prox.geometry.sampled_kl`)."""

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        logp = pi.log_prob(batch.action)
        value = jnp.mean(importance_ratio(logp, batch.logp_old) * _advantages(batch, normalize))
        return value, {"policy_loss": -value, "approx_kl": sampled_kl(logp, batch.logp_old)}

    return term


def clipped_ratio(clip_eps: Array | float, normalize: bool = False) -> Term:
    """``L_k(θ) = (1/N) Σ_i min(ratio_i·Â_i, clip(ratio_i, 1 − ε, 1 + ε)·Â_i)`` (PPO-clip; the clip is its
    implicit geometry). Metrics: ``policy_loss``, ``approx_kl``, ``clip_frac``."""

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        logp = pi.log_prob(batch.action)
        value = jnp.mean(clipped_objective(logp, batch.logp_old, _advantages(batch, normalize), clip_eps))
        return value, {
            "policy_loss": -value,
            "approx_kl": sampled_kl(logp, batch.logp_old),
            "clip_frac": clip_fraction(logp, batch.logp_old, clip_eps),
        }

    return term


def all_actions(q_values: Callable[[Any], Array]) -> Term:
    """``L_k(θ) = (1/N) Σ_i Σ_a π_θ(a|s_i)·Q(s_i, a)`` with ``Q = q_values(batch)`` ``[N, A]`` held fixed and
    ``π_θ = softmax(logits)`` (the policy evaluation is the logits ``[N, A]``); its gradient is the lecture's
    all-actions ``g = (1/N) Σ_i Σ_a ∇π_θ(a|s_i) Q(s_i, a)``, which does not use the sampled actions.
    Metric ``policy_loss`` (−L)."""

    def term(theta: Params, logits: Array, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        probs = jax.nn.softmax(logits, axis=-1)
        value = jnp.mean(jnp.sum(probs * jax.lax.stop_gradient(q_values(batch)), axis=-1))
        return value, {"policy_loss": -value}

    return term


def deterministic(q: Callable[[Any, Array], Array]) -> Term:
    """``L_k(θ) = (1/N) Σ_i Q_φ(s_i, μ_θ(s_i))`` (φ fixed; ``π_θ`` is the actions ``μ_θ(s_i)``,
    ``q(batch, actions) -> [N]``). Its gradient is the deterministic policy gradient
    ``(1/N) Σ_i ∇_θ μ_θ(s_i)·∇_a Q_φ(s_i, a)|_{a=μ_θ(s_i)}``; the batch's actions are not used.
    Metric ``actor_loss`` (−L)."""

    def term(theta: Params, mu: Array, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        value = jnp.mean(q(batch, mu))
        return value, {"actor_loss": -value}

    return term


def soft(q: Callable[[Any, Array], Array]) -> Term:
    """SAC's ``L_k(θ) = (1/N) Σ_i min_j Q_φj(s_i, ã_i) − α·log π_θ(ã_i|s_i)`` with ã_i = f_θ(s_i, ε_i)
    reparameterised (``π_θ`` is the pair ``(ã, log π_θ(ã|s))``, ``q(batch, ã) -> [J, N]``, α = ``batch.alpha``
    held fixed): the lecture's E_{a∼π_θ}[Q_φ(s, a)] plus the entropy α·H(π_θ) = −α·E[log π_θ].
    Metric ``actor_loss`` (−L)."""

    def term(theta: Params, sample: tuple[Array, Array], theta_k: Params, batch: Any) -> tuple[Array, dict]:
        action, logp = sample
        loss = jnp.mean(jax.lax.stop_gradient(batch.alpha) * logp - jnp.min(q(batch, action), axis=0))
        return -loss, {"actor_loss": loss}

    return term


# ------------------------------------------------------------------------------------------------ extras


def entropy_bonus(coef: Array | float, dist: Callable[[Any], Any] | None = None) -> Term:
    """``c·(1/N) Σ_i H(π_θ(·|s_i))``, i.e. ``−c·KL(π_θ, π_unif)`` up to a constant (``dist`` maps the policy
    evaluation to a distribution; default: it is one). Metric ``entropy``."""

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        entropy = jnp.mean((pi if dist is None else dist(pi)).entropy())
        return coef * entropy, {"entropy": entropy}

    return term


def value_regression(
    critic: Callable[..., Array],
    coef: Array | float,
    clip_eps: Array | float | None = None,
    with_action: bool = False,
) -> Term:
    """``−c_v·ℓ_V(φ)`` with ℓ_V :func:`value_loss` of ``V_φ = critic(θ["critic"], batch.obs)`` (with
    ``with_action``, an action-value critic ``Q_φ = critic(θ["critic"], batch.obs, batch.action)``) toward
    ``batch.returns``: the critic fitted in the same optimiser steps as the policy (A2C, PPO). φ and θ are
    separate variables, so adding it leaves the maximiser in θ unchanged. Metric ``value_loss``."""

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, dict]:
        inputs = (batch.obs, batch.action) if with_action else (batch.obs,)
        loss = value_loss(critic(theta["critic"], *inputs), batch.value_old, batch.returns, clip_eps)
        return -(coef * loss), {"value_loss": loss}

    return term
