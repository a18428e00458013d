"""Evolution strategies: the one-point gradient estimator in parameter space (OpenAI-ES, ARS).

The expected return J(θ) of the implicit policy g_θ is a black box of θ. Smoothing it with Gaussian
perturbations, J_σ(θ) = E_ε J(θ + σε), the estimator of the lecture's one-point review applies in the space of
parameters: with P antithetic pairs ε_1, …, ε_P ∼ N(0, I),

    ĝ_k = (1/(2σ Σ_i w_i)) Σ_i w_i (F(θ_k + σε_i) − F(θ_k − σε_i))·ε_i          (E ĝ_k = ∇J_σ(θ_k))
    θ_{k+1} = argmax_θ ⟨θ − θ_k, ĝ_k⟩ − (1/2η)‖θ − θ_k‖² = θ_k + η ĝ_k           (or one Adam step)

F the (shaped) return of a perturbed policy, w_i selecting pairs. Each update k is one generation:

1. environment i of the ``num_envs`` = 2P lockstep environments acts with θ_k + σε_i (i < P) or θ_k − σε_{i−P};
   the noise input ξ of the implicit policy is drawn afresh at every step; with common random numbers (``crn``
   "pairs") the two members of a pair draw the same initial states, resets and ξ (gymnax only), so that
   F(θ_k + σε_i) − F(θ_k − σε_i) is not drowned by the draw of the states;
2. the fitness of a member is the mean return of the episodes that started and ended within the rollout (a
   member without one is dropped with its pair: use ``num_steps`` ≥ twice the longest episode to score all);
3. fitness shaping: centered ranks (OpenAI-ES), division by the standard deviation of the used returns (ARS) or
   none; ARS's top-b selection keeps the b pairs with the largest max(F⁺, F⁻);
4. the Euclidean proximal step on ĝ_k (:func:`proxrl.prox.zeroth_order.zeroth_order_step`), η fixed or annealed;
5. observation statistics absorb the rollout's states (ARS "V2": the policy sees (s − μ)/σ_s, statistics frozen
   within a generation); with ``score_episodes`` "first", the states of the scored episodes only, as ARS's
   statistics are those of its rollouts.

The evaluation (deterministic) policy is g_θk(s, 0). Only returns are used: neither log π_θ nor a critic.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from proxrl.config import Config
from proxrl.deep.config import Rollout, Step
from proxrl.deep.implicit.policy import ImplicitNetwork, implicit_policy, noise
from proxrl.deep.jax_envs import Space
from proxrl.deep.networks import flatten_obs
from proxrl.deep.normalize import RunningStats, normalize, running_stats_init, running_stats_update
from proxrl.errors import ConfigError, check_choice, check_int_at_least, check_positive
from proxrl.estimators.returns import first_episode
from proxrl.estimators.zeroth_order import antithetic_gradient, centered_ranks, one_point_gradient, top_pairs
from proxrl.prox import StepState
from proxrl.prox.solvers import linear_anneal
from proxrl.prox.zeroth_order import SOLVERS, EstimateBatch, zeroth_order_step
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

SCORINGS = ("window", "first")
"""Which episodes score a member: those that start and end within the rollout, or the first one from a reset."""
CRN = ("none", "pairs", "population")
"""Common random numbers of a generation's rollout: none (every member's environment and noise input drawn
independently), the two members of each antithetic pair from the same initial states and noise, or every member."""

SHAPINGS = ("rank", "std", "none")
"""How the returns of the population are turned into fitness values: centered ranks, divided by their standard
deviation, or as they are."""


@dataclasses.dataclass(frozen=True)
class ESNetwork(ImplicitNetwork):
    """The implicit policy g_θ(s, ξ) whose parameters are perturbed, fed observations standardised by running statistics."""

    obs_norm: bool = True
    """Standardise the policy's observations with running statistics of every state seen, frozen within a generation (ARS V2)."""


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """The population θ ± σε_i (one per environment) and how its returns become the gradient estimate ĝ."""

    sigma: float = 0.05
    """Standard deviation σ of the parameter perturbations: the smoothing radius of J_σ(θ) = E J(θ + σε)."""
    antithetic: bool = True
    """Mirrored pairs θ ± σε_i (two-point estimate); False: independent directions with a mean baseline (one-point)."""
    shaping: str = "rank"
    """Fitness shaping: "rank" (centered ranks, OpenAI-ES), "std" (returns divided by their standard deviation, ARS) or "none"."""
    top_b: int = 0
    """Keep the b pairs with the largest max(F⁺, F⁻) (ARS); 0 keeps every pair."""
    score_episodes: str = "window"
    """Which episodes score a member: "window" (the mean return of the episodes that start and end within the
    rollout; environments run on across generations) or "first" (every generation resets the environments and
    scores each member's first episode, at most num_steps long: ARS's one rollout per direction)."""
    crn: str = "none"
    """Common random numbers (gymnax only): "pairs" runs θ + σε_i and θ − σε_i from the same initial states with
    the same noise inputs ξ (F⁺ − F⁻ then differs by the perturbation only, where episodes end in step), "population"
    runs every member so (the ranks compare members on the same episodes), "none" draws each member's own."""
    shift: float = 0.0
    """Subtracted from every reward when members are scored (ARS's "shift": 1 removes the survival bonus of Hopper,
    Walker2d and Ant, so that standing still stops being a local optimum); evaluations see the true rewards."""

    def validate(self) -> None:
        """σ > 0, a known shaping, scoring and crn, top_b ≥ 0, a finite shift."""
        check_positive("sigma", self.sigma)
        check_choice("shaping", self.shaping, SHAPINGS)
        check_choice("score_episodes", self.score_episodes, SCORINGS)
        check_choice("crn", self.crn, CRN)
        check_int_at_least("top_b", self.top_b, 0)
        if not np.isfinite(float(self.shift)):
            raise ConfigError(f"shift must be a finite number, got {self.shift!r}")


@dataclasses.dataclass(frozen=True)
class ESStep(Step):
    """The Euclidean proximal step θ_k + η ĝ_k on the estimate, in closed form or as one Adam step."""

    solver: str = "adam"
    """Solver of the step: "sgd" (θ_k + η ĝ_k exactly, ARS) or "adam" (one Adam step of size η on the same objective, OpenAI-ES)."""
    anneal_lr: bool = False
    """Decay the step size linearly from lr to 0 over the run's generations, η_k = lr·(1 − k/K) (needs the run's budget)."""

    def validate(self) -> None:
        """lr > 0, a known solver."""
        super().validate()
        check_choice("solver", self.solver, SOLVERS)


@dataclasses.dataclass(frozen=True)
class ESConfig(Config):
    """Evolution strategies on an implicit policy: a population of 64 (32 antithetic pairs, one environment each), σ = 0.05, centered ranks, Adam with η = 0.03, 1000 steps per generation."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=64, num_steps=1000))
    network: ESNetwork = dataclasses.field(default_factory=lambda: ESNetwork(hidden=(32, 32)))
    step: ESStep = dataclasses.field(default_factory=lambda: ESStep(lr=0.03))
    perturbation: Perturbation = dataclasses.field(default_factory=Perturbation)

    def check(self) -> None:
        """The population (num_envs) is even with antithetic pairs and at least 2; top_b ≤ the number of pairs;
        crn "pairs" needs antithetic pairs."""
        n = self.rollout.num_envs
        if self.perturbation.crn == "pairs" and not self.perturbation.antithetic:
            raise ConfigError(
                "crn 'pairs' needs antithetic pairs (antithetic=True); use crn 'population' or 'none'"
            )
        if n < 2:
            raise ConfigError(f"num_envs (the population) must be >= 2, got {n}")
        if self.perturbation.antithetic and n % 2:
            raise ConfigError(f"num_envs (the population) must be even with antithetic pairs, got {n}")
        pairs = n // 2 if self.perturbation.antithetic else n
        if self.perturbation.top_b > pairs:
            raise ConfigError(
                f"top_b must be <= the number of {'pairs' if self.perturbation.antithetic else 'members'} ({pairs}), got {self.perturbation.top_b}"
            )


class ESState(NamedTuple):
    """The mean θ_k, the step's state, this generation's directions ``eps[P, n]`` and members ``[num_envs, n]``
    (flat parameters), the observation statistics, which environments start the rollout on a fresh episode,
    and the key."""

    theta: Params
    step: StepState
    eps: Array
    members: Array
    obs_stats: RunningStats
    fresh: Array
    key: PRNGKey


class Fitness(NamedTuple):
    """Per environment: the mean return of its scored episodes (0 where none), how many were scored, their
    steps, and whether the next rollout starts an episode (done at the last step)."""

    fitness: Array
    episodes: Array
    steps: Array
    fresh_next: Array


def episode_fitness(reward: Array, done: Array, fresh: Array, first_only: bool = False) -> Fitness:
    """Per environment, the mean return of the episodes that started and ended within the rollout (with
    ``first_only``, only the first of them).

    ``reward``, ``done`` ``[T, B]``; ``fresh[B]``: the rollout's first step starts an episode."""

    def step(carry: tuple[Array, ...], xs: tuple[Array, Array]) -> tuple[tuple[Array, ...], None]:
        started, running, length, total, count, steps = carry
        r, d = xs
        running, length = running + r, length + 1.0
        scored = d & started & ((count == 0) if first_only else True)
        total = total + jnp.where(scored, running, 0.0)
        steps = steps + jnp.where(scored, length, 0.0)
        count = count + scored.astype(jnp.float32)
        return (started | d, jnp.where(d, 0.0, running), jnp.where(d, 0.0, length), total, count, steps), None

    zeros = jnp.zeros(reward.shape[1], jnp.float32)
    init = (fresh, zeros, zeros, zeros, zeros, zeros)
    (_, _, _, total, count, steps), _ = jax.lax.scan(step, init, (reward, done))
    return Fitness(total / jnp.maximum(count, 1.0), count, steps, done[-1])


def shape_fitness(f: Array, valid: Array, shaping: str) -> Array:
    """Fitness values from returns ``f`` over the valid members: centered ranks, returns over their standard
    deviation (mean kept: only differences reach the estimate), or the returns."""
    if shaping == "rank":
        return centered_ranks(f, valid)
    if shaping == "std":
        m = jnp.maximum(jnp.sum(valid), 1)
        mean = jnp.sum(jnp.where(valid, f, 0.0)) / m
        std = jnp.sqrt(jnp.sum(jnp.where(valid, (f - mean) ** 2, 0.0)) / m)
        return jnp.where(valid, f / jnp.maximum(std, 1e-8), 0.0)
    return jnp.where(valid, f, 0.0)


def make_learner(
    config: ESConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """Evolution strategies as a :class:`~proxrl.types.Learner` (see the module docstring).

    Metrics: ``fitness_mean``, ``fitness_max`` (mean and best return of the scored members, less ``shift`` per
    step), ``scored`` (fraction of the pairs used), ``episodes_scored``, ``episodes_ended`` (every episode that
    ended in the rollout, scored or not: what the generation cost in episodes; with ``score_episodes`` "first",
    each environment's first only, the steps after it not being part of the rollout), and the step's ``grad_estimate_norm``, ``surrogate_gain``,
    ``step_norm``, ``beta``, and ``steps_scored`` (the steps of the scored episodes: with ``score_episodes``
    "first", what ARS counts as the generation's cost).
    """
    config.validate()
    net, pert = config.network, config.perturbation
    first = pert.score_episodes == "first"
    policy = implicit_policy(net, action_space, "ES")
    obs_ndim = len(observation_space.shape)
    obs_dim = int(np.prod(observation_space.shape)) if observation_space.shape else 1
    population = config.rollout.num_envs
    pairs = population // 2 if pert.antithetic else population
    sigma = pert.sigma
    lr: float | optax.Schedule = config.step.lr
    if config.step.anneal_lr:
        if total_steps is None:
            raise ConfigError("anneal_lr needs the run's step budget: build the learner with total_steps")
        lr = linear_anneal(config.step.lr, max(total_steps // config.rollout.size, 1))
    step = zeroth_order_step(lr, config.step.solver)
    groups = {"none": 0, "pairs": pairs, "population": 1}[pert.crn]  # environment i draws like i mod groups

    def feats(stats: RunningStats, obs: Array) -> Array:
        x = flatten_obs(jnp.asarray(obs, jnp.float32), obs_ndim)
        return normalize(stats, x) if net.obs_norm else x

    def unravel_fn(theta: Params):
        return ravel_pytree(theta)[1]

    def generation(theta: Params, key: PRNGKey) -> tuple[Array, Array]:
        flat = ravel_pytree(theta)[0]
        eps = jax.random.normal(key, (pairs, flat.size))
        signed = jnp.concatenate([eps, -eps]) if pert.antithetic else eps
        return eps, flat + sigma * signed

    def init(key: PRNGKey, obs: Array) -> ESState:
        k_theta, k_gen, key = jax.random.split(key, 3)
        theta = policy.init(k_theta, jnp.zeros((1, obs_dim)), jnp.zeros((1, net.noise_dim)))
        eps, members = generation(theta, k_gen)
        stats = running_stats_init((obs_dim,))
        fresh = jnp.ones(population, bool)
        return ESState(theta, step.init(theta), eps, members, stats, fresh, key)

    def act(state: ESState, obs: Array, key: PRNGKey) -> Array:
        unravel = unravel_fn(state.theta)
        x = feats(state.obs_stats, obs)
        xi = noise(key, (groups or x.shape[0],), net.noise_dim)
        if groups:  # common random numbers: member i uses the noise of member i mod groups
            xi = xi[jnp.arange(x.shape[0]) % groups]
        return jax.vmap(lambda p, o, z: policy.apply(unravel(p), o, z))(state.members, x, xi)

    def mode(state: ESState, obs: Array) -> Array:
        x = feats(state.obs_stats, obs)
        return policy.apply(state.theta, x, jnp.zeros((x.shape[0], net.noise_dim)))

    def learn(state: ESState, traj: Transition) -> tuple[ESState, Metrics]:
        done = traj.terminated | traj.truncated
        reward = jnp.asarray(traj.reward, jnp.float32) - pert.shift
        if first:  # the environments were reset for this rollout (Learner.episodic)
            scores = episode_fitness(reward, done, jnp.ones_like(state.fresh), first_only=True)
            fresh = jnp.ones_like(state.fresh)
        else:
            scores = episode_fitness(reward, done, state.fresh)
            fresh = scores.fresh_next
        fitness, episodes = scores.fitness, scores.episodes
        scored = episodes > 0
        if pert.antithetic:
            valid_pair = scored[:pairs] & scored[pairs:]
            valid = jnp.concatenate([valid_pair, valid_pair])
        else:
            valid_pair = valid = scored
        shaped = shape_fitness(fitness, valid, pert.shaping)
        if pert.antithetic:
            f_plus, f_minus = shaped[:pairs], shaped[pairs:]
            weights = (
                top_pairs(fitness[:pairs], fitness[pairs:], pert.top_b, valid_pair)
                if pert.top_b
                else valid_pair.astype(jnp.float32)
            )
            if pert.shaping == "std" and pert.top_b:  # ARS: the standard deviation of the 2b returns used
                used = jnp.concatenate([weights, weights]) > 0
                shaped = shape_fitness(fitness, used, "std")
                f_plus, f_minus = shaped[:pairs], shaped[pairs:]
            grad = antithetic_gradient(state.eps, f_plus, f_minus, sigma, weights)
        else:
            weights = (
                top_pairs(fitness, fitness, pert.top_b, valid) if pert.top_b else valid.astype(jnp.float32)
            )
            grad = one_point_gradient(state.eps, shaped, sigma, weights)
        unravel = unravel_fn(state.theta)
        k_step, k_gen, key = jax.random.split(state.key, 3)
        theta, step_state, metrics = step.update(
            state.theta, state.step, EstimateBatch(unravel(grad)), k_step
        )
        stats = state.obs_stats
        if net.obs_norm:  # the states of the rollout; with "first", those of the scored episodes only (ARS)
            x = flatten_obs(jnp.asarray(traj.obs, jnp.float32), obs_ndim)
            t = jnp.arange(done.shape[0])[:, None]
            stats = running_stats_update(stats, x, t < scores.steps[None, :] if first else None)
        eps, members = generation(theta, k_gen)
        m = jnp.maximum(jnp.sum(valid), 1)
        metrics = dict(
            metrics,
            fitness_mean=jnp.where(jnp.any(valid), jnp.sum(jnp.where(valid, fitness, 0.0)) / m, jnp.nan),
            fitness_max=jnp.where(jnp.any(valid), jnp.max(jnp.where(valid, fitness, -jnp.inf)), jnp.nan),
            scored=jnp.mean(valid_pair.astype(jnp.float32)),
            episodes_scored=jnp.sum(episodes),
            steps_scored=jnp.sum(scores.steps),
            episodes_ended=jnp.sum(done & first_episode(done) if first else done),
        )
        return ESState(theta, step_state, eps, members, stats, fresh, key), metrics

    return Learner("es", init, act, mode, learn, population, config.rollout.num_steps, groups, episodic=first)
