"""Implicit actor-critic: the implicit policy a = g_θ(s, ξ) trained through a learned Q by reparameterisation.

The lecture's deterministic policy gradient viewpoint with a noise input: the action is a differentiable function
of θ for each fixed ξ, so the gradient of E_ξ Q_φ(s, g_θ(s, ξ)) needs no density,

    g      = (1/n) Σ_i ∇_θ Q_φ(s_i, g_θ(s_i, ξ_i)),        ξ_i ∼ N(0, I) drawn afresh
    θ     ← θ + η g                                        (Euclidean proximal step, Adam-preconditioned)
    y_i   = r_i + γ(1 − terminated_i)·Q_φtar(s'_i, g_θtar(s'_i, ξ'_i))
    φ     ← φ − λ∇_φ (1/n) Σ_i (Q_φ(s_i, a_i) − y_i)²,     φ_tar, θ_tar ← Polyak averages

DDPG's update (:mod:`proxrl.deep.off_policy.ddpg`) with μ_θ(s) replaced by g_θ(s, ξ); the replay buffer and the
schedule are :func:`proxrl.deep.off_policy.common.replay_learner`'s. The behaviour policy samples ξ and adds
DDPG's Gaussian exploration noise; evaluation uses g_θ(s, 0). Without an entropy term the maximiser of
E_ξ Q(s, g_θ(s, ξ)) may put all its mass on argmax_a Q, so the learned policy can become deterministic (g
ignoring ξ), as the deterministic policy gradient theorem's optimum is.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import ACTIVATIONS, Rollout, Step
from proxrl.deep.implicit.policy import ImplicitNetwork, implicit_policy, noise
from proxrl.deep.jax_envs import Space
from proxrl.deep.networks import QNetwork
from proxrl.deep.off_policy.common import (
    CriticBatch,
    Exploration,
    ReplaySchedule,
    TargetCritic,
    actor_step,
    critic_step,
    gaussian_explore,
    replay_learner,
    replay_rollout,
    require_box,
)
from proxrl.deep.off_policy.ddpg import DDPGState
from proxrl.prox.critic import polyak, td_target
from proxrl.prox.surrogates import deterministic
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


def implicit_ac_network() -> ImplicitNetwork:
    """256×256 ReLU generator and critic (DDPG's), one noise input."""
    return ImplicitNetwork(hidden=(256, 256), activation="relu", noise_dim=1)


@dataclasses.dataclass(frozen=True)
class ImplicitACConfig(Config):
    """Implicit actor-critic: DDPG's defaults (Adam 3e-4, batch 256, τ = 0.005, γ = 0.99, σ = 0.1, 256×256 ReLU, 1000 warm-up steps) with the actor a = g(s, ξ) fed one noise input."""

    rollout: Rollout = dataclasses.field(default_factory=replay_rollout)
    network: ImplicitNetwork = dataclasses.field(default_factory=implicit_ac_network)
    step: Step = dataclasses.field(default_factory=Step)
    replay: ReplaySchedule = dataclasses.field(default_factory=ReplaySchedule)
    critic: TargetCritic = dataclasses.field(default_factory=TargetCritic)
    exploration: Exploration = dataclasses.field(default_factory=Exploration)


ImplicitACState = DDPGState
"""DDPG's state: ``params``/``target`` = ``{"actor": θ, "critic": φ}``, the actor step's state and the critic's
Adam state."""


def make_learner(
    config: ImplicitACConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """The implicit actor-critic as a :class:`~proxrl.types.Learner` (continuous actions).

    The actor step is :func:`~proxrl.deep.off_policy.common.actor_step` with the surrogate
    :func:`~proxrl.prox.surrogates.deterministic` evaluated at reparameterised actions g_θ(s_i, ξ_i) (the step's key
    draws ξ). Metrics as DDPG's: ``critic_loss``, ``q``, ``target_q``, ``actor_loss``, ``surrogate_gain``,
    ``step_norm``, ``grad_norm``; plus ``noise_sensitivity``, the mean ‖g_θ(s, ξ) − g_θ(s, 0)‖ over the minibatch
    (how much of the policy's randomness is left).
    """
    del total_steps
    config.validate()
    space = require_box(action_space, "Implicit actor-critic")
    net = config.network
    actor = implicit_policy(net, space, "Implicit actor-critic")
    critic = QNetwork(hidden=tuple(net.hidden), activation=ACTIVATIONS[net.activation])
    nd = net.noise_dim

    def generate(theta: Params, obs: Array, key: PRNGKey) -> Array:
        return actor.apply(theta, obs, noise(key, obs.shape[:-1], nd))

    step = actor_step(
        deterministic(lambda b, a: critic.apply(b.critic, b.obs, a)),
        lambda theta, b, key: generate(theta, b.obs, key),
        config.step.lr,
    )
    critic_tx = optax.adam(config.critic.q_lr)

    def init(key: PRNGKey, obs: Array) -> ImplicitACState:
        k_actor, k_critic = jax.random.split(key)
        theta = actor.init(k_actor, obs, jnp.zeros((*obs.shape[:-1], nd)))
        phi = critic.init(k_critic, obs, actor.apply(theta, obs, jnp.zeros((*obs.shape[:-1], nd))))
        params = {"actor": theta, "critic": phi}
        return ImplicitACState(params, params, step.init(theta), critic_tx.init(phi))

    def act(state: ImplicitACState, obs: Array, key: PRNGKey) -> Array:
        k_xi, k_explore = jax.random.split(key)
        a = generate(state.params["actor"], obs, k_xi)
        return gaussian_explore(k_explore, a, config.exploration.exploration_noise, space)

    def mode(state: ImplicitACState, obs: Array) -> Array:
        return actor.apply(state.params["actor"], obs, jnp.zeros((*obs.shape[:-1], nd)))

    def update(state: ImplicitACState, batch: Transition, key: PRNGKey) -> tuple[ImplicitACState, Metrics]:
        k_next, k_actor, k_probe = jax.random.split(key, 3)
        # y = r + γ(1 − terminated)·Q_φtar(s', g_θtar(s', ξ'))
        a_next = generate(state.target["actor"], batch.next_obs, k_next)
        q_next = critic.apply(state.target["critic"], batch.next_obs, a_next)
        y = td_target(batch.reward, batch.terminated, q_next, config.rollout.gamma)

        def critic_loss(phi: Params, b: Transition) -> tuple[Array, Metrics]:
            q = critic.apply(phi, b.obs, b.action)
            return jnp.mean((q - y) ** 2), {"q": jnp.mean(q)}

        phi, critic_opt, metrics = critic_step(
            critic_loss, critic_tx, state.params["critic"], state.critic_opt, batch
        )
        # θ ← θ + η·∇_θ (1/n) Σ Q_φ(s_i, g_θ(s_i, ξ_i))
        theta, actor_state, actor_metrics = step.update(
            state.params["actor"], state.actor_step, CriticBatch(batch.obs, phi), k_actor
        )
        params = {"actor": theta, "critic": phi}
        spread = jnp.mean(
            jnp.linalg.norm(
                generate(theta, batch.obs, k_probe)
                - mode(ImplicitACState(params, params, actor_state, critic_opt), batch.obs),
                axis=-1,
            )
        )
        state = ImplicitACState(
            params, polyak(state.target, params, config.critic.tau), actor_state, critic_opt
        )
        metrics.update(actor_metrics, target_q=jnp.mean(y), noise_sensitivity=spread)
        return state, metrics

    return replay_learner("implicit_ac", init, act, mode, update, config, observation_space, action_space)
