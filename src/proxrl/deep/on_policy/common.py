"""Pieces every actor-critic algorithm shares (PPO, A2C, …), written once.

- :func:`make_agent`: actor (categorical or diagonal Gaussian head) and critic ``V_φ`` for an environment;
- :func:`make_batch`: the *estimate* step — one forward pass under ``θ_k, φ_k`` over a rollout and
  GAE(λ) per environment (``discount_t = γ(1 − terminated)``; truncation bootstraps from
  ``V_φ(true next obs)``; never through a termination);
- :func:`explained_variance`: the standard critic diagnostic.

Collection, episode statistics and evaluation are the loop's (:mod:`proxrl.deep.loops`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from proxrl.deep.config import ACTIVATIONS, Network, PolicyStep, Rollout
from proxrl.deep.distributions import categorical, diag_gaussian
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, Space
from proxrl.deep.loops import env_for as as_env  # noqa: F401  (re-exported: the algorithms' env lookup)
from proxrl.deep.networks import CategoricalPolicy, GaussianPolicy, ValueNetwork, flatten_obs
from proxrl.errors import ConfigError, check_int_at_least
from proxrl.estimators import gae
from proxrl.prox.solvers import linear_anneal, optimiser
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


def num_updates(total_steps: int, rollout_size: int) -> int:
    """Updates of ``rollout_size`` environment steps in a budget of ``total_steps`` (whole updates, at least one:
    a one-line ConfigError otherwise). The budget is the run's (``--total-steps``), never an algorithm's."""
    total_steps = check_int_at_least("total_steps", total_steps, 1)
    if total_steps < rollout_size:
        raise ConfigError(
            f"total_steps must be >= num_envs·num_steps = {rollout_size} (one update), got {total_steps}"
        )
    return total_steps // rollout_size


def policy_lr(
    step: PolicyStep, updates: int | None, steps_per_update: int = 1
) -> Array | float | optax.Schedule:
    """The policy optimiser's step size: ``step.lr``, or with ``step.anneal_lr`` the schedule
    ``lr·(1 − k/K)`` during update k of K = ``updates`` (``steps_per_update`` optimiser steps per update);
    annealing needs the run's budget (a one-line ConfigError without it)."""
    if not step.anneal_lr:
        return step.lr
    if updates is None:
        raise ConfigError("anneal_lr needs the run's step budget: build the learner with total_steps")
    return linear_anneal(step.lr, updates, steps_per_update)


def policy_optimiser(
    step: PolicyStep, updates: int | None, steps_per_update: int = 1
) -> optax.GradientTransformation:
    """The clipped, preconditioned optimiser of a :class:`~proxrl.deep.config.PolicyStep` (ε = 1e-5), its
    learning rate from :func:`policy_lr`."""
    return optimiser(
        policy_lr(step, updates, steps_per_update),
        step.max_grad_norm,
        step.optimiser,
        eps=1e-5,
        rms_decay=step.rms_decay,
    )


def step_diagnostics(step: PolicyStep, updates: int | None, batch: Batch, update: Array) -> Metrics:
    """What an actor-critic reports besides its step: ``explained_variance`` of V_φk on the λ-returns and the
    ``learning_rate`` in force during update ``update`` of ``updates``."""
    lr = policy_lr(step, updates)
    lr_now = lr(update) if callable(lr) else lr
    return {
        "explained_variance": explained_variance(batch.value_old, batch.returns),
        "learning_rate": jnp.asarray(lr_now, jnp.float32),
    }


class Batch(NamedTuple):
    """One update's flat training data ``[N = T·B, ...]`` under θ_k, φ_k."""

    obs: Array
    action: Array
    logp_old: Array
    dist_old: Any
    value_old: Array
    adv: Array
    returns: Array


class Agent(NamedTuple):
    """The actor and critic modules for an environment's spaces, and how to read the actor's output."""

    actor: nn.Module
    critic: nn.Module
    distribution: Callable[[Any], Any]
    """actor output → distrax distribution over actions."""
    mode: Callable[[Any], Array]
    """actor output → the deterministic action (argmax / mean)."""
    obs_ndim: int

    def init(self, k_actor: PRNGKey, k_critic: PRNGKey, obs: Array) -> Params:
        """``{"actor": θ, "critic": φ}`` initialised on example observations ``obs[B, ...]``."""
        x = features(self, obs)
        return {"actor": self.actor.init(k_actor, x), "critic": self.critic.init(k_critic, x)}

    def policy(self, params: Params, obs: Array) -> Any:
        """π_θ(·|s) for observations ``obs[B, ...]``, as a distrax distribution."""
        return self.distribution(self.actor.apply(params["actor"], features(self, obs)))

    def head(self, theta: Params, batch: Any, key: PRNGKey | None = None) -> Any:
        """π_θ(·|s) on a batch's observation features ``batch.obs``, from the actor's parameters θ alone (what
        the terms of a proximal step on θ share)."""
        return self.distribution(self.actor.apply(theta, batch.obs))

    def policy_on(self, params: Params, batch: Any, key: PRNGKey | None = None) -> Any:
        """:meth:`head` for a step on ``{"actor": θ, "critic": φ}``."""
        return self.head(params["actor"], batch)

    def value(self, phi: Params, obs: Array) -> Array:
        """``V_φ(s)`` for observation features ``obs[N, D]``."""
        return self.critic.apply(phi, obs)

    def sample(self, params: Params, obs: Array, key: PRNGKey) -> Array:
        """``a ∼ π_θ(·|s)`` for each observation."""
        return self.policy(params, obs).sample(seed=key)

    def act_mode(self, params: Params, obs: Array) -> Array:
        """The deterministic action (argmax of the logits / the Gaussian mean) for each observation."""
        return self.mode(self.actor.apply(params["actor"], features(self, obs)))

    def learner(
        self,
        name: str,
        init: Callable[[PRNGKey, Array], Any],
        learn: Callable[[Any, Transition], tuple[Any, Any]],
        rollout: Rollout,
    ) -> Learner:
        """An on-policy algorithm's :class:`~proxrl.types.Learner`: it acts by sampling a ∼ π_θ(·|s) and is
        evaluated with the mode; the algorithm's state keeps θ in ``state.params["actor"]``."""
        return Learner(
            name,
            init,
            lambda state, obs, key: self.sample(state.params, obs, key),
            lambda state, obs: self.act_mode(state.params, obs),
            learn,
            rollout.num_envs,
            rollout.num_steps,
        )


def make_agent(observation_space: Space, action_space: Space, network: Network) -> Agent:
    """Categorical MLP for a discrete action space, Gaussian (learned log σ, initially ``log_std_init`` of a
    :class:`~proxrl.deep.config.PolicyNetwork`) for a box; MLP critic."""
    hidden, act = tuple(network.hidden), ACTIVATIONS[network.activation]
    log_std_init = getattr(network, "log_std_init", 0.0)
    critic = ValueNetwork(hidden=hidden, activation=act)
    obs_ndim = len(observation_space.shape)
    if isinstance(action_space, DiscreteSpace):
        actor = CategoricalPolicy(num_actions=action_space.n, hidden=hidden, activation=act)
        return Agent(actor, critic, categorical, lambda logits: jnp.argmax(logits, axis=-1), obs_ndim)
    if isinstance(action_space, BoxSpace):
        if len(action_space.shape) != 1:
            raise ConfigError(
                f"a Gaussian policy needs a flat (1-D) box action space, got shape {action_space.shape}"
            )
        actor = GaussianPolicy(
            action_dim=action_space.shape[0], hidden=hidden, activation=act, log_std_init=log_std_init
        )
        return Agent(actor, critic, lambda out: diag_gaussian(*out), lambda out: out[0], obs_ndim)
    raise ConfigError(f"action space must be Discrete or Box, got {type(action_space).__name__}")


def features(agent: Agent, obs: Array) -> Array:
    return flatten_obs(jnp.asarray(obs, jnp.float32), agent.obs_ndim)


def explained_variance(pred: Array, target: Array) -> Array:
    """``1 − Var[target − pred] / Var[target]``: 1 is perfect, 0 no better than a constant (NaN if Var = 0)."""
    var = jnp.var(target)
    return jnp.where(var > 0, 1.0 - jnp.var(target - pred) / jnp.where(var > 0, var, 1.0), jnp.nan)


def make_batch(
    agent: Agent, params: Params, traj: Transition, gamma: Array | float, lam: Array | float
) -> Batch:
    """One forward pass under θ_k, φ_k over a ``[T, B]`` rollout, then GAE(λ) per environment; flat ``[T·B]``.

    ``discount_t = γ·(1 − terminated_t)`` (no bootstrap through a termination); ``v_next`` is V at the
    true next observation (a truncation bootstraps from it); ``reset_t`` stops the recursion at either end.
    """
    obs_t = features(agent, traj.obs)
    dist_old = agent.actor.apply(params["actor"], obs_t)
    logp_old = agent.distribution(dist_old).log_prob(traj.action)
    v_t = agent.critic.apply(params["critic"], obs_t)
    v_next = agent.critic.apply(params["critic"], features(agent, traj.next_obs))
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    reset_t = traj.terminated | traj.truncated
    adv, returns = jax.vmap(gae, in_axes=(1, 1, 1, 1, None, 1), out_axes=1)(
        traj.reward, discount_t, v_t, v_next, lam, reset_t
    )
    batch = Batch(obs_t, traj.action, logp_old, dist_old, v_t, adv, returns)
    n = traj.reward.shape[0] * traj.reward.shape[1]
    return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), batch)
