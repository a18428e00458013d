"""What every critic shares: TD targets, the value regression loss, Polyak targets.

The lecture's critics are regressions toward targets held fixed during the fit::

    V_φ:  min_φ E[(V_φ(s) − R̂)²],            R̂ = Monte Carlo / n-step / GAE λ-return
    Q_φ:  min_φ E[(Q_φ(s, a) − y)²],          y = r + γ(1 − terminated)·v′

with ``v′`` the algorithm's value of the true next state (``Q_φk(s′, a′)`` for SARSA, ``Σ_a′ π(a′|s′)Q(s′, a′)``
for expected SARSA, ``Q_tar(s′, μ_tar(s′))`` for DDPG, …). Only ``terminated`` stops the bootstrap; a truncated
step (time limit) bootstraps from s′. The fitting loop is :func:`proxrl.prox.solvers.fit`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proxrl.types import Array, Params


def td_target(reward: Array, terminated: Array, next_value: Array, gamma: Array | float) -> Array:
    """The critic's regression target ``y = r + γ(1 − terminated)·v′``, gradients stopped.

    Only ``terminated`` stops bootstrapping: a truncated step (time limit) still bootstraps from s′.
    Shapes: all ``[n]`` (broadcastable).
    """
    discount = gamma * (1.0 - jnp.asarray(terminated, jnp.float32))
    return jax.lax.stop_gradient(reward + discount * next_value)


def value_loss(v: Array, v_old: Array, returns: Array, clip_eps: Array | float | None = None) -> Array:
    """The critic's regression loss ``½·mean (V_φ(s) − R̂)²`` toward the targets R̂.

    With ``clip_eps`` (PPO's "value clipping") the prediction is kept near the old one,
    ``V_clip = V_φk(s) + clip(V_φ(s) − V_φk(s), −ε, ε)``, and the loss is ``½·mean max{(V_φ − R̂)², (V_clip − R̂)²}``.
    """
    unclipped = (v - returns) ** 2
    if clip_eps is None:
        return 0.5 * jnp.mean(unclipped)
    v_clipped = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum(unclipped, (v_clipped - returns) ** 2))


def polyak(target: Params, online: Params, tau: Array | float) -> Params:
    """Soft target update ``φ_tar ← τ·φ + (1 − τ)·φ_tar``, leaf by leaf; τ ∈ (0, 1], τ = 1 copies ``online``."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
