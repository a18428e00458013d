"""The proximal step, assembled from a surrogate, a geometry and a solver.

The lecture's update, for every method from exponential weights to SAC::

    θ_{k+1} = argmax_θ  W_k(θ),     W_k(θ) = L_k(θ; Â_k) − (1/η)·D(θ, θ_k) + Σ_j extra_j(θ)

- the **surrogate** ``L_k`` (:mod:`proxrl.prox.surrogates`) is built from an advantage or value estimate;
- the **geometry** ``D`` (:mod:`proxrl.prox.geometry`) is Euclidean, a KL between policies, or the Fisher
  quadratic form; with coefficient ``β = 1/η``, fixed or adapted between updates (PPO's adaptive KL);
- the **extras** are the additive terms some methods put in the same objective: an entropy bonus
  ``c·H(π_θ)``, and for methods that fit the critic in the same optimiser steps (A2C, PPO) the critic's
  regression ``−c_v·ℓ_V(φ)`` (φ is a separate variable, so the maximiser in θ is unchanged);
- the **solver** (:mod:`proxrl.prox.solvers`) maximises ``W_k``: a closed form, a Fisher solve, one
  preconditioned gradient step (the Euclidean step ``θ_k + η∇L_k`` of the linearised surrogate) or ``m``
  inner optimiser steps over epochs × minibatches.

A :class:`ProxStep` is the result, shaped like an optax transformation: ``init(params) -> state`` and
``update(params, state, batch, key) -> (params, state, metrics)``, both pure. Every step reports the same
diagnostics (:func:`diagnostics`): ``surrogate_gain`` ``L_k(θ_{k+1}) − L_k(θ_k)``, ``step_norm``
``‖θ_{k+1} − θ_k‖₂`` (of the policy's parameters), ``kl`` (the divergence actually moved,
``KL(π_θ_{k+1}, π_θk)``, where the policy has a density), plus the solver's extras (clip fraction, CG residual,
inner steps, …).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from proxrl.types import Array, Metrics, Params, PRNGKey, State


class InitFn(Protocol):
    def __call__(self, params: Params) -> State: ...


class UpdateFn(Protocol):
    def __call__(
        self, params: Params, state: State, batch: Any, key: PRNGKey
    ) -> tuple[Params, State, Metrics]: ...


class ProxStep(NamedTuple):
    """One proximal policy update ``θ_{k+1} = argmax_θ L_k(θ) − (1/η)·D(θ, θ_k)`` as two pure functions.

    ``init(params) -> state`` and ``update(params, state, batch, key) -> (params, state, metrics)`` are
    jit- and vmap-safe. ``metrics`` always holds ``surrogate_gain`` and ``step_norm`` (and ``kl`` for
    policies with a density), plus the solver's extras.
    """

    init: InitFn
    update: UpdateFn


Term = Callable[[Params, Any, Params, Any], tuple[Array, Metrics]]
"""A term of the objective: ``term(θ, π_θ, θ_k, batch) -> (scalar, metrics)``.

``π_θ`` is ``problem.policy(θ, batch, key)`` computed once per evaluation of ``W_k`` and shared by every term
(a distribution over actions, the actions of a deterministic policy, or ``None`` for tables, whose terms
read ``θ`` directly); ``θ_k`` and ``batch`` (which holds what was measured under ``θ_k``) are fixed.
"""


class Problem(NamedTuple):
    """``W_k(θ) = L_k(θ) − β·D(θ, θ_k) + Σ_j extra_j(θ)``: what a solver maximises.

    ``policy(θ, batch, key)`` evaluates the policy once on the batch's states (``None``: the terms take θ).
    """

    surrogate: Term
    geometry: Term | None = None
    extras: Sequence[Term] = ()
    policy: Callable[[Params, Any, PRNGKey], Any] | None = None

    def evaluate(self, theta: Params, batch: Any, key: PRNGKey) -> Any:
        """``π_θ`` on the batch (what every term receives)."""
        return None if self.policy is None else self.policy(theta, batch, key)

    def surrogate_value(self, theta: Params, theta_k: Params, batch: Any, key: PRNGKey) -> Array:
        """``L_k(θ)`` alone."""
        return self.surrogate(theta, self.evaluate(theta, batch, key), theta_k, batch)[0]

    def objective(
        self, theta: Params, theta_k: Params, batch: Any, key: PRNGKey, beta: Array | float
    ) -> tuple[Array, Metrics]:
        """``(W_k(θ), metrics)``: every term's metrics, and ``surrogate`` (``L_k(θ)``)."""
        pi = self.evaluate(theta, batch, key)
        value, metrics = self.surrogate(theta, pi, theta_k, batch)
        metrics = dict(metrics, surrogate=value)
        for extra in self.extras:
            v, m = extra(theta, pi, theta_k, batch)
            value = value + v
            metrics.update(m)
        if self.geometry is not None:
            d, m = self.geometry(theta, pi, theta_k, batch)
            value = value - beta * d
            metrics.update(m)
        return value, metrics

    def loss(
        self, theta: Params, theta_k: Params, batch: Any, key: PRNGKey, beta: Array | float
    ) -> tuple[Array, Metrics]:
        """``−W_k(θ)``, for optimisers that minimise."""
        value, metrics = self.objective(theta, theta_k, batch, key, beta)
        return -value, metrics


class Solver(NamedTuple):
    """How ``argmax_θ W_k(θ)`` is found: ``init(params) -> state`` (optimiser moments, …) and
    ``solve(problem, θ_k, state, batch, key, β) -> (θ_{k+1}, state, metrics)``."""

    init: Callable[[Params], State]
    solve: Callable[[Problem, Params, State, Any, PRNGKey, Array], tuple[Params, State, Metrics]]


class StepState(NamedTuple):
    """A :class:`ProxStep`'s state: the solver's, and the geometry's coefficient β = 1/η in force."""

    solver: State
    beta: Array


class Coefficient(NamedTuple):
    """The geometry's coefficient β = 1/η: its initial value and, optionally, a rule applied after each
    step, ``adapt(β, metrics) -> β`` (PPO's adaptive KL, :func:`proxrl.prox.geometry.adaptive_beta`)."""

    init: Array | float = 0.0
    adapt: Callable[[Array, Metrics], Array] | None = None


def policy_params(params: Params) -> Params:
    """The policy's part of a step's parameters: ``params["actor"]`` when the step also carries a critic
    (``{"actor": θ, "critic": φ}``), else ``params`` itself."""
    if isinstance(params, dict) and "actor" in params:
        return params["actor"]
    return params


def global_norm(tree: Params) -> Array:
    """``‖x‖₂`` over every leaf of a pytree."""
    return jnp.sqrt(sum(jnp.vdot(x, x) for x in jax.tree.leaves(tree)))


def diagnostics(
    problem: Problem,
    theta_new: Params,
    theta_k: Params,
    batch: Any,
    key: PRNGKey,
    moved: Term | None = None,
    surrogate_k: Array | None = None,
) -> Metrics:
    """The diagnostics every step reports, on the whole batch: ``surrogate_gain`` ``L_k(θ_{k+1}) − L_k(θ_k)``,
    ``step_norm`` ``‖θ_{k+1} − θ_k‖₂`` (policy parameters only) and, if ``moved`` is given, ``kl``: the
    divergence actually moved (``moved(θ_{k+1}, π_θ_{k+1}, θ_k, batch)``). ``surrogate_k``: ``L_k(θ_k)`` if
    the solver already computed it on the whole batch."""
    if surrogate_k is None:
        surrogate_k = problem.surrogate_value(theta_k, theta_k, batch, key)
    gain = problem.surrogate_value(theta_new, theta_k, batch, key) - surrogate_k
    step = jax.tree.map(jnp.subtract, policy_params(theta_new), policy_params(theta_k))
    metrics = {"surrogate_gain": gain, "step_norm": global_norm(step)}
    if moved is not None:
        metrics["kl"] = moved(theta_new, problem.evaluate(theta_new, batch, key), theta_k, batch)[0]
    return metrics


def prox_step(
    problem: Problem,
    solver: Solver,
    beta: Coefficient | Array | float | None = None,
    moved: Term | None = None,
) -> ProxStep:
    """The :class:`ProxStep` that maximises ``problem`` with ``solver``.

    ``beta``: the geometry's coefficient 1/η in ``W_k`` (a number, or a :class:`Coefficient` with an adaptation
    rule), reported as the metric ``beta``; ``None`` when the solver uses the geometry itself (a Fisher solve,
    a closed form) or there is none. ``moved``: the divergence reported as ``kl`` (default: none). Metrics:
    the terms' (at the solver's iterates), the solver's and :func:`diagnostics`.
    """
    coef = beta if isinstance(beta, Coefficient) else Coefficient(0.0 if beta is None else beta)

    def init(params: Params) -> StepState:
        return StepState(solver.init(params), jnp.asarray(coef.init))

    def update(
        params: Params, state: StepState, batch: Any, key: PRNGKey
    ) -> tuple[Params, StepState, Metrics]:
        new, solver_state, metrics = solver.solve(problem, params, state.solver, batch, key, state.beta)
        metrics = dict(metrics)
        surrogate_k = metrics.pop("surrogate", None)  # L_k(θ_k) on the whole batch, where the solver has it
        metrics.update(diagnostics(problem, new, params, batch, key, moved, surrogate_k))
        beta_next = state.beta
        if beta is not None:
            metrics["beta"] = state.beta
            if coef.adapt is not None:
                beta_next = coef.adapt(state.beta, metrics)
        return new, StepState(solver_state, beta_next), metrics

    return ProxStep(init, update)
