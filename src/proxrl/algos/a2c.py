"""Synchronous Advantage Actor-Critic (A2C = PG + V_φ) on JAX-native (gymnax) environments.

The lecture's A2C: use π_θk to collect data from n parallel environments, form the policy gradient
with an advantage estimate, and take ONE gradient step::

    g       = (1/N) Σ_{i,h} ∇_θ log π_θ(a_h^{(i)} | s_h^{(i)}) |_{θ=θ_k} · Â_h^{(i)}  +  c·∇_θ H(π_θ)
    θ_{k+1} = θ_k + η·g
    φ_{k+1} = φ_k − η·vf_coef·∇_φ (1/N) Σ_{i,h} ½·(V_φ(s_h^{(i)}) − R̂_h^{(i)})²

with N = T·B transitions (num_steps T × num_envs B). θ_{k+1} = θ_k + η·g is the *Euclidean*
proximal step of the lecture's loop,

    θ_{k+1} = argmax_θ  ⟨g, θ − θ_k⟩ − (1/(2η))·‖θ − θ_k‖²₂,

the linearised surrogate L_k(θ) ≈ L_k(θ_k) + ⟨∇L_k(θ_k), θ − θ_k⟩ (at θ_k the ratio π_θ/π_θk is 1 and
its gradient is ∇log π_θ) with the squared Euclidean distance as D; PPO/NPG replace D by a KL. In
practice the plain step η·g is preconditioned (RMSprop, as in SB3/CleanRL A2C, or Adam) and the global
gradient norm is clipped, so each update is one optax step on the combined loss.

Â: GAE(λ) under V_φk (:func:`proxrl.estimators.gae`, vmapped over environments). The default λ = 1
gives A2C's n-step return ``R̂_t = r_t + γr_{t+1} + … + γ^{T−t}V_φk(s_T)`` bootstrapped at the end of
the rollout, minus V_φk(s_t) (the same as :func:`proxrl.estimators.n_step_returns` within an episode);
λ = 0 gives the lecture's TD error. A termination never bootstraps; a truncation bootstraps from V at
the true next observation. Everything else (agent, episode statistics, explained variance, deterministic
evaluation, batch construction) is shared with PPO (:mod:`proxrl.algos.actor_critic`)::

    config = A2CConfig(total_timesteps=500_000)
    train = make_train(config, "CartPole-v1")
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.algos.actor_critic import (
    Batch,
    RolloutConfig,
    check_actor_critic_coefficients,
    explained_variance,
    make_agent,
    make_batch,
)
from proxrl.collect import loops
from proxrl.collect.loops import Normalization
from proxrl.errors import check_choice, check_in_range
from proxrl.estimators import normalize_advantages
from proxrl.objectives import ppo as objectives
from proxrl.settings.jax_envs import JaxEnv, Space
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Trainer, Transition

OPTIMISERS = ("rmsprop", "adam")
"""The selectable preconditioners of the gradient step."""


@dataclasses.dataclass(frozen=True)
class A2CConfig(RolloutConfig):
    """A2C hyperparameters (the on-policy fields of ``actor_critic.RolloutConfig`` and A2C's own); defaults
    follow SB3/CleanRL A2C for classic control."""

    num_steps: int = 5
    """Steps T per environment per rollout; one update (one gradient step) consumes T·B transitions."""
    lr: float = 7e-4
    optimiser: str = "rmsprop"
    """Preconditioner of the step: "rmsprop" (PyTorch-style, decay ``rms_decay``, ε = 1e-5 outside the
    square root, as SB3) or "adam" (ε = 1e-5)."""
    rms_decay: float = 0.99
    """RMSprop's decay α of the squared-gradient average (PyTorch's ``alpha``)."""
    anneal_lr: bool = False
    """Decay the learning rate linearly from ``lr`` to 0 over the updates."""
    norm_adv: bool = False
    """Standardise the advantages over each batch."""
    gae_lambda: float = 1.0
    """GAE λ ∈ [0, 1]: 1 gives the n-step return (classic A2C), 0 the one-step TD error."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient c (SB3: 0.0; CleanRL-style runs often use 0.01)."""
    vf_coef: float = 0.5
    """Value loss coefficient."""

    def validate(self) -> A2CConfig:
        """Raise :class:`~proxrl.errors.ConfigError` (one line) on a bad value; return ``self``."""
        super().validate()
        check_actor_critic_coefficients(self)
        check_choice("optimiser", self.optimiser, OPTIMISERS)
        check_in_range("rms_decay", self.rms_decay, 0.0, 1.0, high_open=True)
        return self


class A2CState(NamedTuple):
    """What A2C carries from one update to the next; ``params = {"actor": θ, "critic": φ}``."""

    params: Params
    opt_state: optax.OptState
    update: Array
    """Updates done so far (drives learning-rate annealing)."""


def policy_gradient_loss(logp: Array, adv: Array) -> Array:
    """A2C's policy loss ``−(1/N) Σ log π_θ(a|s)·Â`` (Â held fixed), whose gradient is −g_PG.

    Equal in value and gradient at θ_k (up to the constant) to the unclipped surrogate ``−mean ratio·Â``.
    """
    return -jnp.mean(logp * jax.lax.stop_gradient(adv))


def make_learner(config: A2CConfig, observation_space: Space, action_space: Space) -> Learner:
    """A2C as a :class:`~proxrl.types.Learner`: ``learn`` is one GAE(λ) → single gradient step iteration.

    One update is the Euclidean proximal step θ_{k+1} = θ_k + η·g (preconditioned and norm-clipped),
    g = (1/N) Σ ∇log π_θ(a|s)·Â + c·∇H − vf_coef·∇½(V_φ − R̂)² (see the module docstring).

    Per-update metrics: ``policy_loss``, ``value_loss``, ``entropy`` (at θ_k, the terms of the step),
    ``kl`` (exact mean KL(π_θ_{k+1}, π_θk) over the batch: the divergence actually moved),
    ``surrogate_gain`` (``mean ratio·Â`` at θ_{k+1} minus at θ_k), ``step_norm`` (‖θ_{k+1} − θ_k‖₂, actor
    only), ``grad_norm`` (before clipping), ``explained_variance`` and ``learning_rate``; the collection
    loop adds ``episodic_return`` and ``episodes``.
    """
    config.validate()
    agent = make_agent(
        observation_space, action_space, tuple(config.hidden), config.activation, config.log_std_init
    )
    num_updates = config.num_updates

    def learning_rate(update: Array) -> Array:
        """``lr``, or ``lr·(1 − k/K)`` at update k of K with annealing."""
        if not config.anneal_lr:
            return jnp.asarray(config.lr, jnp.float32)
        return config.lr * jnp.maximum(1.0 - update / num_updates, 0.0)

    def optimiser(lr: Array | float) -> optax.GradientTransformation:
        if config.optimiser == "rmsprop":
            precondition = optax.scale_by_rms(decay=config.rms_decay, eps=1e-5, eps_in_sqrt=False)
        else:
            precondition = optax.scale_by_adam(eps=1e-5)
        return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), precondition, optax.scale(-lr))

    def loss_fn(params: Params, batch: Batch) -> tuple[Array, Metrics]:
        dist = agent.distribution(agent.actor.apply(params["actor"], batch.obs))
        entropy = dist.entropy()
        adv = normalize_advantages(batch.adv) if config.norm_adv else batch.adv
        pg_loss = policy_gradient_loss(dist.log_prob(batch.action), adv)
        v = agent.critic.apply(params["critic"], batch.obs)
        v_loss = objectives.value_loss(v, batch.value_old, batch.returns)
        loss = pg_loss - objectives.entropy_bonus(entropy, config.ent_coef) + config.vf_coef * v_loss
        return loss, {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": jnp.mean(entropy)}

    def init(key: PRNGKey, obs: Array) -> A2CState:
        k_actor, k_critic = jax.random.split(key)
        params = agent.init(k_actor, k_critic, obs)
        return A2CState(params, optimiser(config.lr).init(params), jnp.zeros((), jnp.int32))

    def learn(state: A2CState, traj: Transition) -> tuple[A2CState, Metrics]:
        lr_now = learning_rate(state.update)
        # Â_k = GAE(λ) under V_φk (λ = 1: n-step returns)
        batch = make_batch(agent, state.params, traj, config.gamma, config.gae_lambda)
        # θ_{k+1} = θ_k + η·g: one (preconditioned, clipped) gradient step
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = optimiser(lr_now).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # diagnostics of the step actually taken, over the whole batch
        dist_old = agent.distribution(batch.dist_old)
        dist_new = agent.distribution(agent.actor.apply(params["actor"], batch.obs))
        kl = jnp.mean(dist_new.kl_divergence(dist_old))
        ratio = objectives.ratio(dist_new.log_prob(batch.action), batch.logp_old)
        step = jax.tree.map(jnp.subtract, params["actor"], state.params["actor"])
        metrics.update(
            kl=kl,
            surrogate_gain=jnp.mean((ratio - 1.0) * batch.adv),
            step_norm=optax.global_norm(step),
            grad_norm=optax.global_norm(grads),
            explained_variance=explained_variance(batch.value_old, batch.returns),
            learning_rate=lr_now,
        )
        return A2CState(params, opt_state, state.update + 1), metrics

    return agent.learner("a2c", init, learn, config)


def make_a2c(
    config: A2CConfig, env_id: str | JaxEnv, eval_episodes: int = 10, norm: Normalization | None = None
) -> Trainer:
    """A2C on a gymnax environment as a :class:`~proxrl.types.Trainer` (:func:`make_learner` in
    :func:`proxrl.collect.loops.jax_trainer`)."""
    return loops.trainer_for(make_learner, config, env_id, eval_episodes, norm)


def make_train(
    config: A2CConfig, env_id: str | JaxEnv, norm: Normalization | None = None
) -> Callable[[PRNGKey], tuple[loops.LoopState, Metrics]]:
    """``train(key) -> (final_state, metrics)``: the whole run as one pure function (a ``lax.scan`` over
    ``config.num_updates`` updates; ``jax.vmap(train)(keys)`` trains many seeds in one compiled call).
    ``metrics[name]`` has shape ``[num_updates]``, plus ``env_steps``."""
    return loops.train_for(make_learner, config, env_id, norm)
