"""Full-information policy learning in a finite MDP: exact ``Q^{π_k}`` and ``d_ρ^{π_k}`` each iteration.

Lecture, "Policy Learning in MDPs (Full-Information Case)". Each iteration evaluates ``π_k`` exactly
(:func:`proxrl.tabular.mdp.evaluate`) and takes one proximal step on the softmax table ``θ[S, A]``
with ``TableBatch(q = Q^{π_k}, d = d_ρ^{π_k})`` (``d`` unnormalised, ``Σ_s d = 1/(1−γ)``):

==============  ==================================================================  ====================================
name            update                                                              composition
==============  ==================================================================  ====================================
``api``         ``π_{k+1}(s) = argmax_a Q^{π_k}(s, a)`` (approximate policy iteration)  :func:`greedy_step` (η = ∞ of EW)
``ew``          ``π_{k+1}(a|s) ∝ π_k(a|s) exp(η Q^{π_k}(s, a))`` in every state       ``exponential_weights(η)``, q = Q
``pg``          ``θ_{k+1} = θ_k + η Σ_{s,a} d_ρ^{π_k}(s) ∇π_θk(a|s) Q^{π_k}(s, a)``      ``policy_gradient(η)``, q = Q, d
``npg``         ``θ_{k+1} = θ_k + η F_θk⁺ ∇_θ V^{π_θk}(ρ)``, ``F = Σ_s d(s) F(s)``        ``natural_policy_gradient(η)``
``npg_lstsq``   the same, ``F⁺∇V`` by the exact π-weighted least squares                  ``natural_policy_gradient(η, "lstsq")``
``npg_closed``  ``θ_{k+1}(s, a) = θ_k(s, a) + η A^{π_k}(s, a)`` (tabular closed form)      ``exponential_weights(η)``, q = A
``npg_reg``     ``argmax Σ_s d(s)[⟨π_θ, Q⟩ − KL(π_θ, π_k)/η]`` by m inner steps           ``npg_regularised(η, α, m)``
==============  ==================================================================  ====================================

Every run records ``V*(ρ) − V^{π_k}(ρ)`` for ``k = 1..K`` in one ``lax.scan``; :func:`sweep` vmaps
over MDPs of one shape, initial tables and step sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.errors import ConfigError, check_choice, check_int_at_least
from proxrl.prox import Problem, ProxStep, prox_step
from proxrl.prox.solvers import closed_form
from proxrl.tabular import aliasing, softmax
from proxrl.tabular import mdp as tabular
from proxrl.tabular import steps as softmax_table
from proxrl.tabular.mdp import FiniteMDP
from proxrl.types import Array, Metrics, TableBatch

ALGORITHMS = ("api", "ew", "pg", "npg", "npg_lstsq", "npg_closed", "npg_reg")

#: The largest step size ``η`` the lecture's command accepts for EW and exact NPG (``θ += η Q``). No limit of
#: the Fisher solve remains (:func:`proxrl.tabular.steps.fisher_direction` is exact at any finite η); the cap
#: is the range over which NPG = EW is tested (``tests/test_tabular.py``). Past it a step is API's greedy step
#: to float64 precision: an action whose Q trails the best by more than ``745/η`` (< 1e-3) gets probability 0
#: in one step, so a larger η changes nothing but the size of θ.
MAX_ETA = 1e6


class TabularTrace(NamedTuple):
    """Per-iteration record, leading axis ``[K]`` (``k = 1..K``, before the k-th update).

    ``gap``: ``V*(ρ) − V^{π_k}(ρ)``. ``value``: ``V^{π_k}(ρ)``. ``kl``, ``step_norm``,
    ``surrogate_gain``: the step's diagnostics (KL weighted by ``d_ρ^{π_k}``).
    """

    gap: Array
    value: Array
    kl: Array
    step_norm: Array
    surrogate_gain: Array


class TabularResult(NamedTuple):
    """``params``: the final table (θ, or π for API); ``final_gap``: ``V*(ρ) − V^{π_{K+1}}(ρ)``;
    ``v_star``: ``V*(ρ)``; ``trace``: :class:`TabularTrace`."""

    params: Array
    final_gap: Array
    v_star: Array
    trace: TabularTrace


def greedy_step() -> ProxStep:
    """API's improvement, ``π_{k+1}(·|s) = 1{argmax_a q̂(s, a)}``, on a *probability* table ``π[S, A]``.

    It is the ``η → ∞`` limit of the EW step ``argmax_π ⟨π, q̂⟩ − (1/η) KL(π, π_k)``: surrogate
    ``Σ_s d(s) ⟨π − π_k, q̂⟩`` over probability tables, solver the closed form (the greedy table). Metrics:
    ``surrogate_gain``, ``kl`` (``inf`` once an action changes from a deterministic policy), ``step_norm =
    ‖π_{k+1} − π_k‖``, and ``changed`` (states whose argmax moved).
    """

    def surrogate(pi: Array, _: None, pi_k: Array, batch: TableBatch) -> tuple[Array, Metrics]:
        return jnp.sum(softmax.per_state(batch.d) * (pi - pi_k) * batch.q), {}

    def kl(pi: Array, _: None, pi_k: Array, batch: TableBatch) -> tuple[Array, Metrics]:
        d = softmax.per_state(batch.d)
        return jnp.sum(d * jnp.where(pi > 0, pi * (jnp.log(pi) - jnp.log(pi_k)), 0.0)), {}

    def changed(pi: Array, pi_k: Array, batch: TableBatch) -> Metrics:
        return {"changed": jnp.sum(jnp.argmax(pi, -1) != jnp.argmax(pi_k, -1))}

    solver = closed_form(lambda pi, batch: tabular.greedy(batch.q), changed)
    return prox_step(Problem(surrogate, kl), solver, moved=kl)


def make_step(
    algo: str, eta: Array | float = 1.0, alpha: Array | float | None = None, m: int = 10
) -> ProxStep:
    """The proximal step named ``algo`` (see the module table); ``eta``/``alpha`` may be traced. ``alpha``
    (``npg_reg``'s inner step size) has no default here, where the discount is unknown: :func:`run` sets it."""
    check_choice("algorithm", algo, ALGORITHMS)
    if algo == "npg_reg" and alpha is None:
        raise ConfigError("alpha: npg_reg needs its inner step size (run() defaults it to η(1−γ))")
    if algo == "api":
        return greedy_step()
    if algo in ("ew", "npg_closed"):
        return softmax_table.exponential_weights(eta)
    if algo == "pg":
        return softmax_table.policy_gradient(eta)
    if algo == "npg":
        return softmax_table.natural_policy_gradient(eta, solve="pinv")
    if algo == "npg_lstsq":
        return softmax_table.natural_policy_gradient(eta, solve="lstsq")
    return softmax_table.npg_regularised(eta, alpha, check_int_at_least("m", m, 1))


def policy_of(algo: str) -> Callable[[Array], Array]:
    """``params ↦ π[S, A]``: the softmax for every algorithm but API, whose params are π itself."""
    return (lambda p: p) if algo == "api" else softmax.pi


def estimate(algo: str, ev: tabular.Evaluation) -> TableBatch:
    """The exact estimate fed to the step: ``q = A^{π_k}`` for ``npg_closed``, ``Q^{π_k}`` otherwise."""
    return TableBatch(q=ev.adv if algo == "npg_closed" else ev.q, d=ev.d)


def run(
    algo: str,
    mdp: FiniteMDP,
    theta0: Array,
    num_iters: int,
    eta: Array | float = 1.0,
    alpha: Array | float | None = None,
    m: int = 10,
    v_star: Array | None = None,
    obs: Array | None = None,
) -> TabularResult:
    """``num_iters`` iterations of ``evaluate π_k exactly → proximal step``, in one ``lax.scan``.

    ``theta0`` ``[S, A]``: the initial softmax table (API starts from ``π = softmax(θ0)``).
    ``v_star``: ``V*(ρ)``; computed by policy iteration when omitted. Pure: jit and vmap freely.
    ``obs``: an observation map ``[S]`` for a policy that cannot see the state (:mod:`proxrl.tabular.aliasing`):
    ``theta0`` is then ``[O, A]``, one row per class, and each step runs on the class table
    (:func:`proxrl.tabular.aliasing.observe`). ``v_star`` defaults to the unaliased ``V*``, which an aliased
    policy may not reach; pass the best aliased value to measure the gap to it.
    ``alpha``, ``m``: ``npg_reg``'s inner step size and steps; ``alpha`` defaults to η(1−γ), which keeps
    α·d(s)/η ≤ 1 for every policy (Σ_s d(s) = 1/(1−γ)), the stability rule of
    :func:`~proxrl.tabular.steps.npg_regularised`.
    """
    if obs is None:
        tabular.check_policy_table(mdp, theta0, "theta0")
    else:
        obs = aliasing.check_observations(obs, mdp.num_states, theta0.shape[0])
    check_int_at_least("num_iters", num_iters, 1)
    if alpha is None:
        alpha = eta * (1.0 - mdp.gamma)
    step = make_step(algo, eta, alpha, m)
    to_pi = policy_of(algo)
    num_obs = theta0.shape[0]

    def state_pi(params: Array) -> Array:
        return to_pi(params) if obs is None else aliasing.state_policy(to_pi(params), obs)

    if v_star is None:
        v_star = tabular.optimal_value(mdp)
    params0 = softmax.pi(theta0) if algo == "api" else theta0

    def body(carry, key):
        params, state = carry
        ev = tabular.evaluate(mdp, state_pi(params))
        batch = estimate(algo, ev)
        if obs is not None:
            batch = aliasing.observe(batch, obs, num_obs, mdp.terminal)
        params, state, metrics = step.update(params, state, batch, key)
        out = TabularTrace(
            gap=v_star - ev.value,
            value=ev.value,
            kl=metrics["kl"],
            step_norm=metrics["step_norm"],
            surrogate_gain=metrics["surrogate_gain"],
        )
        return (params, state), out

    keys = jax.random.split(jax.random.key(0), num_iters)
    (params, _), trace = jax.lax.scan(body, (params0, step.init(params0)), keys)
    final_gap = v_star - tabular.value(mdp, state_pi(params))
    return TabularResult(params=params, final_gap=final_gap, v_star=v_star, trace=trace)


def sweep(
    algo: str, num_iters: int, alpha: float | None = None, m: int = 10
) -> Callable[[FiniteMDP, Array, Array], TabularResult]:
    """A jitted ``f(mdps, theta0s, etas)`` with every input batched on a leading axis ``[N]``.

    ``mdps``: a stack of ``N`` MDPs of one shape (:func:`proxrl.tabular.mdp.stack` or a vmapped
    :func:`proxrl.tabular.mdps.garnet`), ``theta0s`` ``[N, S, A]``, ``etas`` ``[N]``. Broadcast with
    ``jnp.broadcast_to`` / ``jax.tree.map`` to pair one MDP with many seeds or step sizes.
    """
    check_choice("algorithm", algo, ALGORITHMS)
    check_int_at_least("num_iters", num_iters, 1)

    def one(mdp: FiniteMDP, theta0: Array, eta: Array) -> TabularResult:
        return run(algo, mdp, theta0, num_iters, eta, alpha, m)

    return jax.jit(jax.vmap(one))


def regret_bound(gamma: float, num_actions: int, eta: float, num_iters: int, r_max: float = 1.0) -> float:
    """Bound on EW's cumulative regret ``Σ_{k=1}^K (V*(ρ) − V^{π_k}(ρ))`` from uniform ``π_1``, for the
    library's step ``θ += η Q^{π_k}`` (``eta`` = η) and rewards in ``[0, r_max]``.

    ``Q^{π_k}(s, ·) ∈ [0, B]`` with ``B = r_max/(1−γ)``. Per state, EW is Hedge on the gains ``Q^{π_k}(s, ·)``
    (equivalently on losses ``B − Q ∈ [0, B]``, the same update), so ``Σ_k ⟨π* − π_k, Q^{π_k}⟩(s) ≤ ln A/η +
    η K B²/2`` for every ``η > 0``. The performance difference lemma, ``V*(ρ) − V^{π_k}(ρ) =
    Σ_s d_ρ^{π*}(s) ⟨π*(·|s) − π_k(·|s), Q^{π_k}(s, ·)⟩``, with ``Σ_s d_ρ^{π*}(s) = 1/(1−γ)``, gives::

        Σ_k (V*(ρ) − V^{π_k}(ρ)) ≤ (1/(1−γ)) (ln A/η + η K r_max² / (2(1−γ)²))

    The lecture's theorem runs Hedge on rewards in ``[0, 1]``: the normalised gains ``Q' = Q(1−γ)/r_max``
    with step ``η'``. Since ``η Q = η (r_max/(1−γ)) Q'``, its step is ``η' = η·r_max/(1−γ)``, and in it the bound
    above reads ``(r_max/(1−γ)²)(ln A/η' + η' K/2)`` (substitute: ``(r_max/(1−γ)²)·ln A/η' = ln A/(η(1−γ))``
    and ``(r_max/(1−γ)²)·η'K/2 = η K r_max²/(2(1−γ)³)``). The lecture's own form, with ``η' A K`` for
    ``η' K/2``, is :func:`lecture_regret_bound` (looser for every ``A ≥ 1``).
    """
    if not 0 <= gamma < 1 or eta <= 0:
        raise ConfigError(f"regret_bound needs gamma in [0, 1) and eta > 0, got gamma={gamma}, eta={eta}")
    return (math.log(num_actions) / eta + eta * num_iters * r_max**2 / (2 * (1 - gamma) ** 2)) / (1 - gamma)


def lecture_step(gamma: float, eta: float, r_max: float = 1.0) -> float:
    """The step size ``η' = η·r_max/(1−γ)`` at which the lecture's EW theorem is read, for the library's
    ``θ += η Q``. The notes write the step as ``π ∝ π_k exp(η Q)`` and the theorem with the same η, but their
    proof applies the expert-setting bound, which is for payoffs in ``[0, 1]``, to ``Q ∈ [0, r_max/(1−γ)]``; the
    theorem holds as stated for the step on the rescaled ``Q(1−γ)/r_max`` with step η', which is the library's
    step on ``Q`` with η (an interpretation of the notes, see :func:`regret_bound`)."""
    return eta * r_max / (1 - gamma)


def lecture_regret_bound(
    gamma: float, num_actions: int, eta: float, num_iters: int, r_max: float = 1.0
) -> float:
    """The lecture's EW theorem with its own constants, for the library's step ``θ += η Q`` (``eta`` = η)::

        Σ_{k=1}^K (V^{π*}(ρ) − V^{π_k}(ρ)) ≤ (1/(1−γ)²) (ln A/η' + η' A K),    η' = η·r_max/(1−γ)

    (lecture, "Analysis for Exponential Weights", rewards in ``[0, 1]``; for rewards in ``[0, r_max]`` the right
    side is multiplied by ``r_max``). It follows from :func:`regret_bound`, whose ``η' K/2`` is at most
    ``η' A K``. At its best ``η' = √(ln A/(A K))`` it is ``(2/(1−γ)²)√(A K ln A)``.
    """
    if not 0 <= gamma < 1 or eta <= 0:
        raise ConfigError(
            f"lecture_regret_bound needs gamma in [0, 1) and eta > 0, got gamma={gamma}, eta={eta}"
        )
    e = lecture_step(gamma, eta, r_max)
    return r_max / (1 - gamma) ** 2 * (math.log(num_actions) / e + e * num_actions * num_iters)


def npg_last_iterate_bound(
    gamma: float, num_actions: int, eta: float, num_iters: int, r_max: float = 1.0
) -> float:
    """Agarwal, Kakade, Lee & Mahajan (2021, Theorem 16): softmax NPG from uniform ``π^{(0)}`` satisfies, after
    ``T`` updates, ``V*(ρ) − V^{(T)}(ρ) ≤ log|A|/(η_A T) + 1/((1−γ)² T)`` for every ``ρ`` (rewards in
    ``[0, 1]``), here in the library's step size.

    Their update is ``θ ← θ + η_A F_ρ(θ)⁺ ∇V(ρ)`` with the *normalised* ``d = (1−γ) d_ρ^π`` in the Fisher, which
    makes ``F_ρ⁺∇V = A/(1−γ)`` (their Lemma 15): ``θ ← θ + η_A A/(1−γ)``. The library's ``F`` uses the
    unnormalised ``d_ρ^π`` in both ``F`` and ``∇V``, so ``F⁺∇V = A`` and ``θ ← θ + η A``: ``η_A = (1−γ)η``.
    For rewards in ``[0, r_max]`` (``A = r_max A'``, ``η_A = (1−γ) η r_max``) the bound is::

        V*(ρ) − V^{π_{T+1}}(ρ) ≤ ln A/((1−γ) η T) + r_max/((1−γ)² T)

    (``π_{T+1}`` the policy after ``T`` updates). EW ``θ += η Q`` is the same update (``Q`` and ``A`` differ by
    a per-state constant).
    """
    if not 0 <= gamma < 1 or eta <= 0 or num_iters < 1:
        raise ConfigError(
            f"npg_last_iterate_bound needs gamma in [0, 1), eta > 0, T >= 1, got {gamma}, {eta}, {num_iters}"
        )
    return math.log(num_actions) / ((1 - gamma) * eta * num_iters) + r_max / ((1 - gamma) ** 2 * num_iters)


def performance_difference(mdp: FiniteMDP, pi_new: Array, pi_old: Array) -> Array:
    """The right side of ``V^{π'}(ρ) − V^π(ρ) = Σ_s d_ρ^{π'}(s) Σ_a π'(a|s) A^π(s, a)`` (a scalar)."""
    return jnp.sum(tabular.state_distribution(mdp, pi_new)[:, None] * pi_new * tabular.adv_pi(mdp, pi_old))


def exact_gradient(mdp: FiniteMDP, theta: Array) -> Array:
    """``∇_θ V^{π_θ}(ρ) = Σ_{s,a} d_ρ^{π_θ}(s) ∇π_θ(a|s) Q^{π_θ}(s, a)`` = ``d π_θ A^{π_θ}``, ``[S, A]``."""
    ev = tabular.evaluate(mdp, softmax.pi(theta))
    return softmax.policy_gradient(theta, ev.q, ev.d)
