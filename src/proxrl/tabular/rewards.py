"""Reward models for the expert (full-information) and bandit settings.

A round ``t`` has a reward vector ``r_t ∈ ℝ^A``: fixed (``r_t = R``), drawn each round (independent
Bernoulli or Gaussian arms), or given as an adversarial sequence ``r_{1:T}`` (an array ``[T, A]``).
The expert sees all of ``r_t``; a bandit learner sees only ``r_t(a_t)``.

Every model declares a reward range ``[low, high]``; construction rejects means or sequences outside
it. Gaussian draws themselves are unbounded (their means must lie in the range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.errors import ConfigError, check_bounded, check_shape
from proxrl.types import Array, PRNGKey

RewardKind = Literal["fixed", "bernoulli", "gaussian", "sequence"]


@dataclass(frozen=True)
class RewardModel:
    """A reward process over ``A`` arms. Build it with :func:`fixed`, :func:`bernoulli`,
    :func:`gaussian` or :func:`sequence`; it is closed over (static) by jitted code."""

    kind: RewardKind
    mean: np.ndarray  # [A]: R, the Bernoulli p, or the Gaussian mean; row-mean for a sequence
    std: np.ndarray  # [A]: Gaussian std (zeros otherwise)
    table: np.ndarray = field(repr=False)  # [T, A] for a sequence, [1, A] otherwise
    low: float = 0.0
    high: float = 1.0

    @property
    def num_actions(self) -> int:
        return int(self.mean.shape[0])

    @property
    def horizon(self) -> int | None:
        """Number of rounds available (``None``: unlimited)."""
        return int(self.table.shape[0]) if self.kind == "sequence" else None

    def sample(self, key: PRNGKey, t: Array) -> Array:
        """``r_t``, shape ``[A]`` (float32)."""
        if self.kind == "fixed":
            return jnp.asarray(self.mean, jnp.float32)
        if self.kind == "bernoulli":
            return jax.random.bernoulli(key, jnp.asarray(self.mean, jnp.float32)).astype(jnp.float32)
        if self.kind == "gaussian":
            noise = jax.random.normal(key, self.mean.shape, jnp.float32)
            return jnp.asarray(self.mean, jnp.float32) + jnp.asarray(self.std, jnp.float32) * noise
        return jnp.asarray(self.table, jnp.float32)[t]

    def expected(self, t: Array) -> Array:
        """``E[r_t]``, shape ``[A]``: the quantity pseudo-regret is measured against."""
        if self.kind == "sequence":
            return jnp.asarray(self.table, jnp.float32)[t]
        return jnp.asarray(self.mean, jnp.float32)

    def best_total(self, num_rounds: int) -> float:
        """``max_a Σ_{t<T} E[r_t(a)]``: the best fixed arm in hindsight (in expectation)."""
        if self.kind == "sequence":
            return float(self.table[:num_rounds].sum(axis=0).max())
        return float(num_rounds * self.mean.max())

    def check_horizon(self, num_rounds: int) -> None:
        if self.horizon is not None and num_rounds > self.horizon:
            raise ConfigError(
                f"rounds must be <= {self.horizon} (the length of the reward sequence), got {num_rounds}"
            )


def _vector(name: str, x: np.ndarray | list[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    check_shape(name, arr, (None,), "one entry per action")
    if arr.shape[0] < 2:
        raise ConfigError(f"{name} must have at least 2 actions, got {arr.shape[0]}")
    return arr


def fixed(rewards: np.ndarray | list[float], low: float = 0.0, high: float = 1.0) -> RewardModel:
    """``r_t = R`` every round."""
    r = check_bounded("rewards", _vector("rewards", rewards), low, high)
    return RewardModel("fixed", r, np.zeros_like(r), r[None], low, high)


def bernoulli(p: np.ndarray | list[float], name: str = "bernoulli means") -> RewardModel:
    """``r_t(a) ∼ Ber(p(a))`` independently; range ``[0, 1]``. ``name``: the option the means came from, for
    the one-line error (at least 2 means, each in [0, 1])."""
    p = check_bounded(name, _vector(name, p), 0.0, 1.0)
    return RewardModel("bernoulli", p, np.zeros_like(p), p[None], 0.0, 1.0)


def gaussian(
    mean: np.ndarray | list[float], std: np.ndarray | list[float] | float, low: float = 0.0, high: float = 1.0
) -> RewardModel:
    """``r_t(a) ∼ N(mean(a), std(a)²)`` independently; the means must lie in ``[low, high]``."""
    mu = check_bounded("gaussian means", _vector("gaussian means", mean), low, high)
    sd = np.broadcast_to(np.asarray(std, dtype=float), mu.shape).copy()
    if np.any(~np.isfinite(sd)) or np.any(sd < 0):
        raise ConfigError(f"gaussian std must be finite and >= 0, got {sd.tolist()}")
    return RewardModel("gaussian", mu, sd, mu[None], low, high)


def sequence(table: np.ndarray | list[list[float]], low: float = 0.0, high: float = 1.0) -> RewardModel:
    """An adversarial sequence ``r_{1:T}`` given as an array ``[T, A]``."""
    arr = check_shape("reward sequence", np.asarray(table, dtype=float), (None, None), "rounds × actions")
    if arr.shape[0] < 1 or arr.shape[1] < 2:
        raise ConfigError(f"reward sequence must have >= 1 round and >= 2 actions, got shape {arr.shape}")
    arr = check_bounded("reward sequence", arr, low, high)
    return RewardModel("sequence", arr.mean(axis=0), np.zeros(arr.shape[1]), arr, low, high)


def switching_sequence(num_rounds: int, num_actions: int, switch_frac: float = 1 / 3) -> RewardModel:
    """A deterministic adversarial sequence that traps follow-the-leader.

    Arm 0 pays 1 for the first ``switch_frac·T`` rounds and 0 after; arm 1 pays 0 then 1; the other
    arms pay ½ throughout. Arm 1 is best in hindsight, but a learner that commits early to arm 0
    keeps paying for it.
    """
    t_switch = round(switch_frac * num_rounds)
    table = np.full((num_rounds, num_actions), 0.5)
    table[:, 0] = np.arange(num_rounds) < t_switch
    table[:, 1] = np.arange(num_rounds) >= t_switch
    return sequence(table)
