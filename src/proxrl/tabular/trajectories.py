"""Jitted trajectory sampling in a finite MDP: padded, fixed-size, time-major arrays with masks.

``n`` trajectories ``(s_1 ∼ ρ, a_1, r_1, s_2, …, s_τ, a_τ, r_τ)`` under a policy table ``π[S, A]``
(lecture, "Policy Learning in MDPs (Bandit Feedback Case)"), in one of two modes:

``"geometric"`` (default): after every step the trajectory ends with probability ``1 − γ`` (an
independent coin), or when it enters a terminal state; returns are **undiscounted**,
``R_h = Σ_{i=h}^{τ} r_i``, and every step has weight 1. This is unbiased for the lecture's quantities:
the coins give ``Pr(h ≤ τ, s_h = s) = γ^{h−1} Pr(s_h = s)`` under π, so for any ``f``,
``E[Σ_{h≤τ} f(s_h, a_h)] = Σ_s d_ρ^π(s) Σ_a π(a|s) f(s, a)`` with the unnormalised ``d_ρ^π``; and,
the coins being memoryless and independent of the actions, ``E[R_h | s_h, a_h, h ≤ τ] =
Σ_{i≥h} γ^{i−h} E[r_i] = Q^π(s_h, a_h)``. Hence ``Σ_{h≤τ} ∇log π(a_h|s_h)(R_h − b(s_h))`` has mean
``∇_θ V^π(ρ)`` for any baseline ``b`` not computed from the same trajectories. Steps after entering a
terminal (absorbing, zero-reward) state would add terms of zero mean, so stopping there is unbiased
too. The only bias is the cap ``max_len``: it cuts with probability ``γ^max_len`` (reported as
``truncated``).

``"horizon"``: every trajectory runs ``max_len`` steps (or until a terminal state); returns are
discounted, ``R_h = Σ_{i=h}^{H} γ^{i−h} r_i``, and step ``h`` has weight ``γ^{h−1}`` (the lecture's
estimator before its "practical version drops the discount at the front"). Biased by
``O(γ^H/(1−γ))`` from the cut.

Shapes are time-major ``[T, n]`` with ``T = max_len``; ``mask[t, i]`` is true for ``t < τ_i``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from proxrl.errors import check_choice, check_int_at_least
from proxrl.estimators.returns import discounted_returns
from proxrl.tabular.mdp import FiniteMDP, check_policy_table
from proxrl.types import Array, PRNGKey

Mode = Literal["geometric", "horizon"]


class Trajectories(NamedTuple):
    """``n`` padded trajectories, time-major ``[T, n]``.

    ``state``/``action`` int32 (0 past the end), ``reward`` (0 past the end), ``mask`` bool (step
    inside the trajectory), ``weight`` (the step's weight in the estimators: 1, or ``γ^{h−1}`` in
    horizon mode; 0 past the end), ``returns`` ``R_h`` (undiscounted in geometric mode, discounted in
    horizon mode). ``length`` ``[n]``: ``τ``; ``truncated`` ``[n]``: cut by ``max_len``.
    """

    state: Array
    action: Array
    reward: Array
    mask: Array
    weight: Array
    returns: Array
    length: Array
    truncated: Array


def _draw(cdf: Array, u: Array) -> Array:
    """Inverse-CDF draw: the first index whose cumulative probability exceeds ``u·cdf[K−1]`` (``cdf`` ``[K]``,
    ``u`` uniform on [0, 1)). Scaling ``u`` by the total, which rounding leaves a little off 1, keeps every index
    of probability zero undrawn (the last one included)."""
    return jnp.minimum(jnp.sum(cdf <= u * cdf[-1]), cdf.shape[-1] - 1).astype(jnp.int32)


def rollout(
    key: PRNGKey, mdp: FiniteMDP, pi: Array, max_len: int, mode: Mode = "geometric"
) -> tuple[Array, Array, Array, Array, Array]:
    """One trajectory: ``(state[T], action[T], reward[T], mask[T], truncated)`` (a single stream)."""
    cdf_p = jnp.cumsum(mdp.P, axis=-1)
    cdf_pi = jnp.cumsum(pi, axis=-1)
    geometric = mode == "geometric"
    k0, key = jax.random.split(key)
    s0 = _draw(jnp.cumsum(mdp.rho), jax.random.uniform(k0, dtype=mdp.P.dtype))

    def step(carry, k):
        s, alive = carry
        u = jax.random.uniform(k, (3,), dtype=mdp.P.dtype)
        a = _draw(cdf_pi[s], u[0])
        r = mdp.R[s, a]
        s2 = _draw(cdf_p[s, a], u[1])
        go_on = ~mdp.terminal[s2]
        if geometric:
            go_on &= u[2] < mdp.gamma
        out = (jnp.where(alive, s, 0), jnp.where(alive, a, 0), jnp.where(alive, r, 0.0), alive)
        return (s2, alive & go_on), out

    (_, still), (s, a, r, m) = jax.lax.scan(step, (s0, ~mdp.terminal[s0]), jax.random.split(key, max_len))
    return s, a, r, m, still


def collect(
    key: PRNGKey, mdp: FiniteMDP, pi: Array, num_traj: int, max_len: int, mode: Mode = "geometric"
) -> Trajectories:
    """``num_traj`` trajectories from ``ρ`` under ``π[S, A]``, padded to ``max_len`` steps (jit-safe).

    See the module docstring for the two modes and why the geometric mode is unbiased.
    """
    check_policy_table(mdp, pi)
    check_int_at_least("num_traj", num_traj, 1)
    check_int_at_least("max_len", max_len, 1)
    check_choice("mode", mode, ("geometric", "horizon"))
    keys = jax.random.split(key, num_traj)
    one = lambda k: rollout(k, mdp, pi, max_len, mode)
    s, a, r, m, trunc = jax.vmap(one, out_axes=(1, 1, 1, 1, 0))(keys)
    dt = mdp.P.dtype
    if mode == "geometric":
        discount = jnp.ones_like(r)
        weight = m.astype(dt)
    else:
        discount = jnp.full_like(r, mdp.gamma)
        weight = m * mdp.gamma ** jnp.arange(max_len, dtype=dt)[:, None]
    returns = jax.vmap(discounted_returns, in_axes=1, out_axes=1)(r, discount) * m
    return Trajectories(
        state=s,
        action=a,
        reward=r,
        mask=m,
        weight=weight,
        returns=returns,
        length=jnp.sum(m, axis=0),
        truncated=trunc,
    )
