"""The collect step of the lecture's loop, shared by every :class:`~proxrl.types.Learner`.

    data_k   = collect(π_θk)                     ← here: act in the environment, normalise, keep statistics
    θ_{k+1}  = learn(θ_k, data_k)                ← the algorithm (estimate + proximal step)

Two back ends feed a learner the same time-major :class:`~proxrl.types.Transition`:

- gymnax environments (:func:`loop_init`, :func:`loop_update`, :func:`run_updates`): the rollout is a
  ``lax.scan`` traced into the update, so a whole run (every update, every seed) compiles into one function;
- :mod:`proxrl.run.host` — Gymnasium vector environments stepped on the host, one jitted ``act`` per
  step; it reuses :func:`act` and :func:`absorb` from this module, so both back ends normalise, count
  episodes and call ``learn`` through the same code.

Normalisation (:class:`Normalization`, off by default) follows SB3's VecNormalize: observations are
standardised with running statistics of every observation seen (clipped to ±clip); rewards are divided by
the standard deviation of the running discounted return. A rollout is normalised with the statistics
in force when it was collected (the ones ``act`` saw), and the statistics then absorb it; a learner that
keeps data (a replay buffer, :attr:`~proxrl.types.Learner.learn_raw`) instead keeps the raw rollout and
normalises each batch it draws with the statistics of that time, as SB3 does with a replay buffer. Evaluation
uses the current statistics without changing them. The statistics live in the carried state, so they are
saved with checkpoints.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from proxrl.deep.jax_envs import EnvState, JaxEnv, make_jax_env
from proxrl.deep.normalize import (
    RewardNormState,
    RunningStats,
    normalize,
    reward_norm_init,
    reward_norm_update,
    running_stats_init,
    running_stats_update,
    scale_reward,
)
from proxrl.errors import check_in_range, check_positive
from proxrl.estimators.returns import first_episode
from proxrl.types import Array, Learner, Metrics, PRNGKey, State, Transition

SEED_AXIS = "seed"
"""The axis name the runners give ``jax.vmap`` over seeds (``jax.vmap(f, axis_name=SEED_AXIS)``)."""


def lockstep(pred: Array) -> Array:
    """A schedule predicate that every seed of a lockstep run shares (it depends only on step counters,
    equal across seeds), made one unbatched value when the seeds are vmapped with ``axis_name=SEED_AXIS``.

    Under ``jax.vmap`` a ``lax.cond`` whose predicate is batched becomes a select that computes *both*
    branches for every seed: the gradient steps of a replay learner's random warm-up and TD3's delayed actor
    step would run on every call and be thrown away. Reduced over the seed axis (all values are equal, so
    the minimum is each of them) the predicate is unbatched and ``lax.cond`` stays a branch. Outside such a
    vmap (one seed, or a plain ``jax.vmap`` without the axis name) ``pred`` is returned as it is: the same
    numbers, computed the slow way. Never use it for a predicate that can differ between seeds.
    """
    try:
        return jax.lax.pmin(jnp.asarray(pred, jnp.int32), SEED_AXIS) > 0
    except NameError:  # no vmap over seeds with the axis name is being traced
        return pred


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Observation and reward normalisation of the collected data (SB3's VecNormalize defaults)."""

    obs: bool = False
    """Standardise observations with running mean and variance (clipped to ±clip)."""
    reward: bool = False
    """Divide rewards by the running standard deviation of the discounted return (clipped to ±clip)."""
    gamma: float = 0.99
    """Discount of the running return used to scale rewards (set it to the algorithm's γ)."""
    clip: float = 10.0
    """Clip normalised observations and rewards to [−clip, clip]."""

    def validate(self) -> Normalization:
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_positive("clip", self.clip)
        return self


class Carry(NamedTuple):
    """What both back ends carry between rollouts (besides the environment itself)."""

    learner: State
    obs_stats: RunningStats
    reward_norm: RewardNormState
    episode_return: Array
    """Running undiscounted (raw) return of each environment's current episode ``[B]``."""
    key: PRNGKey


def carry_init(learner: Learner, key: PRNGKey, obs: Array, norm: Normalization) -> Carry:
    """The learner initialised on the (normalised) first observations ``obs[B, ...]``; empty statistics
    that have seen those observations."""
    k_learn, key = jax.random.split(key)
    stats = running_stats_init(obs.shape[1:])
    if norm.obs:
        stats = running_stats_update(stats, jnp.asarray(obs, jnp.float32))
    state = learner.init(k_learn, observe(stats, obs, norm))
    return Carry(state, stats, reward_norm_init(obs.shape[0]), jnp.zeros(obs.shape[0], jnp.float32), key)


def observe(stats: RunningStats, obs: Array, norm: Normalization) -> Array:
    """What the learner sees of a raw observation: standardised with ``stats`` if normalisation is on."""
    obs = jnp.asarray(obs, jnp.float32)
    return normalize(stats, obs, clip=norm.clip) if norm.obs else obs


def act(learner: Learner, norm: Normalization, carry: Carry, obs: Array, key: PRNGKey) -> Array:
    """The behaviour policy on raw observations ``obs[B, ...]`` (normalised as the learner expects)."""
    return learner.act(carry.learner, observe(carry.obs_stats, obs, norm), key)


def episode_stats(traj: Transition, episode_return: Array) -> tuple[Array, Array, Array]:
    """Undiscounted returns of the episodes completed in a rollout.

    Args:
      traj: time-major ``[T, B]`` transitions (raw rewards).
      episode_return: running return of each environment's current episode at the rollout start ``[B]``.

    Returns:
      ``(mean return of completed episodes (NaN if none), number completed, running returns [B])``.
    """

    def step(running: Array, xs: tuple[Array, Array]) -> tuple[Array, tuple[Array, Array]]:
        reward, done = xs
        total = running + reward
        return jnp.where(done, 0.0, total), (total, done)

    done = traj.terminated | traj.truncated
    running, (totals, dones) = jax.lax.scan(step, episode_return, (traj.reward, done))
    count = jnp.sum(dones)
    mean = jnp.where(count > 0, jnp.sum(jnp.where(dones, totals, 0.0)) / jnp.maximum(count, 1), jnp.nan)
    return mean, count, running


def absorb(learner: Learner, norm: Normalization, carry: Carry, traj: Transition) -> tuple[Carry, Metrics]:
    """Everything after the environment steps of one rollout: episode statistics on the raw rewards,
    normalisation (with the statistics ``act`` used), the statistics' update, then ``learner.learn``.

    ``traj``: raw time-major transitions ``[T, B, ...]`` collected by :func:`act` under ``carry``.
    Metrics: the learner's, plus ``episodic_return`` (mean raw return of the episodes completed in the
    rollout; NaN if none) and ``episodes``. For an episodic learner (:attr:`~proxrl.types.Learner.episodic`)
    only each environment's first episode counts, from the rollout's first step to its first end: the episode
    statistics and the observation statistics leave out the steps after it (the host back end does not simulate
    them, :meth:`proxrl.deep.gym_envs.GymVecEnv.first_episodes`).
    """
    within = None  # [T, B]: the steps that count (None: all)
    if learner.episodic:
        done = traj.terminated | traj.truncated
        within = first_episode(done)  # no earlier step ended the environment's first episode
        first_end = traj._replace(terminated=done & within, truncated=jnp.zeros_like(done))
        ep_mean, ep_count, _ = episode_stats(first_end, jnp.zeros_like(carry.episode_return))
        running = jnp.zeros_like(carry.episode_return)
    else:
        ep_mean, ep_count, running = episode_stats(traj, carry.episode_return)
    obs_stats, reward_norm = carry.obs_stats, carry.reward_norm
    raw = traj._replace(
        obs=jnp.asarray(traj.obs, jnp.float32), next_obs=jnp.asarray(traj.next_obs, jnp.float32)
    )
    data = raw  # normalised below with the statistics ``act`` used
    if norm.obs:
        data = data._replace(
            obs=observe(obs_stats, raw.obs, norm), next_obs=observe(obs_stats, raw.next_obs, norm)
        )
        obs_stats = running_stats_update(obs_stats, raw.obs, within)
    if norm.reward:

        def fold(state: RewardNormState, xs: tuple[Array, Array]) -> tuple[RewardNormState, None]:
            reward, reset = xs
            return reward_norm_update(state, reward, reset, norm.gamma), None

        reward_norm, _ = jax.lax.scan(fold, reward_norm, (traj.reward, traj.terminated | traj.truncated))
        data = data._replace(reward=scale_reward(reward_norm, traj.reward, clip=norm.clip))
    k_next, _ = jax.random.split(carry.key)
    if learner.learn_raw is not None and (norm.obs or norm.reward):
        # the learner keeps the raw rollout and normalises what it draws, with the statistics updated above

        def view(batch: Transition) -> Transition:
            if norm.obs:
                batch = batch._replace(
                    obs=observe(obs_stats, batch.obs, norm), next_obs=observe(obs_stats, batch.next_obs, norm)
                )
            if norm.reward:
                batch = batch._replace(reward=scale_reward(reward_norm, batch.reward, clip=norm.clip))
            return batch

        state, metrics = learner.learn_raw(carry.learner, raw, view)
    else:
        state, metrics = learner.learn(carry.learner, data)
    metrics = dict(metrics, episodic_return=ep_mean, episodes=ep_count)
    return Carry(state, obs_stats, reward_norm, running, k_next), metrics


class LoopState(NamedTuple):
    """A gymnax run's state: the carry plus the (batched) gymnax environment."""

    carry: Carry
    env_state: EnvState
    obs: Array
    """Raw observations to act on next ``[B, ...]``."""


def evaluate(
    env: JaxEnv,
    mode: Callable[[Array], Array],
    key: PRNGKey,
    num_episodes: int,
    max_steps: int | None = None,
) -> Array:
    """Undiscounted returns ``[num_episodes]`` of the deterministic policy ``mode(obs[B, ...]) -> action``.

    The episodes run in parallel for ``max_steps`` steps (default: the environment's
    ``max_steps_in_episode``); rewards after each episode's first end are masked out. Pure and jittable.
    """
    horizon = max_steps or int(getattr(env.env_params, "max_steps_in_episode", 1000))
    k_reset, k_run = jax.random.split(key)
    obs, env_state = env.reset_batch(k_reset, num_episodes)

    def step(c: tuple[Any, Array, Array, Array], k: PRNGKey) -> tuple[Any, None]:
        env_state, obs, total, alive = c
        out, env_state = env.step_batch(k, env_state, mode(obs))
        total = total + jnp.where(alive, out.reward, 0.0)
        alive = alive & ~(out.terminated | out.truncated)
        return (env_state, out.obs, total, alive), None

    init = (env_state, obs, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, _, total, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, horizon))
    return total


def loop_init(learner: Learner, env: JaxEnv, norm: Normalization, key: PRNGKey) -> LoopState:
    """A run on a gymnax environment, ready to collect: ``learner.num_envs`` environments reset (grouped by
    ``learner.env_groups``), the learner initialised on their (normalised) first observations."""
    k_env, k_carry = jax.random.split(key)
    obs, env_state = env.reset_batch(k_env, learner.num_envs, learner.env_groups)
    return LoopState(carry_init(learner, k_carry, obs, norm), env_state, obs)


def loop_update(
    learner: Learner, env: JaxEnv, norm: Normalization, state: LoopState
) -> tuple[LoopState, Metrics]:
    """One iteration on a gymnax environment: ``learner.num_steps`` steps of ``learner.num_envs`` environments
    (a ``lax.scan`` with :func:`act`; reset first for an episodic learner), then :func:`absorb` (normalisation,
    statistics, ``learn``)."""

    def policy_fn(carry: Carry, obs: Array, key: PRNGKey) -> Array:
        return act(learner, norm, carry, obs, key)

    k_roll = jax.random.fold_in(state.carry.key, 1)
    env_state, obs = state.env_state, state.obs
    if learner.episodic:  # every rollout from freshly reset environments
        k_reset = jax.random.fold_in(state.carry.key, 2)
        obs, env_state = env.reset_batch(k_reset, learner.num_envs, learner.env_groups)
    traj, env_state, obs = env.rollout(
        k_roll, env_state, obs, policy_fn, state.carry, learner.num_steps, learner.env_groups
    )
    carry, metrics = absorb(learner, norm, state.carry, traj)
    return LoopState(carry, env_state, obs), metrics


def mode(learner: Learner, norm: Normalization, carry: Carry, obs: Array) -> Array:
    """The deterministic policy on raw observations ``obs[B, ...]`` (normalised with the current statistics)."""
    return learner.mode(carry.learner, observe(carry.obs_stats, obs, norm))


def run_updates(
    learner: Learner, env: JaxEnv, norm: Normalization, key: PRNGKey, num_updates: int
) -> tuple[LoopState, Metrics]:
    """A whole run of ``num_updates`` :func:`loop_update` iterations from :func:`loop_init` as one ``lax.scan``
    (pure: jit it, and ``jax.vmap(…, axis_name=SEED_AXIS)`` it over keys for many seeds, the axis name keeping
    schedule branches branches, :func:`lockstep`). ``metrics[name]`` has shape ``[num_updates]``, plus
    ``env_steps``."""
    state = loop_init(learner, env, norm, key)
    state, metrics = jax.lax.scan(
        lambda s, _: loop_update(learner, env, norm, s), state, None, length=num_updates
    )
    metrics["env_steps"] = (jnp.arange(num_updates) + 1) * (learner.num_envs * learner.num_steps)
    return state, metrics


def env_for(env_id: str | JaxEnv) -> JaxEnv:
    """The gymnax environment for an id (or the environment itself); safe inside a trace."""
    if isinstance(env_id, JaxEnv):
        return env_id
    with jax.ensure_compile_time_eval():
        return make_jax_env(env_id)
