"""Deep Deterministic Policy Gradient (DDPG; Lillicrap et al., 2016): DPG with a replay buffer and target networks.

The lecture's DDPG, per gradient step on a minibatch {(s_i, a_i, r_i, s'_i, terminated_i)} from the buffer::

    y_i   = r_i + γ(1 − terminated_i)·Q_φtar(s'_i, μ_θtar(s'_i))
    φ     ← φ − λ∇_φ (1/n) Σ_i (Q_φ(s_i, a_i) − y_i)²
    θ     ← θ + η·(1/n) Σ_i ∇_θ Q_φ(s_i, μ_θ(s_i))          (with the updated φ)
    θ_tar ← τθ + (1 − τ)θ_tar,   φ_tar ← τφ + (1 − τ)φ_tar

Behaviour policy: a = clip(μ_θ(s) + σ·h·ε, low, high), ε ∼ N(0, I), h the action half range (Gaussian
noise as SB3 and CleanRL use, instead of the paper's Ornstein-Uhlenbeck process); uniform random actions
for the first ``learning_starts`` steps. The buffer and schedule are
:func:`proxrl.deep.off_policy.common.replay_learner`'s; this module is the update above.
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
    CriticBatch,
    Exploration,
    ReplaySchedule,
    TargetCritic,
    critic_step,
    deterministic_agent,
    replay_learner,
    replay_network,
    replay_rollout,
)
from proxrl.prox import StepState
from proxrl.prox.critic import polyak, td_target
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class DDPGConfig(Config):
    """DDPG: CleanRL's ddpg_continuous_action.py defaults (Adam 3e-4, batch 256, τ = 0.005, γ = 0.99,
    σ = 0.1, 256×256 ReLU) with the actor updated every step as in the paper and SB3, and learning_starts
    1000 for Pendulum-scale budgets (CleanRL: 25k on MuJoCo)."""

    rollout: Rollout = dataclasses.field(default_factory=replay_rollout)
    network: Network = dataclasses.field(default_factory=replay_network)
    step: Step = dataclasses.field(default_factory=Step)
    replay: ReplaySchedule = dataclasses.field(default_factory=ReplaySchedule)
    critic: TargetCritic = dataclasses.field(default_factory=TargetCritic)
    exploration: Exploration = dataclasses.field(default_factory=Exploration)


class DDPGState(NamedTuple):
    """``params``/``target`` = ``{"actor": θ, "critic": φ}``, the actor step's state and the critic's Adam state."""

    params: Params
    target: Params
    actor_step: StepState
    critic_opt: optax.OptState


def make_learner(
    config: DDPGConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """DDPG as a :class:`~proxrl.types.Learner` (:func:`~proxrl.deep.off_policy.common.replay_learner`).

    The actor step is :func:`~proxrl.deep.off_policy.common.actor_step` with the surrogate
    :func:`~proxrl.prox.surrogates.deterministic` under the updated critic. Metrics (averaged over a learn
    call's gradient steps; NaN before ``learning_starts``): ``critic_loss``, ``q`` (mean Q_φ(s_i, a_i)),
    ``target_q`` (mean y), ``actor_loss`` (−(1/n) Σ Q_φ(s_i, μ_θ(s_i))), and the actor step's
    ``surrogate_gain``, ``step_norm``, ``grad_norm``.
    """
    config.validate()
    agent = deterministic_agent(config, action_space, "DDPG")
    actor, critic, step, critic_tx = agent.actor, agent.critic, agent.step, agent.critic_tx

    def init(key: PRNGKey, obs: Array) -> DDPGState:
        params, actor_state, critic_opt = agent.init(key, obs)
        return DDPGState(params, params, actor_state, critic_opt)

    def act(state: DDPGState, obs: Array, key: PRNGKey) -> Array:
        return agent.explore(state.params, obs, key, config.exploration.exploration_noise)

    def mode(state: DDPGState, obs: Array) -> Array:
        return agent.mode(state.params, obs)

    def update(state: DDPGState, batch: Transition, key: PRNGKey) -> tuple[DDPGState, Metrics]:
        del key  # deterministic given the batch
        # y = r + γ(1 − terminated)·Q_φtar(s', μ_θtar(s'))
        q_next = critic.apply(
            state.target["critic"], batch.next_obs, actor.apply(state.target["actor"], batch.next_obs)
        )
        y = td_target(batch.reward, batch.terminated, q_next, config.rollout.gamma)

        def critic_loss(phi: Params, b: Transition) -> tuple[Array, Metrics]:
            q = critic.apply(phi, b.obs, b.action)
            return jnp.mean((q - y) ** 2), {"q": jnp.mean(q)}

        phi, critic_opt, metrics = critic_step(
            critic_loss, critic_tx, state.params["critic"], state.critic_opt, batch
        )
        # θ ← θ + η·∇_θ (1/n) Σ Q_φ(s_i, μ_θ(s_i))
        theta, actor_state, actor_metrics = step.update(
            state.params["actor"], state.actor_step, CriticBatch(batch.obs, phi), None
        )
        params = {"actor": theta, "critic": phi}
        state = DDPGState(params, polyak(state.target, params, config.critic.tau), actor_state, critic_opt)
        metrics.update(actor_metrics, target_q=jnp.mean(y))
        return state, metrics

    return replay_learner("ddpg", init, act, mode, update, config, observation_space, action_space)
