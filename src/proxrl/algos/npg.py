"""Natural policy gradient for neural policies (NPG), and TRPO as NPG + a backtracking line search.

The lecture's NPG (gradient form) with an advantage critic::

    g       = (1/N) Σ_{i,h} ∇_θ log π_θ(a_h|s_h)|_{θ=θ_k} · Â_h          Â: GAE(λ) under V_φk
    F_θk    = (1/N) Σ_{i,h} E_{a∼π_θk(·|s_h)}[∇log π_θk(a|s_h) ∇log π_θk(a|s_h)ᵀ]
    θ_{k+1} = θ_k + η·F_θk⁻¹ g
            = argmax_θ (θ − θ_k)ᵀ g − (1/2η)·(θ − θ_k)ᵀ F_θk (θ − θ_k)

F is never formed. It is the Hessian at θ = θ_k of the mean KL over the batch's states,
``KL̄(θ) = (1/N) Σ_h KL(π_θk(·|s_h) ‖ π_θ(·|s_h))`` (the lecture's KL ≈ ½ΔθᵀFΔθ), so a Fisher-vector
product is one forward-over-reverse derivative, ``F v = ∂/∂ε ∇KL̄(θ_k + εv)`` (:func:`fisher_vector_product`,
``jax.jvp`` of ``jax.grad``), plus damping λ·v. Conjugate gradient (:func:`proxrl.solvers.natural.conjugate_gradient`)
solves ``(F + λI) w = g`` in ``cg_iters`` products. The step is then, by ``step``:

- ``"fixed"``: ``θ_{k+1} = θ_k + η·w`` with η = ``step_size`` (the lecture's update);
- ``"trust_region"``: η = √(2δ / wᵀFw), the largest step whose quadratic KL model ½ηwᵀFηw equals δ = ``max_kl``
  (TRPO's scaling; the update's size no longer depends on the scale of Â).

``line_search=True`` adds TRPO's backtracking: try θ_k + βʲ·Δθ for j = 0, 1, …, ``max_backtracks`` − 1
(β = ``backtrack_ratio``) and accept the first with exact mean KL(π_θ, π_θk) ≤ δ and surrogate improvement
``L(θ) − L(θ_k)`` ≥ ``accept_ratio`` · (the linear prediction gᵀβʲΔθ) > 0, where
``L(θ) = (1/N) Σ ratio·Â`` and ratio = π_θ(a|s)/π_θk(a|s); if none passes, θ stays θ_k (:func:`line_search`).
With ``step="trust_region"`` and ``line_search=True`` this is TRPO.

The critic V_φ is fitted after the policy step by ``vf_epochs`` × ``vf_minibatches`` Adam steps on
½(V_φ(s) − R̂)² toward the GAE λ-returns R̂ computed under V_φk. Truncation bootstraps from V at the true
next observation and termination never does (the shared :func:`proxrl.algos.actor_critic.make_batch`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from proxrl.algos.actor_critic import (
    Batch,
    RolloutConfig,
    explained_variance,
    make_agent,
    make_batch,
)
from proxrl.collect import loops
from proxrl.collect.loops import Normalization
from proxrl.errors import ConfigError, check_choice, check_in_range, check_int_at_least, check_positive
from proxrl.estimators import normalize_advantages
from proxrl.objectives import ppo as objectives
from proxrl.settings.jax_envs import JaxEnv, Space
from proxrl.solvers.natural import conjugate_gradient
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Trainer, Transition

STEPS = ("fixed", "trust_region")
"""How the natural direction w = F⁻¹g is scaled: a fixed η, or η = √(2δ / wᵀFw)."""


@dataclasses.dataclass(frozen=True)
class NPGConfig(RolloutConfig):
    """NPG / TRPO hyperparameters (the on-policy fields of ``actor_critic.RolloutConfig`` and NPG's own);
    defaults are TRPO's (δ = 0.01, 10 CG iterations, damping 0.1, backtracking ×0.8 up to 10 times) with a
    GAE critic."""

    num_steps: int = 256
    """Steps T per environment per rollout; one natural step per T·B transitions."""
    lr: float = 1e-3
    """Adam learning rate of the critic V_φ (the policy's step is the natural one below)."""
    max_grad_norm: float = 0.5
    """Clip the critic's global gradient norm to this value."""
    step: str = "trust_region"
    """Step length: "fixed" (θ_k + η·F⁻¹g, η = step_size) or "trust_region" (η = √(2δ / wᵀFw))."""
    line_search: bool = True
    """Backtrack until KL ≤ δ and the surrogate improves (TRPO); False takes the step as computed."""
    step_size: float = 0.05
    """η of the "fixed" step."""
    max_kl: float = 0.01
    """Trust-region radius δ on the mean KL(π_θ, π_θk) (trust-region scaling and line-search constraint)."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (Fisher-vector products) per solve."""
    cg_damping: float = 0.1
    """Damping λ: CG solves (F + λI) w = g."""
    backtrack_ratio: float = 0.8
    """Shrink factor β ∈ (0, 1) of the line search."""
    max_backtracks: int = 10
    """Step lengths tried by the line search: β⁰, β¹, …, β^(max_backtracks − 1)."""
    accept_ratio: float = 0.1
    """Accept a step when the surrogate improves by ≥ this fraction of the linear prediction gᵀΔθ."""
    norm_adv: bool = True
    """Standardise the advantages over each batch (makes a fixed η comparable across tasks)."""
    vf_epochs: int = 5
    """Passes over each batch fitting V_φ."""
    vf_minibatches: int = 4
    """Minibatches per critic pass; must divide num_envs·num_steps."""
    gae_lambda: float = 0.95
    """GAE λ ∈ [0, 1]."""

    def validate(self) -> NPGConfig:
        """Raise :class:`~proxrl.errors.ConfigError` (one line) on a bad value; return ``self``."""
        super().validate()
        check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_choice("step", self.step, STEPS)
        check_positive("step_size", self.step_size)
        check_positive("max_kl", self.max_kl)
        check_int_at_least("cg_iters", self.cg_iters, 1)
        check_in_range("cg_damping", self.cg_damping, 0.0, float("inf"), high_open=True)
        check_in_range("backtrack_ratio", self.backtrack_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_int_at_least("max_backtracks", self.max_backtracks, 1)
        check_in_range("accept_ratio", self.accept_ratio, 0.0, 1.0)
        check_int_at_least("vf_epochs", self.vf_epochs, 0)
        check_int_at_least("vf_minibatches", self.vf_minibatches, 1)
        if self.batch_size % self.vf_minibatches:
            raise ConfigError(
                f"vf_minibatches must divide num_envs·num_steps = {self.batch_size}, got {self.vf_minibatches}"
            )
        return self


class NPGState(NamedTuple):
    """What NPG carries between updates: ``params = {"actor": θ, "critic": φ}`` and the critic's Adam state."""

    params: Params
    opt_state: optax.OptState
    key: PRNGKey


def fisher_vector_product(kl_fn: Callable[[Array], Array], theta_k: Array, damping: Array | float = 0.0):
    """``v ↦ (F + λI) v`` with F the Hessian of ``kl_fn`` at ``theta_k`` (flat vectors ``[P]``).

    ``F v = ∂/∂ε ∇KL̄(θ_k + εv)|_{ε=0}``: forward-mode (``jax.jvp``) over reverse-mode (``jax.grad``), one
    product costs about two backward passes. For ``kl_fn(θ) = mean_s KL(π_θk(·|s) ‖ π_θ(·|s))`` the Hessian
    at θ_k is the Fisher matrix ``mean_s Σ_a π_θk(a|s) ∇log π_θk(a|s) ∇log π_θk(a|s)ᵀ``: the second-order
    term of the lecture's expansion KL(π_θ, π_θ+Δθ) ≈ ½ΔθᵀFΔθ (the first-order term vanishes).
    """
    grad_kl = jax.grad(kl_fn)

    def fvp(v: Array) -> Array:
        return jax.jvp(grad_kl, (theta_k,), (v,))[1] + damping * v

    return fvp


class LineSearch(NamedTuple):
    """The result of :func:`line_search`: the accepted parameters and what the search saw there."""

    theta: Array
    backtracks: Array
    """Shrinks applied before acceptance (0 = the full step); ``max_backtracks`` if every candidate failed."""
    accepted: Array
    surrogate_gain: Array
    kl: Array


def line_search(
    surrogate_gain_fn: Callable[[Array], Array],
    kl_fn: Callable[[Array], Array],
    theta_k: Array,
    full_step: Array,
    expected_gain: Array,
    max_kl: Array | float,
    backtrack_ratio: float,
    max_backtracks: int,
    accept_ratio: Array | float,
) -> LineSearch:
    """TRPO's backtracking: the first θ = θ_k + βʲ·Δθ (j = 0 … max_backtracks − 1) with

        kl_fn(θ) ≤ δ   and   gain(θ) ≥ accept_ratio · βʲ·expected_gain   and   gain(θ) > 0,

    ``gain = surrogate_gain_fn(θ) = L(θ) − L(θ_k)``, ``expected_gain = gᵀΔθ`` (the linear prediction).
    If no candidate passes, θ_k is returned (``accepted`` False, ``backtracks = max_backtracks``, gain 0,
    KL 0). A ``lax.while_loop``: it stops at the first accepted length, jits and vmaps.
    """

    def evaluate(j: Array) -> tuple[Array, Array, Array]:
        frac = backtrack_ratio ** j.astype(jnp.float32)
        theta = theta_k + frac * full_step
        gain, kl = surrogate_gain_fn(theta), kl_fn(theta)
        ok = (kl <= max_kl) & (gain > 0.0) & (gain >= accept_ratio * frac * expected_gain)
        return ok, gain, kl

    def cond(carry: tuple[Array, Array, Array, Array]) -> Array:
        j, ok, _, _ = carry
        return (~ok) & (j < max_backtracks)

    def body(carry: tuple[Array, Array, Array, Array]) -> tuple[Array, Array, Array, Array]:
        j, _, _, _ = carry
        ok, gain, kl = evaluate(j)
        return jnp.where(ok, j, j + 1), ok, gain, kl

    zero = jnp.zeros((), jnp.float32)
    j, ok, gain, kl = jax.lax.while_loop(
        cond, body, (jnp.zeros((), jnp.int32), jnp.zeros((), bool), zero, zero)
    )
    frac = jnp.where(ok, backtrack_ratio ** j.astype(jnp.float32), 0.0)
    return LineSearch(theta_k + frac * full_step, j, ok, jnp.where(ok, gain, 0.0), jnp.where(ok, kl, 0.0))


def make_learner(config: NPGConfig, observation_space: Space, action_space: Space) -> Learner:
    """NPG / TRPO as a :class:`~proxrl.types.Learner`: ``learn`` is GAE → natural step → critic fit.

    Per-update metrics: ``kl`` (exact mean KL(π_θ_{k+1}, π_θk) over the batch: the divergence moved),
    ``surrogate_gain`` (L(θ_{k+1}) − L(θ_k), L = mean ratio·Â), ``expected_gain`` (gᵀΔθ of the step taken),
    ``step_norm`` (‖θ_{k+1} − θ_k‖₂), ``grad_norm`` (‖g‖), ``cg_residual`` (‖g − (F + λI)w‖² / ‖g‖²),
    ``quad_kl`` (½ΔθᵀFΔθ of the full step: the KL its quadratic model predicts), ``line_search_steps``
    (backtracks taken, ``max_backtracks`` if rejected; 0 without a line search), ``accepted`` (1.0/0.0),
    ``value_loss`` (mean over the critic's steps), ``entropy`` (at θ_k) and ``explained_variance``.
    """
    config.validate()
    agent = make_agent(
        observation_space, action_space, tuple(config.hidden), config.activation, config.log_std_init
    )
    n_mb = config.vf_minibatches
    mb_size = config.batch_size // n_mb
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))

    def init(key: PRNGKey, obs: Array) -> NPGState:
        key, k_actor, k_critic = jax.random.split(key, 3)
        params = agent.init(k_actor, k_critic, obs)
        return NPGState(params, tx.init(params["critic"]), key)

    def natural_step(theta_k: Params, batch: Batch, adv: Array) -> tuple[Params, Metrics]:
        flat_k, unravel = ravel_pytree(theta_k)
        dist_k = agent.distribution(batch.dist_old)

        def dist(flat: Array) -> Any:
            return agent.distribution(agent.actor.apply(unravel(flat), batch.obs))

        def surrogate(flat: Array) -> Array:  # L(θ) = mean ratio·Â
            return jnp.mean(
                objectives.ratio_surrogate(dist(flat).log_prob(batch.action), batch.logp_old, adv)
            )

        def kl_old_new(flat: Array) -> Array:  # KL̄(θ) = mean KL(π_θk ‖ π_θ): Hessian F at θ_k
            return jnp.mean(dist_k.kl_divergence(dist(flat)))

        def kl_new_old(flat: Array) -> Array:  # the lecture's KL(π_θ, π_θk): the KL actually moved
            return jnp.mean(dist(flat).kl_divergence(dist_k))

        l_k = surrogate(flat_k)
        g = jax.grad(surrogate)(flat_k)
        fvp = fisher_vector_product(kl_old_new, flat_k, config.cg_damping)
        w, residual = conjugate_gradient(fvp, g, iters=config.cg_iters)
        w_f_w = jnp.vdot(w, fvp(w))
        if config.step == "trust_region":
            eta = jnp.sqrt(2.0 * config.max_kl / jnp.maximum(w_f_w, 1e-12))
        else:
            eta = jnp.asarray(config.step_size, jnp.float32)
        full_step = eta * w
        expected = jnp.vdot(g, full_step)
        if config.line_search:
            found = line_search(
                lambda flat: surrogate(flat) - l_k,
                kl_new_old,
                flat_k,
                full_step,
                expected,
                config.max_kl,
                config.backtrack_ratio,
                config.max_backtracks,
                config.accept_ratio,
            )
            flat_new, backtracks, accepted = found.theta, found.backtracks, found.accepted
            frac = jnp.where(accepted, config.backtrack_ratio ** backtracks.astype(jnp.float32), 0.0)
        else:
            flat_new, backtracks, accepted, frac = (
                flat_k + full_step,
                jnp.zeros((), jnp.int32),
                jnp.ones((), bool),
                1.0,
            )
        metrics = {
            "kl": kl_new_old(flat_new),
            "surrogate_gain": surrogate(flat_new) - l_k,
            "expected_gain": frac * expected,
            "step_norm": jnp.linalg.norm(flat_new - flat_k),
            "grad_norm": jnp.linalg.norm(g),
            "cg_residual": residual / jnp.maximum(jnp.vdot(g, g), 1e-30),
            "quad_kl": 0.5 * eta**2 * w_f_w,
            "line_search_steps": backtracks.astype(jnp.float32),
            "accepted": accepted.astype(jnp.float32),
            "entropy": jnp.mean(dist_k.entropy()),
        }
        return unravel(flat_new), metrics

    def fit_critic(
        phi: Params, opt_state: optax.OptState, batch: Batch, key: PRNGKey
    ) -> tuple[Params, Any, Array]:
        def loss_fn(p: Params, mb: Batch) -> Array:
            return objectives.value_loss(agent.critic.apply(p, mb.obs), mb.value_old, mb.returns)

        def epoch(carry: tuple[Params, Any], k: PRNGKey) -> tuple[tuple[Params, Any], Array]:
            perm = jax.random.permutation(k, config.batch_size)
            shuffled = jax.tree.map(lambda a: a[perm].reshape(n_mb, mb_size, *a.shape[1:]), batch)

            def step(c: tuple[Params, Any], mb: Batch) -> tuple[tuple[Params, Any], Array]:
                p, s = c
                loss, grads = jax.value_and_grad(loss_fn)(p, mb)
                updates, s = tx.update(grads, s, p)
                return (optax.apply_updates(p, updates), s), loss

            return jax.lax.scan(step, carry, shuffled)

        (phi, opt_state), losses = jax.lax.scan(
            epoch, (phi, opt_state), jax.random.split(key, config.vf_epochs)
        )
        first = loss_fn(phi, batch) if config.vf_epochs == 0 else jnp.mean(losses)
        return phi, opt_state, first

    def learn(state: NPGState, traj: Transition) -> tuple[NPGState, Metrics]:
        key, k_fit = jax.random.split(state.key)
        # Â_k = GAE(λ) under V_φk
        batch = make_batch(agent, state.params, traj, config.gamma, config.gae_lambda)
        adv = normalize_advantages(batch.adv) if config.norm_adv else batch.adv
        # θ_{k+1} = θ_k + η·(F + λI)⁻¹ g  (CG; trust-region η; optional backtracking)
        theta, metrics = natural_step(state.params["actor"], batch, adv)
        # φ_{k+1}: regression of V_φ on the λ-returns
        phi, opt_state, v_loss = fit_critic(state.params["critic"], state.opt_state, batch, k_fit)
        metrics.update(
            value_loss=v_loss, explained_variance=explained_variance(batch.value_old, batch.returns)
        )
        return NPGState({"actor": theta, "critic": phi}, opt_state, key), metrics

    # "npg" is the registry key (TRPO is npg with step="trust_region", line_search=True)
    return agent.learner("npg", init, learn, config)


def make_npg(
    config: NPGConfig, env_id: str | JaxEnv, eval_episodes: int = 10, norm: Normalization | None = None
) -> Trainer:
    """NPG / TRPO on a gymnax environment as a :class:`~proxrl.types.Trainer` (:func:`make_learner` in
    :func:`proxrl.collect.loops.jax_trainer`)."""
    return loops.trainer_for(make_learner, config, env_id, eval_episodes, norm)


def make_train(
    config: NPGConfig, env_id: str | JaxEnv, norm: Normalization | None = None
) -> Callable[[PRNGKey], tuple[loops.LoopState, Metrics]]:
    """``train(key) -> (final_state, metrics)``: the whole run as one pure function (a ``lax.scan`` over
    ``config.num_updates`` updates; ``jax.vmap(train)(keys)`` trains many seeds in one compiled call)."""
    return loops.train_for(make_learner, config, env_id, norm)
