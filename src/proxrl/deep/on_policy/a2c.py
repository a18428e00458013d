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

Â: the ``estimator`` of the lecture's "possible estimators" slide (:func:`proxrl.deep.on_policy.common.estimate`,
vmapped over environments; the critic regresses on the matching target):

    "td"        Â = r_1 + γV(s_2) − V(s_1)
    "n_step"    Â = r_1 + γr_2 + … + γ^n V(s_{n+1}) − V(s_1)                  (n = n_steps)
    "gae"       Â = GAE(λ) (default, λ = 1)
    "mc"        Â = discounted return-to-go − V(s_1)
    "q"         Â = Q_φ(s_1, a_1) − E_{a'∼π_θk}[Q_φ(s_1, a')]                  (critic Q_φ, SARSA target)
    "q_n_step"  Â = r_1 + … + γ^n Q_φ(s_{n+1}, a_{n+1}) − E_{a'∼π_θk}[Q_φ(s_1, a')]

The default GAE with λ = 1 gives A2C's n-step return ``R̂_t = r_t + γr_{t+1} + … + γ^{T−t}V_φk(s_T)``
bootstrapped at the end of the rollout, minus V_φk(s_t) (the same as "n_step" with n ≥ T and as "mc");
λ = 0 gives the lecture's TD error. A termination never bootstraps; a truncation bootstraps from the critic
at the true next observation. Everything else (agent, episode statistics, explained variance, deterministic
evaluation, batch construction) is shared with PPO (:mod:`proxrl.deep.on_policy.common`)::

    from proxrl.run.train import make_train

    config = A2CConfig()
    train = make_train(config, "CartPole-v1", total_steps=500_000)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.config import Config
from proxrl.deep.config import AdvantageEstimator, Entropy, PolicyNetwork, PolicyStep, Rollout, ValueLoss
from proxrl.deep.jax_envs import Space
from proxrl.deep.on_policy.common import (
    Agent,
    estimate,
    make_agent,
    num_updates,
    policy_optimiser,
    policy_sigma,
    step_diagnostics,
)
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.geometry import head_kl
from proxrl.prox.solvers import gradient_steps
from proxrl.prox.surrogates import entropy_bonus, score_function, value_regression
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class A2CConfig(Config):
    """A2C: the rollout, the networks, one preconditioned gradient step, GAE (λ = 1: n-step returns), the
    entropy bonus and the value loss; defaults follow SB3/CleanRL A2C for classic control (SB3's ent_coef
    is 0.0; CleanRL-style runs often use 0.01)."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=8, num_steps=5))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: PolicyStep = dataclasses.field(default_factory=lambda: PolicyStep(lr=7e-4, optimiser="rmsprop"))
    advantage: AdvantageEstimator = dataclasses.field(
        default_factory=lambda: AdvantageEstimator(gae_lambda=1.0)
    )
    surrogate: Entropy = dataclasses.field(default_factory=Entropy)
    critic: ValueLoss = dataclasses.field(default_factory=ValueLoss)


class A2CState(NamedTuple):
    """What A2C carries from one update to the next; ``params = {"actor": θ, "critic": φ}``; ``step``: the
    proximal step's state (the optimiser's moments and step count)."""

    params: Params
    step: StepState
    update: Array
    """Updates done so far."""
    key: PRNGKey
    """For the Monte Carlo E_π Q of the Q estimators over a box (unused otherwise)."""


def a2c_step(config: A2CConfig, agent: Agent, updates: int | None = None) -> ProxStep:
    """A2C's proximal step on ``params = {"actor": θ, "critic": φ}`` and a flat :class:`Batch`::

        θ_{k+1} = θ_k + η·∇_θ W_k,    W_k(θ, φ) = (1/N) Σ_i log π_θ(a_i|s_i)·Â_i + c·H(π_θ) − c_v·ℓ_V(φ)

    surrogate :func:`~proxrl.prox.surrogates.score_function` (+ the entropy bonus and the critic's
    regression), geometry Euclidean, solver :func:`~proxrl.prox.solvers.gradient_steps` with one step of the
    clipped, preconditioned optimiser (RMSprop or Adam; the learning rate annealed when ``anneal_lr``).
    """
    tx = policy_optimiser(config.step, updates)
    critic = value_regression(agent.value, config.critic.vf_coef, with_action=config.advantage.q_critic)
    extras = (entropy_bonus(config.surrogate.ent_coef), critic)
    problem = Problem(score_function(config.advantage.norm_adv), extras=extras, policy=agent.policy_on)
    return prox_step(
        problem, gradient_steps(tx), moved=head_kl(lambda batch: agent.distribution(batch.dist_old))
    )


def make_learner(
    config: A2CConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """A2C as a :class:`~proxrl.types.Learner`: ``learn`` is the selected estimate (:func:`~proxrl.deep.on_policy.common.estimate`;
    GAE(λ) under V_φk by default), then :func:`a2c_step`.

    Per-update metrics: ``policy_loss``, ``value_loss``, ``entropy`` (at θ_k, the terms of the step), ``kl``
    (exact mean KL(π_θ_{k+1}, π_θk) over the batch: the divergence actually moved), ``surrogate_gain``,
    ``step_norm`` (‖θ_{k+1} − θ_k‖₂, actor only), ``grad_norm`` (before clipping), ``explained_variance`` and
    ``learning_rate``; the collection loop adds ``episodic_return`` and ``episodes``.
    """
    config.validate()
    sigma_at = policy_sigma(config.network, config.rollout, total_steps)
    agent = make_agent(observation_space, action_space, config.network, config.advantage.q_critic, sigma_at)
    updates = None if total_steps is None else num_updates(total_steps, config.rollout.size)
    step = a2c_step(config, agent, updates)

    def init(key: PRNGKey, obs: Array) -> A2CState:
        # θ's and φ's initialisation keys (the first two of split(key, 3) are split(key)'s), and the estimate's
        k_actor, k_critic, k_state = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        return A2CState(params, step.init(params), jnp.zeros((), jnp.int32), k_state)

    def learn(state: A2CState, traj: Transition) -> tuple[A2CState, Metrics]:
        # Â_k: the selected estimator under V_φk or Q_φk (default GAE with λ = 1: n-step returns)
        key, k_estimate = jax.random.split(state.key)
        batch = estimate(agent, state.params, traj, config.rollout.gamma, config.advantage, k_estimate)
        # θ_{k+1} = θ_k + η·g: one (preconditioned, clipped) gradient step
        params, step_state, metrics = step.update(state.params, state.step, batch, None)
        # σ_{k+1} for the next rollout, if scheduled
        params = {**params, "actor": agent.scheduled(params["actor"], state.update + 1)}
        metrics.update(step_diagnostics(config.step, updates, batch, state.update))
        metrics.update(agent.sigma_metrics(state.update))
        return A2CState(params, step_state, state.update + 1, key), metrics

    return agent.learner("a2c", init, learn, config.rollout)
