"""Pieces every actor-critic algorithm shares (PPO, A2C, …), written once.

- :func:`make_agent`: actor (categorical or diagonal Gaussian head) and critic ``V_φ`` for an environment;
- :func:`make_batch`: the *estimate* step — one forward pass under ``θ_k, φ_k`` over a rollout and
  GAE(λ) per environment (``discount_t = γ(1 − terminated)``; truncation bootstraps from
  ``V_φ(true next obs)``; never through a termination); :func:`estimate`: the same with the estimator an
  :class:`~proxrl.deep.config.AdvantageEstimator` selects (TD, n-step, GAE, Monte Carlo, or the Q forms
  with an action-value critic);
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

from proxrl.deep.config import ACTIVATIONS, GAE, Network, PolicyStep, Rollout
from proxrl.deep.distributions import categorical, diag_gaussian, sigma_schedule
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, Space
from proxrl.deep.loops import env_for as as_env  # noqa: F401  (re-exported: the algorithms' env lookup)
from proxrl.deep.networks import (
    CategoricalPolicy,
    DiscreteQNetwork,
    GaussianPolicy,
    QNetwork,
    ScheduledGaussianPolicy,
    ValueNetwork,
    flatten_obs,
)
from proxrl.errors import ConfigError, check_int_at_least
from proxrl.estimators import discounted_returns, gae, n_step_returns, td_errors
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
    critic_kind: str = "v"
    """"v": the critic is V_φ(s); "q_discrete": Q_φ(s, ·) over a finite action set; "q": Q_φ(s, a) on a box."""
    action_dim: int = 0
    """Box actions: the dimension d of an action (0 for a finite action set)."""
    sigma_at: Callable[[Array], Array] | None = None
    """A scheduled Gaussian σ: update k ↦ σ_k (None: σ is learned, or the actions are discrete)."""

    def init(self, k_actor: PRNGKey, k_critic: PRNGKey, obs: Array) -> Params:
        """``{"actor": θ, "critic": φ}`` initialised on example observations ``obs[B, ...]``."""
        x = features(self, obs)
        if self.critic_kind == "q":
            phi = self.critic.init(k_critic, x, jnp.zeros((*x.shape[:-1], self.action_dim), x.dtype))
        else:
            phi = self.critic.init(k_critic, x)
        theta = self.scheduled(self.actor.init(k_actor, x), jnp.zeros((), jnp.int32))  # σ_0, if scheduled
        return {"actor": theta, "critic": phi}

    def scheduled(self, theta: Params, update: Array) -> Params:
        """The actor's parameters θ with the scheduled σ set to σ_k for update k = ``update`` (θ itself when σ
        is learned). A learner applies it to θ_{k+1} after each step, so that the next rollout and step use
        σ_{k+1}; σ lives in θ's collection ``"schedule"``, which no step moves (it enters through
        ``stop_gradient``)."""
        if self.sigma_at is None:
            return theta
        return {**theta, "schedule": {"sigma": jnp.asarray(self.sigma_at(update), jnp.float32)}}

    def sigma_metrics(self, update: Array) -> Metrics:
        """``{"sigma": σ_k}`` for update k = ``update`` when σ is scheduled (the σ of its rollout and step), else
        nothing."""
        if self.sigma_at is None:
            return {}
        return {"sigma": jnp.asarray(self.sigma_at(update), jnp.float32)}

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

    def value(self, phi: Params, obs: Array, action: Array | None = None) -> Array:
        """The critic on observation features ``obs[N, D]``: ``V_φ(s)``, or ``Q_φ(s, a)`` with an action-value
        critic (``action[N, ...]`` then required)."""
        if self.critic_kind == "v":
            return self.critic.apply(phi, obs)
        if self.critic_kind == "q":
            return self.critic.apply(phi, obs, action)
        q_all = self.critic.apply(phi, obs)
        return jnp.take_along_axis(q_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def expected_q(self, phi: Params, pi: Any, obs: Array, key: PRNGKey | None, samples: int) -> Array:
        """``E_{a∼π(·|s)} Q_φ(s, a)`` (an action-value critic): ``Σ_a π(a|s)·Q_φ(s, a)`` exactly over a finite
        action set; over a box the Monte Carlo mean of ``Q_φ(s, a_m)`` over ``samples`` draws a_m ∼ π(·|s)."""
        if self.critic_kind == "q_discrete":
            return jnp.sum(pi.probs * self.critic.apply(phi, obs), axis=-1)
        draws = pi.sample(seed=key, sample_shape=(samples,))  # [M, ..., d]
        return jnp.mean(jax.vmap(lambda a: self.critic.apply(phi, obs, a))(draws), axis=0)

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


def policy_sigma(
    network: Network, rollout: Rollout, total_steps: int | None
) -> Callable[[Array], Array] | None:
    """The scheduled σ of a :class:`~proxrl.deep.config.PolicyNetwork` as update k ↦ σ_k (None when σ is learned):
    :func:`~proxrl.deep.distributions.sigma_schedule` from ``sigma_start`` to ``sigma_end`` read at the k·T·B
    environment steps collected before update k, over ``sigma_horizon`` steps (0: the run's budget
    ``total_steps``; a one-line ConfigError without one)."""
    kind = getattr(network, "sigma", "learned")
    if kind == "learned":
        return None
    horizon = network.sigma_horizon or total_steps
    if horizon is None:
        raise ConfigError(
            "sigma_horizon = 0 (the run's budget) needs the run's step budget: give total_steps"
        )
    schedule = sigma_schedule(network.sigma_start, network.sigma_end, horizon, kind)
    return lambda update: schedule(jnp.asarray(update, jnp.float32) * rollout.size)


def make_agent(
    observation_space: Space,
    action_space: Space,
    network: Network,
    q_critic: bool = False,
    sigma_at: Callable[[Array], Array] | None = None,
) -> Agent:
    """Categorical MLP for a discrete action space, Gaussian for a box: σ learned (initially
    exp(``log_std_init``) of a :class:`~proxrl.deep.config.PolicyNetwork`), or with ``sigma_at`` (update k ↦ σ_k,
    :func:`policy_sigma`) scheduled (:class:`~proxrl.deep.networks.ScheduledGaussianPolicy`, σ_0 =
    ``sigma_at(0)`` set by :meth:`Agent.init`); MLP critic V_φ(s), or with ``q_critic`` Q_φ(s, ·)
    (:class:`~proxrl.deep.networks.DiscreteQNetwork`, finite actions) or Q_φ(s, a)
    (:class:`~proxrl.deep.networks.QNetwork`, a box)."""
    hidden, act = tuple(network.hidden), ACTIVATIONS[network.activation]
    log_std_init = getattr(network, "log_std_init", 0.0)
    critic = ValueNetwork(hidden=hidden, activation=act)
    obs_ndim = len(observation_space.shape)
    if isinstance(action_space, DiscreteSpace):
        if sigma_at is not None:
            raise ConfigError(
                f"sigma={network.sigma!r} schedules a Gaussian policy's σ, but the action space is "
                f"Discrete({action_space.n}): use sigma='learned'"
            )
        actor = CategoricalPolicy(num_actions=action_space.n, hidden=hidden, activation=act)
        argmax = lambda logits: jnp.argmax(logits, axis=-1)
        if q_critic:
            critic = DiscreteQNetwork(num_actions=action_space.n, hidden=hidden, activation=act)
            return Agent(actor, critic, categorical, argmax, obs_ndim, "q_discrete")
        return Agent(actor, critic, categorical, argmax, obs_ndim)
    if isinstance(action_space, BoxSpace):
        if len(action_space.shape) != 1:
            raise ConfigError(
                f"a Gaussian policy needs a flat (1-D) box action space, got shape {action_space.shape}"
            )
        d = action_space.shape[0]
        if sigma_at is None:
            actor = GaussianPolicy(action_dim=d, hidden=hidden, activation=act, log_std_init=log_std_init)
        else:
            actor = ScheduledGaussianPolicy(action_dim=d, hidden=hidden, activation=act)
        dist, mean = lambda out: diag_gaussian(*out), lambda out: out[0]
        critic_kind, critic = ("q", QNetwork(hidden=hidden, activation=act)) if q_critic else ("v", critic)
        return Agent(actor, critic, dist, mean, obs_ndim, critic_kind, d, sigma_at)
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


def estimate(
    agent: Agent,
    params: Params,
    traj: Transition,
    gamma: Array | float,
    advantage: GAE,
    key: PRNGKey | None = None,
) -> Batch:
    """The estimate step Â_k under θ_k, φ_k with the estimator ``advantage`` selects (a
    :class:`~proxrl.deep.config.GAE` piece is GAE(λ)); flat ``[T·B]``. With ``discount_t = γ(1 − terminated_t)``
    and every window stopped at an episode end (``reset_t``) or at the end of the rollout, where it bootstraps
    from the critic at the true next observation:

    - ``"gae"``: :func:`make_batch` (GAE(λ), returns the λ-returns);
    - ``"td"``: ``Â_t = r_t + γ_t V(s_{t+1}) − V(s_t)`` (:func:`proxrl.estimators.td_errors`), returns the TD targets;
    - ``"n_step"``: ``Â_t = G_t^(n) − V(s_t)``, ``G_t^(n) = r_t + … + γ^{n−1} r_{t+n−1} + γ^n V(s_{t+n})``
      (:func:`proxrl.estimators.n_step_returns`), returns G^(n);
    - ``"mc"``: ``Â_t = G_t − V(s_t)``, G_t the discounted return-to-go (:func:`proxrl.estimators.discounted_returns`)
      whose unobserved tail beyond the rollout (and beyond a truncation) is V at the true next observation;
    - ``"q"``: ``Â_t = Q(s_t, a_t) − E_{a∼π_θk} Q(s_t, a)``, returns the SARSA targets ``r_t + γ_t Q(s_{t+1}, a_{t+1})``;
    - ``"q_n_step"``: ``Â_t = G_t^(n) − E_{a∼π_θk} Q(s_t, a)`` with G^(n) bootstrapped from ``Q(s_{t+n}, a_{t+n})``,
      returns G^(n) (the n-step SARSA return).

    In the Q forms the bootstrap ``Q(s_{t+1}, a_{t+1})`` uses the rollout's next action where the rollout
    continues the episode; after its last step or a truncation (s_{t+1} is not followed in the data) it is
    ``E_{a∼π_θk(·|s_{t+1})} Q(s_{t+1}, a)``. ``value_old`` is the critic at the batch's inputs, V_φk(s_t) or
    Q_φk(s_t, a_t). ``key``: for the Monte Carlo E_π Q over a box (``num_action_samples`` draws).
    """
    kind = getattr(advantage, "estimator", "gae")
    if kind == "gae":
        return make_batch(agent, params, traj, gamma, advantage.gae_lambda)
    obs_t = features(agent, traj.obs)
    next_t = features(agent, traj.next_obs)
    out_t = agent.actor.apply(params["actor"], obs_t)
    pi_t = agent.distribution(out_t)
    logp_old = pi_t.log_prob(traj.action)
    phi = params["critic"]
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    reset_t = traj.terminated | traj.truncated
    n = advantage.n_steps if kind in ("n_step", "q_n_step") else 1
    stream = lambda f: jax.vmap(f, in_axes=1, out_axes=1)  # over environments: [T, B] → [T, B]
    if kind in ("td", "n_step", "mc"):
        v_t = agent.value(phi, obs_t)
        v_next = agent.value(phi, next_t)
        if kind == "td":
            adv = td_errors(traj.reward, discount_t, v_t, v_next)
            returns = adv + v_t
        elif kind == "n_step":
            returns = stream(lambda r, d, v, e: n_step_returns(r, d, v, n, reset_t=e))(
                traj.reward, discount_t, v_next, reset_t
            )
            adv = returns - v_t
        else:
            returns = stream(lambda r, d, v, e: discounted_returns(r, d, v[-1], reset_t=e, v_next=v))(
                traj.reward, discount_t, v_next, reset_t
            )
            adv = returns - v_t
        value_old = v_t
    else:
        samples = getattr(advantage, "num_action_samples", 1)
        k_t, k_next = (None, None) if key is None else jax.random.split(key)
        q_sa = agent.value(phi, obs_t, traj.action)  # Q_φk(s_t, a_t)
        baseline = agent.expected_q(phi, pi_t, obs_t, k_t, samples)  # E_{a∼π_θk} Q_φk(s_t, a)
        pi_next = agent.distribution(agent.actor.apply(params["actor"], next_t))
        q_next = agent.expected_q(phi, pi_next, next_t, k_next, samples)
        follows = ~reset_t[:-1]  # row h + 1 continues row h's episode
        q_next = q_next.at[:-1].set(jnp.where(follows, q_sa[1:], q_next[:-1]))
        if kind == "q":
            returns = traj.reward + discount_t * q_next
            adv = q_sa - baseline
        else:
            returns = stream(lambda r, d, v, e: n_step_returns(r, d, v, n, reset_t=e))(
                traj.reward, discount_t, q_next, reset_t
            )
            adv = returns - baseline
        value_old = q_sa
    batch = Batch(obs_t, traj.action, logp_old, out_t, value_old, adv, returns)
    size = traj.reward.shape[0] * traj.reward.shape[1]
    return jax.tree.map(lambda a: a.reshape(size, *a.shape[2:]), batch)
