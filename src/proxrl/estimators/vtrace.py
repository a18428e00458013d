"""V-trace (Espeholt et al., 2018, IMPALA): value targets and advantages from data of a behaviour policy μ that
lags behind the policy π being learned, with truncated importance weights.

For one time-major stream ``[T]`` collected under μ, with ``ρ_t = π(a_t|s_t)/μ(a_t|s_t)`` (the lecture's
importance weight, here between the learner's policy and the stale one that acted)::

    ρ̄_t = min(ρ̄, ρ_t),    c_t = λ·min(c̄, ρ_t)
    δ_t = ρ̄_t·(r_t + discount_t·V(s_{t+1}) − V(s_t))
    v_t = V(s_t) + δ_t + discount_t·c_t·(v_{t+1} − V(s_{t+1}))          (within the episode; v_T = V(s_T))
    Â_t = ρ̄_t·(r_t + discount_t·v_{t+1} − V(s_t))                        (the policy's advantage)

On-policy (ρ ≡ 1, ρ̄ ≥ 1, c̄ ≥ 1) ``v_t − V(s_t)`` is GAE(λ)'s advantage and ``v_t`` its λ-return. Episode ends
are handled as in :func:`proxrl.estimators.gae`: a termination zeroes ``discount_t``; ``reset_t`` (terminated
or truncated) stops the recursion, and v_{t+1} is then V at the true next observation.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.types import Array


class VTrace(NamedTuple):
    """V-trace's outputs for a stream ``[T]``."""

    vs: Array
    """Value targets v_t."""
    pg_adv: Array
    """Policy advantages Â_t = ρ̄_t·(r_t + discount_t·v_{t+1} − V(s_t))."""
    rho: Array
    """Truncated importance weights ρ̄_t = min(ρ̄, π/μ)."""
    q_adv: Array
    """The advantage before its weight, r_t + discount_t·v_{t+1} − V(s_t) (so ``pg_adv = rho·q_adv``)."""


def vtrace(
    rewards: Array,
    discount_t: Array,
    v_t: Array,
    v_next: Array,
    log_rho: Array,
    lam: Array | float = 1.0,
    rho_bar: Array | float = 1.0,
    c_bar: Array | float = 1.0,
    reset_t: Array | None = None,
) -> VTrace:
    """V-trace targets and advantages of one stream (all inputs ``[T]``; ``log_rho = log π(a|s) − log μ(a|s)``;
    ``v_next`` is V of the true next observation; see the module docstring for the equations)."""
    rho = jnp.exp(log_rho)
    rho_t = jnp.minimum(rho_bar, rho)
    c_t = lam * jnp.minimum(c_bar, rho)
    delta = rho_t * (rewards + discount_t * v_next - v_t)
    cont = jnp.ones_like(rewards) if reset_t is None else 1.0 - jnp.asarray(reset_t, jnp.float32)

    def step(acc: Array, xs: tuple[Array, Array]) -> tuple[Array, Array]:
        d, trace = xs
        acc = d + trace * acc
        return acc, acc

    _, diff = jax.lax.scan(step, jnp.zeros_like(delta[0]), (delta, discount_t * c_t * cont), reverse=True)
    vs = v_t + diff
    following = jnp.concatenate([vs[1:], v_next[-1:]])  # v_{t+1}; v_T = V(s_T) at the end of the stream
    vs_next = jnp.where(cont > 0, following, v_next)
    q_adv = rewards + discount_t * vs_next - v_t
    return VTrace(vs, rho_t * q_adv, rho_t, q_adv)
