"""Asynchronous PPO (the lecture's asynchronous parallel actor-critic): actors act with stale parameters, the
learner's proximal step corrects for them with truncated importance weights.

The lecture's "Additional Technique 3: Parallel Experience Collection" shows two pictures: a synchronised
parallel actor-critic (every worker collects with θ_k, the learner waits for all) and an asynchronous one
(workers act with whatever parameters they last received and send data as it comes). Here the data of update k
was collected under a behaviour policy μ = π_{θ_{k−l}}, l ≥ 0 updates old (the *policy lag*), and the learner
maximises, around its own θ_k::

    W_k(θ) = (1/N) Σ_i ρ̄_i · min(r_i(θ)·Â_i, clip(r_i(θ), 1 ± ε)·Â_i) + c·H(π_θ) − c_v·ℓ_V(φ)
    r_i(θ) = π_θ(a_i|s_i) / π_θk(a_i|s_i),      ρ̄_i = min(ρ̄, π_θk(a_i|s_i) / μ(a_i|s_i))

The lecture's importance weight π_θ/μ factors as (π_θ/π_θk)·(π_θk/μ): the first factor is PPO's ratio, clipped
(the proximal step's implicit geometry), the second corrects for the stale behaviour and is truncated at ρ̄ as in
V-trace; Â_i are V-trace advantages (:func:`proxrl.estimators.vtrace.vtrace`) and the critic regresses on the
V-trace targets. With ``norm_adv`` the unweighted advantages r_i + γ·v_{i+1} − V(s_i) are standardised over the
batch before the ρ̄ weights multiply them: standardising the weighted ones lets the batch mean leak into the step
through ρ̄'s correlation with the action's distance from the mean, which shrinks a Gaussian's σ update after update
(docs/methods/async-actor-critic.md). The proximal step is :func:`proxrl.prox.prox_step` of the clipped-ratio
surrogate on the ρ̄-weighted advantages, the entropy bonus and the value regression, solved by minibatch epochs
(PPO's solver).
With no lag (μ = π_θk) it is PPO with V-trace(λ) targets. The actors and the learner's loop are
:mod:`proxrl.run.actors`.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.config import Config
from proxrl.deep.config import GAE, PolicyNetwork, Rollout
from proxrl.deep.jax_envs import Space
from proxrl.deep.on_policy.common import (
    Agent,
    Batch,
    features,
    make_agent,
    num_updates,
    policy_optimiser,
    step_diagnostics,
)
from proxrl.deep.on_policy.ppo import ClippedValueLoss, ClipSurrogate, PPOStep
from proxrl.errors import check_choice, check_int_at_least, check_positive
from proxrl.estimators.vtrace import vtrace
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.geometry import head_kl
from proxrl.prox.solvers import minibatch_epochs
from proxrl.prox.surrogates import clipped_ratio, entropy_bonus, value_regression
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

LAG_MODES = ("async", "fixed")


@dataclasses.dataclass(frozen=True)
class VTraceAdvantage(GAE):
    """V-trace(λ) advantages and value targets, with importance weights truncated at ρ̄ and c̄."""

    rho_bar: float = 1.0
    """Truncation ρ̄ of the importance weight π_θk/μ that weights each sample's advantage."""
    c_bar: float = 1.0
    """Truncation c̄ of the importance weights in V-trace's trace (c_t = λ·min(c̄, π_θk/μ))."""

    def validate(self) -> None:
        """λ ∈ [0, 1]; ρ̄, c̄ > 0."""
        super().validate()
        check_positive("rho_bar", self.rho_bar)
        check_positive("c_bar", self.c_bar)


@dataclasses.dataclass(frozen=True)
class Lag:
    """How stale the behaviour policy may be: whatever the timing gives, or a fixed lag in a fixed order."""

    lag_mode: str = "async"
    """"async": each actor's rollout is learned from as soon as it arrives and the actor then acts with the newest parameters (the lag depends on timing); "fixed": rollouts are learned from in a fixed order (actor k mod N at update k), each collected with the parameters of update k − lag, so a seed gives the same numbers whatever the timing."""
    lag: int = 1
    """The policy lag of the "fixed" mode, in updates (0: the actor waits for the learner)."""

    def validate(self) -> None:
        """A known mode, lag an integer ≥ 0."""
        check_choice("lag_mode", self.lag_mode, LAG_MODES)
        check_int_at_least("lag", self.lag, 0)


@dataclasses.dataclass(frozen=True)
class APPOConfig(Config):
    """Asynchronous PPO: PPO's networks, step and clipped ratio, V-trace advantages, env-runner actors with a
    policy lag. ``num_envs`` environments per actor; each update learns from one actor's rollout."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=4, num_steps=128))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: PPOStep = dataclasses.field(default_factory=lambda: PPOStep(lr=2.5e-4, anneal_lr=True))
    advantage: VTraceAdvantage = dataclasses.field(
        default_factory=lambda: VTraceAdvantage(norm_adv=True, gae_lambda=0.95)
    )
    surrogate: ClipSurrogate = dataclasses.field(default_factory=lambda: ClipSurrogate(ent_coef=0.01))
    critic: ClippedValueLoss = dataclasses.field(default_factory=ClippedValueLoss)
    lag: Lag = dataclasses.field(default_factory=Lag)

    def check(self) -> None:
        """The minibatch count divides the rollout size T·B."""
        from proxrl.errors import ConfigError

        if self.rollout.size % self.step.num_minibatches:
            raise ConfigError(
                f"num_minibatches must divide num_envs·num_steps = {self.rollout.size}, "
                f"got {self.step.num_minibatches}"
            )


class BehaviourTransition(NamedTuple):
    """A :class:`~proxrl.types.Transition` with ``log μ(a|s)``, the behaviour policy's log-probability of the
    action it took (time-major ``[T, B]``)."""

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    truncated: Array
    next_obs: Array
    logp_mu: Array


class APPOState(NamedTuple):
    """``params = {"actor": θ, "critic": φ}``, the proximal step's state, the key and the updates done."""

    params: Params
    step: StepState
    key: PRNGKey
    update: Array


def behaviour(agent: Agent, actor_params: Params, obs: Array, key: PRNGKey) -> tuple[Array, Array]:
    """``(a, log μ(a|s))`` with ``a ∼ π_θ(·|s)`` for the actor's (possibly stale) θ: what an actor records."""
    dist = agent.distribution(agent.actor.apply(actor_params, features(agent, obs)))
    action = dist.sample(seed=key)
    return action, dist.log_prob(action)


def appo_step(config: APPOConfig, agent: Agent, updates: int | None = None) -> ProxStep:
    """The learner's proximal step ``W_k`` (module docstring): :func:`~proxrl.prox.surrogates.clipped_ratio` on
    the batch's ρ̄-weighted V-trace advantages, :func:`~proxrl.prox.surrogates.entropy_bonus`,
    :func:`~proxrl.prox.surrogates.value_regression` toward the V-trace targets, solved by
    :func:`~proxrl.prox.solvers.minibatch_epochs`; ``kl`` reports KL(π_θ_{k+1}, π_θk)."""
    sur, step = config.surrogate, config.step
    old = lambda batch: agent.distribution(batch.dist_old)
    value = value_regression(
        agent.value, config.critic.vf_coef, sur.clip_eps if config.critic.clip_vloss else None
    )
    problem = Problem(
        clipped_ratio(sur.clip_eps),  # advantages standardised before their ρ̄ weights (make_vtrace_batch)
        None,
        (entropy_bonus(sur.ent_coef), value),
        policy=agent.policy_on,
    )
    tx = policy_optimiser(step, updates, step.update_epochs * step.num_minibatches)
    return prox_step(
        problem, minibatch_epochs(tx, step.update_epochs, step.num_minibatches), moved=head_kl(old)
    )


def make_vtrace_batch(
    agent: Agent, params: Params, traj: BehaviourTransition, config: APPOConfig
) -> tuple[Batch, Metrics]:
    """One forward pass under θ_k, φ_k over a ``[T, B]`` rollout collected under μ, V-trace per environment;
    the batch's ``adv`` are the ρ̄-weighted advantages, ``returns`` the V-trace targets, ``logp_old`` log π_θk.
    Metrics: ``rho_mean`` (mean π_θk/μ before truncation), ``rho_truncated`` (fraction above ρ̄)."""
    adv_cfg = config.advantage
    obs_t = features(agent, traj.obs)
    dist_old = agent.actor.apply(params["actor"], obs_t)
    logp_old = agent.distribution(dist_old).log_prob(traj.action)
    v_t = agent.critic.apply(params["critic"], obs_t)
    v_next = agent.critic.apply(params["critic"], features(agent, traj.next_obs))
    discount_t = config.rollout.gamma * (1.0 - traj.terminated.astype(jnp.float32))
    reset_t = traj.terminated | traj.truncated
    log_rho = logp_old - traj.logp_mu

    def one(r, d, v, vn, lr, reset):  # one environment's stream [T]
        return vtrace(r, d, v, vn, lr, adv_cfg.gae_lambda, adv_cfg.rho_bar, adv_cfg.c_bar, reset)

    out = jax.vmap(one, in_axes=1, out_axes=1)(traj.reward, discount_t, v_t, v_next, log_rho, reset_t)
    adv = out.pg_adv
    if adv_cfg.norm_adv:  # standardise r + γ·v_{t+1} − V(s_t) over the batch first, then weight by ρ̄
        q = out.q_adv
        adv = out.rho * (q - jnp.mean(q)) / (jnp.std(q) + 1e-8)
    batch = Batch(obs_t, traj.action, logp_old, dist_old, v_t, adv, out.vs)
    n = traj.reward.shape[0] * traj.reward.shape[1]
    rho = jnp.exp(log_rho)
    metrics = {
        "rho_mean": jnp.mean(rho),
        "rho_truncated": jnp.mean((rho > adv_cfg.rho_bar).astype(jnp.float32)),
    }
    return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), batch), metrics


def make_learner(
    config: APPOConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """APPO's learner: ``learn(state, traj)`` takes a :class:`BehaviourTransition` (V-trace under θ_k, φ_k, then
    :func:`appo_step`). ``act`` samples from π_θ (the actors use :func:`behaviour`, which also records log μ).

    Per-update metrics: PPO's (``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_frac``,
    ``kl``, …), ``rho_mean``, ``rho_truncated``; the runner adds ``policy_lag``."""
    config.validate()
    agent = make_agent(observation_space, action_space, config.network)
    updates = None if total_steps is None else num_updates(total_steps, config.rollout.size)
    step = appo_step(config, agent, updates)

    def init(key: PRNGKey, obs: Array) -> APPOState:
        key, k_actor, k_critic = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        return APPOState(params, step.init(params), key, jnp.zeros((), jnp.int32))

    def learn(state: APPOState, traj: Transition) -> tuple[APPOState, Metrics]:
        key, k_step = jax.random.split(state.key)
        if not hasattr(traj, "logp_mu"):  # collected in-process by θ_k itself: μ = π_θk
            logp = agent.policy(state.params, traj.obs).log_prob(traj.action)
            traj = BehaviourTransition(*traj, logp_mu=logp)
        batch, extra = make_vtrace_batch(agent, state.params, traj, config)
        params, step_state, metrics = step.update(state.params, state.step, batch, k_step)
        metrics.update(extra)
        metrics.update(step_diagnostics(config.step, updates, batch, state.update))
        return APPOState(params, step_state, key, state.update + 1), metrics

    return agent.learner("appo", init, learn, config.rollout)
