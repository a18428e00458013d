"""The proximal step on a zeroth-order gradient estimate: the Euclidean step of the smoothed objective.

With only values of the objective available (bandit feedback, or an episode's return as a black-box function of
the parameters), the step linearises the δ-smoothed objective f_δ at θ_k with an estimate ĝ_k of ∇f_δ(θ_k)
(:mod:`proxrl.estimators.zeroth_order`):

    θ_{k+1} = argmax_θ  L_k(θ) − (1/2η)‖θ − θ_k‖²,      L_k(θ) = ⟨θ − θ_k, ĝ_k⟩
            = θ_k + η ĝ_k

:func:`linear_surrogate` is that ``L_k`` as a term of the kit (ĝ_k read from the batch, held fixed);
:func:`zeroth_order_step` composes it with the Euclidean geometry and a solver: the closed form θ_k + ηĝ_k (plain
gradient ascent, ARS) or one Adam step (OpenAI-ES's preconditioned step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.errors import check_choice
from proxrl.prox.geometry import euclidean
from proxrl.prox.solvers import closed_form, euclidean_step, gradient_steps, optimiser
from proxrl.prox.step import Problem, ProxStep, Term, prox_step
from proxrl.types import Array, Metrics, Params

SOLVERS = ("sgd", "adam")
"""How the Euclidean step on ĝ is taken: θ_k + ηĝ (closed form), or one Adam step (preconditioned)."""


class EstimateBatch(NamedTuple):
    """What a zeroth-order step consumes: ``grad``, the estimate ĝ_k of ∇f_δ(θ_k) (a pytree shaped like θ)."""

    grad: Params


def linear_surrogate(grad: Callable[[Any], Params] = lambda batch: batch.grad) -> Term:
    """``L_k(θ) = ⟨θ − θ_k, ĝ_k⟩`` with ``ĝ_k = grad(batch)`` held fixed: the linearisation of the smoothed
    objective at θ_k, whose gradient is ĝ_k at every θ. Metric ``grad_estimate_norm`` (‖ĝ_k‖)."""

    def term(theta: Params, pi: Any, theta_k: Params, batch: Any) -> tuple[Array, Metrics]:
        g = jax.lax.stop_gradient(grad(batch))
        value = sum(
            jnp.vdot(a - b, c)
            for a, b, c in zip(
                jax.tree.leaves(theta), jax.tree.leaves(theta_k), jax.tree.leaves(g), strict=True
            )
        )
        norm = jnp.sqrt(sum(jnp.vdot(c, c) for c in jax.tree.leaves(g)))
        return value, {"grad_estimate_norm": norm}

    return term


def zeroth_order_step(lr: Array | float | optax.Schedule, solver: str = "sgd") -> ProxStep:
    """The Euclidean proximal step on an estimated gradient: ``Problem(linear_surrogate(), euclidean())`` with
    β = 1/η, solved in closed form (``"sgd"``: ``θ_k + η ĝ_k``, the maximiser) or by one Adam step of size η on
    the same objective (``"adam"``). ``lr`` may be a schedule η_k of the step count k (e.g.
    :func:`proxrl.prox.solvers.linear_anneal`): "sgd" is then one gradient step of size η_k on the same objective,
    still exactly θ_k + η_k ĝ_k (its gradient at θ_k is ĝ_k), and the metric ``beta`` is 1/η_0. The batch is an
    :class:`EstimateBatch`. Metrics: ``grad_estimate_norm``, the kit's ``surrogate_gain`` (``⟨θ_{k+1} − θ_k,
    ĝ_k⟩``) and ``step_norm``, ``beta``."""
    check_choice("solver", solver, SOLVERS)
    problem = Problem(linear_surrogate(), geometry=euclidean())

    if callable(lr):
        beta = 1.0 / lr(0)
        if solver == "sgd":
            return prox_step(problem, gradient_steps(optax.scale_by_schedule(lambda k: -lr(k))), beta=beta)
        return prox_step(problem, gradient_steps(optimiser(lr)), beta=beta)
    if solver == "sgd":

        def formula(theta_k: Params, batch: Any) -> Params:
            return jax.tree.map(lambda t, g: euclidean_step(t, g, lr), theta_k, batch.grad)

        def report(theta: Params, theta_k: Params, batch: Any) -> Metrics:
            return linear_surrogate()(theta_k, None, theta_k, batch)[1]

        return prox_step(problem, closed_form(formula, report), beta=1.0 / lr)
    return prox_step(problem, gradient_steps(optimiser(lr)), beta=1.0 / lr)
