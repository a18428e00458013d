"""Running statistics for observation and reward normalisation, as pure functions on pytrees.

State is a NamedTuple of arrays, so it jits, vmaps over seeds, runs on host arrays too, and saves into
a checkpoint as is. Statistics are merged with the parallel form of Welford's update (Chan et al.):
for two groups with counts n_a, n_b, means μ_a, μ_b and (population) variances σ²_a, σ²_b,

    n  = n_a + n_b,    δ = μ_b − μ_a,
    μ  = μ_a + δ·n_b / n,
    σ² = (n_a·σ²_a + n_b·σ²_b + δ²·n_a·n_b / n) / n,

which is exact: merging batch by batch gives the mean and variance of the concatenation.

Reward normalisation (SB3's VecNormalize, CleanRL's NormalizeReward) divides r_t by the standard
deviation of the running discounted return ``ret_t = γ·ret_{t−1} + r_t`` (reset to 0 after an
episode end), which keeps the scale of value targets near 1 without shifting the rewards.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp

from proxrl.types import Array


class RunningStats(NamedTuple):
    """Mean, population variance and count of everything seen so far (``mean``, ``var``: the shape
    of one sample; ``count``: scalar float)."""

    mean: Array
    var: Array
    count: Array


def running_stats_init(shape: tuple[int, ...] = ()) -> RunningStats:
    """No data yet: count 0 (mean 0 and var 1, so normalising before any update is the identity)."""
    return RunningStats(jnp.zeros(shape), jnp.ones(shape), jnp.zeros(()))


def running_stats_merge(a: RunningStats, b: RunningStats) -> RunningStats:
    """The statistics of the union of the two groups (the parallel Welford formula above)."""
    n = a.count + b.count
    safe_n = jnp.where(n > 0, n, 1.0)
    delta = b.mean - a.mean
    mean = a.mean + delta * b.count / safe_n
    m2 = a.var * a.count + b.var * b.count + delta**2 * a.count * b.count / safe_n
    var = jnp.where(n > 0, m2 / safe_n, a.var)
    return RunningStats(mean, var, n)


def running_stats_update(stats: RunningStats, x: Array, mask: Array | None = None) -> RunningStats:
    """Add a batch ``x[N, *shape]`` (any number of leading axes: all but the sample shape are batch); with
    ``mask`` (the batch axes' shape), only the samples where it is true."""
    batch_axes = tuple(range(x.ndim - stats.mean.ndim))
    if mask is None:
        batch = RunningStats(
            jnp.mean(x, axis=batch_axes),
            jnp.var(x, axis=batch_axes),
            jnp.asarray(float(math.prod(x.shape[: len(batch_axes)]))),
        )
    else:
        w = jnp.reshape(jnp.asarray(mask, x.dtype), mask.shape + (1,) * stats.mean.ndim)
        n = jnp.sum(w)
        safe_n = jnp.maximum(n, 1.0)
        mean = jnp.sum(w * x, axis=batch_axes) / safe_n
        var = jnp.sum(w * (x - mean) ** 2, axis=batch_axes) / safe_n
        batch = RunningStats(mean, var, n)
    return running_stats_merge(stats, batch)


def normalize(stats: RunningStats, x: Array, eps: float = 1e-8, clip: float | None = 10.0) -> Array:
    """``(x − μ) / √(σ² + eps)``, clipped to ``[−clip, clip]`` unless ``clip`` is None."""
    z = (x - stats.mean) / jnp.sqrt(stats.var + eps)
    return z if clip is None else jnp.clip(z, -clip, clip)


class RewardNormState(NamedTuple):
    """``ret``: the running discounted return of each environment, ``[B]``; ``stats``: its statistics."""

    ret: Array
    stats: RunningStats


def reward_norm_init(num_envs: int) -> RewardNormState:
    """Zero returns for ``num_envs`` environments and empty statistics."""
    return RewardNormState(jnp.zeros((num_envs,)), running_stats_init())


def reward_norm_update(
    state: RewardNormState, reward: Array, reset: Array, gamma: Array | float
) -> RewardNormState:
    """Fold one step ``reward[B]`` into the running returns and their statistics.

    ret ← γ·ret + r_t,   stats ← stats ∪ {ret},   then ret ← 0 where the episode ended (``reset[B]``).
    """
    ret = gamma * state.ret + reward
    stats = running_stats_update(state.stats, ret)
    return RewardNormState(jnp.where(reset, 0.0, ret), stats)


def scale_reward(
    state: RewardNormState, reward: Array, eps: float = 1e-8, clip: float | None = 10.0
) -> Array:
    """``r / √(Var[ret] + eps)`` (no shift, so the sign of every reward is kept), optionally clipped."""
    r = reward / jnp.sqrt(state.stats.var + eps)
    return r if clip is None else jnp.clip(r, -clip, clip)
