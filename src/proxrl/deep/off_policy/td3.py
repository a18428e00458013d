"""Twin Delayed DDPG (TD3; Fujimoto et al., 2018): DDPG with three fixes for Q over-estimation.

Per gradient step, on a minibatch {(s_i, a_i, r_i, s'_i, terminated_i)} drawn uniformly from the buffer::

    ã'_i = clip(μ_θtar(s'_i) + clip(σ̃·ε_i, −c, c)·h, low, high),  ε_i ∼ N(0, I)   # target policy smoothing
    y_i  = r_i + γ(1 − terminated_i)·min_{j=1,2} Q_φtar,j(s'_i, ã'_i)              # clipped double Q
    φ_j ← φ_j − λ∇_φj (1/n) Σ_i (Q_φj(s_i, a_i) − y_i)²,   j = 1, 2                # twin critics
    every d = policy_delay critic steps:                                            # delayed updates
        θ     ← θ + η·(1/n) Σ_i ∇_θ Q_φ1(s_i, μ_θ(s_i))                              # DPG on the first critic
        θ_tar ← τθ + (1 − τ)θ_tar,   φ_tar ← τφ + (1 − τ)φ_tar

(h = (high − low)/2: noise is in units of the half range, as CleanRL's). Behaviour policy:
a = clip(μ_θ(s) + σ·h·ε, low, high), uniform random actions for the first ``learning_starts`` steps.
The replay buffer, warm-up and update schedule are :func:`proxrl.deep.off_policy.common.replay_learner`'s;
this module is the update above.

    from proxrl.run.train import make_train

    config = TD3Config()
    train = make_train(config, "Pendulum-v1", total_steps=20_000)
    vmapped = jax.vmap(train, axis_name=loops.SEED_AXIS)  # keeps the warm-up and the delay branches
    state, metrics = jax.jit(vmapped)(jax.random.split(jax.random.key(0), 5))
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep import loops
from proxrl.deep.config import Network, Rollout, Step
from proxrl.deep.jax_envs import BoxSpace, Space
from proxrl.deep.off_policy.common import (
    CriticBatch,
    Exploration,
    ReplaySchedule,
    TargetCritic,
    action_scale,
    critic_step,
    deterministic_agent,
    replay_learner,
    replay_network,
    replay_rollout,
)
from proxrl.errors import check_in_range, check_int_at_least
from proxrl.prox import StepState
from proxrl.prox.critic import polyak, td_target
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """TD3's two fixes beyond twin critics: target policy smoothing and a delayed actor."""

    policy_noise: float = 0.2
    """σ̃ ≥ 0 of the target policy smoothing noise, in units of the action half range."""
    noise_clip: float = 0.5
    """c ≥ 0: the smoothing noise is clipped to ±c (units of the half range)."""
    policy_delay: int = 2
    """d: actor and target networks are updated once every d critic steps."""

    def validate(self) -> None:
        """σ̃, c ≥ 0; d an integer ≥ 1."""
        check_in_range("policy_noise", self.policy_noise, 0.0, float("inf"), high_open=True)
        check_in_range("noise_clip", self.noise_clip, 0.0, float("inf"), high_open=True)
        check_int_at_least("policy_delay", self.policy_delay, 1)


@dataclasses.dataclass(frozen=True)
class TD3Config(Config):
    """TD3: defaults follow CleanRL's td3_continuous_action.py except learning_starts (1000, for
    Pendulum-scale budgets of ~20k steps; CleanRL uses 25k on MuJoCo)."""

    rollout: Rollout = dataclasses.field(default_factory=replay_rollout)
    network: Network = dataclasses.field(default_factory=replay_network)
    step: Step = dataclasses.field(default_factory=Step)
    replay: ReplaySchedule = dataclasses.field(default_factory=ReplaySchedule)
    critic: TargetCritic = dataclasses.field(default_factory=TargetCritic)
    exploration: Exploration = dataclasses.field(default_factory=Exploration)
    smoothing: Smoothing = dataclasses.field(default_factory=Smoothing)


class TD3State(NamedTuple):
    """``params``/``target`` = ``{"actor": θ, "critic": φ}`` (φ stacks both critics on a leading axis), the
    actor step's state and the critics' Adam state."""

    params: Params
    target: Params
    actor_step: StepState
    critic_opt: optax.OptState
    step: Array
    """Critic steps done (int32); the actor moves when ``step % policy_delay == 0`` after incrementing."""


def target_action(
    key: PRNGKey, mu_next: Array, space: BoxSpace, policy_noise: float, noise_clip: float
) -> Array:
    """Target policy smoothing: ã' = clip(μ_tar(s') + clip(σ̃·ε, −c, c)·h, low, high), ε ∼ N(0, I)."""
    _, half = action_scale(space)
    eps = jnp.clip(policy_noise * jax.random.normal(key, mu_next.shape), -noise_clip, noise_clip)
    return jnp.clip(mu_next + eps * half, jnp.asarray(space.low), jnp.asarray(space.high))


def make_learner(
    config: TD3Config, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """TD3 as a :class:`~proxrl.types.Learner` (:func:`~proxrl.deep.off_policy.common.replay_learner`).

    Metrics per learn call (averaged over its gradient steps; NaN before ``learning_starts``):
    ``critic_loss`` (sum of both critics' mean squared TD errors), ``q`` (mean Q_φ1(s_i, a_i)),
    ``target_q`` (mean y), ``actor_loss`` (−(1/n) Σ Q_φ1(s_i, μ_θ(s_i)), averaged over the steps that
    moved the actor), ``actor_updated`` (the fraction of steps that did), and the actor step's
    ``surrogate_gain``, ``step_norm``, ``grad_norm`` (over the steps that moved it).
    """
    config.validate()
    agent = deterministic_agent(
        config, action_space, "TD3", num_critics=2
    )  # the actor ascends the first critic
    actor, critic, step, critic_tx, space = (
        agent.actor,
        agent.critic,
        agent.step,
        agent.critic_tx,
        agent.space,
    )

    def init(key: PRNGKey, obs: Array) -> TD3State:
        params, actor_state, critic_opt = agent.init(key, obs)
        return TD3State(params, params, actor_state, critic_opt, jnp.zeros((), jnp.int32))

    def act(state: TD3State, obs: Array, key: PRNGKey) -> Array:
        return agent.explore(state.params, obs, key, config.exploration.exploration_noise)

    def mode(state: TD3State, obs: Array) -> Array:
        return agent.mode(state.params, obs)

    def actor_update(state: TD3State, obs: Array) -> tuple[TD3State, Metrics]:
        phi = state.params["critic"]
        theta, actor_state, metrics = step.update(
            state.params["actor"], state.actor_step, CriticBatch(obs, phi), None
        )
        params = {"actor": theta, "critic": phi}
        return state._replace(
            params=params, target=polyak(state.target, params, config.critic.tau), actor_step=actor_state
        ), metrics

    def no_actor_update(state: TD3State, obs: Array) -> tuple[TD3State, Metrics]:
        shapes = jax.eval_shape(actor_update, state, obs)[1]
        return state, {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in shapes.items()}

    def update(state: TD3State, batch: Transition, key: PRNGKey) -> tuple[TD3State, Metrics]:
        # y = r + γ(1 − terminated)·min_j Q_φtar,j(s', ã')
        mu_next = actor.apply(state.target["actor"], batch.next_obs)
        a_next = target_action(
            key, mu_next, space, config.smoothing.policy_noise, config.smoothing.noise_clip
        )
        q_next = jnp.min(critic.apply(state.target["critic"], batch.next_obs, a_next), axis=0)
        y = td_target(batch.reward, batch.terminated, q_next, config.rollout.gamma)

        def critic_loss(phi: Params, b: Transition) -> tuple[Array, Metrics]:
            q = critic.apply(phi, b.obs, b.action)  # [2, n]
            return jnp.sum(jnp.mean((q - y) ** 2, axis=-1)), {"q": jnp.mean(q[0])}

        phi, critic_opt, metrics = critic_step(
            critic_loss, critic_tx, state.params["critic"], state.critic_opt, batch
        )
        state = state._replace(
            params={"actor": state.params["actor"], "critic": phi}, critic_opt=critic_opt, step=state.step + 1
        )
        # every policy_delay critic steps: the actor step, then the targets
        due = loops.lockstep(
            state.step % config.smoothing.policy_delay == 0
        )  # skipped, not masked, between delays
        state, actor_metrics = jax.lax.cond(due, actor_update, no_actor_update, state, batch.obs)
        metrics.update(actor_metrics, target_q=jnp.mean(y), actor_updated=due.astype(jnp.float32))
        return state, metrics

    return replay_learner("td3", init, act, mode, update, config, observation_space, action_space)
