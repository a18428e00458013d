"""Solvers of the proximal step ``argmax_θ W_k(θ)`` (:class:`proxrl.prox.step.Solver`).

| solver                     | θ_{k+1}                                                          | used by                   |
|----------------------------|------------------------------------------------------------------|---------------------------|
| :func:`closed_form`        | a formula: ``θ_k + η q̂`` (EW), ``θ_k + η ∇L_k`` (PG), ``θ_k + η F⁺∇L_k`` per state (NPG) | tables |
| :func:`gradient_steps`     | ``m`` full-batch optimiser steps on ``W_k`` (m = 1: the Euclidean step ``θ_k + η g``, preconditioned) | REINFORCE, A2C, QAC, DPG, DDPG, TD3, SAC, NPG-reg |
| :func:`minibatch_epochs`   | ``epochs × minibatches`` optimiser steps on shuffled minibatches | PPO                       |
| :func:`natural_gradient`   | ``θ_k + η (F + λI)⁻¹ g`` by conjugate gradient, ``η`` fixed or ``√(2δ / wᵀ(F + λI)w)``, optional line search | NPG, TRPO |

The linear algebra is here too: :func:`pinv_solve`, :func:`conjugate_gradient`, :func:`line_search`; and
:func:`fit`, the same minibatch loop for a plain loss (every critic regression).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from proxrl.errors import check_choice, check_in_range, check_int_at_least, check_positive
from proxrl.prox.geometry import fisher_vector_product
from proxrl.prox.step import Problem, Solver, global_norm
from proxrl.types import Array, Metrics, Params, PRNGKey, State

# ---------------------------------------------------------------------------------------- closed forms


def euclidean_step(theta: Array, g: Array, eta: Array | float) -> Array:
    """``θ_k + η g``: the maximiser of ``⟨θ − θ_k, g⟩ − (1/2η)‖θ − θ_k‖²``."""
    return theta + eta * g


def mirror_step(theta: Array, q: Array, eta: Array | float) -> Array:
    """``θ_k + η q``, i.e. ``π_{k+1}(a|s) ∝ π_k(a|s) exp(η q(s,a))``: the maximiser of
    ``⟨π − π_k, q⟩ − (1/η) KL(π, π_k)`` on a softmax table (up to a per-state constant, which π ignores)."""
    return theta + eta * q


def closed_form(
    formula: Callable[[Params, Any], Params],
    report: Callable[[Params, Params, Any], Metrics] | None = None,
) -> Solver:
    """A solver that knows the maximiser: ``θ_{k+1} = formula(θ_k, batch)``; no state. ``report(θ_{k+1}, θ_k,
    batch)`` adds metrics of its own."""

    def solve(problem: Problem, theta_k: Params, state: State, batch: Any, key: PRNGKey, beta: Array):
        theta = formula(theta_k, batch)
        return theta, state, {} if report is None else report(theta, theta_k, batch)

    return Solver(lambda params: (), solve)


# ---------------------------------------------------------------------------------- optimiser steps

PRECONDITIONERS = ("adam", "rmsprop")
"""The selectable preconditioners of a gradient step."""


def linear_anneal(lr: Array | float, updates: int, steps_per_update: int = 1) -> optax.Schedule:
    """``lr·max(1 − k/K, 0)`` during update k of K, for an optimiser that takes ``steps_per_update`` steps per
    update (the step count is the optimiser's; k = count // steps_per_update)."""

    def schedule(count: Array) -> Array:
        return lr * jnp.maximum(1.0 - (count // steps_per_update) / updates, 0.0)

    return schedule


def optimiser(
    lr: Array | float | optax.Schedule,
    max_grad_norm: Array | float | None = None,
    kind: str = "adam",
    eps: float = 1e-8,
    rms_decay: Array | float = 0.99,
) -> optax.GradientTransformation:
    """The optimiser of every gradient-based solver and critic fit: optional global-norm clipping, a
    preconditioner (Adam; or RMSprop PyTorch-style, ε outside the square root, as SB3's A2C) and the step
    ``−lr`` (a number or a schedule of the step count). It *minimises*: give it the gradient of a loss."""
    chain = [] if max_grad_norm is None else [optax.clip_by_global_norm(max_grad_norm)]
    if kind == "rmsprop":
        chain.append(optax.scale_by_rms(decay=rms_decay, eps=eps, eps_in_sqrt=False))
    else:
        chain.append(optax.scale_by_adam(eps=eps))
    if callable(lr):
        chain.append(optax.scale_by_schedule(lambda count: -lr(count)))
    else:
        chain.append(optax.scale(-lr))
    return optax.chain(*chain)


def _step(
    tx: optax.GradientTransformation, params: Params, opt_state: optax.OptState, grads: Params
) -> tuple[Params, optax.OptState]:
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def shuffled_minibatches(data: Any, key: PRNGKey, minibatches: int) -> Any:
    """``data`` (a pytree of ``[N, ...]`` arrays) permuted by ``key`` and cut into ``[minibatches, N/m, ...]``;
    with one minibatch, the batch as it is (the order of a full batch does not change its mean; ``key`` unused)."""
    n = jax.tree.leaves(data)[0].shape[0]
    if minibatches == 1:
        return jax.tree.map(lambda a: a[None], data)
    perm = jax.random.permutation(key, n)
    return jax.tree.map(lambda a: a[perm].reshape(minibatches, n // minibatches, *a.shape[1:]), data)


def fit(
    loss: Callable[[Params, Any], tuple[Array, Metrics]],
    tx: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: Any,
    key: PRNGKey,
    epochs: int = 1,
    minibatches: int = 1,
) -> tuple[Params, optax.OptState, Metrics]:
    """``epochs × minibatches`` steps of ``tx`` on ``loss(params, minibatch) -> (scalar, metrics)``, each epoch a
    fresh permutation of ``data`` (a pytree of ``[N, ...]`` arrays; ``minibatches`` must divide N).

    The one optimisation loop of the package: PPO's inner steps and every critic regression run through it.
    Returns the parameters, the optimiser state and the metrics stacked ``[epochs, minibatches]``
    (``loss`` included; ``grad_norm``: the gradient's norm at each step, before any clipping).
    """

    def one(c: tuple[Params, optax.OptState], mb: Any) -> tuple[Any, Metrics]:
        p, s = c
        (value, metrics), grads = jax.value_and_grad(loss, has_aux=True)(p, mb)
        metrics = dict(metrics, loss=value, grad_norm=optax.global_norm(grads))
        return _step(tx, p, s, grads), metrics

    if epochs == 1 and minibatches == 1:  # one full-batch step
        (params, opt_state), metrics = one((params, opt_state), data)
        return params, opt_state, jax.tree.map(lambda v: jnp.reshape(v, (1, 1)), metrics)

    def epoch(carry: tuple[Params, optax.OptState], k: PRNGKey) -> tuple[Any, Metrics]:
        return jax.lax.scan(one, carry, shuffled_minibatches(data, k, minibatches))

    # one full-batch minibatch needs no permutation, and so no key (``key`` may be None)
    keys = jax.random.split(key, epochs) if minibatches > 1 else jnp.zeros(epochs)
    (params, opt_state), metrics = jax.lax.scan(epoch, (params, opt_state), keys)
    return params, opt_state, metrics


def minibatch_epochs(tx: optax.GradientTransformation, epochs: int, minibatches: int) -> Solver:
    """``m = epochs × minibatches`` optimiser steps on ``−W_k`` over shuffled minibatches of the batch (PPO's
    solver; the lecture's "repeat m times: θ ← θ + α∇W(θ)" with an adaptive step). Metrics: the terms'
    averaged over the inner steps, ``inner_steps``."""

    def solve(
        problem: Problem, theta_k: Params, state: optax.OptState, batch: Any, key: PRNGKey, beta: Array
    ):
        def loss(theta: Params, mb: Any) -> tuple[Array, Metrics]:
            return problem.loss(theta, theta_k, mb, key, beta)

        # ``key`` draws the epochs' permutations (and is what a stochastic policy evaluation sees)
        theta, state, inner = fit(loss, tx, theta_k, state, batch, key, epochs, minibatches)
        inner.pop("loss"), inner.pop("grad_norm"), inner.pop("surrogate")  # at the iterates, on minibatches
        metrics = {name: jnp.mean(value) for name, value in inner.items()}
        metrics["inner_steps"] = jnp.asarray(epochs * minibatches, jnp.float32)
        return theta, state, metrics

    return Solver(tx.init, solve)


def gradient_steps(tx: optax.GradientTransformation, m: int = 1) -> Solver:
    """``m`` optimiser steps on ``−W_k`` over the whole batch, from θ_k.

    With ``m = 1`` and plain gradient ascent this is the Euclidean proximal step of the linearised surrogate,
    ``θ_k + η∇W_k(θ_k)``; a preconditioner (Adam, RMSprop) makes the geometry a diagonal one. With m > 1 it is
    the lecture's NPG regularisation form, ``θ ← θ + α∇W_k(θ)`` repeated m times. Metrics: the terms' at θ_k
    (``surrogate`` is L_k(θ_k), which the step's diagnostics reuse), ``grad_norm`` (‖∇W_k(θ_k)‖, before any
    clipping), and with m > 1 ``inner_grad_norm`` (at the last step).
    """

    def solve(
        problem: Problem, theta_k: Params, state: optax.OptState, batch: Any, key: PRNGKey, beta: Array
    ):
        grad = jax.grad(lambda th: problem.loss(th, theta_k, batch, key, beta), has_aux=True)

        def one(carry: tuple[Params, optax.OptState], _: None) -> tuple[Any, tuple[Array, Metrics]]:
            theta, s = carry
            grads, metrics = grad(theta)
            return _step(tx, theta, s, grads), (global_norm(grads), metrics)

        if m == 1:
            (theta, state), (norm, metrics) = one((theta_k, state), None)
            return theta, state, dict(metrics, grad_norm=norm)
        (theta, state), (norms, metrics) = jax.lax.scan(one, (theta_k, state), None, length=m)
        metrics = {name: value[0] for name, value in metrics.items()}
        return theta, state, dict(metrics, grad_norm=norms[0], inner_grad_norm=norms[-1])

    return Solver(tx.init, solve)


# ---------------------------------------------------------------------------------------- natural steps


def pinv_solve(fisher: Array, g: Array, rcond: float | None = None) -> Array:
    """``F⁺ g`` by the Moore-Penrose pseudo-inverse; ``fisher`` ``[..., P, P]``, ``g`` ``[..., P]``."""
    return jnp.einsum("...ij,...j->...i", jnp.linalg.pinv(fisher, rtol=rcond), g)


def conjugate_gradient(
    matvec: Callable[[Array], Array], b: Array, iters: int = 10, tol: float = 1e-10
) -> tuple[Array, Array]:
    """Solve ``M x = b`` for symmetric positive (semi-)definite ``M`` given ``x ↦ M x``.

    Runs exactly ``iters`` iterations (a fixed count keeps it jittable); once the squared residual
    falls below ``tol`` the iterate is frozen. Returns ``(x, ‖b − M x‖²)``.
    """

    def body(carry, _):
        x, r, p, rr = carry
        mp = matvec(p)
        alpha = rr / jnp.maximum(jnp.vdot(p, mp), 1e-30)
        live = rr > tol
        x = jnp.where(live, x + alpha * p, x)
        r_new = jnp.where(live, r - alpha * mp, r)
        rr_new = jnp.vdot(r_new, r_new)
        p = jnp.where(live, r_new + (rr_new / jnp.maximum(rr, 1e-30)) * p, p)
        return (x, r_new, p, jnp.where(live, rr_new, rr)), None

    x0 = jnp.zeros_like(b)
    (x, r, _, _), _ = jax.lax.scan(body, (x0, b, b, jnp.vdot(b, b)), None, length=iters)
    return x, jnp.vdot(r, r)


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


STEP_LENGTHS = ("fixed", "trust_region")
"""How :func:`natural_gradient` scales the natural direction w = (F + λI)⁻¹g: a fixed η, or η = √(2δ / wᵀ(F + λI)w)."""


@dataclasses.dataclass(frozen=True)
class NaturalStep:
    """How the natural step is solved (conjugate gradient), sized and checked (defaults: TRPO's)."""

    step: str = "trust_region"
    """Step length: "fixed" (θ_k + η·(F + λI)⁻¹g, η = lr) or "trust_region" (η = √(2δ / wᵀ(F + λI)w), w = (F + λI)⁻¹g)."""
    lr: float = 0.05
    """Step size η of the "fixed" natural step θ_k + η·(F + λI)⁻¹g (the trust-region step sets η from max_kl instead)."""
    max_kl: float = 0.01
    """Trust-region radius δ on the mean KL(π_θ, π_θk) (trust-region scaling and line-search constraint)."""
    line_search: bool = True
    """Backtrack until KL ≤ δ and the surrogate improves (TRPO); False takes the step as computed."""
    backtrack_ratio: float = 0.8
    """Shrink factor β ∈ (0, 1) of the line search."""
    max_backtracks: int = 10
    """Step lengths tried by the line search: β⁰, β¹, …, β^(max_backtracks − 1)."""
    accept_ratio: float = 0.1
    """Accept a step when the surrogate improves by ≥ this fraction of the linear prediction gᵀΔθ."""
    cg_iters: int = 10
    """Conjugate-gradient iterations (Fisher-vector products) per solve."""
    cg_damping: float = 0.1
    """Damping λ: CG solves (F + λI) w = g."""

    def validate(self) -> None:
        """A known step length; lr, δ > 0; β ∈ (0, 1); accept ratio ∈ [0, 1]; iteration counts ≥ 1; λ ≥ 0."""
        check_choice("step", self.step, STEP_LENGTHS)
        check_positive("lr", self.lr)
        check_positive("max_kl", self.max_kl)
        check_in_range("backtrack_ratio", self.backtrack_ratio, 0.0, 1.0, low_open=True, high_open=True)
        check_int_at_least("max_backtracks", self.max_backtracks, 1)
        check_in_range("accept_ratio", self.accept_ratio, 0.0, 1.0)
        check_int_at_least("cg_iters", self.cg_iters, 1)
        check_in_range("cg_damping", self.cg_damping, 0.0, float("inf"), high_open=True)


def natural_gradient(fisher_kl: Callable[[Params, Any], Array], region: NaturalStep | None = None) -> Solver:
    """The natural step ``θ_{k+1} = θ_k + η·(F + λI)⁻¹ g``, g = ∇L_k(θ_k), F never formed.

    ``fisher_kl(θ, batch) = mean_s KL(π_θk(·|s) ‖ π_θ(·|s))``: its Hessian at θ_k is the Fisher matrix, so
    ``F v`` is a Hessian-vector product (:func:`~proxrl.prox.geometry.fisher_vector_product`) and conjugate
    gradient solves for ``w`` in ``region.cg_iters`` products. This is the maximiser of the quadratic model
    ``(θ − θ_k)ᵀg − (1/2η)(θ − θ_k)ᵀF(θ − θ_k)`` of the lecture's KL-proximal step. The step length η is fixed
    or TRPO's ``√(2δ / wᵀ(F + λI)w)`` (the damped quadratic model, as CG solves it); with
    ``region.line_search`` TRPO's backtracking (:func:`line_search`) keeps the exact KL (the problem's geometry
    term) ≤ δ and the surrogate improving.

    Metrics: ``expected_gain`` (gᵀΔθ of the step taken), ``grad_norm`` (‖g‖), ``cg_residual``
    (‖g − (F + λI)w‖² / ‖g‖²), ``quad_kl`` (½Δθᵀ(F + λI)Δθ of the full step), ``line_search_steps``, ``accepted``.
    """

    region = region or NaturalStep()

    def solve(problem: Problem, theta_k: Params, state: State, batch: Any, key: PRNGKey, beta: Array):
        flat_k, unravel = ravel_pytree(theta_k)

        def surrogate(flat: Array) -> Array:
            return problem.surrogate_value(unravel(flat), theta_k, batch, key)

        def kl_moved(flat: Array) -> Array:
            theta = unravel(flat)
            return problem.geometry(theta, problem.evaluate(theta, batch, key), theta_k, batch)[0]

        l_k = surrogate(flat_k)
        g = jax.grad(surrogate)(flat_k)
        fvp = fisher_vector_product(lambda flat: fisher_kl(unravel(flat), batch), flat_k, region.cg_damping)
        w, residual = conjugate_gradient(fvp, g, iters=region.cg_iters)
        w_f_w = jnp.vdot(w, fvp(w))
        if region.step == "trust_region":
            eta = jnp.sqrt(2.0 * region.max_kl / jnp.maximum(w_f_w, 1e-12))
        else:
            eta = jnp.asarray(region.lr, jnp.float32)
        full_step = eta * w
        expected = jnp.vdot(g, full_step)
        if region.line_search:
            found = line_search(
                lambda flat: surrogate(flat) - l_k,
                kl_moved,
                flat_k,
                full_step,
                expected,
                region.max_kl,
                region.backtrack_ratio,
                region.max_backtracks,
                region.accept_ratio,
            )
            flat_new, backtracks, accepted = found.theta, found.backtracks, found.accepted
            frac = jnp.where(accepted, region.backtrack_ratio ** backtracks.astype(jnp.float32), 0.0)
        else:
            flat_new, backtracks, accepted, frac = (
                flat_k + full_step,
                jnp.zeros((), jnp.int32),
                jnp.ones((), bool),
                1.0,
            )
        metrics = {
            "surrogate": l_k,  # L_k(θ_k) on the whole batch: the step's diagnostics reuse it
            "expected_gain": frac * expected,
            "grad_norm": jnp.linalg.norm(g),
            "cg_residual": residual / jnp.maximum(jnp.vdot(g, g), 1e-30),
            "quad_kl": 0.5 * eta**2 * w_f_w,
            "line_search_steps": backtracks.astype(jnp.float32),
            "accepted": accepted.astype(jnp.float32),
        }
        return unravel(flat_new), state, metrics

    return Solver(lambda params: (), solve)
