"""Soft Actor-Critic (SAC) for box action spaces, on JAX-native (gymnax) environments.

SAC is the off-policy actor-critic of the lecture with a maximum-entropy objective: collect with π_θ
into a replay buffer, then, on minibatches {(s_i, a_i, r_i, s'_i, terminated_i)} sampled from it::

    a'_i ∼ π_θ(·|s'_i)                                             (fresh sample at the TRUE next obs)
    y_i  = r_i + γ(1 − terminated_i)·(min_j Q_φ̄_j(s'_i, a'_i) − α·log π_θ(a'_i|s'_i))        soft target
    φ_j  ← φ_j − λ·∇_φj (1/n) Σ_i ½·(Q_φj(s_i, a_i) − y_i)²,   j = 1, 2                  twin critics
    θ    ← θ − η·∇_θ (1/n) Σ_i (α·log π_θ(ã_i|s_i) − min_j Q_φj(s_i, ã_i)),   ã_i = f_θ(s_i, ε_i)
    log α ← log α − η_α·∇ (1/n) Σ_i −log α·(log π_θ(ã_i|s_i) + H̄)                 temperature, H̄ = −|A|
    φ̄_j  ← τ·φ_j + (1 − τ)·φ̄_j                                                      Polyak targets

The actor step is the lecture's "maximise E_{a∼π_θ}[Q_φ(s, a)]" with the entropy regulariser
α·H(π_θ(·|s)) = −α·E[log π_θ], through the reparameterised (pathwise) gradient of the squashed
Gaussian: u = μ_θ(s) + σ_θ(s)⊙ε, a = low + (tanh(u) + 1)·(high − low)/2, and

    log π_θ(a|s) = log N(u; μ_θ(s), σ_θ(s)²) − Σ_i log(1 − tanh²(u_i)) − Σ_i log((high_i − low_i)/2)

(:func:`~proxrl.deep.distributions.tanh_gaussian_sample`). A truncated step (time limit) still
bootstraps: only ``terminated`` zeroes the target's second term, and ``next_obs`` is the true s'.
The temperature follows SAC v2 (Haarnoja et al. 2018b): descend −log α·(log π + H̄), so α shrinks
while the policy's entropy is above the target H̄ and grows when it is below; ``autotune=False``
keeps α fixed.

The algorithm-specific pieces are pure functions (:func:`soft_target`, :func:`critic_loss`,
:func:`actor_loss`, :func:`temperature_loss`, :func:`sac_update`); the replay buffer, warm-up with
uniform random actions and the collect → add → gradient-steps loop are the shared off-policy pieces
(:func:`proxrl.deep.off_policy.common.replay_learner`)::

    from proxrl.run.train import make_train

    config = SACConfig()
    train = make_train(config, "Pendulum-v1", total_steps=20_000)
    vmapped = jax.vmap(train, axis_name=loops.SEED_AXIS)  # the axis name keeps the warm-up a branch
    state, metrics = jax.jit(vmapped)(jax.random.split(jax.random.key(0), 5))
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import ACTIVATIONS, Network, Rollout, Step
from proxrl.deep.distributions import scale_to_bounds, tanh_gaussian_sample
from proxrl.deep.jax_envs import Space
from proxrl.deep.networks import QNetwork, StateDependentGaussianPolicy
from proxrl.deep.off_policy import common as off_policy
from proxrl.errors import ConfigError, check_positive
from proxrl.prox import ProxStep, StepState
from proxrl.prox.critic import polyak, td_target
from proxrl.prox.surrogates import soft
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class Temperature:
    """The temperature α of the entropy-regularised objective, fixed or learned toward a target entropy."""

    autotune: bool = True
    """Learn α toward the target entropy; False keeps α = alpha fixed."""
    alpha_lr: float = 1e-3
    """Adam learning rate of log α (autotune only)."""
    alpha: float = 1.0
    """Temperature α > 0: its initial value with autotune, its fixed value without."""
    target_entropy: float | None = None
    """Target entropy H̄ of the temperature loss; None gives −|A| (minus the action dimension)."""

    def validate(self) -> None:
        """α > 0, alpha_lr > 0, a finite target entropy or None."""
        check_positive("alpha", self.alpha)
        check_positive("alpha_lr", self.alpha_lr)
        if self.target_entropy is not None and not math.isfinite(self.target_entropy):
            raise ConfigError(f"target_entropy must be a finite number or None, got {self.target_entropy!r}")


@dataclasses.dataclass(frozen=True)
class SACConfig(Config):
    """SAC: defaults follow CleanRL's sac_continuous_action.py / SB3 (256×256 ReLU, batch 256, τ = 0.005,
    γ = 0.99, automatic α toward H̄ = −|A|, one gradient step per environment step) except the learning
    rates, 1e-3 (SB3 zoo / Rejax for Pendulum) instead of 3e-4, for Pendulum-v1's 20k-step budget
    (docs/methods/sac.md), and a 100k buffer; --preset mujoco gives the MuJoCo setting."""

    rollout: Rollout = dataclasses.field(default_factory=off_policy.replay_rollout)
    network: Network = dataclasses.field(default_factory=off_policy.replay_network)
    step: Step = dataclasses.field(default_factory=lambda: Step(lr=1e-3))
    replay: off_policy.ReplaySchedule = dataclasses.field(
        default_factory=lambda: off_policy.ReplaySchedule(buffer_size=100_000)
    )
    critic: off_policy.TargetCritic = dataclasses.field(
        default_factory=lambda: off_policy.TargetCritic(q_lr=1e-3)
    )
    temperature: Temperature = dataclasses.field(default_factory=Temperature)


# --------------------------------------------------------------------------------------- pure pieces


def soft_target(
    reward: Array,
    terminated: Array,
    gamma: Array | float,
    q_next: Array,
    logp_next: Array,
    alpha: Array | float,
) -> Array:
    """The soft Bellman target ``y = r + γ(1 − terminated)·(min_j Q̄_j(s', a') − α·log π(a'|s'))``.

    Shapes: ``reward``, ``terminated``, ``logp_next``: ``[N]``; ``q_next``: ``[2, N]`` (target critics at
    the true next observation and a fresh a' ∼ π(·|s')). A truncated step is not terminated, so it
    bootstraps. Returns ``[N]``, with gradients stopped (:func:`~proxrl.prox.critic.td_target`).
    """
    return td_target(reward, terminated, jnp.min(q_next, axis=0) - alpha * logp_next, gamma)


def critic_loss(q: Array, y: Array) -> Array:
    """``Σ_j (1/n) Σ_i ½·(Q_j(s_i, a_i) − y_i)²`` for ``q[2, N]`` and targets ``y[N]`` (held fixed)."""
    return jnp.sum(0.5 * jnp.mean(jnp.square(q - jax.lax.stop_gradient(y)), axis=-1))


def temperature_loss(log_alpha: Array, logp: Array, target_entropy: Array | float) -> Array:
    """``(1/n) Σ_i −log α·(log π(ã_i|s_i) + H̄)`` with ``log π`` held fixed.

    Its gradient in log α is ``−(E[log π] + H̄) = H(π) − H̄`` (H estimated by −log π): positive, so
    gradient descent lowers α, exactly when the entropy is above the target.
    """
    return -jnp.mean(log_alpha * (jax.lax.stop_gradient(logp) + target_entropy))


# --------------------------------------------------------------------------------------- networks


class SACParams(NamedTuple):
    """``actor``: θ; ``critic``: the twin φ_1, φ_2 stacked on a leading axis of 2; ``target``: φ̄ (same
    layout); ``log_alpha``: log α (a scalar)."""

    actor: Params
    critic: Params
    target: Params
    log_alpha: Array


class SACState(NamedTuple):
    """The algorithm's part of the learner state (the replay buffer lives with the shared learner)."""

    params: SACParams
    actor_step: StepState
    critic_opt: optax.OptState
    alpha_opt: optax.OptState


class SACNets(NamedTuple):
    """The actor and twin critics for a box action space, with the action bounds. Every method takes
    observation features ``obs[N, D]`` (float32, flattened: what the replay learner passes)."""

    actor: StateDependentGaussianPolicy
    critic: nn.Module
    """:func:`~proxrl.deep.off_policy.common.twin_q` of :class:`QNetwork`: ``(obs, action) -> Q[2, N]``."""
    low: Array
    high: Array

    def sample(self, theta: Params, obs: Array, key: PRNGKey) -> tuple[Array, Array]:
        """``(a, log π_θ(a|s))`` with a = low + (tanh(u) + 1)·(high − low)/2, u ∼ N(μ_θ(s), σ_θ(s)²),
        reparameterised (gradients reach θ through a and log π)."""
        mean, log_std = self.actor.apply(theta, obs)
        return tanh_gaussian_sample(key, mean, log_std, self.low, self.high)

    def mode(self, theta: Params, obs: Array) -> Array:
        """The deterministic action ``low + (tanh(μ_θ(s)) + 1)·(high − low)/2`` used for evaluation."""
        mean, _ = self.actor.apply(theta, obs)
        return scale_to_bounds(jnp.tanh(mean), self.low, self.high)

    def q(self, phi: Params, obs: Array, action: Array) -> Array:
        """Both critics ``[2, N]`` at ``(s, a)``; ``phi`` holds the twin parameters stacked on axis 0."""
        return self.critic.apply(phi, obs, action)


def make_nets(config: SACConfig, action_space: Space) -> SACNets:
    """Tanh-squashed state-dependent Gaussian actor and twin Q critics for a flat, bounded box action space
    (a :class:`~proxrl.errors.ConfigError` for anything else, e.g. a discrete space)."""
    space = off_policy.require_box(action_space, "SAC")
    act = ACTIVATIONS[config.network.activation]
    actor = StateDependentGaussianPolicy(
        action_dim=space.shape[0], hidden=tuple(config.network.hidden), activation=act
    )
    critic = off_policy.twin_q(QNetwork, 2, hidden=tuple(config.network.hidden), activation=act)
    low, high = (jnp.asarray(b, jnp.float32) for b in (space.low, space.high))
    return SACNets(actor, critic, low, high)


# --------------------------------------------------------------------------------------- one gradient step


def sac_actor_step(config: SACConfig, nets: SACNets) -> ProxStep:
    """SAC's actor update, :func:`~proxrl.deep.off_policy.common.actor_step` with the surrogate
    :func:`~proxrl.prox.surrogates.soft`: ``θ ← θ − η·∇_θ (1/n) Σ_i (α·log π_θ(ã_i|s_i) − min_j Q_φj(s_i, ã_i))``
    with ã_i = f_θ(s_i, ε_i) reparameterised (the key of the step draws ε), under the batch's critics and α."""
    return off_policy.actor_step(
        soft(lambda b, a: nets.q(b.critic, b.obs, a)),
        lambda theta, b, key: nets.sample(theta, b.obs, key),
        config.step.lr,
    )


def sac_init(config: SACConfig, nets: SACNets, key: PRNGKey, obs: Array) -> SACState:
    """On features ``obs[B, D]``: θ, twin φ (φ̄ = φ), log α = log ``config.alpha``, the actor step's state and
    the critics' and temperature's Adam states."""
    k_actor, k_critic = jax.random.split(key)
    a = jnp.zeros((obs.shape[0], nets.low.shape[0]), jnp.float32)
    theta = nets.actor.init(k_actor, obs)
    phi = nets.critic.init(k_critic, obs, a)
    log_alpha = jnp.log(jnp.asarray(config.temperature.alpha, jnp.float32))
    params = SACParams(theta, phi, phi, log_alpha)
    return SACState(
        params,
        sac_actor_step(config, nets).init(theta),
        optax.adam(config.critic.q_lr).init(phi),
        optax.adam(config.temperature.alpha_lr).init(log_alpha),
    )


def sac_update(
    config: SACConfig, nets: SACNets, state: SACState, batch: Transition, key: PRNGKey
) -> tuple[SACState, Metrics]:
    """One SAC gradient step on a flat minibatch ``batch`` ``[n, ...]`` from the replay buffer.

    In order (as SB3/CleanRL): the twin critics toward the soft target (under α, θ and φ̄ of this step),
    the actor against the updated critics (:func:`sac_actor_step`), the temperature on the actor's fresh
    log-probabilities, then the Polyak update of φ̄. Metrics: ``critic_loss``, ``actor_loss``, ``alpha`` (in
    force during the step), ``alpha_loss``, ``entropy`` (−mean log π of the fresh actions), ``q_mean``,
    ``target_mean``, and the actor step's ``surrogate_gain``, ``step_norm``, ``grad_norm``.
    """
    k_next, k_pi = jax.random.split(key)
    p = state.params
    alpha = jnp.exp(p.log_alpha)
    target_entropy = (
        -float(nets.low.shape[0])
        if config.temperature.target_entropy is None
        else config.temperature.target_entropy
    )

    # y_i = r_i + γ(1 − terminated_i)(min_j Q_φ̄_j(s'_i, a'_i) − α log π_θ(a'_i|s'_i)),  a'_i ∼ π_θ(·|s'_i)
    a_next, logp_next = nets.sample(p.actor, batch.next_obs, k_next)
    y = soft_target(
        batch.reward,
        batch.terminated,
        config.rollout.gamma,
        nets.q(p.target, batch.next_obs, a_next),
        logp_next,
        alpha,
    )

    def critic_objective(phi: Params, b: Transition) -> tuple[Array, Metrics]:
        q = nets.q(phi, b.obs, b.action)
        return critic_loss(q, y), {"q_mean": jnp.mean(q)}

    phi, critic_opt, metrics = off_policy.critic_step(
        critic_objective, optax.adam(config.critic.q_lr), p.critic, state.critic_opt, batch
    )

    # θ: descend (1/n) Σ_i α log π_θ(ã_i|s_i) − min_j Q_φj(s_i, ã_i), ã_i reparameterised
    actor_batch = off_policy.CriticBatch(batch.obs, phi, alpha)
    theta, actor_state, actor_metrics = sac_actor_step(config, nets).update(
        p.actor, state.actor_step, actor_batch, k_pi
    )
    logp = nets.sample(p.actor, batch.obs, k_pi)[1]  # log π_θk(ã_i|s_i) of the step's actions

    # log α: descend −log α·(log π + H̄)
    t_loss, t_grad = jax.value_and_grad(temperature_loss)(p.log_alpha, logp, target_entropy)
    if config.temperature.autotune:
        t_step, alpha_opt = optax.adam(config.temperature.alpha_lr).update(
            t_grad, state.alpha_opt, p.log_alpha
        )
        log_alpha = optax.apply_updates(p.log_alpha, t_step)
    else:
        alpha_opt, log_alpha = state.alpha_opt, p.log_alpha

    target = polyak(p.target, phi, config.critic.tau)
    metrics.update(
        actor_metrics, alpha=alpha, alpha_loss=t_loss, entropy=-jnp.mean(logp), target_mean=jnp.mean(y)
    )
    return SACState(SACParams(theta, phi, target, log_alpha), actor_state, critic_opt, alpha_opt), metrics


# --------------------------------------------------------------------------------------- the learner


def make_learner(
    config: SACConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """SAC as a :class:`~proxrl.types.Learner` (:func:`~proxrl.deep.off_policy.common.replay_learner` around
    :func:`sac_init`, the sampling / tanh-mean policies and :func:`sac_update`).

    Per-update metrics (NaN before ``learning_starts``): those of :func:`sac_update` averaged over the
    gradient steps, ``buffer_size`` and ``gradient_updates``; the collection loop adds ``episodic_return``
    and ``episodes``. Raises :class:`~proxrl.errors.ConfigError` for a bad config or a non-box action space.
    """
    config.validate()
    nets = make_nets(config, action_space)
    return off_policy.replay_learner(
        "sac",
        lambda key, obs: sac_init(config, nets, key, obs),
        lambda state, obs, key: nets.sample(state.params.actor, obs, key)[0],
        lambda state, obs: nets.mode(state.params.actor, obs),
        lambda state, batch, key: sac_update(config, nets, state, batch, key),
        config,
        observation_space,
        action_space,
    )
