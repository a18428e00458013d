"""Deterministic Policy Gradient in the lecture's on-policy form: rollouts from μ_θk plus exploration, the critic
fitted on SARSA targets, no replay buffer.

The lecture's "Deterministic Policy Gradient Algorithm"::

    for k = 1, 2, ...:
        use π_θk (μ_θk plus exploration noise) to collect trajectories (s_h, a_h, r_h)
        g       = (1/N) Σ_{i,h} ∇_θ Q_φk(s_h, μ_θ(s_h))|_{θ=θ_k}
        θ_{k+1} = θ_k + η·g
        φ_{k+1} = φ_k − λ∇_φ Σ_{i,h} (Q_φ(s_h, a_h) − r_h − γ·Q_φk(s_{h+1}, a_{h+1}))²|_{φ=φ_k}

With ``actor_steps = 1`` and ``q_epochs = q_minibatches = 1`` this is the slide's algorithm step for step; the
defaults take 10 Adam steps of each under the same (θ_k, φ_k) targets (the proximal step argmax_θ
(1/N) Σ Q_φk(s_h, μ_θ(s_h)) − (1/η)·D solved further, and the critic's regression solved further), which on
Pendulum is the difference between not learning and learning (docs/methods/dpg.md).

Each update collects a fresh ``num_steps × num_envs`` rollout with a_h = clip(μ_θk(s_h) + σ·half_range·ε, low, high),
ε ∼ N(0, I), and uses it once (:func:`sarsa_targets`, then one actor step and the critic's fit, both from
(θ_k, φ_k)). The target is SARSA's: a_{h+1} is the action the rollout took next (exploration included), so
Q_φ estimates the value of the behaviour policy; where the rollout does not hold a_{h+1} (its last step, a
truncation, whose true next observation is not followed in the data) the target uses μ_θk(s_{h+1}). A termination
never bootstraps. The replay form (buffer, target Q_φk(s', μ_θk(s')) for any stored transition) is
:mod:`proxrl.deep.off_policy.dpg`; see docs/methods/dpg.md for which is which.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import Network, Rollout, Step
from proxrl.deep.jax_envs import Space
from proxrl.deep.off_policy.common import (
    CriticBatch,
    Exploration,
    deterministic_agent,
    obs_features,
)
from proxrl.errors import ConfigError, check_int_at_least, check_positive
from proxrl.prox import Problem, prox_step
from proxrl.prox.critic import td_target, value_loss
from proxrl.prox.solvers import fit, gradient_steps, optimiser
from proxrl.prox.surrogates import deterministic
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class SarsaCritic:
    """The critic Q_φ(s, a), fitted after each rollout toward SARSA targets fixed at φ_k."""

    q_lr: float = 1e-3
    """Adam learning rate λ of the critic."""
    q_epochs: int = 10
    """Passes over each rollout fitting Q_φ toward the fixed targets (1 with q_minibatches 1: the lecture's single step)."""
    q_minibatches: int = 4
    """Minibatches per critic pass; must divide num_envs·num_steps."""

    def validate(self) -> None:
        """q_lr > 0; epochs and minibatches integers ≥ 1."""
        check_positive("q_lr", self.q_lr)
        check_int_at_least("q_epochs", self.q_epochs, 1)
        check_int_at_least("q_minibatches", self.q_minibatches, 1)


@dataclasses.dataclass(frozen=True)
class ActorSteps(Step):
    """The actor's step size η and how many Adam steps ascend (1/N) Σ Q_φk(s_h, μ_θ(s_h)) per rollout."""

    actor_steps: int = 10
    """Adam steps of the actor per rollout, all under the same Q_φk (1: the lecture's single step θ_k + η·g)."""

    def validate(self) -> None:
        """lr > 0, actor_steps an integer ≥ 1."""
        super().validate()
        check_int_at_least("actor_steps", self.actor_steps, 1)


@dataclasses.dataclass(frozen=True)
class DPGOnPolicyConfig(Config):
    """On-policy DPG: rollouts of num_envs × num_steps steps from μ_θ plus Gaussian noise (σ = 0.5 half ranges),
    actor_steps Adam steps of the actor and q_epochs × q_minibatches of the critic's SARSA fit per rollout, γ = 0.95,
    64×64 ReLU networks (defaults from a Pendulum sweep, docs/methods/dpg.md)."""

    rollout: Rollout = dataclasses.field(
        default_factory=lambda: Rollout(num_envs=16, num_steps=16, gamma=0.95)
    )
    network: Network = dataclasses.field(default_factory=lambda: Network(hidden=(64, 64), activation="relu"))
    step: ActorSteps = dataclasses.field(default_factory=lambda: ActorSteps(lr=1e-3))
    critic: SarsaCritic = dataclasses.field(default_factory=SarsaCritic)
    exploration: Exploration = dataclasses.field(default_factory=lambda: Exploration(exploration_noise=0.5))

    def check(self) -> None:
        """The critic's minibatch count divides the rollout size T·B."""
        if self.rollout.size % self.critic.q_minibatches:
            raise ConfigError(
                f"q_minibatches must divide num_envs·num_steps = {self.rollout.size}, "
                f"got {self.critic.q_minibatches}"
            )


class DPGOnPolicyState(NamedTuple):
    """``params = {"actor": θ, "critic": φ}``, the actor step's state, the critic's Adam state and a key (the
    critic's minibatches)."""

    params: Params
    actor_step: optax.OptState
    critic_opt: optax.OptState
    key: PRNGKey


def sarsa_targets(
    q: Callable[[Array, Array], Array],
    mu: Callable[[Array], Array],
    traj: Transition,
    gamma: Array | float,
) -> Array:
    """The lecture's SARSA targets ``y_h = r_h + γ(1 − terminated_h)·Q(s_{h+1}, a_{h+1})`` over a ``[T, B]``
    rollout (observations already features): ``a_{h+1}`` is the rollout's next action where row h + 1 continues
    row h's episode; after the last row or a truncation ``Q(s', μ(s'))`` at the true next observation.
    ``q(obs, action) -> [...]`` (Q_φk), ``mu(obs) -> action`` (μ_θk). Returns ``[T, B]``, gradients stopped."""
    q_next = q(traj.next_obs, mu(traj.next_obs))
    q_follow = q(traj.obs[1:], traj.action[1:])  # Q(s_{h+1}, a_{h+1}) for h < T − 1
    follows = ~(traj.terminated | traj.truncated)[:-1]
    q_next = q_next.at[:-1].set(jnp.where(follows, q_follow, q_next[:-1]))
    return td_target(traj.reward, traj.terminated, q_next, gamma)


def make_learner(
    config: DPGOnPolicyConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """On-policy DPG as a :class:`~proxrl.types.Learner`: ``learn`` is :func:`sarsa_targets` at (θ_k, φ_k) → the
    actor's proximal step (surrogate :func:`~proxrl.prox.surrogates.deterministic` under Q_φk, Euclidean geometry,
    ``actor_steps`` Adam steps of :func:`~proxrl.prox.solvers.gradient_steps`) → the critic's fit (``q_epochs × q_minibatches``
    Adam steps on ½(Q_φ(s, a) − y)², :func:`~proxrl.prox.solvers.fit`).

    Metrics: ``critic_loss`` (mean over the fit), ``q`` (mean Q_φk(s_h, a_h)), ``target_q`` (mean y),
    ``actor_loss`` (−(1/N) Σ Q_φk(s_h, μ_θk(s_h))), the actor step's ``surrogate_gain``, ``step_norm``,
    ``grad_norm``.
    """
    config.validate()
    agent = deterministic_agent(config, action_space, "On-policy DPG")
    actor, critic = agent.actor, agent.critic
    problem = Problem(
        deterministic(lambda b, a: critic.apply(b.critic, b.obs, a)),
        policy=lambda theta, b, key: actor.apply(theta, b.obs),
    )
    step = prox_step(problem, gradient_steps(optimiser(config.step.lr), config.step.actor_steps))
    critic_tx = optax.adam(config.critic.q_lr)
    feats = lambda obs: obs_features(obs, observation_space)

    def init(key: PRNGKey, obs: Array) -> DPGOnPolicyState:
        key, k_agent = jax.random.split(key)
        params, actor_state, _ = agent.init(k_agent, feats(obs))
        return DPGOnPolicyState(params, actor_state, critic_tx.init(params["critic"]), key)

    def act(state: DPGOnPolicyState, obs: Array, key: PRNGKey) -> Array:
        return agent.explore(state.params, feats(obs), key, config.exploration.exploration_noise)

    def mode(state: DPGOnPolicyState, obs: Array) -> Array:
        return agent.mode(state.params, feats(obs))

    def critic_loss(phi: Params, data: tuple[Array, Array, Array]) -> tuple[Array, Metrics]:
        obs, action, y = data
        return value_loss(critic.apply(phi, obs, action), None, y), {}

    def learn(state: DPGOnPolicyState, traj: Transition) -> tuple[DPGOnPolicyState, Metrics]:
        key, k_fit = jax.random.split(state.key)
        theta_k, phi_k = state.params["actor"], state.params["critic"]
        traj = traj._replace(obs=feats(traj.obs), next_obs=feats(traj.next_obs))
        # y_h = r_h + γ(1 − terminated_h)·Q_φk(s_{h+1}, a_{h+1}), fixed at (θ_k, φ_k)
        y = sarsa_targets(
            lambda o, a: critic.apply(phi_k, o, a),
            lambda o: actor.apply(theta_k, o),
            traj,
            config.rollout.gamma,
        )
        n = config.rollout.size
        obs = traj.obs.reshape(n, -1)
        action = traj.action.reshape(n, -1)
        y = y.reshape(n)
        # θ_{k+1} = θ_k + η·∇_θ (1/N) Σ Q_φk(s_h, μ_θ(s_h)) (one Adam step)
        theta, actor_state, metrics = step.update(theta_k, state.actor_step, CriticBatch(obs, phi_k), None)
        # φ_{k+1}: the SARSA regression toward y
        phi, critic_opt, fitted = fit(
            critic_loss,
            critic_tx,
            phi_k,
            state.critic_opt,
            (obs, action, y),
            k_fit,
            config.critic.q_epochs,
            config.critic.q_minibatches,
        )
        metrics = dict(
            metrics,
            critic_loss=jnp.mean(fitted["loss"]),
            q=jnp.mean(critic.apply(phi_k, obs, action)),
            target_q=jnp.mean(y),
        )
        params = {"actor": theta, "critic": phi}
        return DPGOnPolicyState(params, actor_state, critic_opt, key), metrics

    return Learner("dpg_onpolicy", init, act, mode, learn, config.rollout.num_envs, config.rollout.num_steps)
