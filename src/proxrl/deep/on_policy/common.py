"""Pieces every actor-critic algorithm shares (PPO, A2C, …), written once.

- :class:`RolloutConfig`: the fields and checks every on-policy config shares;
- :func:`make_agent`: actor (categorical or diagonal Gaussian head) and critic ``V_φ`` for an environment;
- :func:`make_batch`: the *estimate* step — one forward pass under ``θ_k, φ_k`` over a rollout and
  GAE(λ) per environment (``discount_t = γ(1 − terminated)``; truncation bootstraps from
  ``V_φ(true next obs)``; never through a termination);
- :func:`explained_variance`: the standard critic diagnostic.

Collection, episode statistics and evaluation are the loop's (:mod:`proxrl.deep.loops`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from proxrl.deep.distributions import categorical, diag_gaussian
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, Space
from proxrl.deep.loops import env_for as as_env  # noqa: F401  (re-exported: the algorithms' env lookup)
from proxrl.deep.networks import CategoricalPolicy, GaussianPolicy, ValueNetwork, flatten_obs
from proxrl.errors import ConfigError, check_choice, check_in_range, check_int_at_least, check_positive
from proxrl.estimators import gae
from proxrl.prox.solvers import linear_anneal
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": nn.tanh, "relu": nn.relu}


def check_rollout_and_network(cfg: Any) -> None:
    """Checks every learner config shares (one-line :class:`ConfigError`): ``num_envs`` and ``num_steps``
    integers ≥ 1, ``hidden`` at least one layer of width ≥ 1, ``activation`` one of :data:`ACTIVATIONS`."""
    for name in ("num_envs", "num_steps"):
        check_int_at_least(name, getattr(cfg, name), 1)
    check_choice("activation", cfg.activation, tuple(ACTIVATIONS))
    if len(cfg.hidden) == 0:
        raise ConfigError("hidden must list at least one layer width, got ()")
    for width in cfg.hidden:
        check_int_at_least("hidden layer width", width, 1)


def num_updates(total_steps: int, rollout_size: int) -> int:
    """Updates of ``rollout_size`` environment steps in a budget of ``total_steps`` (whole updates, at least one:
    a one-line ConfigError otherwise). The budget is the run's (``--total-steps``), never an algorithm's."""
    total_steps = check_int_at_least("total_steps", total_steps, 1)
    if total_steps < rollout_size:
        raise ConfigError(
            f"total_steps must be >= num_envs·num_steps = {rollout_size} (one update), got {total_steps}"
        )
    return total_steps // rollout_size


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """The hyperparameters every on-policy method has (REINFORCE, NPG, Q actor-critic, A2C, PPO), declared
    once: the rollout shape T×B, the networks and the policy step's learning rate, discount and gradient clip
    (the step budget is the run's). An algorithm's config extends it and may restate a field to change its
    default."""

    num_envs: int = 8
    """Parallel environments B stepped in lockstep (vmapped)."""
    num_steps: int = 128
    """Steps T per environment per rollout; one update consumes the T·B transitions."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and (separate) critic MLPs."""
    activation: str = "tanh"
    """Hidden activation: "tanh" or "relu"."""
    log_std_init: float = 0.0
    """Initial log σ of the Gaussian policy (continuous actions; σ is a learned, state-independent parameter)."""
    lr: float = 1e-3
    """Learning rate η of the policy step (its initial value when annealed)."""
    gamma: float = 0.99
    """Discount γ ∈ [0, 1]."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this value."""

    @property
    def rollout_size(self) -> int:
        """Transitions per update, N = T·B."""
        return self.num_envs * self.num_steps

    def validate(self) -> Self:
        """Raise :class:`ConfigError` (one line) on a bad value; return ``self``. Checks the rollout shape
        (integers ≥ 1), the network shape, lr > 0, γ ∈ [0, 1] and a positive gradient-norm clip; a subclass
        checks its own fields after ``super().validate()``."""
        check_rollout_and_network(self)
        check_positive("lr", self.lr)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_positive("max_grad_norm", self.max_grad_norm)
        return self


def policy_lr(config: Any, updates: int | None, steps_per_update: int = 1) -> Array | float | optax.Schedule:
    """The policy optimiser's step size: ``config.lr``, or with ``config.anneal_lr`` the schedule
    ``lr·(1 − k/K)`` during update k of K = ``updates`` (``steps_per_update`` optimiser steps per update);
    annealing needs the run's budget (a one-line ConfigError without it)."""
    if not config.anneal_lr:
        return config.lr
    if updates is None:
        raise ConfigError("anneal_lr needs the run's step budget: build the learner with total_steps")
    return linear_anneal(config.lr, updates, steps_per_update)


def step_diagnostics(config: Any, updates: int | None, batch: Batch, update: Array) -> Metrics:
    """What an actor-critic reports besides its step: ``explained_variance`` of V_φk on the λ-returns and the
    ``learning_rate`` in force during update ``update`` of ``updates``."""
    lr = policy_lr(config, updates)
    lr_now = lr(update) if callable(lr) else lr
    return {
        "explained_variance": explained_variance(batch.value_old, batch.returns),
        "learning_rate": jnp.asarray(lr_now, jnp.float32),
    }


def check_actor_critic_coefficients(cfg: Any) -> None:
    """The coefficients of the GAE actor-critics (A2C, PPO): λ ∈ [0, 1], entropy and value coefficients
    ≥ 0 (one-line :class:`ConfigError` on failure)."""
    check_in_range("gae_lambda", cfg.gae_lambda, 0.0, 1.0)
    check_in_range("ent_coef", cfg.ent_coef, 0.0, float("inf"), high_open=True)
    check_in_range("vf_coef", cfg.vf_coef, 0.0, float("inf"), high_open=True)


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
        config: RolloutConfig,
    ) -> Learner:
        """An on-policy algorithm's :class:`~proxrl.types.Learner`: it acts by sampling a ∼ π_θ(·|s) and is
        evaluated with the mode; the algorithm's state keeps θ in ``state.params["actor"]``."""
        return Learner(
            name,
            init,
            lambda state, obs, key: self.sample(state.params, obs, key),
            lambda state, obs: self.act_mode(state.params, obs),
            learn,
            config.num_envs,
            config.num_steps,
        )


def make_agent(
    observation_space: Space,
    action_space: Space,
    hidden: tuple[int, ...],
    activation: str,
    log_std_init: float = 0.0,
) -> Agent:
    """Categorical MLP for a discrete action space, Gaussian (learned log σ) for a box; MLP critic."""
    act = ACTIVATIONS[activation]
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
