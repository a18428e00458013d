"""The lecture's bandit-feedback algorithms, compared by pseudo-regret.

EXP3 (importance-weighted EW; loss-based and reward-based estimators), PG from samples, NPG in
gradient form (exact Fisher) and NPG in regularisation form (n draws, m inner steps), on a
stochastic K-armed Bernoulli instance and on an adversarial (switching) reward sequence, with
EXP3's bound ``ln K/η + ηKt/2`` drawn in (``= √(2TK ln K)`` at ``t = T`` under the standard tuning).
Each algorithm's seeds run in one vmapped, jitted call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from rich.progress import Progress

from proxrl.config import check_numbers
from proxrl.errors import check_in_range, check_int_at_least, check_memory, check_positive
from proxrl.run.plots import band, describe_plot, figure, seeds_tag
from proxrl.run.records import RunDir
from proxrl.run.stats import CI_LABEL, MeanCI, mean_ci
from proxrl.tabular import bandit as B
from proxrl.tabular import rewards as rewards_lib


@dataclass(frozen=True)
class BanditConfig:
    """Pseudo-regret of EXP3, PG and NPG from bandit feedback."""

    arms: tuple[float, ...] = (0.5, 0.45, 0.4, 0.35, 0.3)
    """Bernoulli means of the stochastic instance (K = number of arms)."""
    rounds: int = 10_000
    """Pulls per run (T)."""
    seeds: int = 200
    """Seeds per algorithm and instance, run in one vmapped call."""
    switch_frac: float = 1 / 3
    """Adversarial instance: arm 0 pays 1 until this fraction of T, then arm 1 pays 1 (others ½)."""
    exp3_eta: float | None = None
    """EXP3 step size (default: the standard tuning √(2 ln K / (K T)))."""
    pg_eta: float = 0.5
    """PG step size."""
    pg_n: int = 1
    """PG draws per iteration."""
    npg_eta: float = 0.05
    """NPG (gradient form) step size."""
    npg_n: int = 10
    """NPG (gradient form) draws per iteration."""
    reg_eta: float = 0.05
    """NPG (regularisation form) η of the KL term 1/η."""
    reg_n: int = 10
    """NPG (regularisation form) draws per iteration."""
    reg_m: int = 50
    """NPG (regularisation form) inner gradient steps."""
    reg_alpha: float = 0.1
    """NPG (regularisation form) inner step size α (stable below ≈ 4η: the KL term's curvature is ≤ 1/(2η))."""
    pg_baseline: float = 0.5
    """Baseline b for PG (the IPW estimate uses r − b)."""
    npg_baseline: float = 1.0
    """Baseline b for both NPG forms; b = 1 (the top of the reward range) is the loss-based form, R̂ ≤ 0."""
    seed: int = 0
    """Base random seed."""
    out: Path | None = None
    """Run directory (default: runs/lecture-bandit-<timestamp>)."""

    def validate(self) -> None:
        check_numbers(self)
        rewards_lib.bernoulli(self.arms, "arms")
        check_int_at_least("rounds", self.rounds)
        check_int_at_least("seeds", self.seeds)
        if self.exp3_eta is not None:
            check_positive("exp3_eta", self.exp3_eta)
        check_in_range("switch_frac", self.switch_frac, 0.0, 1.0, low_open=True, high_open=True)
        for name in ("pg_eta", "npg_eta", "reg_eta", "reg_alpha"):
            check_positive(name, getattr(self, name))
        for name in ("pg_n", "npg_n", "reg_n", "reg_m"):
            check_int_at_least(name, getattr(self, name), 1)
        check_int_at_least("seed", self.seed, 0)
        # regret curves of 5 algorithms on 2 instances, float32, plus the policies' working set
        check_memory(5 * 2 * self.seeds * self.rounds * 4 * 3, "regret curves", "seeds × rounds")

    def algorithms(self) -> list[B.BanditAlgo]:
        k = len(self.arms)
        eta = self.exp3_eta or B.optimal_exp3_eta(k, self.rounds)
        return [
            B.exp3(eta, "loss"),
            B.exp3(eta, "reward"),
            B.pg(self.pg_eta, self.pg_n, self.pg_baseline),
            B.npg(self.npg_eta, self.npg_n, self.npg_baseline),
            B.npg_reg(self.reg_eta, self.reg_n, self.reg_m, self.reg_alpha, self.npg_baseline),
        ]


def run(cfg: BanditConfig) -> RunDir:
    cfg.validate()
    algos = cfg.algorithms()
    for a in algos:
        a.validate(len(cfg.arms))
    rd = RunDir("lecture-bandit", cfg.out)
    rd.write_config(cfg)
    k = len(cfg.arms)
    instances = {
        "stochastic": rewards_lib.bernoulli(cfg.arms),
        "adversarial": rewards_lib.switching_sequence(cfg.rounds, k, cfg.switch_frac),
    }
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(cfg.seed), i))(np.arange(cfg.seeds))
    regrets: dict[tuple[str, str], np.ndarray] = {}
    with Progress(transient=True) as bar:
        task = bar.add_task("bandit: algorithms × instances", total=len(algos) * len(instances))
        for inst_name, model in instances.items():
            for algo in algos:
                res = B.make_runner(algo, model, None, cfg.rounds)(keys)
                reg = np.asarray(res.regret)  # [N, T]
                regrets[(inst_name, algo.name)] = reg
                ci = mean_ci(reg[:, -1])
                rd.log(
                    {
                        "instance": inst_name,
                        "algo": algo.name,
                        "eta": algo.eta,
                        "n": algo.n,
                        "final_regret_mean": ci.mean,
                        "ci_lo": ci.lo,
                        "ci_hi": ci.hi,
                    }
                )
                bar.advance(task)

    eta3 = algos[0].eta
    t = np.arange(1, cfg.rounds + 1)
    bound = B.exp3_regret_bound(k, eta3, t)
    fig, ax = figure(ncols=2)
    stride = max(1, cfg.rounds // 500)
    for j, inst_name in enumerate(instances):
        a = ax[0, j]
        for algo in algos:
            band(
                a,
                t[::stride],
                regrets[(inst_name, algo.name)][:, ::stride],
                f"{algo.name} (η={algo.eta:.3g}, n={algo.n})",
            )
        a.plot(t, bound, "k--", label="EXP3 bound ln K/η + ηKt/2")
        a.set(
            xlabel="round t",
            ylabel="pseudo-regret",
            title=f"{inst_name} ({k} arms, {seeds_tag(cfg.seeds)})",
        )
        a.legend(fontsize=7)
    rd.save_figure(fig, "regret")
    rd.write_summary(_summary(cfg, algos, regrets, list(instances), bound[-1]))
    return rd


def _summary(cfg: BanditConfig, algos, regrets, instances, bound_T: float) -> str:
    """summary.md: the table, and each claim of the lecture with a verdict computed from the numbers."""
    k = len(cfg.arms)
    eta3 = algos[0].eta
    standard = np.isclose(eta3, B.optimal_exp3_eta(k, cfg.rounds), rtol=1e-12, atol=0.0)
    bound_text = f"ln K/η + ηKT/2 = {bound_T:.1f}" + (
        " (= √(2TK ln K), the standard tuning of η)" if standard else ""
    )
    final = {key: mean_ci(r[:, -1]) for key, r in regrets.items()}
    lines = [
        "# Lecture: bandit feedback — EXP3, PG and NPG",
        "",
        f"K = {k} arms, T = {cfg.rounds} pulls, {cfg.seeds} seed{'s' if cfg.seeds > 1 else ''}. Stochastic instance: Bernoulli means "
        f"{list(cfg.arms)}. Adversarial instance: arm 0 pays 1 for the first {cfg.switch_frac:.3g}·T rounds, "
        "arm 1 pays 1 after, other arms ½. Pseudo-regret after t rounds: "
        "max_a Σ_{s≤t} E r_s(a) − Σ_{s≤t} ⟨π_s, E r_s⟩ (negative when the learner beats every fixed arm). "
        f"Intervals are {CI_LABEL} over seeds.",
        f"EXP3's bound at T (loss-based estimator, η = {eta3:.4g}): {bound_text}.",
        "",
        "| instance | algorithm | η | n | final pseudo-regret (95% CI) | under EXP3's bound |",
        "|---|---|---|---|---|---|",
    ]
    for inst in instances:
        for a in algos:
            ci = final[(inst, a.name)]
            lines.append(
                f"| {inst} | {a.name} | {a.eta:.3g} | {a.n} | {ci.short()} | {_under(ci, bound_T)} |"
            )
    exp3, exp3_reward, npg, reg = algos[0].name, algos[1].name, algos[3].name, algos[4].name
    loss = {inst: final[(inst, exp3)] for inst in instances}
    under = [_under(loss[inst], bound_T) for inst in instances]
    holds = all(u == "yes" for u in under)
    untested = cfg.seeds < 2
    verdict = "one seed: not tested" if untested else ("holds here" if holds else "does not hold here")
    rew = final[("adversarial", exp3_reward)]
    # the regularisation form approximates NPG's step only where both take it with one η from n draws alike
    same_step = cfg.reg_eta == cfg.npg_eta and cfg.reg_n == cfg.npg_n
    lag = (
        _paired(regrets[("adversarial", reg)][:, -1] - regrets[("adversarial", npg)][:, -1])
        if same_step
        else f"not compared: NPG runs η = {cfg.npg_eta:g}, n = {cfg.npg_n} and the regularisation form "
        f"η = {cfg.reg_eta:g}, n = {cfg.reg_n}, so they do not take the same step"
    )
    lines += [
        "",
        f"1. **EXP3 (loss-based estimator) stays under its bound** ({verdict}): the upper end of its interval "
        "against the bound, per instance: "
        + "; ".join(f"{inst} {loss[inst].short()} → {u}" for inst, u in zip(instances, under, strict=True))
        + ".",
        "2. **The reward-based estimator is outside the bound's analysis**: its estimate r/π ≥ 0 on the drawn arm "
        "is unbounded above, so the bound does not apply to it. On the adversarial sequence its regret is "
        f"{rew.short()} against {loss['adversarial'].short()} for the loss-based estimator (same η).",
        f"3. **NPG in regularisation form approximates the exact step θ_k + η R̂_k** (EW on the IPW estimate with "
        f"baseline b = {cfg.npg_baseline:g}) with m = {cfg.reg_m} inner Euclidean steps of α = {cfg.reg_alpha:g}, "
        "which move low-probability arms slowly (the conditioning problem of softmax PG). Final regret, "
        f"regularisation form against exact step: stochastic {final[('stochastic', reg)].short()} against "
        f"{final[('stochastic', npg)].short()}; adversarial {final[('adversarial', reg)].short()} against "
        f"{final[('adversarial', npg)].short()}. On the adversarial sequence the difference (same seeds) is "
        f"{lag}.",
        "",
        f"Plot: `regret.png`. {describe_plot(cfg.seeds)}",
        "",
    ]
    return "\n".join(lines)


def _under(ci: MeanCI, bound: float) -> str:
    """Whether a final regret is under the bound: its interval's upper end when there is one, else its value."""
    if ci.n < 2:
        return "yes (one seed)" if ci.mean < bound else "no (one seed)"
    return "yes" if ci.hi < bound else "no"


def _paired(diff: np.ndarray) -> str:
    """A paired difference over seeds in words: its mean and interval, and which side of 0 it lies on."""
    ci = mean_ci(diff)
    if ci.n < 2:
        return f"{ci.short()}: one seed, not tested"
    if ci.lo > 0:
        side = "the regularisation form lags the exact step"
    elif ci.hi < 0:
        side = "the regularisation form is ahead of the exact step"
    else:
        side = "no significant difference"
    return f"{ci.short()} ({side})"
