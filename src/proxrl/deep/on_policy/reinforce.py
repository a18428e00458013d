"""REINFORCE: Monte Carlo policy gradient, with no baseline or a learned baseline V_φ.

The lecture's "PG + Bandit Feedback (REINFORCE)": use π_θk to collect trajectories, then take ONE
Euclidean step along

    g       = (1/N) Σ_{i,h} ∇_θ log π_θ(a_h^{(i)} | s_h^{(i)}) |_{θ=θ_k} · (R_h^{(i)} − b(s_h^{(i)}))
    θ_{k+1} = θ_k + η·g              (= argmax_θ ⟨g, θ − θ_k⟩ − (1/2η)·‖θ − θ_k‖²; Adam-preconditioned here)

with R_h = Σ_{l≥h} γ^{l−h} r_l the discounted return-to-go and N = T·B the transitions of the rollout.
Any b(s) leaves g unbiased (E_{a∼π}[∇log π(a|s)] = 0); ``baseline="value"`` fits b = V_φ by regression
on the returns, ``φ ← φ − λ∇_φ (1/N) Σ ½(V_φ(s_h) − R_h)²`` (``vf_steps`` full-batch Adam steps after θ's step).

Rollouts are fixed-length ``[T, B]`` and episodes cross rollout boundaries (the collection loop never
resets an environment between rollouts), so the return-to-go of the last steps of a rollout is not
observed. The two baselines treat that tail differently, and say so:

- ``"value"``: the incomplete tail is **bootstrapped** with the critic,
  ``R_h = r_h + γr_{h+1} + … + γ^{T−1−h}·V_φk(s_T)`` (as Spinning Up's VPG, or A2C's n-step returns
  with n = T). It is GAE with λ = 1; its only bias is γ^{T−h}·(V_φk(s_T) − V^π(s_T)), small when T is
  long compared with the effective horizon 1/(1 − γ).
- ``"none"``: there is no critic to bootstrap with, so the steps whose episode does **not end inside the
  rollout are masked out** (weight 0; g still divides by N). Every kept step has its exact Monte Carlo
  return-to-go. This is the lecture's whole-trajectory estimator when each rollout holds whole episodes
  (``num_steps`` ≥ the episode length); otherwise the mask keeps a step with a probability that falls with
  its remaining episode length, which under-weights states far from their episode's end, a bias that
  vanishes as ``num_steps`` / episode length grows. Choose ``num_steps`` at least the typical episode length.

Either way a termination never bootstraps (``discount_t = γ(1 − terminated)``). A truncation (time limit)
bootstraps from V_φk at the true final observation with ``"value"``; with ``"none"`` the truncated episode
counts as ended, i.e. the objective is the return of the time-limited episode (what evaluation measures).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import Advantage, Entropy, PolicyNetwork, PolicyStep, Rollout
from proxrl.deep.jax_envs import Space
from proxrl.deep.on_policy.common import (
    Agent,
    explained_variance,
    features,
    make_agent,
    num_updates,
    policy_optimiser,
    policy_sigma,
)
from proxrl.errors import check_choice, check_int_at_least, check_positive
from proxrl.estimators import discounted_returns
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.critic import value_loss
from proxrl.prox.geometry import head_kl
from proxrl.prox.solvers import fit, gradient_steps, optimiser
from proxrl.prox.surrogates import entropy_bonus, score_function
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

BASELINES = ("none", "value")
"""The selectable baselines b(s): none (b = 0, incomplete tails masked) or a learned V_φ (tails bootstrapped)."""


@dataclasses.dataclass(frozen=True)
class Baseline:
    """The baseline b(s) subtracted from the return, and how a learned one is fitted."""

    baseline: str = "value"
    """b(s): "none" (b = 0) or "value" (a learned V_φ, which also bootstraps the rollout's unfinished tail)."""
    vf_lr: float = 1e-3
    """Adam step size of the baseline's regression steps (baseline="value")."""
    vf_steps: int = 10
    """Full-batch Adam steps of the baseline's regression per rollout (Spinning Up's VPG takes 80): with one, V_φ lags the returns and barely reduces the variance."""

    def validate(self) -> None:
        """A known baseline, vf_lr > 0, vf_steps an integer ≥ 1."""
        check_choice("baseline", self.baseline, BASELINES)
        check_positive("vf_lr", self.vf_lr)
        check_int_at_least("vf_steps", self.vf_steps, 1)


@dataclasses.dataclass(frozen=True)
class REINFORCEConfig(Config):
    """REINFORCE: the rollout (the lecture's n = num_envs trajectories per update), the networks, one clipped
    Adam step on g per rollout (its gradient clip also bounds the baseline's steps), the return's
    normalisation, the entropy bonus and the baseline. With baseline="none" keep num_steps at least the typical
    episode length (steps of unfinished episodes are masked out)."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=8, num_steps=500))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: PolicyStep = dataclasses.field(default_factory=lambda: PolicyStep(lr=1e-3, max_grad_norm=10.0))
    advantage: Advantage = dataclasses.field(default_factory=Advantage)
    surrogate: Entropy = dataclasses.field(default_factory=Entropy)
    critic: Baseline = dataclasses.field(default_factory=Baseline)


class REINFORCEState(NamedTuple):
    """What REINFORCE carries between updates: ``params = {"actor": θ}`` (plus ``"critic": φ`` with a
    baseline), the policy step's state and the baseline's optimiser state (``()`` without one)."""

    params: Params
    step: StepState
    critic_opt: optax.OptState
    update: Array
    """Updates done so far (the scheduled σ's clock)."""


class ReturnBatch(NamedTuple):
    """One rollout's data for the policy step, ``[T, B, ...]``: observation features, actions, the advantage
    estimate ``R − b`` (0 where masked), the mask of kept steps, and π_θk's head outputs."""

    obs: Array
    action: Array
    adv: Array
    mask: Array
    dist_old: Any


def returns_to_go(traj: Transition, gamma: Array | float, v_next: Array | None = None) -> tuple[Array, Array]:
    """Monte Carlo returns-to-go ``R_h = Σ_{l≥h} γ^{l−h} r_l`` within each episode of a ``[T, B]`` rollout.

    ``v_next`` ``[T, B]`` (V_φ at the true next observations) given: the unfinished tail bootstraps from
    ``v_next[T−1]`` = V_φ(s_T) and a truncation from ``v_next`` at its step; every step is kept.
    ``v_next`` None: no bootstrap (a truncated episode's return is its observed sum), and steps whose
    episode does not end inside the rollout are masked out.

    Returns ``(R [T, B], mask [T, B] float)``. A termination never bootstraps.
    """
    discount_t = gamma * (1.0 - traj.terminated.astype(jnp.float32))
    ended = traj.terminated | traj.truncated
    if v_next is None:
        g = jax.vmap(lambda r, d, e: discounted_returns(r, d, 0.0, reset_t=e), in_axes=1, out_axes=1)(
            traj.reward, discount_t, ended
        )
        # kept ⇔ some episode end at a step ≥ h in this column (reverse cumulative OR)
        kept = jnp.flip(jnp.cumsum(jnp.flip(ended, 0), axis=0), 0) > 0
        return g * kept, kept.astype(jnp.float32)
    g = jax.vmap(
        lambda r, d, last, e, v: discounted_returns(r, d, last, reset_t=e, v_next=v),
        in_axes=(1, 1, 0, 1, 1),
        out_axes=1,
    )(traj.reward, discount_t, v_next[-1], ended, v_next)
    return g, jnp.ones_like(g)


def reinforce_step(config: REINFORCEConfig, agent: Agent, updates: int | None = None) -> ProxStep:
    """REINFORCE's proximal step on θ and a :class:`ReturnBatch`::

        θ_{k+1} = θ_k + η·g,    g = ∇_θ [ (1/N) Σ_{i,h} mask·log π_θ(a_h|s_h)·(R_h − b(s_h)) + c·H(π_θ) ]

    surrogate :func:`~proxrl.prox.surrogates.score_function` (masked) and the entropy bonus, geometry
    Euclidean, solver one clipped Adam step (:func:`~proxrl.prox.solvers.gradient_steps`).
    """
    problem = Problem(
        score_function(mask=lambda batch: batch.mask),
        extras=(entropy_bonus(config.surrogate.ent_coef),),
        policy=agent.head,
    )
    tx = policy_optimiser(config.step, updates)
    return prox_step(
        problem, gradient_steps(tx), moved=head_kl(lambda batch: agent.distribution(batch.dist_old))
    )


def make_learner(
    config: REINFORCEConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """REINFORCE as a :class:`~proxrl.types.Learner`: ``learn`` is returns-to-go → :func:`reinforce_step` →
    the baseline's regression.

    Per-update metrics: the step's (``policy_loss``, ``entropy`` at θ_k; ``kl`` the exact mean
    KL(π_θ_{k+1}, π_θk); ``surrogate_gain``; ``step_norm``; ``grad_norm`` before clipping), ``kept_frac``
    (fraction of steps with a known return-to-go; 1 with a value baseline), ``mean_return`` (mean R over kept
    steps); with ``baseline="value"`` also ``value_loss`` (at φ_k) and ``explained_variance`` (V_φk against R).
    """
    config.validate()
    agent = make_agent(
        observation_space,
        action_space,
        config.network,
        sigma_at=policy_sigma(config.network, config.rollout, total_steps),
    )
    use_value = config.critic.baseline == "value"
    updates = None if total_steps is None else num_updates(total_steps, config.rollout.size)
    step = reinforce_step(config, agent, updates)
    tx_critic = optimiser(config.critic.vf_lr, config.step.max_grad_norm, eps=1e-5)

    def init(key: PRNGKey, obs: Array) -> REINFORCEState:
        k_actor, k_critic = jax.random.split(key)
        params = agent.init(k_actor, k_critic, obs)
        zero = jnp.zeros((), jnp.int32)
        if not use_value:
            return REINFORCEState({"actor": params["actor"]}, step.init(params["actor"]), (), zero)
        return REINFORCEState(params, step.init(params["actor"]), tx_critic.init(params["critic"]), zero)

    def learn(state: REINFORCEState, traj: Transition) -> tuple[REINFORCEState, Metrics]:
        params = state.params
        obs = features(agent, traj.obs)
        metrics: Metrics = {}
        # estimate: R_h (Monte Carlo, tail bootstrapped by V_φk or masked) and b(s_h)
        if use_value:
            v_t = agent.value(params["critic"], obs)
            v_next = agent.value(params["critic"], features(agent, traj.next_obs))
            returns, mask = returns_to_go(traj, config.rollout.gamma, v_next)
            adv = returns - v_t
        else:
            returns, mask = returns_to_go(traj, config.rollout.gamma)
            adv = returns
        if config.advantage.norm_adv:
            count = jnp.maximum(jnp.sum(mask), 1.0)
            mean = jnp.sum(mask * adv) / count
            std = jnp.sqrt(jnp.sum(mask * (adv - mean) ** 2) / count)
            adv = mask * (adv - mean) / (std + 1e-8)

        # θ_{k+1} = θ_k + η·g (one Adam step)
        batch = ReturnBatch(obs, traj.action, adv, mask, agent.actor.apply(params["actor"], obs))
        theta, step_state, metrics = step.update(params["actor"], state.step, batch, None)
        new_params, critic_opt = {"actor": agent.scheduled(theta, state.update + 1)}, state.critic_opt

        # φ_{k+1}: vf_steps full-batch Adam steps on ½(V_φ(s) − R)², the baseline's regression
        if use_value:

            def critic_loss(phi: Params, data: tuple[Array, Array]) -> tuple[Array, Metrics]:
                return value_loss(agent.value(phi, data[0]), None, data[1]), {}

            phi, critic_opt, fitted = fit(
                critic_loss,
                tx_critic,
                params["critic"],
                state.critic_opt,
                (obs, returns),
                None,
                config.critic.vf_steps,
            )
            new_params["critic"] = phi
            metrics.update(
                value_loss=fitted["loss"][0, 0], explained_variance=explained_variance(v_t, returns)
            )

        count = jnp.maximum(jnp.sum(mask), 1.0)
        metrics.update(kept_frac=jnp.mean(mask), mean_return=jnp.sum(mask * returns) / count)
        metrics.update(agent.sigma_metrics(state.update))
        return REINFORCEState(new_params, step_state, critic_opt, state.update + 1), metrics

    return agent.learner("reinforce", init, learn, config.rollout)
