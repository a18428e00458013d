"""The lecture's MDP experiment: API, EW, PG and NPG — exact and from sampled trajectories.

Three settings, each with ``seeds`` runs vmapped in one compiled call per algorithm:

- ``random``: ``seeds`` Garnet MDPs (one per seed), uniform initial policy;
- ``chain``: the sparse-reward chain from a *poor* initial policy, ``π_1(right|s) = poor_init`` in every
  state (θ jittered per seed), where softmax PG plateaus and EW/NPG do not;
- ``frozenlake``: FrozenLake-v1 (slippery) from its exact transition table, random initial θ per seed.

Exact algorithms (full information: ``Q^{π_k}``, ``d_ρ^{π_k}`` by linear solves): API, EW, PG, NPG
(:mod:`proxrl.tabular.exact`). Sampled ones (bandit feedback, trajectories ending w.p. 1−γ per step):
REINFORCE, NPG regularisation form, NPG by least squares (:mod:`proxrl.tabular.sampled`).
Every run records ``V*(ρ) − V^{π_k}(ρ)``; plots show the mean and a 95% band over seeds
(each seed's curve when there are fewer than :data:`proxrl.run.plots.MIN_BAND_SEEDS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.config import check_numbers
from proxrl.errors import ConfigError, check_in_range, check_int_at_least, check_memory, check_positive
from proxrl.run.plots import band, figure
from proxrl.run.records import RunDir
from proxrl.run.stats import CI_LABEL, mean_ci
from proxrl.tabular import exact as exact_algos
from proxrl.tabular import mdp as tb
from proxrl.tabular import mdps, softmax
from proxrl.tabular import sampled as sampled_algos


@dataclass(frozen=True)
class MDPConfig:
    """Convergence of API, EW, PG and NPG (exact and sampled) on random MDPs, a chain and FrozenLake."""

    seeds: int = 8
    """Runs per (setting, algorithm), vmapped in one compiled call."""
    iters: int = 300
    """Iterations of the exact (full-information) algorithms."""
    sampled_iters: int = 150
    """Iterations of the sampled algorithms."""
    num_traj: int = 64
    """Trajectories per iteration for the sampled algorithms."""
    max_len: int = 200
    """Trajectory cap (geometric ending has P(τ > cap) = γ^cap)."""
    num_states: int = 20
    """States of each random (Garnet) MDP."""
    num_actions: int = 4
    """Actions of each random MDP."""
    branching: int = 3
    """Next states per (s, a) in a random MDP."""
    gamma: float = 0.9
    """Discount of the random MDPs and the chain."""
    chain_length: int = 8
    """States of the chain (reward only at the far end)."""
    poor_init: float = 0.05
    """Initial π(right | s) on the chain, in every state."""
    lake_gamma: float = 0.99
    """Discount of FrozenLake."""
    init_scale: float = 1.0
    """Std of the random initial θ on FrozenLake (and of the jitter on the chain, times 0.1)."""
    eta_ew: float = 3.0
    """Step size of EW (and exact NPG): θ += η Q; at most proxrl.tabular.exact.MAX_ETA = 1e6."""
    eta_pg: float = 1.0
    """Step size of exact softmax PG: θ += η d π A."""
    eta_reinforce: float = sampled_algos.DEFAULTS["reinforce"]["eta"]
    """Step size of REINFORCE (default from the sweep in docs/methods/tabular.md)."""
    eta_npg_reg: float = sampled_algos.DEFAULTS["npg_reg"]["eta"]
    """Step size η of the sampled NPG regularisation form (KL weight 1/η; default from the sweep)."""
    inner_steps: int = int(sampled_algos.DEFAULTS["npg_reg"]["m"])
    """m, inner gradient steps of the sampled NPG regularisation form (default from the sweep)."""
    inner_alpha: float = sampled_algos.DEFAULTS["npg_reg"]["alpha"]
    """α, inner step size of the sampled NPG regularisation form (keep α·d̂(s)/η ≲ 1; default from the sweep)."""
    eta_npg_ls: float = sampled_algos.DEFAULTS["npg_ls"]["eta"]
    """Step size of the sampled least-squares NPG, θ += η (F̂ + λI)⁺ĝ (default from the sweep)."""
    npg_ls_damping: float = sampled_algos.DEFAULTS["npg_ls"]["damping"]
    """λ ≥ 0, damping of the sampled least-squares Fisher solve (default from the sweep)."""
    seed: int = 0
    """Base random seed."""
    out: Path | None = None
    """Run directory (default: runs/lecture-mdp-<timestamp>)."""

    def validate(self) -> None:
        check_numbers(self)
        check_int_at_least("seed", self.seed, 0)
        for name in ("seeds", "iters", "sampled_iters", "num_traj", "max_len", "num_states", "inner_steps"):
            check_int_at_least(name, getattr(self, name), 1)
        check_int_at_least("num_actions", self.num_actions, 2)
        check_int_at_least("branching", self.branching, 1)
        check_int_at_least("chain_length", self.chain_length, 2)
        if self.branching > self.num_states:
            check_int_at_least("num_states", self.num_states, self.branching)
        check_in_range("gamma", self.gamma, 0.0, 1.0, high_open=True)
        check_in_range("lake_gamma", self.lake_gamma, 0.0, 1.0, high_open=True)
        check_in_range("poor_init", self.poor_init, 0.0, 1.0, low_open=True, high_open=True)
        for name in (
            "eta_ew",
            "eta_pg",
            "eta_reinforce",
            "eta_npg_reg",
            "eta_npg_ls",
            "inner_alpha",
            "init_scale",
        ):
            check_positive(name, getattr(self, name))
        if self.eta_ew > exact_algos.MAX_ETA:
            raise ConfigError(
                f"eta_ew must be <= {exact_algos.MAX_ETA:g} (proxrl.tabular.exact.MAX_ETA, the largest step at which "
                f"exact NPG is tested equal to EW; past it every step is already greedy), got {self.eta_ew:g}"
            )
        check_in_range("npg_ls_damping", self.npg_ls_damping, 0.0, math.inf)
        # per seed: transition tensors (random MDPs, the chain), value curves and one batch of trajectories, float32
        states = max(self.num_states, self.chain_length)
        per_seed = 4 * states**2 * self.num_actions + 8 * self.iters + 4 * self.sampled_iters
        per_seed += 4 * self.num_traj * self.max_len
        check_memory(
            4 * self.seeds * per_seed,
            "MDPs, curves and trajectories",
            "seeds × (num_states² × num_actions, iters, num_traj × max_len)",
        )


EXACT = ("api", "ew", "pg", "npg")
SAMPLED = ("reinforce", "npg_reg", "npg_ls")
COLORS = {"api": "tab:gray", "ew": "tab:blue", "pg": "tab:red", "npg": "tab:green",
          "reinforce": "tab:orange", "npg_reg": "tab:purple", "npg_ls": "tab:olive"}  # fmt: skip


def _settings(cfg: MDPConfig) -> dict[str, tuple[tb.FiniteMDP, jax.Array]]:
    """Each setting: a stack of ``seeds`` MDPs and initial tables ``θ0[seeds, S, A]``."""
    key = jax.random.key(cfg.seed)
    k_mdp, k_chain, k_lake = jax.random.split(key, 3)
    n = cfg.seeds
    garnets = jax.vmap(lambda k: mdps.garnet(k, cfg.num_states, cfg.num_actions, cfg.branching, cfg.gamma))(
        jax.random.split(k_mdp, n)
    )
    chain = mdps.chain(length=cfg.chain_length, gamma=cfg.gamma)
    poor = softmax.from_probs(jnp.array([cfg.poor_init, 1.0 - cfg.poor_init]))
    jitter = 0.1 * cfg.init_scale * jax.random.normal(k_chain, (n, cfg.chain_length, 2))
    lake = mdps.frozen_lake(slippery=True, gamma=cfg.lake_gamma)
    return {
        "random": (garnets, jnp.zeros((n, cfg.num_states, cfg.num_actions))),
        "chain": (tb.stack([chain] * n), poor + jitter),
        "frozenlake": (tb.stack([lake] * n), cfg.init_scale * jax.random.normal(k_lake, (n, 16, 4))),
    }


def run(cfg: MDPConfig) -> RunDir:
    """Run every (setting, algorithm) over the seeds; write config, metrics, plots and summary.

    Runs in float64: the exact algorithms' identities (NPG = EW) and gaps near 1e-6 need it, and the
    problems are small."""
    cfg.validate()
    with jax.enable_x64(True):
        return _run(cfg)


def _run(cfg: MDPConfig) -> RunDir:
    rd = RunDir("lecture-mdp", cfg.out)
    rd.write_config(cfg)
    eta = {"api": 1.0, "ew": cfg.eta_ew, "pg": cfg.eta_pg, "npg": cfg.eta_ew,
           "reinforce": cfg.eta_reinforce, "npg_reg": cfg.eta_npg_reg, "npg_ls": cfg.eta_npg_ls}  # fmt: skip
    gaps: dict[str, dict[str, np.ndarray]] = {}
    zero_probs: dict[str, bool] = {}  # did NPG's final policy have some π(a|s) == 0.0 (underflow)?
    for name, (stack, theta0) in _settings(cfg).items():
        gaps[name] = {}
        n = theta0.shape[0]
        for algo in EXACT:
            # NPG: θ += η F⁺∇V with F⁺∇V by the lecture's π-weighted least squares, solved in log-space
            # (proxrl.tabular.steps.fisher_direction): equal to EW at every η, drawn on EW's curve
            impl = "npg_lstsq" if algo == "npg" else algo
            res = exact_algos.sweep(impl, cfg.iters)(stack, theta0, jnp.full(n, eta[algo]))
            gaps[name][algo] = np.asarray(res.trace.gap)
            if algo == "npg":
                zero_probs[name] = bool(np.any(np.asarray(softmax.pi(res.params)) == 0.0))
        keys = jax.random.split(jax.random.fold_in(jax.random.key(cfg.seed), 1), n)
        for algo in SAMPLED:
            f = sampled_algos.sweep(algo, cfg.sampled_iters, cfg.num_traj, cfg.max_len, "geometric", "learned",
                                    cfg.inner_alpha, cfg.inner_steps, cfg.npg_ls_damping)  # fmt: skip
            res = f(stack, theta0, keys, jnp.full(n, eta[algo]))
            gaps[name][algo + " (sampled)"] = np.asarray(res.trace.gap)
        for algo, g in gaps[name].items():
            ci = mean_ci(g, axis=0)
            for k in _log_grid(g.shape[1]):
                rd.log({"setting": name, "algo": algo, "iteration": k + 1, "gap_mean": ci.mean[k],
                        "gap_lo": ci.lo[k], "gap_hi": ci.hi[k]})  # fmt: skip
    _plots(rd, cfg, gaps)
    rd.write_summary(_summary(cfg, gaps, zero_probs))
    return rd


def _log_grid(n: int) -> list[int]:
    return sorted({int(x) for x in np.unique(np.geomspace(1, n, 40).astype(int)) - 1})


def _plots(rd: RunDir, cfg: MDPConfig, gaps: dict[str, dict[str, np.ndarray]]) -> None:
    fig, ax = figure(ncols=len(gaps), nrows=2)
    for j, (name, by_algo) in enumerate(gaps.items()):
        for row, sampled in enumerate((False, True)):
            a = ax[row, j]
            for algo, g in by_algo.items():
                if sampled != algo.endswith("(sampled)"):
                    continue
                x = np.arange(1, g.shape[1] + 1)
                band(a, x, np.maximum(g, 1e-9), algo, COLORS[algo.split(" ")[0]])
                if algo == "npg":  # NPG = EW: dashed, on EW's curve
                    a.lines[-1].set(linestyle="--", linewidth=2.5, zorder=3)
            a.set(yscale="log", xlabel="iteration k", ylabel="V*(ρ) − V^{π_k}(ρ)",
                  title=f"{name}: {'sampled (bandit feedback)' if sampled else 'exact (full information)'}")  # fmt: skip
            a.legend(fontsize=8)
    rd.save_figure(fig, "gap_vs_iteration")


def _summary(cfg: MDPConfig, gaps: dict[str, dict[str, np.ndarray]], zero_probs: dict[str, bool]) -> str:
    lines = [
        "# Lecture: policy learning in MDPs (full information and bandit feedback)",
        "",
        f"{cfg.seeds} seed{'s' if cfg.seeds > 1 else ''} per (setting, algorithm); exact algorithms run {cfg.iters} iterations, sampled "
        f"ones {cfg.sampled_iters} iterations of {cfg.num_traj} trajectories (ending w.p. 1−γ per step, "
        "learned baseline). Gap = V*(ρ) − V^{π_k}(ρ); "
        f"intervals are {CI_LABEL} over seeds.",
        "",
        f"| setting | algorithm | initial gap | gap at k = {min(10, cfg.iters)} | final gap (95% CI) | first k with gap < 1e-3 (mean over seeds that reach it) |",
        "|---|---|---|---|---|---|",
    ]
    for name, by_algo in gaps.items():
        for algo, g in by_algo.items():
            fin = mean_ci(g[:, -1])
            hit = np.argmax(g < 1e-3, axis=1)
            reached = np.any(g < 1e-3, axis=1)
            when = (
                f"{hit[reached].mean() + 1:.0f} ({reached.sum()}/{len(reached)} seeds)"
                if reached.any()
                else "never"
            )
            lines.append(
                f"| {name} | {algo} | {g[:, 0].mean():.3g} | {g[:, min(9, g.shape[1] - 1)].mean():.3g} | "
                f"{fin.short('.3g')} | {when} |"
            )
    ch = gaps["chain"]
    k_half = cfg.iters // 2
    npg_ew = max(np.abs(by["npg"] - by["ew"]).max() for by in gaps.values())
    underflow = (
        "seen on " + ", ".join(n for n, z in zero_probs.items() if z)
        if any(zero_probs.values())
        else "none seen"
    )
    lines += [
        "",
        "## What the lecture claims, measured",
        "",
        f"1. **Softmax PG plateaus from a poor start** (chain, π₁(right) = {cfg.poor_init:g}): at k = {k_half} "
        f"(π_k after k − 1 exact updates; k = 1 is the start) PG's gap is {ch['pg'][:, k_half - 1].mean():.3g} of an initial {ch['pg'][:, 0].mean():.3g}, "
        f"while EW's is {ch['ew'][:, k_half - 1].mean():.3g} and NPG's {ch['npg'][:, k_half - 1].mean():.3g} "
        "(same η). PG's step is scaled by d_ρ^π(s)·π(a|s), both tiny far down the chain under the poor policy.",
        f"2. **NPG with the exact Fisher is EW** (dashed green on blue in the plot): NPG by the lecture's "
        f"least-squares Fisher solve (float64, in log-space: proxrl.tabular.steps.fisher_direction) and EW at the "
        f"same η = {cfg.eta_ew:g} differ in gap by at most {npg_ew:.2g} over all {cfg.iters} iterations, every seed "
        f"and every setting, including iterates where some π(a|s) is 0.0 in float64 ({underflow}). The natural step "
        "moves θ(s,a) by A(s,a) + c(s); the plain Fisher solve loses the actions whose π(a|s) underflows (their row "
        "of diag π − ππᵀ is 0), the log-space one divides the factor π(a|s) out of each row analytically.",
        f"3. **API converges in a handful of iterations** when Q is exact: final gap "
        f"{max(np.abs(by['api'][:, -1]).max() for by in gaps.values()):.2g} on every setting.",
        "4. **Sampled updates at their defaults** (REINFORCE η = "
        f"{cfg.eta_reinforce:g}; NPG-reg η = {cfg.eta_npg_reg:g}, α = {cfg.inner_alpha:g}, m = {cfg.inner_steps}; "
        f"NPG-LS η = {cfg.eta_npg_ls:g}, λ = {cfg.npg_ls_damping:g}; chosen by the sweep in docs/methods/tabular.md). "
        "On the random MDPs, initial → final gap and the paired decrease (95% CI over seeds): "
        + "; ".join(_improvement(a.split(" ")[0], g) for a, g in gaps["random"].items() if "sampled" in a)
        + ". Final gaps elsewhere: "
        + "; ".join(
            f"{name}: "
            + ", ".join(f"{a.split(' ')[0]} {g[:, -1].mean():.3g}" for a, g in by.items() if "sampled" in a)
            for name, by in gaps.items()
            if name != "random"
        )
        + ". On the chain from the poor start no sampled method ever sees the reward (π₁ reaches the end with "
        f"probability ≈ {cfg.poor_init ** (cfg.chain_length - 1):.1g} per trajectory), so all stay at the initial gap.",
        "",
        "Plot: `gap_vs_iteration.png` (top: exact; bottom: sampled; columns: settings).",
        "",
    ]
    return "\n".join(lines)


def _improvement(algo: str, g: np.ndarray) -> str:
    """``algo initial → final [CI], decrease [CI]`` (paired over seeds) for gaps ``g[seed, k]``."""
    fin, dec = mean_ci(g[:, -1]), mean_ci(g[:, 0] - g[:, -1])
    verdict = "one seed: not tested" if dec.n < 2 else "improves" if dec.lo > 0 else "no significant decrease"
    return f"{algo} {g[:, 0].mean():.3g} → {fin.short('.3g')}, decrease {dec.short('.3g')} ({verdict})"
