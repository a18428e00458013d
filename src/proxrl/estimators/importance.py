"""Importance-weighted (inverse-propensity) estimators of a reward vector from bandit feedback.

With ``a_1..a_n ∼ π_k`` and observed rewards ``r_1..r_n`` (lecture, "The design of EXP3" and
"NPG (regularization form) + Bandit Feedback")::

    R̂_k(a) = (1/n) Σ_i (r_i − b − c(a)) 1{a_i = a} / π_k(a)  +  c(a)

Unbiased up to the constant baseline: ``E[R̂_k(a)] = R(a) − b`` for every ``a`` with ``π_k(a) > 0``
(``E[1{a_i = a}] = π_k(a)``). The baseline ``b`` shifts every arm equally, so the softmax step is
unchanged in expectation but its variance changes; the shift ``c(a)`` is a per-arm control variate.
``c ≡ 1`` with rewards in ``[0, 1]`` is the loss-based estimator ``1 − (1 − r)1{a_i = a}/π_k(a) ≤ 1``
used by EXP3's standard analysis.
"""

from __future__ import annotations

import jax.numpy as jnp

from proxrl.types import Array


def ipw_rewards(
    actions: Array, rewards: Array, pi_k: Array, baseline: Array | float = 0.0, shift: Array | float = 0.0
) -> Array:
    """``R̂_k(a)``, shape ``[A]``, from ``actions[n]`` (ints), ``rewards[n]`` and ``π_k`` ``[A]``."""
    num_actions = pi_k.shape[-1]
    c = jnp.broadcast_to(jnp.asarray(shift, pi_k.dtype), (num_actions,))
    drawn = actions[:, None] == jnp.arange(num_actions)  # [n, A]: 1{a_i = a}
    centred = (rewards - baseline)[:, None] - c[None, :]  # r_i − b − c(a)
    # Divide only where a was drawn: an undrawn arm's π_k(a) may underflow to 0 (0/0 otherwise).
    weighted = jnp.where(drawn, centred / jnp.where(drawn, pi_k, 1.0), 0.0)
    return jnp.mean(weighted, axis=0) + c
