"""Return targets for a single stream of experience: Monte Carlo, TD(0) and n-step.

Every function takes one time-major stream of length ``T`` (shapes ``[T]``); callers ``jax.vmap``
over the batch axis. Termination is carried by the per-step discount

    discount_t = γ·(1 − terminated_t),

so a terminal step never bootstraps. Truncation (a time limit, a rollout cut) is *not* termination:
the state s_{t+1} still has value V(s_{t+1}), so the target bootstraps from it. A stream produced by an
auto-resetting environment may hold several episodes; pass ``reset_t`` (the episode ended at ``t`` by
termination *or* truncation) so that no recursion runs across an episode boundary, and pass
``v_next[t] = V(s_{t+1})`` evaluated at the *true* next observation (``Transition.next_obs``), never at
the reset observation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from proxrl.errors import check_int_at_least
from proxrl.types import Array


def discounted_returns(
    rewards: Array,
    discount_t: Array,
    bootstrap: Array | float = 0.0,
    *,
    reset_t: Array | None = None,
    v_next: Array | None = None,
) -> Array:
    """Discounted return-to-go, the Monte Carlo estimate R_h of Q^π(s_h, a_h).

        G_t = r_t + discount_t·G_{t+1},    G_T = bootstrap.

    With ``reset_t`` the recursion stops at episode ends: where ``reset_t`` is true,

        G_t = r_t + discount_t·V(s_{t+1}),

    which is ``r_t`` after a termination (discount_t = 0) and bootstraps from ``v_next[t]`` after a
    truncation (from 0 if ``v_next`` is None, the pure Monte Carlo return of the cut episode).

    Args:
      rewards: r_t, shape ``[T]``.
      discount_t: γ·(1 − terminated_t), shape ``[T]``.
      bootstrap: G_T, the value after the last step (e.g. V(s_T) if the stream was cut there), scalar.
      reset_t: optional, episode ended at ``t`` (terminated or truncated), bool ``[T]``.
      v_next: optional, V(s_{t+1}) at the true next observation, shape ``[T]``; used only where
        ``reset_t`` is true.

    Returns:
      G_t, shape ``[T]``.
    """
    rewards = jnp.asarray(rewards)
    last = jnp.asarray(bootstrap, dtype=rewards.dtype)
    ended = jnp.zeros_like(rewards, dtype=bool) if reset_t is None else jnp.asarray(reset_t, dtype=bool)
    v_end = jnp.zeros_like(rewards) if v_next is None else jnp.asarray(v_next, dtype=rewards.dtype)

    def step(g_next: Array, xs: tuple[Array, Array, Array, Array]) -> tuple[Array, Array]:
        r, d, end, v = xs
        g = r + d * jnp.where(end, v, g_next)
        return g, g

    _, g = jax.lax.scan(step, last, (rewards, discount_t, ended, v_end), reverse=True)
    return g


def td_targets(rewards: Array, discount_t: Array, v_next: Array) -> Array:
    """One-step TD target ``r_t + discount_t·V(s_{t+1})``, shape ``[T]`` (all inputs ``[T]``)."""
    return rewards + discount_t * v_next


def n_step_returns(
    rewards: Array,
    discount_t: Array,
    v_next: Array,
    n: int,
    *,
    reset_t: Array | None = None,
) -> Array:
    """n-step bootstrapped targets.

        G_t^(n) = r_t + γ_t r_{t+1} + … + (γ_t⋯γ_{t+m−2}) r_{t+m−1} + (γ_t⋯γ_{t+m−1})·V(s_{t+m}),

    with γ_t = discount_t and m = min(n, T − t, steps to the end of the episode): the window is
    truncated at the end of the stream and (with ``reset_t``) at an episode end, where it bootstraps
    from ``v_next`` of that step. n = 1 is the TD target, n ≥ T (no resets) the Monte Carlo return
    bootstrapped from V(s_T). Computed as ``n − 1`` applications of the backward recursion

        G_t^(k) = r_t + γ_t·G_{t+1}^(k−1),    G^(1)_t = r_t + γ_t·V(s_{t+1}),

    where G_{t+1}^(k−1) is replaced by V(s_{t+1}) past the end of the stream or of the episode.

    Args:
      rewards: r_t, shape ``[T]``.
      discount_t: γ·(1 − terminated_t), shape ``[T]``.
      v_next: V(s_{t+1}) at the true next observation, shape ``[T]``.
      n: the number of steps, a Python int ≥ 1.
      reset_t: optional, episode ended at ``t`` (terminated or truncated), bool ``[T]``.

    Returns:
      G_t^(n), shape ``[T]``.
    """
    n = check_int_at_least("n", n, 1)
    rewards, discount_t, v_next = jnp.asarray(rewards), jnp.asarray(discount_t), jnp.asarray(v_next)
    stop = jnp.zeros_like(rewards, dtype=bool).at[-1].set(True)
    if reset_t is not None:
        stop = stop | jnp.asarray(reset_t, dtype=bool)

    def extend(_: int, g: Array) -> Array:
        g_next = jnp.concatenate([g[1:], v_next[-1:]])
        return rewards + discount_t * jnp.where(stop, v_next, g_next)

    return jax.lax.fori_loop(0, n - 1, extend, td_targets(rewards, discount_t, v_next))


def first_episode(done: Array) -> Array:
    """``within[t, b]``: no step before ``t`` ended environment ``b``'s episode, i.e. step ``t`` belongs to the
    first episode of a time-major ``done[T, B]`` (its end included): ``Σ_{s≤t} done_s − done_t = 0``."""
    return jnp.cumsum(done, axis=0) - done == 0
