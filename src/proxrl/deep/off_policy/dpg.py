"""Deterministic Policy Gradient (DPG; Silver et al., 2014) with a replay buffer and no target networks.

The deterministic policy gradient theorem: for a deterministic policy μ_θ,

    ∇_θ V^{μ_θ}(ρ) = Σ_s d_ρ^{μ_θ}(s) · ∇_θ μ_θ(s) · ∇_a Q^{μ_θ}(s, a)|_{a = μ_θ(s)}

(unnormalised discounted state weights d_ρ, as in the lecture). The lecture's DPG algorithm replaces Q^{μ_θ}
by a critic Q_φk and the state distribution by samples; per gradient step on a minibatch
{(s_i, a_i, r_i, s'_i, terminated_i)} drawn from the buffer::

    g     = (1/n) Σ_i ∇_θ Q_φk(s_i, μ_θ(s_i))|_{θ=θk} = (1/n) Σ_i ∇_θ μ_θk(s_i)·∇_a Q_φk(s_i, a)|_{a=μ_θk(s_i)}
    θk+1  = θk + η·g                                                   (Adam with step size η)
    φk+1  = φk − λ∇_φ (1/n) Σ_i (Q_φ(s_i, a_i) − r_i − γ(1 − terminated_i)·Q_φk(s'_i, μ_θk(s'_i)))²|_{φ=φk}

Both steps use (θk, φk): the TD target bootstraps from the *current* critic and actor (held fixed,
no target networks — that is what DDPG adds). Behaviour policy: a = clip(μ_θ(s) + σ·h·ε, low, high),
ε ∼ N(0, I) (h the action half range): DPG is off-policy, so exploration noise does not bias g.
The buffer, warm-up and schedule are :func:`proxrl.deep.off_policy.common.replay_learner`'s.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import Network, Rollout, Step
from proxrl.deep.jax_envs import Space
from proxrl.deep.off_policy.common import (
    Critic,
    CriticBatch,
    Exploration,
    ReplaySchedule,
    critic_step,
    deterministic_agent,
    replay_learner,
    replay_network,
    replay_rollout,
)
from proxrl.prox import StepState
from proxrl.prox.critic import td_target
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class DPGConfig(Config):
    """DPG: one environment stepped between updates, 256×256 ReLU networks, the actor's Adam step, the replay
    buffer, one critic without target networks and Gaussian behaviour noise (DDPG's CleanRL defaults)."""

    rollout: Rollout = dataclasses.field(default_factory=replay_rollout)
    network: Network = dataclasses.field(default_factory=replay_network)
    step: Step = dataclasses.field(default_factory=Step)
    replay: ReplaySchedule = dataclasses.field(default_factory=ReplaySchedule)
    critic: Critic = dataclasses.field(default_factory=Critic)
    exploration: Exploration = dataclasses.field(default_factory=Exploration)


class DPGState(NamedTuple):
    """``params = {"actor": θ, "critic": φ}``, the actor step's state and the critic's Adam state."""

    params: Params
    actor_step: StepState
    critic_opt: optax.OptState


def make_learner(
    config: DPGConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """DPG as a :class:`~proxrl.types.Learner` (:func:`~proxrl.deep.off_policy.common.replay_learner`).

    The actor step is :func:`~proxrl.deep.off_policy.common.actor_step` with the surrogate
    :func:`~proxrl.prox.surrogates.deterministic` under Q_φk. Metrics (averaged over a learn call's gradient
    steps; NaN before ``learning_starts``): ``critic_loss``, ``q`` (mean Q_φk(s_i, a_i)), ``target_q`` (mean TD
    target), ``actor_loss`` (−(1/n) Σ Q_φk(s_i, μ_θk(s_i))), and the actor step's ``surrogate_gain``,
    ``step_norm``, ``grad_norm``.
    """
    config.validate()
    agent = deterministic_agent(config, action_space, "DPG")
    actor, critic, step, critic_tx = agent.actor, agent.critic, agent.step, agent.critic_tx

    def init(key: PRNGKey, obs: Array) -> DPGState:
        return DPGState(*agent.init(key, obs))

    def act(state: DPGState, obs: Array, key: PRNGKey) -> Array:
        return agent.explore(state.params, obs, key, config.exploration.exploration_noise)

    def mode(state: DPGState, obs: Array) -> Array:
        return agent.mode(state.params, obs)

    def update(state: DPGState, batch: Transition, key: PRNGKey) -> tuple[DPGState, Metrics]:
        del key
        theta_k, phi_k = state.params["actor"], state.params["critic"]
        # TD target from the current (θk, φk), held fixed
        q_next = critic.apply(phi_k, batch.next_obs, actor.apply(theta_k, batch.next_obs))
        y = td_target(batch.reward, batch.terminated, q_next, config.rollout.gamma)

        def critic_loss(phi: Params, b: Transition) -> tuple[Array, Metrics]:
            q = critic.apply(phi, b.obs, b.action)
            return jnp.mean((q - y) ** 2), {"q": jnp.mean(q)}

        # φk+1: one Adam step on the TD loss; θk+1 = θk + η·g with g = ∇_θ (1/n) Σ Q_φk(s_i, μ_θ(s_i)) at θk
        phi, critic_opt, metrics = critic_step(critic_loss, critic_tx, phi_k, state.critic_opt, batch)
        theta, actor_state, actor_metrics = step.update(
            theta_k, state.actor_step, CriticBatch(batch.obs, phi_k), None
        )
        metrics.update(actor_metrics, target_q=jnp.mean(y))
        return DPGState({"actor": theta, "critic": phi}, actor_state, critic_opt), metrics

    return replay_learner("dpg", init, act, mode, update, config, observation_space, action_space)
