"""Proximal Policy Optimization (PPO = NPG + V_φ) on JAX-native (gymnax) environments.

Each update k is the lecture's loop::

    data_k  = collect(π_θk)                   # num_envs × num_steps steps, JaxEnv.rollout (lax.scan)
    Â_k     = GAE(λ) with V_φk                # estimators.gae, vmapped over environments
    θ_{k+1} ≈ argmax_θ  L_k(θ; Â_k) + c·H     # update_epochs × num_minibatches Adam steps on
                                              # objectives.ppo (clip / ratio / KL, fixed or adaptive β)
    φ_{k+1} ≈ argmin_φ ½·(V_φ(s) − R̂)²        # in the same steps, weighted by vf_coef

and the whole run — every update — is one function ``train(key)`` (a ``lax.scan`` over updates),
so it jits once and ``jax.vmap(train)(keys)`` trains many seeds in one compiled call::

    config = PPOConfig(total_timesteps=100_000)
    train = make_train(config, "CartPole-v1")
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    params = state.carry.learner.params                                     # θ and φ of each seed

``make_learner`` gives the same algorithm as a :class:`~proxrl.types.Learner`, which the training
driver runs on gymnax environments (traced rollouts) or on host-side Gymnasium environments.

Config fields are split as in Rejax: *static* ones fix shapes and code paths (budgets, network
sizes, surrogate kind, on/off details), *traced* ones are numbers (:class:`PPOHyper`) that
``train(key, hyper)`` may receive as arrays, so hyperparameters can be vmapped like seeds.

The usual implementation details (CleanRL's list) are options with their usual defaults:
orthogonal initialisation (in the networks), separate actor and critic MLPs, Adam with ε = 1e-5,
linear learning-rate annealing, GAE with truncation bootstrapped from V(true next obs),
per-minibatch advantage normalisation, clipped value loss, global gradient-norm clipping, entropy
bonus, approx_kl and clip_frac diagnostics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from proxrl.algos.actor_critic import (
    Agent,
    RolloutConfig,
    as_env,
    check_actor_critic_coefficients,
    explained_variance,
    make_agent,
    make_batch,
)
from proxrl.collect import loops
from proxrl.collect.loops import Normalization
from proxrl.errors import (
    ConfigError,
    check_choice,
    check_in_range,
    check_int_at_least,
    check_positive,
)
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.geometry import adaptive_beta, head_kl
from proxrl.prox.solvers import linear_anneal, minibatch_epochs, optimiser
from proxrl.prox.surrogates import clipped_ratio, entropy_bonus, ratio, value_regression
from proxrl.settings.jax_envs import JaxEnv, Space
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Trainer, Transition

SURROGATES = ("none", "clip", "kl_fixed", "kl_adaptive")
"""PPO's surrogates, the rows of the PPO paper's comparison: ratio·A alone, clipped, or with a KL penalty
(β fixed or adapted toward a target KL)."""


@dataclasses.dataclass(frozen=True)
class PPOConfig(RolloutConfig):
    """PPO hyperparameters (the on-policy fields of ``actor_critic.RolloutConfig`` and PPO's own); defaults
    follow CleanRL's ``ppo.py`` (Atari/classic-control settings). The numbers in :class:`PPOHyper` are traced
    (they may be vmapped); every other field is static (changing one recompiles)."""

    num_envs: int = 4
    lr: float = 2.5e-4
    update_epochs: int = 4
    """Passes (epochs) over each batch: the m inner steps of the proximal update."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch T·B must be divisible by it."""
    surrogate: str = "clip"
    """Policy objective: "none" (ratio·A), "clip" (min(ratio·A, clip(ratio)·A)), "kl_fixed" or "kl_adaptive"."""
    anneal_lr: bool = True
    """Decay the learning rate linearly from ``lr`` to 0 over the updates."""
    norm_adv: bool = True
    """Standardise the advantages within each minibatch."""
    clip_vloss: bool = True
    """Clip the value prediction to within ``clip_eps`` of the old one in the value loss."""
    gae_lambda: float = 0.95
    """GAE λ ∈ [0, 1]: 0 gives the TD error, 1 the Monte Carlo return minus V."""
    clip_eps: float = 0.2
    """Clip range ε > 0 of the ratio (and of the value prediction with ``clip_vloss``)."""
    beta: float = 1.0
    """KL coefficient β = 1/η for the "kl_fixed" surrogate, and its initial value for "kl_adaptive"."""
    kl_target: float = 0.01
    """Target KL d_targ of the adaptive rule (β halves below d_targ/1.5, doubles above 1.5·d_targ)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient c."""
    vf_coef: float = 0.5
    """Value loss coefficient."""

    @property
    def minibatch_size(self) -> int:
        """Transitions per Adam step."""
        return self.batch_size // self.num_minibatches

    def hyper(self) -> PPOHyper:
        """The traced fields, as a :class:`PPOHyper` of floats."""
        return PPOHyper(**{f: float(getattr(self, f)) for f in PPOHyper._fields})

    def validate(self) -> PPOConfig:
        """Raise :class:`~proxrl.errors.ConfigError` (one line) on a bad value; return ``self``."""
        super().validate()
        check_actor_critic_coefficients(self)
        for name in ("update_epochs", "num_minibatches"):
            check_int_at_least(name, getattr(self, name), 1)
        check_choice("surrogate", self.surrogate, SURROGATES)
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"num_minibatches must divide num_envs·num_steps = {self.batch_size}, got {self.num_minibatches}"
            )
        check_positive("clip_eps", self.clip_eps)
        check_in_range("beta", self.beta, 0.0, float("inf"), high_open=True)
        check_positive("kl_target", self.kl_target)
        return self


class PPOHyper(NamedTuple):
    """The traced hyperparameters (scalars, or arrays with a leading axis under ``jax.vmap``)."""

    lr: Any
    gamma: Any
    gae_lambda: Any
    clip_eps: Any
    beta: Any
    kl_target: Any
    ent_coef: Any
    vf_coef: Any
    max_grad_norm: Any


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
    hyper: PPOHyper
    """The traced hyperparameters of this run."""


def ppo_step(config: PPOConfig, agent: Agent, hp: PPOHyper) -> ProxStep:
    """PPO's proximal step on ``params = {"actor": θ, "critic": φ}`` and a flat :class:`Batch`::

        W_k(θ, φ) = L_k(θ) − β·(1/N) Σ_i KL(π_θ(·|s_i), π_θk(·|s_i)) + c·H(π_θ) − c_v·ℓ_V(φ)

    surrogate :func:`~proxrl.prox.surrogates.clipped_ratio` ("clip") or :func:`~proxrl.prox.surrogates.ratio`
    ("none", "kl_fixed", "kl_adaptive"); geometry :func:`~proxrl.prox.geometry.head_kl` with β fixed or
    :func:`~proxrl.prox.geometry.adaptive_beta` (KL kinds only; the clip is the other kinds' implicit
    geometry); solver :func:`~proxrl.prox.solvers.minibatch_epochs` (``update_epochs × num_minibatches``
    steps of clipped Adam, the learning rate annealed linearly over the run when ``anneal_lr``). The critic's
    regression joins the same steps (the PPO paper's combined objective L − c_v·L^VF + c·S).
    """
    kind = config.surrogate
    old = lambda batch: agent.distribution(batch.dist_old)
    surrogate = clipped_ratio(hp.clip_eps, config.norm_adv) if kind == "clip" else ratio(config.norm_adv)
    extras = (
        entropy_bonus(hp.ent_coef),
        value_regression(agent.value, hp.vf_coef, hp.clip_eps if config.clip_vloss else None),
    )
    geometry = head_kl(old) if kind.startswith("kl") else None
    beta = {"kl_fixed": hp.beta, "kl_adaptive": adaptive_beta(hp.beta, hp.kl_target)}.get(kind)
    steps = config.update_epochs * config.num_minibatches
    lr = linear_anneal(hp.lr, config.num_updates, steps) if config.anneal_lr else hp.lr
    tx = optimiser(lr, hp.max_grad_norm, eps=1e-5)
    problem = Problem(surrogate, geometry, extras, policy=agent.policy_on)
    return prox_step(
        problem, minibatch_epochs(tx, config.update_epochs, config.num_minibatches), beta, moved=head_kl(old)
    )


def make_learner(
    config: PPOConfig, observation_space: Space, action_space: Space, hyper: PPOHyper | None = None
) -> Learner:
    """PPO as a :class:`~proxrl.types.Learner`: ``learn`` is GAE(λ) under V_φk, then :func:`ppo_step`.

    Per-update metrics: the step's (``surrogate_gain``, ``kl`` the exact mean KL(π_θ_{k+1}, π_θk) over the
    batch, ``step_norm``; ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl``, ``clip_frac`` averaged
    over the inner steps; ``beta`` for the KL kinds), ``explained_variance`` and ``learning_rate``; the
    collection loop adds ``episodic_return`` and ``episodes``.

    ``hyper``: a :class:`PPOHyper` overriding the traced fields (default ``config.hyper()``); it may hold
    traced arrays, so ``jax.vmap`` over hyperparameters works like a vmap over seeds.
    """
    config.validate()
    agent = make_agent(
        observation_space, action_space, tuple(config.hidden), config.activation, config.log_std_init
    )

    def hyperparameters(hp: PPOHyper | None) -> PPOHyper:
        hp = config.hyper() if hp is None else hp
        return PPOHyper(*(jnp.asarray(h, jnp.float32) for h in hp))

    def init(key: PRNGKey, obs: Array) -> PPOState:
        hp = hyperparameters(hyper)
        key, k_actor, k_critic = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        step = ppo_step(config, agent, hp)
        return PPOState(params, step.init(params), key, jnp.zeros((), jnp.int32), hp)

    def learn(state: PPOState, traj: Transition) -> tuple[PPOState, Metrics]:
        hp = state.hyper
        key, k_step = jax.random.split(state.key)
        # Â_k = GAE(λ) under V_φk
        batch = make_batch(agent, state.params, traj, hp.gamma, hp.gae_lambda)
        # θ_{k+1}, φ_{k+1}: the proximal step
        params, step_state, metrics = ppo_step(config, agent, hp).update(
            state.params, state.step, batch, k_step
        )
        lr_now = (
            hp.lr * jnp.maximum(1.0 - state.update / config.num_updates, 0.0) if config.anneal_lr else hp.lr
        )
        metrics.update(
            explained_variance=explained_variance(batch.value_old, batch.returns), learning_rate=lr_now
        )
        return PPOState(params, step_state, key, state.update + 1, hp), metrics

    return agent.learner("ppo", init, learn, config)


def make_ppo(
    config: PPOConfig, env_id: str | JaxEnv, eval_episodes: int = 10, norm: Normalization | None = None
) -> Trainer:
    """PPO on a gymnax environment as a :class:`~proxrl.types.Trainer` (:func:`make_learner` in
    :func:`proxrl.collect.loops.jax_trainer`): ``init(key)``, ``update(state)`` (one collect → GAE →
    proximal step iteration) and ``evaluate(state, key)`` (mean deterministic return)."""
    return loops.trainer_for(make_learner, config, env_id, eval_episodes, norm)


def make_train(
    config: PPOConfig, env_id: str | JaxEnv, norm: Normalization | None = None
) -> Callable[..., tuple[loops.LoopState, Metrics]]:
    """``train(key, hyper=None) -> (final_state, metrics)``: the whole run as one pure function.

    A ``lax.scan`` over ``config.num_updates`` updates, so it jits once and ``jax.vmap(train)(keys)``
    trains many seeds in one compiled call. ``metrics[name]`` has shape ``[num_updates]``, plus
    ``env_steps``; ``state.carry.learner.params`` are the trained parameters.
    """
    config.validate()
    env = as_env(env_id)

    def train(key: PRNGKey, hyper: PPOHyper | None = None) -> tuple[loops.LoopState, Metrics]:
        learner = make_learner(config, env.observation_space, env.action_space, hyper)
        return loops.make_train(learner, env, config.num_updates, norm)(key)

    return train
