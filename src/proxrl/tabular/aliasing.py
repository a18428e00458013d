"""State aliasing: a softmax policy that sees observation classes, not states.

An observation map ``obs[S]`` (integers in ``[0, O)``) sends each state to the class the policy sees; the
policy is one softmax row per class, ``θ[O, A]``, shared by every state of the class::

    π_θ(a|s) = exp θ(obs(s), a) / Σ_b exp θ(obs(s), b)

(Sutton & Barto, Example 13.1, the short corridor: one class for all states,
:func:`proxrl.tabular.mdps.short_corridor`). The identity map ``obs(s) = s`` is the lecture's tabular
softmax. Every term of the table steps aggregates over classes. With ``D(o) = Σ_{s: obs(s)=o} d(s)`` and
``q̄(o, ·) = Σ_{s: obs(s)=o} d(s) q̂(s, ·) / D(o)``::

    Σ_s d(s) ⟨π_θ(·|obs(s)) − π_k(·|obs(s)), q̂(s, ·)⟩ = Σ_o D(o) ⟨π_θ(·|o) − π_k(·|o), q̄(o, ·)⟩
    Σ_s d(s) KL(π_θ(·|obs(s)), π_k(·|obs(s)))      = Σ_o D(o) KL(π_θ(·|o), π_k(·|o))

so each softmax-table step (:mod:`proxrl.tabular.steps`) run on the class table ``TableBatch(q̄, D)``
(:func:`observe`) is that step for the aliased policy: PG on it is the exact gradient ``∇_θ V^{π_θ}(ρ)`` of
the shared θ (the policy gradient theorem, ``Σ_s d(s) Σ_a ∇_θ π_θ(a|obs(s)) Q(s, a)``), the Fisher of the
shared parameterisation ``Σ_s d(s) F(obs(s))`` is ``Σ_o D(o) F(o)`` (so NPG on it is still EW on ``q̄``),
and the regularised form's objective is the lecture's with the KL weighted by ``D``. Terminal states
carry no weight: the episode has ended there and no action matters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.errors import ConfigError
from proxrl.types import Array, TableBatch


def check_observations(obs: Array | np.ndarray, num_states: int, num_obs: int) -> Array:
    """``obs`` as an int32 array ``[S]`` of classes in ``[0, num_obs)``; a one-line :class:`ConfigError`
    otherwise (the values are checked when concrete, the shape always)."""
    if np.shape(obs) != (num_states,):
        raise ConfigError(
            f"obs must map each of the {num_states} states to a class, got shape {np.shape(obs)}"
        )
    if not isinstance(obs, jax.core.Tracer):
        o = np.asarray(obs)
        if not np.issubdtype(o.dtype, np.integer) or o.min() < 0 or o.max() >= num_obs:
            raise ConfigError(
                f"obs must hold integer classes in [0, {num_obs}) (the rows of theta), got {o.tolist()}"
            )
    return jnp.asarray(obs, jnp.int32)


def state_policy(pi_obs: Array, obs: Array) -> Array:
    """``π[S, A]`` from the class table ``π_obs[O, A]``: row ``s`` is ``π_obs[obs(s)]``."""
    return pi_obs[obs]


def observe(batch: TableBatch, obs: Array, num_obs: int, terminal: Array | None = None) -> TableBatch:
    """The class table ``TableBatch(q̄[O, A], D[O])`` of a state table ``TableBatch(q̂[S, A], d[S])``.

    ``D(o) = Σ_{s: obs(s)=o} d(s)`` and ``q̄(o, ·) = Σ_{s: obs(s)=o} d(s) q̂(s, ·)/D(o)`` (0 where ``D(o) = 0``);
    states flagged ``terminal`` are left out (weight 0).
    """
    d = jnp.broadcast_to(jnp.asarray(batch.d, batch.q.dtype), batch.q.shape[:-1])
    if terminal is not None:
        d = jnp.where(terminal, 0.0, d)
    big_d = jax.ops.segment_sum(d, obs, num_segments=num_obs)
    dq = jax.ops.segment_sum(d[:, None] * batch.q, obs, num_segments=num_obs)
    q = jnp.where(big_d[:, None] > 0, dq / jnp.where(big_d > 0, big_d, 1.0)[:, None], 0.0)
    return TableBatch(q=q, d=big_d)
