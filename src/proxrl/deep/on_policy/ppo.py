"""Proximal Policy Optimization (PPO = NPG + V_φ) on JAX-native (gymnax) environments.

Each update k is the lecture's loop::

    data_k  = collect(π_θk)                   # num_envs × num_steps steps, JaxEnv.rollout (lax.scan)
    Â_k     = GAE(λ) with V_φk                # estimators.gae, vmapped over environments (or another
                                              # estimator of the lecture's slide: --estimator)
    θ_{k+1} ≈ argmax_θ  L_k(θ; Â_k) + c·H     # update_epochs × num_minibatches Adam steps on
                                              # ppo_step: clip / ratio / KL, fixed or adaptive β
    φ_{k+1} ≈ argmin_φ ½·(V_φ(s) − R̂)²        # in the same steps, weighted by vf_coef

and the whole run — every update — is one function ``train(key)`` (a ``lax.scan`` over updates),
so it jits once and ``jax.vmap(train)(keys)`` trains many seeds in one compiled call::

    from proxrl.run.train import make_train

    config = PPOConfig()
    train = make_train(config, "CartPole-v1", total_steps=100_000)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    params = state.carry.learner.params                                     # θ and φ of each seed

``make_learner`` gives the same algorithm as a :class:`~proxrl.types.Learner`, which the training
driver runs on gymnax environments (traced rollouts) or on host-side Gymnasium environments.

Numeric config fields may be traced: ``train(key, hyper)`` (:func:`proxrl.run.train.make_train`) receives
them as arrays, so hyperparameters can be vmapped like seeds; fields that fix shapes and code paths (budgets,
network sizes, surrogate kind, on/off details) are static.

The usual implementation details (CleanRL's list) are options with their usual defaults:
orthogonal initialisation (in the networks), separate actor and critic MLPs, Adam with ε = 1e-5,
linear learning-rate annealing, GAE with truncation bootstrapped from V(true next obs),
per-minibatch advantage normalisation, clipped value loss, global gradient-norm clipping, entropy
bonus, approx_kl and clip_frac diagnostics.
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
from proxrl.errors import (
    ConfigError,
    check_choice,
    check_in_range,
    check_int_at_least,
    check_not_above,
    check_not_below,
    check_positive,
)
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.geometry import BETA_MAX, BETA_MIN, adaptive_beta, head_kl
from proxrl.prox.solvers import minibatch_epochs
from proxrl.prox.surrogates import clipped_ratio, entropy_bonus, ratio, value_regression
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

SURROGATES = ("none", "clip", "kl_fixed", "kl_adaptive")
"""PPO's surrogates, the rows of the PPO paper's comparison: ratio·A alone, clipped, or with a KL penalty
(β fixed or adapted toward a target KL)."""


@dataclasses.dataclass(frozen=True)
class PPOStep(PolicyStep):
    """The m inner steps that solve PPO's proximal step: epochs over the batch, each cut into minibatches."""

    update_epochs: int = 4
    """Passes (epochs) over each batch: the m inner steps of the proximal update."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch T·B must be divisible by it."""

    def validate(self) -> None:
        """:meth:`PolicyStep.validate`; epochs and minibatches integers ≥ 1."""
        super().validate()
        check_int_at_least("update_epochs", self.update_epochs, 1)
        check_int_at_least("num_minibatches", self.num_minibatches, 1)


@dataclasses.dataclass(frozen=True)
class ClipSurrogate(Entropy):
    """PPO's clipped ratio min(ratio·A, clip(ratio, 1 ± ε)·A), ratio = π_θ/π_θk (with the entropy bonus)."""

    clip_eps: float = 0.2
    """Clip range ε > 0 of the ratio (and of the value prediction with clip_vloss)."""

    def validate(self) -> None:
        """c ≥ 0, ε > 0."""
        super().validate()
        check_positive("clip_eps", self.clip_eps)


@dataclasses.dataclass(frozen=True)
class PPOSurrogate(ClipSurrogate):
    """Which of the PPO paper's surrogates L_k is maximised, and its coefficients (with the entropy bonus)."""

    surrogate: str = "clip"
    """Policy objective: "none" (ratio·A), "clip" (min(ratio·A, clip(ratio)·A)), "kl_fixed" or "kl_adaptive"."""
    beta: float = 1.0
    """KL coefficient β = 1/η for the "kl_fixed" surrogate, and its initial value for "kl_adaptive"."""
    kl_target: float = 0.01
    """Target KL d_targ of the adaptive rule (β halves below d_targ/1.5, doubles above 1.5·d_targ)."""
    beta_min: float = BETA_MIN
    """Floor of the adaptive β ("kl_adaptive"; default 1/35, as PPO-paper-era implementations)."""
    beta_max: float = BETA_MAX
    """Ceiling of the adaptive β ("kl_adaptive"; default 35)."""

    def validate(self) -> None:
        """c ≥ 0, ε > 0, a known surrogate, β ≥ 0, d_targ > 0, 0 < β_min ≤ β_max, and for "kl_adaptive" the
        initial β within [β_min, β_max]."""
        super().validate()
        check_choice("surrogate", self.surrogate, SURROGATES)
        check_in_range("beta", self.beta, 0.0, float("inf"), high_open=True)
        check_positive("kl_target", self.kl_target)
        check_positive("beta_min", self.beta_min)
        check_positive("beta_max", self.beta_max)
        check_not_below("beta_max", self.beta_max, "beta_min", self.beta_min)
        if self.surrogate == "kl_adaptive":
            check_not_below("beta", self.beta, "beta_min", self.beta_min)
            check_not_above("beta", self.beta, "beta_max", self.beta_max)


@dataclasses.dataclass(frozen=True)
class ClippedValueLoss(ValueLoss):
    """The critic's regression ½(V_φ(s) − R̂)² in the combined objective, its prediction optionally clipped
    near V_φk as PPO's."""

    clip_vloss: bool = True
    """Clip the value prediction to within clip_eps of the old one in the value loss."""


@dataclasses.dataclass(frozen=True)
class PPOConfig(Config):
    """PPO: the rollout, the networks, the m inner steps, GAE, the surrogate and the value loss; defaults
    follow CleanRL's ppo.py (Atari/classic-control settings)."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=4, num_steps=128))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: PPOStep = dataclasses.field(default_factory=lambda: PPOStep(lr=2.5e-4, anneal_lr=True))
    advantage: AdvantageEstimator = dataclasses.field(
        default_factory=lambda: AdvantageEstimator(norm_adv=True, gae_lambda=0.95)
    )
    surrogate: PPOSurrogate = dataclasses.field(default_factory=lambda: PPOSurrogate(ent_coef=0.01))
    critic: ClippedValueLoss = dataclasses.field(default_factory=ClippedValueLoss)

    @property
    def minibatch_size(self) -> int:
        """Transitions per optimiser step."""
        return self.rollout.size // self.step.num_minibatches

    def check(self) -> None:
        """The minibatch count divides the rollout size T·B."""
        if self.rollout.size % self.step.num_minibatches:
            raise ConfigError(
                f"num_minibatches must divide num_envs·num_steps = {self.rollout.size}, "
                f"got {self.step.num_minibatches}"
            )


class PPOState(NamedTuple):
    """What PPO carries from one update to the next (the environment side lives in the loop's carry).

    ``params = {"actor": θ, "critic": φ}``; ``step``: the proximal step's state (Adam's moments and step
    count, the KL coefficient β in force).
    """

    params: Params
    step: StepState
    key: PRNGKey
    update: Array
    """Updates done so far."""


def ppo_step(config: PPOConfig, agent: Agent, updates: int | None = None) -> ProxStep:
    """PPO's proximal step on ``params = {"actor": θ, "critic": φ}`` and a flat :class:`Batch`::

        W_k(θ, φ) = L_k(θ) − β·(1/N) Σ_i KL(π_θ(·|s_i), π_θk(·|s_i)) + c·H(π_θ) − c_v·ℓ_V(φ)

    surrogate :func:`~proxrl.prox.surrogates.clipped_ratio` ("clip") or :func:`~proxrl.prox.surrogates.ratio`
    ("none", "kl_fixed", "kl_adaptive"); geometry :func:`~proxrl.prox.geometry.head_kl` with β fixed or
    :func:`~proxrl.prox.geometry.adaptive_beta` (KL kinds only, the adaptive β kept within [``beta_min``,
    ``beta_max``]; the clip is the other kinds' implicit geometry); solver
    :func:`~proxrl.prox.solvers.minibatch_epochs` (``update_epochs × num_minibatches`` steps of clipped Adam,
    the learning rate annealed linearly over the run when ``anneal_lr``). The critic's
    regression joins the same steps (the PPO paper's combined objective L − c_v·L^VF + c·S).
    """
    sur, step, norm_adv = config.surrogate, config.step, config.advantage.norm_adv
    kind = sur.surrogate
    old = lambda batch: agent.distribution(batch.dist_old)
    surrogate = clipped_ratio(sur.clip_eps, norm_adv) if kind == "clip" else ratio(norm_adv)
    extras = (
        entropy_bonus(sur.ent_coef),
        value_regression(
            agent.value,
            config.critic.vf_coef,
            sur.clip_eps if config.critic.clip_vloss else None,
            with_action=config.advantage.q_critic,
        ),
    )
    geometry = head_kl(old) if kind.startswith("kl") else None
    adaptive = adaptive_beta(sur.beta, sur.kl_target, sur.beta_min, sur.beta_max)
    beta = {"kl_fixed": sur.beta, "kl_adaptive": adaptive}.get(kind)
    tx = policy_optimiser(step, updates, step.update_epochs * step.num_minibatches)
    problem = Problem(surrogate, geometry, extras, policy=agent.policy_on)
    return prox_step(
        problem, minibatch_epochs(tx, step.update_epochs, step.num_minibatches), beta, moved=head_kl(old)
    )


def make_learner(
    config: PPOConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """PPO as a :class:`~proxrl.types.Learner`: ``learn`` is the selected estimate (:func:`~proxrl.deep.on_policy.common.estimate`;
    GAE(λ) under V_φk by default), then :func:`ppo_step`.

    Per-update metrics: the step's (``surrogate_gain``, ``kl`` the exact mean KL(π_θ_{k+1}, π_θk) over the
    batch, ``step_norm``; ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_frac`` averaged
    over the inner steps; ``beta`` for the KL kinds), ``explained_variance`` and ``learning_rate``; the
    collection loop adds ``episodic_return`` and ``episodes``.
    """
    config.validate()
    sigma_at = policy_sigma(config.network, config.rollout, total_steps)
    agent = make_agent(observation_space, action_space, config.network, config.advantage.q_critic, sigma_at)
    updates = None if total_steps is None else num_updates(total_steps, config.rollout.size)
    step = ppo_step(config, agent, updates)

    def init(key: PRNGKey, obs: Array) -> PPOState:
        key, k_actor, k_critic = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        return PPOState(params, step.init(params), key, jnp.zeros((), jnp.int32))

    def learn(state: PPOState, traj: Transition) -> tuple[PPOState, Metrics]:
        # k_estimate apart from k_step, whose per-epoch keys the minibatch shuffles draw from; only the Q forms
        # over a box draw from it
        key, k_step, k_estimate = jax.random.split(state.key, 3)
        # Â_k: the selected estimator (default GAE(λ)) under V_φk or Q_φk
        batch = estimate(agent, state.params, traj, config.rollout.gamma, config.advantage, k_estimate)
        # θ_{k+1}, φ_{k+1}: the proximal step
        params, step_state, metrics = step.update(state.params, state.step, batch, k_step)
        # σ_{k+1} for the next rollout, if scheduled
        params = {**params, "actor": agent.scheduled(params["actor"], state.update + 1)}
        metrics.update(step_diagnostics(config.step, updates, batch, state.update))
        metrics.update(agent.sigma_metrics(state.update))
        return PPOState(params, step_state, key, state.update + 1), metrics

    return agent.learner("ppo", init, learn, config.rollout)
