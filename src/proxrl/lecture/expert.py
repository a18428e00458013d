"""The lecture's expert experiment: EW against softmax PG on Ber(0.6)/Ber(0.4).

Rewards ``r_k = (Ber(0.6), Ber(0.4))`` each round, full information, initial policy
``π_1 = [0.0001, 0.9999]``, 1000 rounds. For each η on a log grid and each seed::

    EW: θ_{k+1}(a) = θ_k(a) + η A_θk(a)          PG: θ_{k+1}(a) = θ_k(a) + η π_θk(a) A_θk(a)

The lecture's claims: small η — PG too slow to leave action 2; large η — PG commits too fast, and a
share of seeds locks onto action 2 for good; EW is at least as good at every η.
All (η, seed) pairs of one algorithm run in one vmapped, jitted call; seeds share reward draws
across algorithms (common random numbers), so EW − PG is compared seed by seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from rich.progress import Progress

from proxrl.config import check_numbers
from proxrl.errors import (
    ConfigError,
    check_int_at_least,
    check_memory,
    check_policy,
    check_positive,
    check_positive_all,
)
from proxrl.run.plots import band, describe_plot, figure, seeds_tag
from proxrl.run.records import RunDir
from proxrl.run.stats import CI_LABEL, mean_ci
from proxrl.tabular import expert
from proxrl.tabular import rewards as rewards_lib


@dataclass(frozen=True)
class ExpertConfig:
    """The lecture's expert experiment (EW vs softmax PG on two Bernoulli arms)."""

    p: tuple[float, ...] = (0.6, 0.4)
    """Bernoulli mean of each action's reward."""
    init: tuple[float, ...] = (0.0001, 0.9999)
    """Initial policy π_1 (every entry > 0, summing to 1)."""
    rounds: int = 1000
    """Rounds per run."""
    seeds: int = 1000
    """Seeds per (algorithm, η), run in one vmapped call."""
    eta_min: float = 1e-2
    """Smallest η of the log-spaced grid."""
    eta_max: float = 1e3
    """Largest η of the log-spaced grid."""
    num_etas: int = 31
    """Points on the η grid."""
    trace_etas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0)
    """η values whose π_k(action 1) is plotted over rounds."""
    lock_threshold: float = 1e-3
    """A seed has 'locked onto action 2' when its final π(action 1) is below this."""
    seed: int = 0
    """Base random seed; seed i uses fold_in(key(seed), i)."""
    out: Path | None = None
    """Run directory (default: runs/lecture-expert-<timestamp>)."""

    def validate(self) -> None:
        check_numbers(self)
        check_int_at_least("seed", self.seed, 0)
        rewards_lib.bernoulli(self.p, "p")
        check_policy("init", self.init, len(self.p))
        check_int_at_least("rounds", self.rounds)
        check_int_at_least("seeds", self.seeds)
        check_int_at_least("num_etas", self.num_etas, 2)
        check_positive("eta_min", self.eta_min)
        check_positive("eta_max", self.eta_max)
        if self.eta_max <= self.eta_min:
            raise ConfigError(f"eta_max must be > eta_min ({self.eta_min:g}), got {self.eta_max:g}")
        check_positive_all("trace_etas", self.trace_etas)
        check_positive("lock_threshold", self.lock_threshold)
        # rewards of 2 algorithms over the η grid, every seed and round, float32, twice over
        check_memory(
            2 * self.num_etas * self.seeds * self.rounds * 4 * 2, "reward traces", "seeds × num_etas × rounds"
        )


ALGOS = ("ew", "pg")


def run(cfg: ExpertConfig) -> RunDir:
    """Run the experiment, write config, metrics, plots and summary; return the run directory."""
    cfg.validate()
    rd = RunDir("lecture-expert", cfg.out)
    rd.write_config(cfg)
    model = rewards_lib.bernoulli(cfg.p)
    etas = np.logspace(np.log10(cfg.eta_min), np.log10(cfg.eta_max), cfg.num_etas)
    base = jax.random.key(cfg.seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(np.arange(cfg.seeds))

    totals: dict[str, np.ndarray] = {}
    final_pi1: dict[str, np.ndarray] = {}
    traces: dict[str, np.ndarray] = {}
    with Progress(transient=True) as bar:
        task = bar.add_task("expert: EW and PG over the η grid", total=2 * cfg.num_etas + 2)
        for algo in ALGOS:
            f = expert.sweep(algo, model, cfg.init, cfg.rounds)
            tot, fin = [], []
            for eta in etas:  # one compiled call per η (seeds vmapped); rows are written as they come
                res = f(np.array([eta]), keys)
                t = np.asarray(res.total_reward[0])
                p1 = np.asarray(res.final_pi[0, :, 0])
                tot.append(t)
                fin.append(p1)
                ci = mean_ci(t)
                rd.log(
                    {
                        "algo": algo,
                        "eta": eta,
                        "total_reward_mean": ci.mean,
                        "ci_lo": ci.lo,
                        "ci_hi": ci.hi,
                        "frac_end_action1": np.mean(p1 > 0.5),
                        "frac_end_action2": np.mean(p1 <= 0.5),
                        "frac_locked_action2": np.mean(p1 < cfg.lock_threshold),
                        "final_pi1_mean": p1.mean(),
                    }
                )
                bar.advance(task)
            totals[algo], final_pi1[algo] = np.stack(tot), np.stack(fin)
            g = expert.sweep(algo, model, cfg.init, cfg.rounds, record_pi=True)
            traces[algo] = np.asarray(g(np.asarray(cfg.trace_etas), keys).trace.pi[..., 0])  # [E', N, T]
            bar.advance(task)

    _plots(rd, cfg, etas, totals, final_pi1, traces)
    rd.write_summary(_summary(cfg, etas, totals, final_pi1))
    return rd


def _plots(rd: RunDir, cfg: ExpertConfig, etas, totals, final_pi1, traces) -> None:
    colors = {"ew": "tab:blue", "pg": "tab:red"}
    names = {"ew": "EW  θ += η·A", "pg": "PG  θ += η·π·A"}
    fig, ax = figure()
    for algo in ALGOS:
        band(ax[0, 0], etas, totals[algo].T, names[algo], colors[algo], marker=".")
    best = cfg.rounds * max(cfg.p)
    ax[0, 0].axhline(best, color="gray", ls=":", label=f"best arm ({best:g})")
    ax[0, 0].set(
        xscale="log",
        xlabel="η",
        ylabel=f"total reward in {cfg.rounds} rounds",
        title=f"Expert: Ber{cfg.p}, π₁={list(cfg.init)}, {seeds_tag(cfg.seeds)}",
    )
    ax[0, 0].legend()
    rd.save_figure(fig, "total_reward_vs_eta")

    fig, ax = figure(ncols=2)
    rounds = np.arange(1, cfg.rounds + 1)
    for j, algo in enumerate(ALGOS):
        for i, eta in enumerate(cfg.trace_etas):
            band(ax[0, j], rounds, traces[algo][i], f"η = {eta:g}")
        ax[0, j].set(xlabel="round k", ylabel="π_k(action 1)", title=names[algo], ylim=(-0.02, 1.02))
        ax[0, j].legend(loc="center right")
    rd.save_figure(fig, "pi_action1_over_rounds")

    fig, ax = figure()
    for algo in ALGOS:
        ax[0, 0].plot(
            etas,
            (final_pi1[algo] > 0.5).mean(axis=1),
            color=colors[algo],
            marker=".",
            label=f"{algo.upper()}: ends on action 1",
        )
        ax[0, 0].plot(
            etas,
            (final_pi1[algo] <= 0.5).mean(axis=1),
            color=colors[algo],
            ls="--",
            label=f"{algo.upper()}: ends on action 2",
        )
    ax[0, 0].set(
        xscale="log",
        xlabel="η",
        ylabel="fraction of seeds",
        ylim=(-0.02, 1.02),
        title=f"Action the policy ends on after {cfg.rounds} rounds",
    )
    ax[0, 0].legend()
    rd.save_figure(fig, "final_action_fraction")


def _summary(cfg: ExpertConfig, etas, totals, final_pi1) -> str:
    ew, pg = totals["ew"], totals["pg"]
    diff = ew - pg  # paired: same reward draws per seed
    d = mean_ci(diff, axis=1)
    lock = (final_pi1["pg"] < cfg.lock_threshold).mean(axis=1)
    ew_lock = (final_pi1["ew"] < cfg.lock_threshold).mean(axis=1)
    i_small = 0
    # η values, from the smallest on, at which most PG seeds end on action 2 (a prefix of the grid: a slow η
    # after a fast one is not counted)
    on_two = (final_pi1["pg"] > 0.5).mean(axis=1) < 0.5
    slow_prefix = int(np.argmin(on_two)) if not on_two.all() else len(etas)
    pg_best = int(np.argmax(pg.mean(axis=1)))
    worst_gap = int(np.argmin(d.mean))
    n_sig_pg = int(np.sum(d.hi < 0))
    large = np.nonzero(etas >= min(100.0, etas[-1]))[0]
    locked = final_pi1["pg"][large] < cfg.lock_threshold
    locked_max = float(final_pi1["pg"][large][locked].max()) if locked.any() else float("nan")
    # each claim's verdict comes from the numbers below it
    slow_holds = bool(on_two[i_small]) and final_pi1["pg"][i_small].mean() < final_pi1["ew"][i_small].mean()
    fast_holds = lock[large].min() > ew_lock[large].max()
    ew_holds = None if cfg.seeds < 2 else n_sig_pg == 0  # a significance test needs two seeds
    lines = [
        "# Lecture: expert setting, EW vs softmax PG",
        "",
        f"Rewards Ber{cfg.p}, π₁ = {list(cfg.init)}, {cfg.rounds} rounds, {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''} per η, "
        f"{cfg.num_etas} η values log-spaced in [{cfg.eta_min:g}, {cfg.eta_max:g}]. Total reward is "
        f"Σ_k ⟨π_k, r_k⟩; intervals are {CI_LABEL} over seeds. {describe_plot(cfg.seeds)}",
        "",
        "## What the lecture claims, measured",
        "",
        'Claims 1 and 2 are the notes\' ("small η: too slow on action 1, larger η: too fast on action 2"); claim 3 '
        "is the comparison their plot of total reward against η is drawn to make.",
        "",
        f"1. **PG at small η is too slow to leave action 2** ({_verdict(slow_holds)}). At η = {etas[i_small]:g}, "
        "PG ends with mean "
        f"π(action 1) = {final_pi1['pg'][i_small].mean():.3g} and total reward {pg[i_small].mean():.1f} "
        f"(EW: π(action 1) = {final_pi1['ew'][i_small].mean():.3g}, total {ew[i_small].mean():.1f}). "
        + (
            f"PG ends on action 2 in most seeds for every η ≤ {etas[slow_prefix - 1]:.3g}; "
            if slow_prefix
            else "PG leaves action 2 in most seeds at every η of the grid; "
        )
        + f"EW leaves action 2 from η ≈ {_first(etas, (final_pi1['ew'] > 0.5).mean(axis=1) >= 0.5):.3g}.",
        f"2. **PG at large η commits too fast** ({_verdict(fast_holds)}). For η ≥ {etas[large[0]]:.3g}, "
        f"{100 * lock[large].min():.1f}–"
        f"{100 * lock[large].max():.1f}% of PG seeds end with π(action 1) < {cfg.lock_threshold:g} (EW: "
        f"{100 * ew_lock[large].max():.1f}% at most). Among those seeds the largest final π(action 1) is "
        f"{locked_max:.2g}, so PG's change of θ(1) − θ(2) per round, at most 2η·π(1) ≤ {2 * etas[-1] * locked_max:.2g}, "
        "leaves them on action 2 for good. PG's best total over the grid is "
        f"{pg[pg_best].mean():.1f} (η = {etas[pg_best]:.3g}), against EW's {ew.mean(axis=1).max():.1f}.",
        f"3. **EW is at least as good as PG at every η** ({_verdict(ew_holds)}"
        + ("" if ew_holds is None else f": PG significantly better at {n_sig_pg} η values")
        + "). The paired difference EW − PG is ≥ 0 in mean at "
        f"{int(np.sum(d.mean >= 0))}/{len(etas)} η values; its smallest mean is "
        f"{mean_ci(diff[worst_gap]).short('.3f')} at η = {etas[worst_gap]:.3g}. "
        f"EW's best total is {ew.mean(axis=1).max():.1f} "
        f"(best arm: {cfg.rounds * max(cfg.p):g}).",
        "",
        "## Table",
        "",
        "| η | EW total (95% CI) | PG total (95% CI) | EW − PG (paired 95% CI) | PG seeds ending with π(action 1) < threshold |",
        "|---|---|---|---|---|",
    ]
    for i, eta in enumerate(etas):
        e, p = mean_ci(ew[i]), mean_ci(pg[i])
        lines.append(
            f"| {eta:.3g} | {e.short()} | {p.short()} | {mean_ci(diff[i]).short('.2f')} | {100 * lock[i]:.1f}% |"
        )
    lines += [
        "",
        "Plots: `total_reward_vs_eta.png`, `pi_action1_over_rounds.png`, `final_action_fraction.png`.",
        "",
    ]
    return "\n".join(lines)


def _verdict(holds: bool | None) -> str:
    """How a claim of the lecture fared in this run (``None``: the run cannot test it)."""
    if holds is None:
        return "one seed: not tested"
    return "holds here" if holds else "does not hold here"


def _first(etas: np.ndarray, mask: np.ndarray) -> float:
    idx = np.nonzero(mask)[0]
    return float(etas[idx[0]]) if idx.size else float("nan")
