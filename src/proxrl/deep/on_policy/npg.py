"""Natural policy gradient for neural policies (NPG), and TRPO as NPG + a backtracking line search.

The lecture's NPG (gradient form) with an advantage critic::

    g       = (1/N) Σ_{i,h} ∇_θ log π_θ(a_h|s_h)|_{θ=θ_k} · Â_h          Â: GAE(λ) under V_φk (or --estimator)
    F_θk    = (1/N) Σ_{i,h} E_{a∼π_θk(·|s_h)}[∇log π_θk(a|s_h) ∇log π_θk(a|s_h)ᵀ]
    θ_{k+1} = θ_k + η·F_θk⁻¹ g
            = argmax_θ (θ − θ_k)ᵀ g − (1/2η)·(θ − θ_k)ᵀ F_θk (θ − θ_k)

F is never formed. It is the Hessian at θ = θ_k of the mean KL over the batch's states,
``KL̄(θ) = (1/N) Σ_h KL(π_θk(·|s_h) ‖ π_θ(·|s_h))`` (the lecture's KL ≈ ½ΔθᵀFΔθ), so a Fisher-vector
product is one forward-over-reverse derivative, ``F v = ∂/∂ε ∇KL̄(θ_k + εv)`` (:func:`proxrl.prox.geometry.fisher_vector_product`,
``jax.jvp`` of ``jax.grad``), plus damping λ·v. Conjugate gradient (:func:`proxrl.prox.solvers.conjugate_gradient`)
solves ``(F + λI) w = g`` in ``cg_iters`` products. The step is then, by ``step``:

- ``"fixed"``: ``θ_{k+1} = θ_k + η·w`` with η = ``lr`` (the lecture's update);
- ``"trust_region"``: η = √(2δ / wᵀ(F + λI)w), the largest step whose damped quadratic KL model ½η²wᵀ(F + λI)w equals
  δ = ``max_kl``
  (TRPO's scaling; the update's size no longer depends on the scale of Â).

``line_search=True`` adds TRPO's backtracking: try θ_k + βʲ·Δθ for j = 0, 1, …, ``max_backtracks`` − 1
(β = ``backtrack_ratio``) and accept the first with exact mean KL(π_θ, π_θk) ≤ δ and surrogate improvement
``L(θ) − L(θ_k)`` ≥ ``accept_ratio`` · (the linear prediction gᵀβʲΔθ) > 0, where
``L(θ) = (1/N) Σ ratio·Â`` and ratio = π_θ(a|s)/π_θk(a|s); if none passes, θ stays θ_k (:func:`proxrl.prox.solvers.line_search`).
With ``step="trust_region"`` and ``line_search=True`` this is TRPO.

The critic V_φ is fitted after the policy step by ``vf_epochs`` × ``vf_minibatches`` Adam steps on
½(V_φ(s) − R̂)² toward the GAE λ-returns R̂ computed under V_φk (with another ``estimator``, toward its
targets; the Q forms fit Q_φ(s, a) on SARSA targets, :func:`proxrl.deep.on_policy.common.estimate`). Truncation bootstraps from V at the true
next observation and termination never does (the shared :func:`proxrl.deep.on_policy.common.make_batch`).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import AdvantageEstimator, PolicyNetwork, Rollout
from proxrl.deep.jax_envs import Space
from proxrl.deep.on_policy.common import (
    Agent,
    Batch,
    estimate,
    explained_variance,
    make_agent,
    policy_sigma,
)
from proxrl.errors import ConfigError, check_int_at_least, check_positive
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.critic import value_loss
from proxrl.prox.geometry import head_kl
from proxrl.prox.solvers import NaturalStep, fit, natural_gradient, optimiser
from proxrl.prox.surrogates import ratio
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition


@dataclasses.dataclass(frozen=True)
class ValueFit:
    """The critic V_φ's regression on the λ-returns, fitted by its own optimiser after the policy step."""

    vf_lr: float = 1e-3
    """Adam learning rate of the critic V_φ."""
    vf_epochs: int = 5
    """Passes over each batch fitting V_φ (0: the critic is not trained)."""
    vf_minibatches: int = 4
    """Minibatches per critic pass; must divide num_envs·num_steps."""
    vf_max_grad_norm: float = 0.5
    """Clip the global norm of each of the critic's gradients to this value."""

    def validate(self) -> None:
        """vf_lr > 0, vf_epochs ≥ 0, vf_minibatches ≥ 1, a positive clip."""
        check_positive("vf_lr", self.vf_lr)
        check_int_at_least("vf_epochs", self.vf_epochs, 0)
        check_int_at_least("vf_minibatches", self.vf_minibatches, 1)
        check_positive("vf_max_grad_norm", self.vf_max_grad_norm)


@dataclasses.dataclass(frozen=True)
class NPGConfig(Config):
    """NPG / TRPO: the rollout, the networks, the natural step (defaults TRPO's: δ = 0.01, 10 CG iterations,
    damping 0.1, backtracking ×0.8 up to 10 times), GAE (advantages standardised over each batch, which makes
    a fixed η comparable across tasks) and the critic's fit."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=8, num_steps=256))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: NaturalStep = dataclasses.field(default_factory=NaturalStep)
    advantage: AdvantageEstimator = dataclasses.field(
        default_factory=lambda: AdvantageEstimator(norm_adv=True, gae_lambda=0.95)
    )
    critic: ValueFit = dataclasses.field(default_factory=ValueFit)

    def check(self) -> None:
        """The critic's minibatch count divides the rollout size T·B."""
        if self.rollout.size % self.critic.vf_minibatches:
            raise ConfigError(
                f"vf_minibatches must divide num_envs·num_steps = {self.rollout.size}, "
                f"got {self.critic.vf_minibatches}"
            )


class NPGState(NamedTuple):
    """What NPG carries between updates: ``params = {"actor": θ, "critic": φ}``, the policy step's state, the
    critic's Adam state and a key (for the critic's minibatches)."""

    params: Params
    step: StepState
    opt_state: optax.OptState
    key: PRNGKey
    update: Array
    """Updates done so far (the scheduled σ's clock)."""


def npg_step(config: NPGConfig, agent: Agent) -> ProxStep:
    """NPG's proximal step on θ and a flat :class:`Batch`::

        θ_{k+1} = argmax_θ (θ − θ_k)ᵀg − (1/2η)(θ − θ_k)ᵀF(θ − θ_k) = θ_k + η·(F + λI)⁻¹g

    surrogate :func:`~proxrl.prox.surrogates.ratio` (``L(θ) = (1/N) Σ ratio·Â``, whose gradient at θ_k is g),
    geometry the head KL (its Hessian at θ_k is F; the exact KL bounds TRPO's line search), solver
    :func:`~proxrl.prox.solvers.natural_gradient` (CG on Fisher-vector products, fixed or trust-region η,
    optional backtracking).
    """
    old = lambda batch: agent.distribution(batch.dist_old)

    def fisher_kl(theta: Params, batch: Batch) -> Array:  # mean KL(π_θk ‖ π_θ): its Hessian at θ_k is F
        return jnp.mean(old(batch).kl_divergence(agent.head(theta, batch)))

    solver = natural_gradient(fisher_kl, config.step)
    problem = Problem(ratio(config.advantage.norm_adv), head_kl(old), policy=agent.head)
    return prox_step(problem, solver, moved=head_kl(old))


def make_learner(
    config: NPGConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """NPG / TRPO as a :class:`~proxrl.types.Learner`: ``learn`` is the estimate (GAE by default) → :func:`npg_step` → critic fit.

    Per-update metrics: the step's (``kl`` the exact mean KL(π_θ_{k+1}, π_θk), ``surrogate_gain``
    L(θ_{k+1}) − L(θ_k), ``step_norm``, ``expected_gain`` gᵀΔθ, ``grad_norm`` ‖g‖, ``cg_residual``, ``quad_kl``
    ½Δθᵀ(F + λI)Δθ of the full step, ``line_search_steps``, ``accepted``), ``value_loss`` (mean over the critic's
    steps), ``entropy`` (at θ_k) and ``explained_variance``.
    """
    config.validate()
    sigma_at = policy_sigma(config.network, config.rollout, total_steps)
    agent = make_agent(observation_space, action_space, config.network, config.advantage.q_critic, sigma_at)
    step = npg_step(config, agent)
    tx = optimiser(config.critic.vf_lr, config.critic.vf_max_grad_norm, eps=1e-5)

    def init(key: PRNGKey, obs: Array) -> NPGState:
        key, k_actor, k_critic = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        zero = jnp.zeros((), jnp.int32)
        return NPGState(params, step.init(params["actor"]), tx.init(params["critic"]), key, zero)

    def critic_loss(phi: Params, batch: Batch) -> tuple[Array, Metrics]:
        return value_loss(agent.value(phi, batch.obs, batch.action), batch.value_old, batch.returns), {}

    def learn(state: NPGState, traj: Transition) -> tuple[NPGState, Metrics]:
        # k_estimate apart from k_fit, whose per-epoch keys the minibatch shuffles draw from; only the Q forms
        # over a box draw from it
        key, k_fit, k_estimate = jax.random.split(state.key, 3)
        # Â_k: the selected estimator (default GAE(λ)) under V_φk or Q_φk
        batch = estimate(agent, state.params, traj, config.rollout.gamma, config.advantage, k_estimate)
        # θ_{k+1} = θ_k + η·(F + λI)⁻¹ g  (CG; trust-region η; optional backtracking)
        theta, step_state, metrics = step.update(state.params["actor"], state.step, batch, None)
        # φ_{k+1}: regression of V_φ on the λ-returns
        if config.critic.vf_epochs == 0:
            phi, opt_state, v_loss = (
                state.params["critic"],
                state.opt_state,
                critic_loss(state.params["critic"], batch)[0],
            )
        else:
            phi, opt_state, fitted = fit(
                critic_loss,
                tx,
                state.params["critic"],
                state.opt_state,
                batch,
                k_fit,
                config.critic.vf_epochs,
                config.critic.vf_minibatches,
            )
            v_loss = jnp.mean(fitted["loss"])
        metrics.update(
            value_loss=v_loss,
            entropy=jnp.mean(agent.distribution(batch.dist_old).entropy()),
            explained_variance=explained_variance(batch.value_old, batch.returns),
        )
        theta = agent.scheduled(theta, state.update + 1)  # σ_{k+1}, if scheduled
        metrics.update(agent.sigma_metrics(state.update))
        return NPGState(
            {"actor": theta, "critic": phi}, step_state, opt_state, key, state.update + 1
        ), metrics

    # "npg" is the registry key (TRPO is npg with step="trust_region", line_search=True)
    return agent.learner("npg", init, learn, config.rollout)
