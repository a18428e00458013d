"""Bandit convex optimisation with the one-point gradient estimator (the lecture's "Review: Linear Bandits and
One-Point Gradient Estimator").

Two losses on the unit ball B ⊂ R^d, both convex:

- the linear bandit f(x) = ⟨θ, x⟩ with ‖θ‖ = 1 (|f| ≤ C = 1, Lipschitz L = 1, minimum −1 at x* = −θ);
- a smooth convex loss f(x) = ½‖x − x₀‖² + ¼Σ_i x_i⁴ with ‖x₀‖ = ½ (minimum inside B), C = 1.375, L = 2.5.

(a) Only f(x) is observed. The one-point estimate g = (d/δ)·f(x + δu)·u (u uniform on the sphere) is unbiased
for ∇f_δ, the gradient of the ball-smoothed f_δ(x) = E_v f(x + δv); its bias for ∇f is ‖∇f_δ − ∇f‖ (0 for the
linear loss, 3δ²‖x‖/(d + 2) for the convex one) and its standard deviation grows like d|f(x)|/δ as δ → 0
(exactly √(d²f(x)²/δ² + (d − 1)‖θ‖²) for the linear loss). The two-point estimate
(d/2δ)(f(x + δu) − f(x − δu))·u has the same mean and a standard deviation that stays bounded.

(b) Regret R_T = Σ_t f(x_t) − T·min_B f of projected gradient descent y_{t+1} = Π_{(1−α)B}(y_t − η g_t) with

- the one-point estimate, playing x_t = y_t + δu_t (Flaxman, Kalai & McMahan 2005, Theorem 2: ν = R/(C√T),
  δ = T^{−1/4}√(RdCr/(3(Lr + C))), α = δ/r, here R = r = 1, and η = νδ/d since their step is ν·f(x_t)u_t):
  R_T = O(T^{3/4});
- the two-point estimate, playing y_t ± δu_t (Agarwal, Dekel & Xiao 2010: η = R/(dL√T), δ = ln T / T,
  α = δ): R_T = O(√T);
- the true gradient (full information, η = R/(L√T), α = 0): R_T = O(√T).

Each horizon T is its own run (the step sizes depend on T); all horizons and seeds of a method run in one
vmapped, jitted call, and the slopes of log R_T against log T are fitted over the horizons.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import Progress

from proxrl.config import check_numbers
from proxrl.errors import ConfigError, check_int_at_least, check_memory, check_positive_all
from proxrl.estimators.zeroth_order import one_point, sphere_direction, two_point
from proxrl.prox.solvers import euclidean_step
from proxrl.run.plots import band, figure, seeds_tag
from proxrl.run.records import RunDir
from proxrl.run.stats import mean_ci
from proxrl.types import Array, PRNGKey

METHODS = ("one_point", "two_point", "full_information")
"""The gradient each run of bandit gradient descent uses."""

THEORY_SLOPES = {"one_point": 0.75, "two_point": 0.5, "full_information": 0.5}
"""The exponent of T in each method's regret bound."""


@dataclass(frozen=True)
class OnePointConfig:
    """One-point and two-point gradient estimators: bias and spread against δ, and the regret of bandit gradient descent."""

    dim: int = 5
    """Dimension d of the decision set, the unit ball of R^d."""
    seeds: int = 100
    """Seeds per method and horizon (each seed draws its own loss), run in one vmapped call."""
    horizons: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000)
    """Horizons T: one run per horizon with the step sizes tuned for it; the slope of log R_T against log T is fitted over them."""
    checkpoints: int = 100
    """Points at which the regret curve R_t of each run is recorded."""
    deltas: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
    """Smoothing radii δ at which the estimators' bias and standard deviation are estimated."""
    draws: int = 20_000
    """Estimator draws per δ (one vmapped call)."""
    seed: int = 0
    """Base random seed."""
    out: Path | None = None
    """Run directory (default: runs/lecture-one-point-<timestamp>)."""

    def validate(self) -> None:
        check_numbers(self)
        check_int_at_least("seed", self.seed, 0)
        check_int_at_least("dim", self.dim, 1)
        check_int_at_least("seeds", self.seeds, 2)
        check_int_at_least("draws", self.draws, 2)
        check_int_at_least("checkpoints", self.checkpoints, 1)
        if len(self.horizons) < 2:
            raise ConfigError(
                f"horizons must list at least two horizons to fit a slope, got {self.horizons!r}"
            )
        for t in self.horizons:
            check_int_at_least("horizon", t, 2)
        if len(set(self.horizons)) != len(self.horizons):
            raise ConfigError(f"horizons must be distinct, got {self.horizons!r}")
        check_positive_all("deltas", self.deltas)
        # regret curves of 3 methods × 2 losses per horizon and seed, and the estimator draws, float32
        check_memory(
            4 * (6 * self.seeds * sum(self.horizons) + 4 * self.draws * self.dim * len(self.deltas)),
            "regret curves and estimator draws",
            "seeds × horizons and draws × dim × deltas",
        )


# ------------------------------------------------------------------------------------------------ losses


class Loss(NamedTuple):
    """A convex loss family on the unit ball: ``f(p, x)``, its gradient, its minimum over the ball, a draw of the
    parameter ``p`` for a seed, the bound C ≥ max_B |f| and the Lipschitz constant L on B."""

    name: str
    f: Callable[[Array, Array], Array]
    draw: Callable[[PRNGKey, int], Array]
    minimum: Callable[[Array], Array]
    bound: float
    lipschitz: float

    def grad(self, p: Array, x: Array) -> Array:
        return jax.grad(self.f, argnums=1)(p, x)


def linear_loss() -> Loss:
    """f(x) = ⟨θ, x⟩, θ uniform on the unit sphere: min_B f = −1, C = L = 1."""
    return Loss(
        "linear",
        lambda theta, x: jnp.dot(theta, x),
        lambda key, d: sphere_direction(key, (d,)),
        lambda theta: jnp.asarray(-1.0),
        1.0,
        1.0,
    )


def convex_loss() -> Loss:
    """f(x) = ½‖x − x₀‖² + ¼Σ_i x_i⁴ with x₀ uniform on the sphere of radius ½: its minimiser lies inside B
    (found by 300 gradient steps), C = ½·1.5² + ¼ = 1.375, L = 1.5 + 1 = 2.5."""

    def f(x0: Array, x: Array) -> Array:
        return 0.5 * jnp.sum((x - x0) ** 2) + 0.25 * jnp.sum(x**4)

    def minimum(x0: Array) -> Array:
        step = lambda x, _: (x - 0.2 * jax.grad(f, argnums=1)(x0, x), None)
        x, _ = jax.lax.scan(step, x0, None, length=300)
        return f(x0, x)

    return Loss("convex", f, lambda key, d: 0.5 * sphere_direction(key, (d,)), minimum, 1.375, 2.5)


LOSSES = {"linear": linear_loss(), "convex": convex_loss()}
"""The two losses of the experiment, by name."""


def smoothing_bias(loss: Loss, x: Array, delta: Array | float) -> Array:
    """‖∇f_δ(x) − ∇f(x)‖ in closed form: 0 for the linear loss; 3δ²‖x‖/(d + 2) for the convex one (from the
    quartic term: E v_i² = 1/(d + 2) for v uniform in the unit ball)."""
    if loss.name == "linear":
        return jnp.zeros_like(jnp.asarray(delta, jnp.float32))
    return 3.0 * jnp.asarray(delta) ** 2 * jnp.linalg.norm(x) / (x.size + 2)


# -------------------------------------------------------------------------------- (a) estimator statistics


class EstimatorStats(NamedTuple):
    """Bias ‖mean g − ∇f(x)‖ and standard deviation √tr Cov(g) of an estimator, per δ, with the Monte Carlo
    noise floor of the bias (√(tr Cov / n), what a zero bias reads as)."""

    bias: np.ndarray
    std: np.ndarray
    floor: np.ndarray


def estimator_stats(
    loss: Loss, p: Array, x: Array, deltas: np.ndarray, draws: int, key: PRNGKey
) -> dict[str, EstimatorStats]:
    """The one-point and two-point estimators' :class:`EstimatorStats` at ``x`` for each δ (``draws`` draws
    each, one vmapped call per estimator)."""
    keys = jax.random.split(key, draws)
    out = {}
    for name in ("one_point", "two_point"):
        bias, var = _stats_fn(loss.name, name)(p, x, keys, jnp.asarray(deltas, jnp.float32))
        var = np.asarray(var)
        out[name] = EstimatorStats(np.asarray(bias), np.sqrt(var), np.sqrt(var / draws))
    return out


@functools.cache
def _stats_fn(loss_name: str, estimator_name: str) -> Callable[..., tuple[Array, Array]]:
    """``(p, x, keys, deltas) -> (bias [δ], tr Cov [δ])``, compiled once per loss and estimator."""
    loss = LOSSES[loss_name]
    g = {"one_point": one_point, "two_point": two_point}[estimator_name]

    def stats(p: Array, x: Array, keys: Array, delta: Array) -> tuple[Array, Array]:
        s = jax.vmap(lambda k: g(lambda y: loss.f(p, y), x, k, delta))(keys)
        return jnp.linalg.norm(jnp.mean(s, axis=0) - loss.grad(p, x)), jnp.sum(jnp.var(s, axis=0))

    return jax.jit(jax.vmap(stats, in_axes=(None, None, None, 0)))


# --------------------------------------------------------------------------------- (b) gradient descent


class StepSizes(NamedTuple):
    """η, δ and the shrinkage α of one run, chosen from its horizon T."""

    eta: float
    delta: float
    alpha: float


def step_sizes(method: str, horizon: int, d: int, bound: float, lipschitz: float) -> StepSizes:
    """The paper's choices for a horizon T (R = r = 1): one-point (Flaxman et al., Theorem 2)
    ν = 1/(C√T), δ = T^{−1/4}√(dC/(3(L + C))), α = δ, η = νδ/d; two-point η = 1/(dL√T), δ = ln T/T, α = δ;
    full information η = 1/(L√T), no exploration, α = 0."""
    t = float(horizon)
    if method == "one_point":
        delta = t**-0.25 * math.sqrt(d * bound / (3.0 * (lipschitz + bound)))
        nu = 1.0 / (bound * math.sqrt(t))
        return StepSizes(nu * delta / d, delta, delta)
    if method == "two_point":
        delta = math.log(t) / t
        return StepSizes(1.0 / (d * lipschitz * math.sqrt(t)), delta, delta)
    return StepSizes(1.0 / (lipschitz * math.sqrt(t)), 0.0, 0.0)


def project_ball(y: Array, radius: Array | float) -> Array:
    """Euclidean projection onto the ball of the given radius."""
    norm = jnp.linalg.norm(y)
    return y * jnp.minimum(1.0, radius / jnp.maximum(norm, 1e-12))


def make_descent(
    loss: Loss, method: str, d: int, max_horizon: int, checkpoints: int
) -> Callable[..., tuple[Array, Array]]:
    """``run(p, key, eta, delta, alpha, horizon) -> (R_T, curve)``: projected gradient descent on ``loss(p, ·)``
    with ``method``'s gradient for ``max_horizon`` rounds, regret counted over the first ``horizon`` rounds
    (``R_T``) and recorded at ``checkpoints`` evenly spaced rounds (``curve``; it stops growing after
    ``horizon``). Pure: vmap it over seeds and horizons."""
    every = max_horizon // checkpoints

    def run(
        p: Array, key: PRNGKey, eta: Array, delta: Array, alpha: Array, horizon: Array
    ) -> tuple[Array, Array]:
        f = lambda y: loss.f(p, y)
        fstar = loss.minimum(p)

        def step(carry: tuple[Array, Array], t: Array) -> tuple[tuple[Array, Array], None]:
            y, regret = carry
            k = jax.random.fold_in(key, t)
            if method == "one_point":
                g = one_point(f, y, k, delta)  # (d/δ)·f(y + δu)·u
                played = f(y + delta * sphere_direction(k, (d,)))  # the same u: the point actually played
            elif method == "two_point":
                g = two_point(f, y, k, delta)
                u = sphere_direction(k, (d,))
                played = 0.5 * (f(y + delta * u) + f(y - delta * u))
            else:
                g, played = jax.grad(f)(y), f(y)
            y = project_ball(euclidean_step(y, -g, eta), 1.0 - alpha)
            regret = regret + jnp.where(t < horizon, played - fstar, 0.0)
            return (y, regret), None

        def chunk(carry: tuple[Array, Array], c: Array) -> tuple[tuple[Array, Array], Array]:
            carry, _ = jax.lax.scan(step, carry, c * every + jnp.arange(every))
            return carry, carry[1]

        (_, regret), curve = jax.lax.scan(chunk, (jnp.zeros(d), jnp.zeros(())), jnp.arange(checkpoints))
        return regret, curve

    return run


class RegretRuns(NamedTuple):
    """One method on one loss: final regret ``[horizons, seeds]`` of each horizon's run, the regret curve of the
    longest horizon's runs ``[seeds, checkpoints]`` at rounds ``rounds``, and the step sizes used."""

    final: np.ndarray
    curve: np.ndarray
    rounds: np.ndarray
    sizes: list[StepSizes]


def regret_runs(loss: Loss, method: str, cfg: OnePointConfig) -> RegretRuns:
    """Every horizon and seed of ``method`` on ``loss`` in one jitted call (vmapped over horizons and seeds)."""
    horizons = sorted(cfg.horizons)
    max_t = horizons[-1]
    checkpoints = min(cfg.checkpoints, max_t)
    max_t = (max_t // checkpoints) * checkpoints  # whole chunks; the longest run counts its own T below
    sizes = [step_sizes(method, t, cfg.dim, loss.bound, loss.lipschitz) for t in horizons]
    base = jax.random.key(cfg.seed)
    seed_keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(cfg.seeds))
    params = jax.vmap(lambda k: loss.draw(jax.random.fold_in(k, 1), cfg.dim))(seed_keys)
    run_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(seed_keys)
    as_array = lambda i: jnp.asarray([s[i] for s in sizes], jnp.float32)
    final, curve = _descent_fn(loss.name, method, cfg.dim, max_t, checkpoints)(
        params, run_keys, as_array(0), as_array(1), as_array(2), jnp.asarray(horizons, jnp.int32)
    )
    every = max_t // checkpoints
    return RegretRuns(np.asarray(final), np.asarray(curve[-1]), every * (np.arange(checkpoints) + 1), sizes)


@functools.cache
def _descent_fn(
    loss_name: str, method: str, d: int, max_t: int, checkpoints: int
) -> Callable[..., tuple[Array, Array]]:
    """:func:`make_descent` vmapped over seeds (inner) and horizons (outer), compiled once per setting."""
    run = make_descent(LOSSES[loss_name], method, d, max_t, checkpoints)
    per_seed = jax.vmap(run, in_axes=(0, 0, None, None, None, None))
    return jax.jit(jax.vmap(per_seed, in_axes=(None, None, 0, 0, 0, 0)))


class Slope(NamedTuple):
    """The least-squares slope of log(mean R_T) against log T, and a 95% bootstrap interval over seeds."""

    slope: float
    lo: float
    hi: float


def fit_slope(horizons: np.ndarray, final: np.ndarray, resamples: int = 1000, seed: int = 0) -> Slope:
    """Slope of log(mean over seeds of R_T) against log T (``final[horizons, seeds]``), with the 2.5% and 97.5%
    quantiles of the slope over ``resamples`` bootstrap resamples of the seeds."""
    logt = np.log(np.asarray(horizons, float))

    def slope(mean: np.ndarray) -> np.ndarray:  # mean [..., H]
        y = np.log(np.maximum(mean, 1e-12))
        xc = logt - logt.mean()
        return ((y - y.mean(axis=-1, keepdims=True)) * xc).sum(axis=-1) / (xc**2).sum()

    rng = np.random.default_rng(seed)
    n = final.shape[1]
    idx = rng.integers(0, n, size=(resamples, n))
    boot = slope(final[:, idx].mean(axis=2).T)  # [resamples]
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return Slope(float(slope(final.mean(axis=1))), float(lo), float(hi))


def local_slopes(horizons: np.ndarray, final: np.ndarray) -> np.ndarray:
    """log(R_{T'}/R_T)/log(T'/T) between consecutive horizons, from the means over seeds (``final[horizons, seeds]``)."""
    mean = np.maximum(final.mean(axis=1), 1e-12)
    t = np.asarray(horizons, float)
    return np.diff(np.log(mean)) / np.diff(np.log(t))


# ------------------------------------------------------------------------------------------------- run


def run(cfg: OnePointConfig) -> RunDir:
    cfg.validate()
    rd = RunDir("lecture-one-point", cfg.out)
    rd.write_config(cfg)
    d = cfg.dim
    losses = list(LOSSES.values())
    deltas = np.asarray(sorted(cfg.deltas), float)
    horizons = np.asarray(sorted(cfg.horizons))
    key = jax.random.key(cfg.seed)
    # (a) at x = ½·(1, …, 1)/√d; the linear loss has θ = (1, …, 1)/√d (f(x) = ½), the convex one
    # x₀ = ½·(1, −1, 1, …)/√d
    ones = jnp.ones(d) / math.sqrt(d)
    x_eval = 0.5 * ones
    eval_params = {"linear": ones, "convex": 0.5 * ones * jnp.where(jnp.arange(d) % 2 == 0, 1.0, -1.0)}
    stats, runs = {}, {}
    with Progress(transient=True) as bar:
        task = bar.add_task(
            "one-point: estimators, then methods × losses", total=len(losses) * (1 + len(METHODS))
        )
        for loss in losses:
            stats[loss.name] = estimator_stats(
                loss, eval_params[loss.name], x_eval, deltas, cfg.draws, jax.random.fold_in(key, 7)
            )
            for name, s in stats[loss.name].items():
                for i, delta in enumerate(deltas):
                    rd.log(
                        {"part": "estimator", "loss": loss.name, "method": name, "delta": delta,
                         "bias": s.bias[i], "bias_noise_floor": s.floor[i], "std": s.std[i]},
                        table="estimator",
                    )  # fmt: skip
            bar.advance(task)
            for method in METHODS:
                r = regret_runs(loss, method, cfg)
                runs[(loss.name, method)] = r
                for i, t in enumerate(horizons):
                    ci = mean_ci(r.final[i])
                    rd.log(
                        {"loss": loss.name, "method": method, "horizon": int(t), "eta": r.sizes[i].eta,
                         "delta": r.sizes[i].delta, "alpha": r.sizes[i].alpha, "regret_mean": ci.mean,
                         "ci_lo": ci.lo, "ci_hi": ci.hi},
                        table="regret",
                    )  # fmt: skip
                bar.advance(task)
    slopes = {k: fit_slope(horizons, r.final, seed=cfg.seed) for k, r in runs.items()}
    _plot_estimators(rd, cfg, losses, deltas, stats, eval_params, x_eval)
    _plot_regret(rd, cfg, losses, horizons, runs, slopes)
    rd.write_summary(_summary(cfg, losses, deltas, horizons, stats, runs, slopes, eval_params, x_eval))
    return rd


def _plot_estimators(rd, cfg, losses, deltas, stats, eval_params, x_eval) -> None:
    d = cfg.dim
    fig, ax = figure(ncols=2, nrows=2)
    for j, loss in enumerate(losses):
        fx = float(loss.f(eval_params[loss.name], x_eval))
        s = stats[loss.name]
        a = ax[0, j]
        for name, st in s.items():
            a.loglog(deltas, st.std, "o-", label=f"{name} std √tr Cov")
        a.loglog(deltas, d * abs(fx) / deltas, "k--", label=f"d|f(x)|/δ (d = {d})")
        if loss.name == "linear":
            exact = np.sqrt(d**2 * fx**2 / deltas**2 + (d - 1))
            a.loglog(deltas, exact, "k:", label="exact √(d²f²/δ² + (d−1)‖θ‖²)")
        a.set(xlabel="δ", ylabel="standard deviation", title=f"{loss.name} loss: spread of the estimate")
        a.legend(fontsize=7)
        a = ax[1, j]
        for name, st in s.items():
            (line,) = a.loglog(deltas, st.bias, "o-", label=f"{name} ‖E g − ∇f(x)‖")
            a.loglog(
                deltas, st.floor, ":", color=line.get_color(), label=f"{name} Monte Carlo floor √(tr Cov/n)"
            )
        if loss.name == "convex":
            a.loglog(
                deltas,
                np.asarray(smoothing_bias(loss, x_eval, deltas)),
                "k--",
                label="‖∇f_δ − ∇f‖ = 3δ²‖x‖/(d+2)",
            )
        a.set(xlabel="δ", ylabel="bias for ∇f", title=f"{loss.name} loss: bias ({cfg.draws} draws per δ)")
        a.legend(fontsize=7)
    fig.tight_layout()
    rd.save_figure(fig, "estimators")


def _plot_regret(rd, cfg, losses, horizons, runs, slopes) -> None:
    fig, ax = figure(ncols=2, nrows=2)
    for j, loss in enumerate(losses):
        a = ax[0, j]
        for method in METHODS:
            r = runs[(loss.name, method)]
            band(a, r.rounds, r.curve, f"{method} (tuned for T = {horizons[-1]:,})")
        a.set(
            xlabel="round t",
            ylabel="regret R_t",
            title=f"{loss.name} loss, d = {cfg.dim} ({seeds_tag(cfg.seeds)})",
        )
        a.legend(fontsize=7)
        a = ax[1, j]
        for method in METHODS:
            r, s = runs[(loss.name, method)], slopes[(loss.name, method)]
            ci = mean_ci(r.final, axis=1)
            (line,) = a.loglog(horizons, ci.mean, "o-", label=f"{method}: slope {s.slope:.2f}")
            a.fill_between(
                horizons, np.maximum(ci.lo, 1e-12), ci.hi, color=line.get_color(), alpha=0.25, linewidth=0
            )
        for p, style in ((0.75, "k--"), (0.5, "k:")):
            anchor = runs[(loss.name, "one_point" if p == 0.75 else "full_information")].final[0].mean()
            a.loglog(horizons, anchor * (horizons / horizons[0]) ** p, style, label=f"T^{p:g} reference")
        a.set(
            xlabel="horizon T",
            ylabel="regret R_T",
            title=f"{loss.name} loss: regret against T (each T its own run)",
        )
        a.legend(fontsize=7)
    fig.tight_layout()
    rd.save_figure(fig, "regret")


def _summary(cfg, losses, deltas, horizons, stats, runs, slopes, eval_params, x_eval) -> str:
    d = cfg.dim
    lines = [
        "# Lecture: linear bandits and the one-point gradient estimator",
        "",
        f"Decision set: the unit ball of R^{d}. Losses: linear f(x) = ⟨θ, x⟩ (‖θ‖ = 1) and convex "
        "f(x) = ½‖x − x₀‖² + ¼Σx_i⁴ (‖x₀‖ = ½). Only f at the played point is observed.",
        "",
        "## (a) The estimators against δ",
        "",
        f"At x = ½·(1, …, 1)/√d, {cfg.draws} draws per δ. The one-point estimate (d/δ)f(x + δu)u is unbiased for "
        "∇f_δ; its standard deviation follows d|f(x)|/δ as δ shrinks. The two-point estimate has the same mean "
        "and a spread independent of f(x).",
        "",
        "| loss | δ | one-point std | d·|f(x)|/δ | two-point std | one-point bias | two-point bias | MC floor (one-point) | ‖∇f_δ − ∇f‖ |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for loss in losses:
        fx = float(loss.f(eval_params[loss.name], x_eval))
        s1, s2 = stats[loss.name]["one_point"], stats[loss.name]["two_point"]
        for i, delta in enumerate(deltas):
            lines.append(
                f"| {loss.name} | {delta:g} | {s1.std[i]:.3g} | {d * abs(fx) / delta:.3g} | {s2.std[i]:.3g} | "
                f"{s1.bias[i]:.3g} | {s2.bias[i]:.3g} | {s1.floor[i]:.3g} | {float(smoothing_bias(loss, x_eval, delta)):.3g} |"
            )
    lines += [
        "",
        "The measured biases sit at the Monte Carlo floor except where ‖∇f_δ − ∇f‖ exceeds it (the convex loss at "
        "large δ): the estimators are unbiased for the smoothed gradient, biased for ∇f by the smoothing.",
        "",
        "## (b) Regret of projected gradient descent",
        "",
        f"Horizons T = {', '.join(f'{t:,}' for t in horizons)}, each its own run with the step sizes the analyses "
        f"prescribe for it; {cfg.seeds} seeds (each its own θ or x₀), all in one vmapped call per method. "
        "One-point (Flaxman, Kalai & McMahan 2005): ν = 1/(C√T), δ = T^{−1/4}√(dC/(3(L + C))), projection onto "
        "(1 − δ)B, step η = νδ/d on the estimate; two-point: η = 1/(dL√T), δ = ln T/T; full information: "
        "η = 1/(L√T). Slope: least squares of log(mean R_T) on log T, with a 95% bootstrap interval over seeds.",
        "",
        "| loss | method | theory | measured slope (95% bootstrap) | local slopes between consecutive T | R_T at the largest T (95% CI) |",
        "|---|---|---|---|---|---|",
    ]
    for loss in losses:
        for method in METHODS:
            s = slopes[(loss.name, method)]
            final = runs[(loss.name, method)].final
            ci = mean_ci(final[-1])
            local = ", ".join(f"{v:.3f}" for v in local_slopes(horizons, final))
            lines.append(
                f"| {loss.name} | {method} | T^{THEORY_SLOPES[method]:g} | {s.slope:.3f} [{s.lo:.3f}, {s.hi:.3f}] | "
                f"{local} | {ci.short()} |"
            )
    lines += [
        "",
        "The one-point slopes approach 3/4 from above, slowly. With the paper's step sizes the iterate needs "
        "about 1/η = dC√T/δ ∝ T^{3/4} rounds to cross the ball; the regret is the crossing's ≈ 1/(2η) plus a "
        "per-round cost ∝ T^{−1/4} (the shrinkage δ and the estimate's noise η·d²C²/δ²) paid over the "
        "T − 1/η rounds after it, so R_T ≈ a·T^{3/4} − b·T^{1/2}: the local slope exceeds 3/4 by a term that "
        "decays like T^{−1/4}. The linear loss, whose minimiser is on the boundary that the (1 − δ)-ball keeps "
        "out of reach, shows it most. Two-point and full-information slopes sit at 1/2.",
        "",
        "Plots: `estimators.png` (spread and bias against δ), `regret.png` (regret curves of the longest runs, and "
        "R_T against T on log-log axes with T^{3/4} and T^{1/2} references). Tables: `estimator.csv`, `regret.csv`.",
        "",
    ]
    return "\n".join(lines)
