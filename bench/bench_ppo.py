"""PPO on CartPole-v1: time to a training return of 475, proxrl against Rejax and Stable-Baselines3.

    .venv/bin/python bench/bench_ppo.py [--repeats 2] [--seeds32] [--skip-peers] [--total 60000]

Peers run in their own venvs (``bash bench/setup_peers.sh`` puts them in ``$PEERS_DIR``, default
``~/.cache/proxrl-peers``) through the harnesses in ``bench/peers/``; every measurement, proxrl's too,
is a fresh subprocess with a timeout (``--timeout``), retried once if it times out or fails (jax on CPU
here occasionally hangs a computation forever); retries are counted in the output. Measurements of the
different libraries are interleaved within each repeat, so machine load hits them alike.

Threshold rule (proxrl and SB3): the first moment the mean undiscounted return of the last 10 completed
*training* episodes is ≥ 475. proxrl's metrics are per update (mean return and count of the episodes
completed in that update's rollout), so the window is the latest updates holding ≥ 10 episodes,
episode-weighted. Rejax uses its own criterion (mean of 128 evaluation episodes; stricter).

A jitted proxrl or Rejax run is a single call, so its time to threshold is *computed*, not observed:
``compile_s + run_s × (updates until the threshold / all updates)``, where ``compile_s`` is
``jax.jit(jax.vmap(train)).lower(keys).compile()`` and ``run_s`` the compiled call on the whole budget;
for N seeds the fraction is the last seed's. SB3's is observed (from the start of ``learn()``).
``startup_s`` (imports and set-up before compiling or learning) is reported separately for everyone.

Measured: proxrl 1 seed cold (no compilation cache); 1 seed warm (JAX's persistent compilation cache in a
temporary directory, filled by one untimed run in another process); SB3 with RL-Zoo settings, 1 seed
(``--sb3-threads 1``: on this shared 2-core machine torch's default of 2 threads is many times slower);
Rejax's own PPO config, 1 seed; with ``--seeds32`` also proxrl and Rejax with 32 seeds in one vmapped call.
SB3 with 32 seeds is *estimated* as 32 sequential runs: 32 × the mean of its measured 1-seed times.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()  # worker processes report their start-up (imports) from here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
THRESHOLD = 475.0
WINDOW = 10

# RL-Zoo-like PPO shapes (8 envs × 32 steps, γ 0.98, λ 0.8, no entropy bonus, lr 1e-3 annealed) with
# 5 epochs of 8 minibatches instead of 20 full-batch epochs: in a sweep of 32 seeds all reached 475 within
# 49k steps (median 28k); 60k leaves a margin.
PPO_CARTPOLE: dict[str, Any] = {
    "num_envs": 8,
    "num_steps": 32,
    "update_epochs": 5,
    "num_minibatches": 8,
    "lr": 1e-3,
    "anneal_lr": True,
    "gamma": 0.98,
    "gae_lambda": 0.8,
    "ent_coef": 0.0,
}
DEFAULT_TOTAL = 60_000


# ------------------------------------------------------------------------------------------------ worker


def first_hit(
    returns: Sequence[float], episodes: Sequence[float], threshold: float, window: int
) -> int | None:
    """Index of the first update at which the episode-weighted mean return over the latest updates holding at
    least ``window`` completed episodes is ≥ ``threshold``; None if never."""
    for u in range(len(returns)):
        total, count, v = 0.0, 0.0, u
        while v >= 0 and count < window:
            if episodes[v] > 0:
                total += float(returns[v]) * float(episodes[v])
                count += float(episodes[v])
            v -= 1
        if count >= window and total / count >= threshold:
            return u
    return None


def compile_and_run(train: Any, keys: Any, since: float) -> tuple[dict[str, Any], float, float, float]:
    """``jax.jit(jax.vmap(train, axis_name=SEED_AXIS))`` on ``keys``, timed: (metrics, startup_s from ``since``
    (the script's start time) to now, compile_s, run_s until the metrics are ready)."""
    import jax

    from proxrl.deep.loops import SEED_AXIS

    jitted = jax.jit(jax.vmap(train, axis_name=SEED_AXIS))
    startup_s = time.perf_counter() - since
    t0 = time.perf_counter()
    compiled = jitted.lower(keys).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, metrics = compiled(keys)
    jax.block_until_ready(metrics)
    return metrics, startup_s, compile_s, time.perf_counter() - t0


def proxrl_worker(seeds: int, seed: int, total: int, cache: str | None) -> dict[str, Any]:
    """One proxrl measurement in this (fresh) process: compile, run the whole budget, find each seed's hit."""
    import jax
    import numpy as np

    from proxrl.config import override
    from proxrl.deep.on_policy.ppo import PPOConfig
    from proxrl.run.train import make_train

    if cache:
        from proxrl.run.cache import enable_compilation_cache

        enable_compilation_cache(cache)
    config = override(PPOConfig(), **PPO_CARTPOLE)
    keys = jax.random.split(jax.random.key(seed), seeds)
    metrics, startup_s, compile_s, run_s = compile_and_run(
        make_train(config, "CartPole-v1", total), keys, _T_START
    )

    returns = np.asarray(metrics["episodic_return"])
    episodes = np.asarray(metrics["episodes"])
    env_steps = np.asarray(metrics["env_steps"])
    updates = total // config.rollout.size
    hits = [first_hit(returns[i], episodes[i], THRESHOLD, WINDOW) for i in range(seeds)]
    reached = [h for h in hits if h is not None]
    last = max(reached) if len(reached) == seeds else None
    return {
        "lib": "proxrl",
        "jax": jax.__version__,
        "seeds": seeds,
        "cache": bool(cache),
        "budget_steps": updates * config.rollout.size,
        "startup_s": round(startup_s, 3),
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 3),
        "steps_per_s": round(seeds * updates * config.rollout.size / run_s, 1),
        "steps_hit": [None if h is None else int(env_steps[i, h]) for i, h in enumerate(hits)],
        "n_hit": len(reached),
        "t_hit_s": None if last is None else round(compile_s + run_s * (last + 1) / updates, 3),
        "final_train_return": [round(float(np.nanmean(r[-10:])), 1) for r in returns],
    }


# ------------------------------------------------------------------------------------------ orchestrator


@dataclass
class Measurement:
    """Results of one kind of measurement over the repeats."""

    name: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    failures: list[str] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        """The non-missing values of ``key`` over the runs."""
        return [float(r[key]) for r in self.runs if r.get(key) is not None]


def run_json(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run ``cmd``; return its last stdout line parsed as JSON (or None) and an error description. The result
    gains ``process_wall_s`` and ``process_cpu_s``: the whole process's wall time and CPU seconds (user + system,
    its own children included), start-up and compilation counted, for a machine whose wall clock is shared."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return None, f"exit {proc.returncode}: " + " | ".join(tail)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(lines[-1]), "process_wall_s": round(wall, 3), "process_cpu_s": round(cpu, 3)}, ""


def measure(m: Measurement, cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> None:
    """Run one measurement (retried once on a timeout or failure) and file the result under ``m``."""
    for attempt in range(2):
        result, error = run_json(cmd, timeout, env)
        if result is not None:
            m.runs.append(result)
            keys = ("t_hit_s", "compile_s", "run_s", "train_s", "n_hit", "process_wall_s", "process_cpu_s")
            brief = {k: result.get(k) for k in keys if k in result}
            print(f"  {m.name:<26} {json.dumps(brief)}" + (" (after a retry)" if attempt else ""), flush=True)
            return
        print(f"  {m.name:<28} attempt {attempt + 1}: {error}", flush=True)
        if attempt == 0:
            m.retries += 1
    m.failures.append(error)


def save_raw(path: str | None, ms: dict[str, Measurement]) -> None:
    """Write every raw result so far to ``path`` (if given), so an interrupted benchmark keeps its data."""
    if path:
        raw = {n: {"runs": m.runs, "retries": m.retries, "failures": m.failures} for n, m in ms.items()}
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(raw, indent=1))


def stat(values: list[float]) -> str:
    """``median [min–max], n=k`` (or ``—``)."""
    if not values:
        return "—"
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.2f}, n=1"
    return f"{med:.2f} [{min(values):.2f}–{max(values):.2f}], n={len(values)}"


def fmt(value: float | None) -> str:
    """``value`` with two decimals, or ``—``."""
    return "—" if value is None else f"{value:.2f}"


def median(values: list[float]) -> float | None:
    """Median, or None for no values."""
    return statistics.median(values) if values else None


def ratio_line(label: str, ours: float | None, theirs: float | None, goal: float) -> tuple[str, bool | None]:
    """'label: theirs / ours = r× (goal ≥ g×) met|NOT met' and whether it is met."""
    if ours is None or theirs is None or ours <= 0:
        return f"{label}: n/a (missing figure)", None
    r = theirs / ours
    ok = r >= goal
    return (
        f"{label}: {theirs:.2f} s / {ours:.2f} s = {r:.2f}× (goal ≥ {goal:g}×) {'met' if ok else 'NOT met'}",
        ok,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options; run the worker or the whole interleaved benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all measurements")
    p.add_argument("--seeds32", action="store_true", help="also 32 seeds in one vmapped call (proxrl, Rejax)")
    p.add_argument("--skip-peers", action="store_true", help="proxrl only")
    p.add_argument("--total", type=int, default=DEFAULT_TOTAL, help="proxrl budget in environment steps")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement before a retry")
    p.add_argument("--sb3-threads", type=int, default=1, help="torch threads for SB3")
    p.add_argument(
        "--peers-dir", default=os.environ.get("PEERS_DIR", str(Path.home() / ".cache/proxrl-peers"))
    )
    p.add_argument("--json-out", default=None, help="write every raw result here")
    p.add_argument("--worker", choices=["proxrl"], help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "proxrl":
        print(json.dumps(proxrl_worker(args.seeds, args.seed, args.total, args.cache)), flush=True)
        return

    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "proxrl", "--total", str(args.total)]
    peers = Path(args.peers_dir)
    sb3_py, rejax_py = peers / "sb3/bin/python", peers / "rejax/bin/python"
    if not args.skip_peers:
        missing = [str(py) for py in (sb3_py, rejax_py) if not py.exists()]
        if missing:
            sys.exit(
                f"peer venvs missing ({', '.join(missing)}): run `bash bench/setup_peers.sh` or --skip-peers"
            )
    sb3_cmd = [str(sb3_py), str(HERE / "peers/peer_sb3.py"), "--lib", "sb3", "--task", "ppo_cartpole"]
    sb3_cmd += ["--stop-at-threshold", "--threads", str(args.sb3_threads)]
    rejax_cmd = [str(rejax_py), str(HERE / "peers/peer_rejax.py"), "--task", "ppo_cartpole"]

    names = ["proxrl 1 seed cold", "proxrl 1 seed warm cache", "SB3 1 seed", "Rejax 1 seed"]
    names += ["proxrl 32 seeds", "Rejax 32 seeds"]
    ms = {n: Measurement(n) for n in names}
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="proxrl-jax-cache-") as cache:
        print("filling the compilation cache (untimed) ...", flush=True)
        filler = Measurement("cache fill")
        measure(filler, [*me, "--seeds", "1", "--seed", "99", "--cache", cache], args.timeout)
        for r in range(args.repeats):
            print(f"repeat {r + 1}/{args.repeats}", flush=True)
            measure(ms["proxrl 1 seed cold"], [*me, "--seeds", "1", "--seed", str(r)], args.timeout)
            if not args.skip_peers:
                measure(ms["SB3 1 seed"], [*sb3_cmd, "--seed", str(r)], args.timeout)
            measure(
                ms["proxrl 1 seed warm cache"],
                [*me, "--seeds", "1", "--seed", str(r), "--cache", cache],
                args.timeout,
            )
            if not args.skip_peers:
                measure(ms["Rejax 1 seed"], [*rejax_cmd, "--seeds", "1", "--seed", str(r)], args.timeout)
            if args.seeds32:
                measure(ms["proxrl 32 seeds"], [*me, "--seeds", "32", "--seed", str(r)], args.timeout)
                if not args.skip_peers:
                    cmd = [*rejax_cmd, "--seeds", "32", "--seed", str(r), "--eval-freq", "2000"]
                    measure(ms["Rejax 32 seeds"], cmd, 2 * args.timeout)
            save_raw(args.json_out, ms)
    elapsed = time.perf_counter() - t_begin

    # ---- table
    print(f"\nPPO CartPole-v1, time to 475 — median [min–max], n (benchmark took {elapsed / 60:.1f} min)")
    header = (
        f"{'measurement':<26} | {'t_hit s':<24} | {'compile s':<24} | {'run s (budget)':<24} | startup s | "
        "process wall s | process CPU s | seeds hit"
    )
    print(header)
    print("-" * len(header))
    for n, m in ms.items():
        if not m.runs and not m.failures:
            continue
        hit = sum(int(r.get("n_hit", 1 if r.get("t_hit_s") is not None else 0)) for r in m.runs)
        seeds = sum(int(r.get("seeds", 1)) for r in m.runs)
        run_key = "train_s" if n.startswith("SB3") else "run_s"
        notes = f" retries {m.retries}" if m.retries else ""
        notes += f" failed {len(m.failures)}" if m.failures else ""
        print(
            f"{n:<26} | {stat(m.values('t_hit_s')):<24} | {stat(m.values('compile_s')):<24} | "
            f"{stat(m.values(run_key)):<24} | {fmt(median(m.values('startup_s'))):<9} | "
            f"{fmt(median(m.values('process_wall_s'))):<14} | {fmt(median(m.values('process_cpu_s'))):<13} | "
            f"{hit}/{seeds}{notes}"
        )
    for m in ms.values():
        steps = sorted(s for r in m.runs for s in r.get("steps_hit", [r.get("step_hit")]) if s is not None)
        if steps:
            print(
                f"  {m.name}: env steps to threshold, median {statistics.median(steps):.0f}, max {steps[-1]} (per seed)"
            )

    # ---- goals
    sb3 = ms["SB3 1 seed"].values("t_hit_s")
    sb3_32 = 32 * statistics.fmean(sb3) if sb3 else None
    cold, warm = (
        median(ms["proxrl 1 seed cold"].values("t_hit_s")),
        median(ms["proxrl 1 seed warm cache"].values("t_hit_s")),
    )
    ours32 = median(ms["proxrl 32 seeds"].values("t_hit_s"))
    print(
        "\nGoals (issue 4); SB3 32 seeds = 32 × mean of its measured 1-seed times (an estimate, not a run):"
    )
    lines = [
        ratio_line("32 seeds: SB3 32 sequential / proxrl one vmapped call", ours32, sb3_32, 10.0),
        ratio_line("32 seeds: Rejax / proxrl", ours32, median(ms["Rejax 32 seeds"].values("t_hit_s")), 1.0),
        ratio_line("1 seed: Rejax / proxrl (cold)", cold, median(ms["Rejax 1 seed"].values("t_hit_s")), 1.0),
        ratio_line("1 seed cold: SB3 / proxrl", cold, median(sb3), 1.0),
        ratio_line("1 seed warm cache: SB3 / proxrl", warm, median(sb3), 5.0),
    ]
    for text, _ in lines:
        print("  " + text)
    comp = median(ms["proxrl 1 seed cold"].values("compile_s"))
    if comp is not None:
        print(f"  compile time (1 seed, cold): {comp:.2f} s (goal < 3 s) {'met' if comp < 3 else 'NOT met'}")
    warm_comp = median(ms["proxrl 1 seed warm cache"].values("compile_s"))
    if warm_comp is not None:
        print(f"  compile time from the warm cache: {warm_comp:.2f} s")
    sb3_startup, ours_startup = (
        median(ms["SB3 1 seed"].values("startup_s")),
        median(ms["proxrl 1 seed cold"].values("startup_s")),
    )
    if sb3 and cold is not None and sb3_startup is not None and ours_startup is not None:
        a, b = ours_startup + cold, sb3_startup + median(sb3)  # type: ignore[operator]
        print(
            f"  from process start (startup + t_hit), 1 seed cold: proxrl {a:.2f} s, SB3 {b:.2f} s ({b / a:.2f}×)"
        )

    save_raw(args.json_out, ms)


if __name__ == "__main__":
    main()
