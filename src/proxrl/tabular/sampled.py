"""Policy learning in a finite MDP from sampled trajectories (lecture: "Bandit Feedback Case").

Each iteration draws ``n`` trajectories from ``ρ`` under ``π_θk``
(:func:`proxrl.tabular.trajectories.collect`), forms ``R_h − b(s_h)`` and takes one proximal step:

``reinforce``  ``θ_{k+1} = θ_k + η ĝ``,  ``ĝ = (1/n) Σ_i Σ_h ∇_θ log π_θ(a_h|s_h)|_θk (R_h − b(s_h))``
``npg_reg``    ``θ ← θ_k``; m times ``θ ← θ + α ∇W_k(θ)`` with
               ``W_k(θ) = (1/n) Σ_i Σ_h ratio_h (R_h − b(s_h)) − (1/(ηn)) Σ_i Σ_h KL(π_θ(·|s_h), π_θk(·|s_h))``,
               ``ratio_h = π_θ(a_h|s_h)/π_θk(a_h|s_h)``
``ew``         the exact maximiser of ``W_k`` (per visited state, ``π ∝ π_k exp(η q̂)``)
``npg_ls``     ``θ_{k+1} = θ_k + η w``, ``w = argmin_w Σ_i Σ_h (∇log π_θk(a_h|s_h)ᵀ w − (R_h − b(s_h)))²``
               ``= F̂⁺ĝ`` with the empirical Fisher ``F̂ = (1/n) Σ Σ ∇log π ∇log πᵀ`` (compatible
               function approximation)

The first three reuse the softmax-table steps: the samples are summarised, with no loss, as the
importance-weighted table ``TableBatch(q̂, d̂)`` of :func:`ipw_batch`, for which
``d̂ π_θk (q̂ − ⟨π_θk, q̂⟩) = ĝ`` (so ``policy_gradient`` on it *is* REINFORCE) and
``Σ_s d̂(s)[⟨π_θ, q̂⟩ − KL(π_θ, π_θk)/η] = W_k(θ)`` (so ``npg_regularised`` on it *is* the lecture's
regularisation form). Baselines ``b(s)``: ``none``; ``constant`` (a running mean of returns); ``learned``
(a table ``V̂(s)`` regressed on the returns). Both are fitted on *earlier* batches only, so ``ĝ``
stays unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.errors import ConfigError, check_choice, check_int_at_least
from proxrl.prox import Problem, ProxStep, Term, prox_step
from proxrl.prox.solvers import closed_form, euclidean_step
from proxrl.tabular import aliasing, softmax
from proxrl.tabular import mdp as tabular
from proxrl.tabular import steps as softmax_table
from proxrl.tabular.mdp import FiniteMDP
from proxrl.tabular.steps import table_kl_term, table_surrogate
from proxrl.tabular.trajectories import Mode, Trajectories, collect
from proxrl.types import Array, Metrics, PRNGKey, TableBatch

ALGORITHMS = ("reinforce", "npg_reg", "ew", "npg_ls")
BASELINES = ("none", "constant", "learned")


# --- estimators ------------------------------------------------------------------------------------


def advantages(traj: Trajectories, b: Array) -> Array:
    """``weight_h · (R_h − b(s_h))``, ``[T, n]`` (0 past the end of each trajectory)."""
    return traj.weight * (traj.returns - b)


def reinforce_gradients(theta: Array, traj: Trajectories, b: Array) -> Array:
    """Per-trajectory REINFORCE gradients ``Σ_h ∇_θ log π_θ(a_h|s_h) (R_h − b(s_h))``, ``[n, S, A]``.

    ``b`` ``[T, n]``: the baseline at each visited state. Written as ``jax.grad`` of
    ``Σ_h log π_θ(a_h|s_h)·c_h`` with ``c_h = weight_h (R_h − b(s_h))`` held fixed.
    """
    c = advantages(traj, b)

    def one(s: Array, a: Array, c_i: Array) -> Array:
        return jax.grad(lambda th: jnp.sum(softmax.log_pi(th)[s, a] * c_i))(theta)

    return jax.vmap(one, in_axes=1)(traj.state, traj.action, c)


def reinforce_gradient(theta: Array, traj: Trajectories, b: Array) -> Array:
    """``ĝ = (1/n) Σ_i Σ_h ∇_θ log π_θ(a_h^i|s_h^i)(R_h^i − b(s_h^i))``, ``[S, A]``: unbiased for
    ``∇_θ V^{π_θ}(ρ)`` in geometric mode (see :mod:`proxrl.tabular.trajectories`)."""
    return jnp.mean(reinforce_gradients(theta, traj, b), axis=0)


def ipw_batch(theta_k: Array, traj: Trajectories, b: Array) -> TableBatch:
    """The samples as an importance-weighted table ``TableBatch(q̂[S, A], d̂[S])``.

    ``d̂(s) = (1/n) Σ_i Σ_h weight_h 1{s_h = s}`` (unbiased for ``d_ρ^{π_k}`` in geometric mode) and
    ``q̂(s, a) = Σ_i Σ_h weight_h (R_h − b(s_h)) 1{s_h = s, a_h = a} / (n d̂(s) π_k(a|s))``
    (0 at unvisited states): the lecture's ``R̂(a) = Σ (r − b) 1{a_i = a}/π(a_i)`` in every state.
    """
    S, A = theta_k.shape
    n = traj.state.shape[1]
    c = advantages(traj, b)
    C = jnp.zeros((S, A), c.dtype).at[traj.state, traj.action].add(c) / n
    d = jnp.zeros(S, c.dtype).at[traj.state].add(traj.weight) / n
    denom = d[:, None] * softmax.pi(theta_k)
    q = jnp.where(d[:, None] > 0, C / jnp.where(denom > 0, denom, 1.0), 0.0)
    return TableBatch(q=q, d=d)


def score_features(theta_k: Array, traj: Trajectories) -> Array:
    """Rows ``∇_θ log π_θk(a_h|s_h) = e_{s_h} ⊗ (e_{a_h} − π_θk(·|s_h))``, flattened: ``[T·n, S·A]``
    (zero rows past the end of each trajectory)."""
    S, A = theta_k.shape
    rows = softmax.score(theta_k)[traj.state, traj.action] * traj.mask[..., None]  # [T, n, A]
    onehot = jax.nn.one_hot(traj.state, S, dtype=rows.dtype)  # [T, n, S]
    return (onehot[..., None] * rows[..., None, :]).reshape(-1, S * A)


def empirical_fisher(theta_k: Array, traj: Trajectories, b: Array) -> tuple[Array, Array]:
    """The empirical Fisher and REINFORCE gradient, block by state: ``F̂`` ``[S, A, A]``, ``ĝ`` ``[S, A]``.

    ``F̂ = (1/n) Σ_i Σ_h weight_h ∇log π_θk(a_h|s_h) ∇log π_θk(a_h|s_h)ᵀ`` and
    ``ĝ = (1/n) Σ_i Σ_h weight_h ∇log π_θk(a_h|s_h) (R_h − b(s_h))`` (lecture, "NPG (Gradient-Update Form) +
    Bandit Feedback"). A score ``e_{s_h} ⊗ (e_{a_h} − π_θk(·|s_h))`` is zero outside its state's block, so
    ``F̂`` is block-diagonal: ``F̂(s) = Σ_a N(s, a)(e_a − π(·|s))(e_a − π(·|s))ᵀ`` with the weighted visit
    counts ``N(s, a) = (1/n) Σ weight_h 1{s_h = s, a_h = a}``, built from counts in ``O(T·n + S·A²)``.
    """
    S, A = theta_k.shape
    n = traj.state.shape[1]
    counts = jnp.zeros((S, A), traj.weight.dtype).at[traj.state, traj.action].add(traj.weight) / n
    c = jnp.zeros((S, A), traj.weight.dtype).at[traj.state, traj.action].add(advantages(traj, b)) / n
    score = softmax.score(theta_k)  # [S, a, A]: row a is ∇log π(a|s) within the block
    fisher = jnp.einsum("sa,sai,saj->sij", counts, score, score)
    return fisher, jnp.einsum("sa,sai->si", c, score)


def npg_direction(theta_k: Array, traj: Trajectories, b: Array, damping: Array | float = 0.0) -> Array:
    """``w = (F̂ + λI)⁺ ĝ``, ``[S, A]``: the lecture's ``F⁻¹g`` from samples, damped by ``λ = damping ≥ 0``.

    With ``λ = 0`` this is the minimum-norm solution of the lecture's regression
    ``argmin_w Σ_i Σ_h weight_h (∇log π_θk(a_h|s_h)ᵀ w − (R_h − b(s_h)))²`` (its normal equations are
    ``F̂ w = ĝ``, :func:`empirical_fisher`); with ``λ > 0`` it is the ridge regression
    ``argmin_w (1/n) Σ Σ weight_h (∇log πᵀw − (R_h − b))² + λ‖w‖²``, whose solution is ``(F̂ + λI)⁻¹ĝ``.
    ``F̂`` is block-diagonal over states, so both are solved block by block, with the pseudo-inverse by
    :func:`~proxrl.tabular.steps.newton_schulz_pinv` (matrix products, no LAPACK) run for ``⌈log₂(37·A/ε)⌉``
    iterations: singular values above about ``√ε·σ_max`` are inverted to working precision, smaller ones (the
    rounding-level one along ``1``, ``F̂(s)1 = 0``) are left near 0, as a pseudo-inverse cutoff would. Unvisited
    states get ``w = 0``.

    Why damp: an action seen a handful of times in a state contributes an eigenvalue of ``F̂(s)`` of the order
    of its visit frequency, and ``F̂⁺`` divides the (noisy) gradient by it, so one lucky return can move that
    action's θ by ``η·|R − b|/N``; ``λ`` caps the gain at ``1/λ`` per unit of gradient (``λ → ∞``: REINFORCE
    with step ``η/λ``). The default is chosen from the measured sweep in docs/methods/tabular.md.
    """
    fisher, g = empirical_fisher(theta_k, traj, b)
    n = theta_k.shape[-1]
    iters = math.ceil(math.log2(37 * n / float(jnp.finfo(fisher.dtype).eps)))
    damped = fisher + damping * jnp.eye(n, dtype=fisher.dtype)
    return jnp.einsum("sij,sj->si", jax.vmap(lambda f: softmax_table.newton_schulz_pinv(f, iters))(damped), g)


# --- steps and baselines ---------------------------------------------------------------------------


class SampleBatch(NamedTuple):
    """What :func:`npg_least_squares` consumes: trajectories and the baseline ``b`` ``[T, n]``."""

    traj: Trajectories
    b: Array


def npg_least_squares(eta: Array | float, damping: Array | float = 0.0) -> ProxStep:
    """NPG, gradient form, from samples: ``θ_{k+1} = θ_k + η (F̂ + λI)⁺ĝ`` (``λ = damping``; ``λ = 0``: the
    lecture's least-squares ``F̂⁺ĝ``).

    Composition: the table surrogate and KL measured on the samples' table (:func:`ipw_batch`), solver the
    closed-form least-squares Fisher solve (:func:`npg_direction`). Metrics: ``surrogate_gain`` (the sampled
    ``L_k``), ``kl`` (``Σ_s d̂(s) KL``), ``step_norm``.
    """

    def on_samples(term: Term) -> Term:
        def measured(theta: Array, pi: None, theta_k: Array, batch: SampleBatch) -> tuple[Array, Metrics]:
            return term(theta, pi, theta_k, ipw_batch(theta_k, batch.traj, batch.b))

        return measured

    def formula(theta: Array, batch: SampleBatch) -> Array:
        return euclidean_step(theta, npg_direction(theta, batch.traj, batch.b, damping), eta)

    kl = on_samples(table_kl_term())
    return prox_step(Problem(on_samples(table_surrogate()), kl), closed_form(formula), moved=kl)


class Baseline(NamedTuple):
    """Baseline state: ``constant`` (scalar running mean of ``R_h``) and ``table`` ``[S]`` (``V̂(s)``)."""

    constant: Array
    table: Array


def baseline_values(kind: str, bl: Baseline, states: Array) -> Array:
    """``b(s_h)`` at the visited states ``[T, n]`` for baseline ``kind``."""
    if kind == "none":
        return jnp.zeros(states.shape, bl.table.dtype)
    if kind == "constant":
        return jnp.broadcast_to(bl.constant, states.shape)
    return bl.table[states]


def update_baseline(bl: Baseline, traj: Trajectories, beta: Array | float) -> Baseline:
    """Move both baselines a fraction ``β`` towards this batch's mean returns (overall / per state)."""
    m = traj.mask.astype(traj.returns.dtype)
    mean = jnp.sum(m * traj.returns) / jnp.maximum(jnp.sum(m), 1.0)
    S = bl.table.shape[0]
    tot = jnp.zeros(S, m.dtype).at[traj.state].add(m * traj.returns)
    cnt = jnp.zeros(S, m.dtype).at[traj.state].add(m)
    target = jnp.where(cnt > 0, tot / jnp.maximum(cnt, 1.0), bl.table)
    return Baseline(
        constant=bl.constant + beta * (mean - bl.constant), table=bl.table + beta * (target - bl.table)
    )


#: Default hyperparameters of each sampled algorithm (used where :func:`run` is given ``None``, and by the
#: lecture's command), chosen by the sweep ``bench/sweep_tabular_sampled.py`` (table in docs/methods/tabular.md)
#: on random MDPs (S = 20, A = 4, γ = 0.9, 150 iterations of 64 trajectories, learned baseline, 8 seeds): for
#: each algorithm the grid point with the lowest upper 95% bound on the mean gap over the last 10 iterates.
DEFAULTS: dict[str, dict[str, float]] = {
    "reinforce": {"eta": 0.5},
    "npg_reg": {"eta": 3.0, "alpha": 0.03, "m": 20},
    "ew": {"eta": 0.1},
    "npg_ls": {"eta": 0.3, "damping": 0.3},
}

#: What :func:`hyperparameter` returns for a name an algorithm's :data:`DEFAULTS` entry lacks (it does not use it).
FALLBACK: dict[str, float] = {"eta": 0.1, "alpha": 1.0, "m": 10, "damping": 0.0}


def hyperparameter(algo: str, name: str, value: float | Array | None) -> float | Array:
    """``value``, or the default of ``algo`` for ``name`` when ``value`` is ``None`` (:data:`DEFAULTS`, else
    :data:`FALLBACK`)."""
    if value is not None:
        return value
    return DEFAULTS[algo].get(name, FALLBACK[name])


def make_step(
    algo: str, eta: Array | float, alpha: Array | float = 1.0, m: int = 10, damping: Array | float = 0.0
) -> ProxStep:
    """The proximal step named ``algo`` (module table); ``damping`` is ``npg_ls``'s ``λ``."""
    check_choice("algorithm", algo, ALGORITHMS)
    if algo == "reinforce":
        return softmax_table.policy_gradient(eta)
    if algo == "ew":
        return softmax_table.exponential_weights(eta)
    if algo == "npg_reg":
        return softmax_table.npg_regularised(eta, alpha, check_int_at_least("m", m, 1))
    if not isinstance(damping, jax.core.Tracer) and float(damping) < 0:
        raise ConfigError(f"damping must be >= 0 (the lambda of F + lambda*I), got {damping}")
    return npg_least_squares(eta, damping)


# --- the loop --------------------------------------------------------------------------------------


class SampledTrace(NamedTuple):
    """Per-iteration record ``[K]``: ``gap`` ``V*(ρ) − V^{π_k}(ρ)`` (exact, for monitoring only),
    ``value`` ``V^{π_k}(ρ)``, ``mean_return`` (mean ``R_1`` of the batch), ``mean_length`` (mean τ),
    ``kl``, ``step_norm``, ``surrogate_gain``."""

    gap: Array
    value: Array
    mean_return: Array
    mean_length: Array
    kl: Array
    step_norm: Array
    surrogate_gain: Array


class SampledResult(NamedTuple):
    theta: Array
    final_gap: Array
    v_star: Array
    trace: SampledTrace


def run(
    algo: str,
    mdp: FiniteMDP,
    theta0: Array,
    key: PRNGKey,
    num_iters: int,
    eta: Array | float | None = None,
    num_traj: int = 16,
    max_len: int = 200,
    mode: Mode = "geometric",
    baseline: str = "learned",
    beta: Array | float = 0.5,
    alpha: Array | float | None = None,
    m: int | None = None,
    v_star: Array | None = None,
    damping: Array | float | None = None,
    obs: Array | None = None,
) -> SampledResult:
    """``num_iters`` iterations of ``collect n trajectories → R_h − b(s_h) → proximal step``.

    One ``lax.scan``; jit and vmap over keys (seeds), MDPs of one shape and traced ``eta``/``alpha``/
    ``beta``/``damping``. ``eta``, ``alpha`` (``npg_reg``'s inner step), ``m`` (its inner steps) and ``damping``
    (``npg_ls``'s λ) default to :data:`DEFAULTS`. ``v_star`` (``V*(ρ)``, computed when omitted) is used only to
    report the gap. ``obs``: an observation map ``[S]`` (:mod:`proxrl.tabular.aliasing`) for a policy that
    cannot see the state: ``theta0`` is ``[O, A]``, trajectories are sampled with ``π_θ(·|obs(s))`` and the
    learner (estimators, baseline) sees only ``obs(s_h)``.
    """
    if obs is None:
        tabular.check_policy_table(mdp, theta0, "theta0")
    else:
        obs = aliasing.check_observations(obs, mdp.num_states, theta0.shape[0])
    check_int_at_least("num_iters", num_iters, 1)
    check_choice("baseline", baseline, BASELINES)
    check_choice("algorithm", algo, ALGORITHMS)
    eta, alpha = hyperparameter(algo, "eta", eta), hyperparameter(algo, "alpha", alpha)
    m, damping = int(hyperparameter(algo, "m", m)), hyperparameter(algo, "damping", damping)
    step = make_step(algo, eta, alpha, m, damping)
    if v_star is None:
        v_star = tabular.optimal_value(mdp)
    dt = theta0.dtype

    def state_pi(theta: Array) -> Array:
        return softmax.pi(theta) if obs is None else aliasing.state_policy(softmax.pi(theta), obs)

    def body(carry, k):
        theta, state, bl = carry
        k_traj, k_step = jax.random.split(k)
        pi = state_pi(theta)
        traj = collect(k_traj, mdp, pi, num_traj, max_len, mode)
        if obs is not None:  # the learner sees the class of each visited state, not the state
            traj = traj._replace(state=obs[traj.state])
        b = baseline_values(baseline, bl, traj.state)
        batch = SampleBatch(traj, b) if algo == "npg_ls" else ipw_batch(theta, traj, b)
        theta_new, state, metrics = step.update(theta, state, batch, k_step)
        v = tabular.value(mdp, pi)
        out = SampledTrace(
            gap=v_star - v,
            value=v,
            mean_return=jnp.mean(traj.returns[0]),
            mean_length=jnp.mean(traj.length.astype(dt)),
            kl=metrics["kl"],
            step_norm=metrics["step_norm"],
            surrogate_gain=metrics["surrogate_gain"],
        )
        return (theta_new, state, update_baseline(bl, traj, beta)), out

    bl0 = Baseline(jnp.zeros((), dt), jnp.zeros(theta0.shape[0], dt))
    carry0 = (theta0, step.init(theta0), bl0)
    (theta, _, _), trace = jax.lax.scan(body, carry0, jax.random.split(key, num_iters))
    final_gap = v_star - tabular.value(mdp, state_pi(theta))
    return SampledResult(theta=theta, final_gap=final_gap, v_star=v_star, trace=trace)


def sweep(
    algo: str,
    num_iters: int,
    num_traj: int = 16,
    max_len: int = 200,
    mode: Mode = "geometric",
    baseline: str = "learned",
    alpha: float | None = None,
    m: int | None = None,
    damping: float | None = None,
) -> Callable[[FiniteMDP, Array, Array, Array], SampledResult]:
    """A jitted ``f(mdps, theta0s, keys, etas)``, every input batched on a leading axis ``[N]``
    (``alpha``, ``m``, ``damping``: :data:`DEFAULTS` when ``None``)."""
    check_choice("algorithm", algo, ALGORITHMS)
    check_choice("baseline", baseline, BASELINES)

    def one(mdp: FiniteMDP, theta0: Array, key: PRNGKey, eta: Array) -> SampledResult:
        return run(
            algo, mdp, theta0, key, num_iters, eta, num_traj, max_len, mode, baseline, 0.5, alpha, m,
            damping=damping,
        )  # fmt: skip

    return jax.jit(jax.vmap(one))
