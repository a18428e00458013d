"""Advantage estimators Â_t ≈ A^{π_k}(s_t, a_t) for a single stream: TD error, GAE(λ), Q-based.

The lecture lists, for a trajectory s_1 = s, a_1 = a, r_1, s_2, …, the estimators

    r_1 + γV_φ(s_2) − V_φ(s_1)                          TD error                 ``td_errors``
    r_1 + γr_2 + γ²V_φ(s_3) − V_φ(s_1)                  n-step (minus V)         ``n_step_returns − v_t``
    Q_φ(s_1, a_1) − E_{a'∼π_k(·|s_1)}[Q_φ(s_1, a')]     Q-based                  ``q_advantages``

and GAE(λ) mixes all the n-step ones geometrically. Shapes are time-major ``[T]`` for one stream;
callers ``jax.vmap`` over the batch axis. Termination is carried by ``discount_t = γ·(1 − terminated_t)``;
``v_next[t] = V(s_{t+1})`` is evaluated at the *true* next observation, so a truncated step bootstraps
correctly even when the environment has already auto-reset; ``reset_t`` marks episode ends (terminated
or truncated) so that no recursion runs into the next episode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proxrl.types import Array


def td_errors(rewards: Array, discount_t: Array, v_t: Array, v_next: Array) -> Array:
    """One-step TD errors, the A2C advantage estimate.

        δ_t = r_t + discount_t·V(s_{t+1}) − V(s_t).

    Args:
      rewards: r_t, shape ``[T]``.
      discount_t: γ·(1 − terminated_t), shape ``[T]``.
      v_t: V(s_t), shape ``[T]``.
      v_next: V(s_{t+1}) at the true next observation, shape ``[T]``.

    Returns:
      δ_t, shape ``[T]``.
    """
    return rewards + discount_t * v_next - v_t


def gae(
    rewards: Array,
    discount_t: Array,
    v_t: Array,
    v_next: Array,
    lam: Array | float,
    reset_t: Array | None = None,
) -> tuple[Array, Array]:
    """Generalised advantage estimation, GAE(λ).

        δ_t = r_t + discount_t·V(s_{t+1}) − V(s_t)
        Â_t = δ_t + discount_t·λ·(1 − reset_t)·Â_{t+1},    Â_T = 0
            = Σ_{l≥0} (Π_{j<l} λ·discount_{t+j}) δ_{t+l}   (within the episode)

    and the value targets ``returns_t = Â_t + V(s_t)`` (the λ-return). λ = 0 gives the TD error δ_t;
    λ = 1 gives the Monte Carlo return minus V(s_t) (bootstrapped from V at a truncation or at the end
    of the stream). λ trades the bias of V_φ against the variance of the sampled rewards.

    Episode ends: a termination sets discount_t = 0, which both drops V(s_{t+1}) from δ_t and stops
    the recursion. A truncation keeps discount_t = γ, so δ_t bootstraps from ``v_next[t]`` (which must
    be V of the true final observation, not of the reset one); ``reset_t[t] = True`` then stops the
    recursion from reading Â_{t+1}, which belongs to the next episode. Without ``reset_t`` the stream
    is taken to contain no truncation before its last step.

    Args:
      rewards: r_t, shape ``[T]``.
      discount_t: γ·(1 − terminated_t), shape ``[T]``.
      v_t: V(s_t), shape ``[T]``.
      v_next: V(s_{t+1}) at the true next observation, shape ``[T]``.
      lam: λ ∈ [0, 1], a scalar (may be traced, so it can be vmapped over).
      reset_t: optional, the episode ended at ``t`` (terminated or truncated), bool ``[T]``.

    Returns:
      ``(advantages, returns)``, both shape ``[T]``.
    """
    delta = td_errors(rewards, discount_t, v_t, v_next)
    trace = discount_t * lam
    if reset_t is not None:
        trace = jnp.where(jnp.asarray(reset_t, dtype=bool), 0.0, trace)

    def step(adv_next: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        d, c = xs
        adv = d + c * adv_next
        return adv, adv

    _, adv = jax.lax.scan(step, jnp.zeros_like(delta[0]), (delta, trace), reverse=True)
    return adv, adv + v_t


def q_advantages(q_values: Array, probs: Array, actions: Array) -> Array:
    """Advantage from a critic over a finite action set.

        Â(s, a) = Q_φ(s, a) − Σ_{a'} π(a'|s)·Q_φ(s, a'),

    the lecture's ``Q_φ(s_1, a_1) − E_{a'∼π_k}[Q_φ(s_1, a')]``: the baseline V_φ(s) = E_π[Q_φ(s, ·)]
    is the critic's own state value, so the estimate has mean zero under π.

    Args:
      q_values: Q_φ(s, ·), shape ``[..., A]``.
      probs: π(·|s), shape ``[..., A]``.
      actions: a, integer, shape ``[...]``.

    Returns:
      Â(s, a), shape ``[...]``.
    """
    q_taken = jnp.take_along_axis(q_values, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return q_taken - jnp.sum(probs * q_values, axis=-1)


def normalize_advantages(adv: Array, eps: float = 1e-8) -> Array:
    """Standardise over every entry: ``(Â − mean Â) / (std Â + eps)``, same shape as ``adv``.

    The usual PPO detail (done per minibatch or per batch); it rescales the step size, and the
    subtracted mean is a constant baseline, so the gradient stays unbiased up to that scale.
    """
    return (adv - jnp.mean(adv)) / (jnp.std(adv) + eps)
