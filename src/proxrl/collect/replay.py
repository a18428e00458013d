"""A functional circular replay buffer: the *collect* step of off-policy methods (DDPG, TD3, SAC, …).

The lecture's actor-critic with a replay buffer::

    for k = 1, 2, ...:
        collect samples with π_θk and place them in the replay buffer      ← replay_add
        sample a batch {(s_i, a_i, r_i, s'_i)}_{i=1}^n from the buffer       ← replay_sample
        update φ (critic) and θ (actor) on that batch

The buffer is a pytree (:class:`Replay`), so it lives in a learner's state, jits, vmaps over seeds and
is saved with checkpoints::

    buf = replay_init(example, capacity)        # example: one Transition, no batch axis
    buf = replay_add(buf, flat)                 # flat: Transition [n, ...]; a [T, B] rollout is
                                                #   flattened to [T·B] first (flatten_rollout)
    batch = replay_sample(buf, key, 256)        # Transition [256, ...]

``terminated`` and ``truncated`` are stored separately (the critic target bootstraps through a
truncation, never through a termination), and ``next_obs`` is the true next observation.
Shapes are static, so the checks of :func:`replay_add` run at trace time and raise
:class:`~proxrl.errors.ConfigError` (one line, naming the field, expected and got).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.errors import ConfigError, check_int_at_least
from proxrl.types import Array, PRNGKey, Transition


class Replay(NamedTuple):
    """A circular buffer of transitions.

    ``data``: a :class:`~proxrl.types.Transition` whose every field has a leading capacity axis ``[C, ...]``;
    ``pos``: the index the next transition is written to (int32, ``0 ≤ pos < C``);
    ``size``: how many entries hold data (int32, ``0 ≤ size ≤ C``). Entries ``[0, size)`` are the stored
    ones: the buffer fills from index 0 and only wraps once full, overwriting the oldest entry first.
    """

    data: Transition
    pos: Array
    size: Array

    @property
    def capacity(self) -> int:
        """C, a Python int (static)."""
        return int(jax.tree.leaves(self.data)[0].shape[0])


def check_replay(capacity: int, batch_size: int) -> tuple[int, int]:
    """Host-side check for configs: both integers ≥ 1 and ``capacity ≥ batch_size`` (one-line ConfigError)."""
    capacity = check_int_at_least("buffer_size", capacity, 1)
    batch_size = check_int_at_least("batch_size", batch_size, 1)
    if capacity < batch_size:
        raise ConfigError(f"buffer_size must be >= batch_size = {batch_size}, got {capacity}")
    return capacity, batch_size


def replay_init(example: Transition, capacity: int) -> Replay:
    """An empty buffer of ``capacity`` entries shaped and typed like ``example`` (one step, no batch axis).

    Every field is zero-filled ``[capacity, *example_field.shape]`` with the example's dtype.
    """
    capacity = check_int_at_least("buffer_size", capacity, 1)
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype), example)
    return Replay(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def _check_batch(buf: Replay, batch: Transition) -> int:
    """The number n of transitions in ``batch`` after checking each field against the buffer (static)."""
    n = None
    for name in Transition._fields:
        stored, new = getattr(buf.data, name), getattr(batch, name)
        want_shape, want_dtype = stored.shape[1:], stored.dtype
        shape, dtype = jnp.shape(new), jnp.asarray(new).dtype
        if len(shape) != len(want_shape) + 1 or tuple(shape[1:]) != tuple(want_shape):
            want = "(" + ", ".join(["n", *map(str, want_shape)]) + ("," if not want_shape else "") + ")"
            raise ConfigError(
                f"replay_add: field {name!r} must have shape {want} (n transitions), got {tuple(shape)}"
            )
        if dtype != want_dtype:
            raise ConfigError(f"replay_add: field {name!r} must have dtype {want_dtype}, got {dtype}")
        if n is None:
            n = int(shape[0])
        elif shape[0] != n:
            raise ConfigError(
                f"replay_add: every field must hold the same number of transitions, got {n} and {shape[0]} ({name!r})"
            )
    return int(n or 0)


def replay_add(buf: Replay, batch: Transition) -> Replay:
    """Write ``batch`` (a :class:`Transition` with leading axis n) at ``pos``, wrapping around. Pure; jittable.

    Entry ``i`` of the batch goes to index ``(pos + i) mod C``; ``pos ← (pos + n) mod C``,
    ``size ← min(size + n, C)``. If ``n > C`` only the last C transitions are kept. Dtypes and shapes
    must match the buffer's exactly (ConfigError naming the field otherwise; cast before adding).
    """
    n = _check_batch(buf, batch)
    cap = buf.capacity
    if n == 0:
        return buf
    if n > cap:  # only the newest C survive; writing them all would leave the order of scatters undefined
        batch = jax.tree.map(lambda x: x[n - cap :], batch)
        buf = buf._replace(pos=(buf.pos + (n - cap)) % cap)
        n = cap
    idx = (buf.pos + jnp.arange(n, dtype=jnp.int32)) % cap
    data = jax.tree.map(lambda stored, new: stored.at[idx].set(new), buf.data, batch)
    return Replay(data, (buf.pos + n) % cap, jnp.minimum(buf.size + n, cap).astype(jnp.int32))


def replay_sample(buf: Replay, key: PRNGKey, batch_size: int) -> Transition:
    """``batch_size`` transitions drawn uniformly *with replacement* from the ``size`` stored entries.

    Each index is i.i.d. uniform on ``{0, …, size − 1}`` (so a transition may appear twice in a batch,
    as in SB3 and CleanRL). Sampling an empty buffer returns copies of entry 0 (zeros); callers do not
    update before ``learning_starts`` steps are stored. Returns a :class:`Transition` ``[batch_size, ...]``.
    """
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
    return jax.tree.map(lambda x: x[idx], buf.data)


def flatten_rollout(traj: Transition) -> Transition:
    """A time-major rollout ``[T, B, ...]`` as ``[T·B, ...]`` (row-major: step t of env b at t·B + b)."""
    return jax.tree.map(lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), traj)
