"""SAC on Pendulum-v1: time to a training return of −200, proxrl against Rejax, SBX and Stable-Baselines3.

    .venv/bin/python bench/bench_sac.py [--repeats 2] [--skip-peers] [--total 20000]

Same method as ``bench/bench_ppo.py`` (whose measurement helpers this script imports): every measurement is a
fresh subprocess with a timeout and one retry; the libraries are interleaved within each repeat. Threshold
rule (proxrl, SB3, SBX): the first moment the mean undiscounted return of the last 10 completed *training*
episodes is ≥ −200. proxrl's run is one jitted call (gymnax Pendulum-v1, every environment step and every
gradient step inside one ``lax.scan``), so its time to threshold is computed:
``compile_s + run_s × (steps until the threshold / budget)``. SB3 and SBX (RL-Zoo settings: lr 1e-3) are
observed from the start of ``learn()``, stopped at the threshold. Rejax runs its own aggressive configuration
(lr 1e-2, 10k steps, observation normalisation) and is judged by its own evaluation (stricter).

proxrl's configuration: the SAC defaults (automatic temperature, τ 0.005, batch 256, 1000 random warm-up steps,
one gradient step per environment step, Adam 1e-3) with 64×64 networks.
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ppo import Measurement, compile_and_run, first_hit, fmt, measure, median, stat  # noqa: E402

HERE = Path(__file__).resolve().parent
THRESHOLD = -200.0
WINDOW = 10


def proxrl_worker(seeds: int, seed: int, total: int) -> dict[str, Any]:
    """One proxrl measurement in this (fresh) process: compile, run the whole budget, find each seed's hit."""
    import jax
    import numpy as np

    from proxrl.config import override
    from proxrl.deep.off_policy.sac import SACConfig
    from proxrl.run.train import make_train

    config = override(SACConfig(), hidden=(64, 64))
    keys = jax.random.split(jax.random.key(seed), seeds)
    metrics, startup_s, compile_s, run_s = compile_and_run(
        make_train(config, "Pendulum-v1", total), keys, _T_START
    )

    returns = np.asarray(metrics["episodic_return"])
    episodes = np.asarray(metrics["episodes"])
    env_steps = np.asarray(metrics["env_steps"])
    budget = int(env_steps[0, -1])
    steps_hit: list[int | None] = []
    for i in range(seeds):
        ends = np.flatnonzero(episodes[i] > 0)  # updates that finished an episode (every 200 steps)
        h = first_hit(returns[i, ends], episodes[i, ends], THRESHOLD, WINDOW)
        steps_hit.append(None if h is None else int(env_steps[i, ends[h]]))
    reached = [s for s in steps_hit if s is not None]
    last = max(reached) if len(reached) == seeds else None
    return {
        "lib": "proxrl",
        "seeds": seeds,
        "budget_steps": budget,
        "startup_s": round(startup_s, 3),
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 3),
        "steps_per_s": round(seeds * budget / run_s, 1),
        "steps_hit": steps_hit,
        "n_hit": len(reached),
        "t_hit_s": None if last is None else round(compile_s + run_s * last / budget, 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options; run the worker or the whole interleaved benchmark."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=2, help="interleaved rounds of all measurements")
    p.add_argument("--skip-peers", action="store_true", help="proxrl only")
    p.add_argument("--total", type=int, default=20_000, help="proxrl budget in environment steps")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement before a retry")
    p.add_argument("--sb3-threads", type=int, default=1, help="torch threads for SB3")
    p.add_argument(
        "--peers-dir", default=os.environ.get("PEERS_DIR", str(Path.home() / ".cache/proxrl-peers"))
    )
    p.add_argument("--worker", choices=["proxrl"], help=argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker == "proxrl":
        print(json.dumps(proxrl_worker(args.seeds, args.seed, args.total)), flush=True)
        return

    me = [sys.executable, str(Path(__file__).resolve()), "--worker", "proxrl", "--total", str(args.total)]
    peers = Path(args.peers_dir)
    pythons = {
        "sb3": peers / "sb3/bin/python",
        "sbx": peers / "sbx/bin/python",
        "rejax": peers / "rejax/bin/python",
    }
    if not args.skip_peers:
        missing = [str(py) for py in pythons.values() if not py.exists()]
        if missing:
            sys.exit(
                f"peer venvs missing ({', '.join(missing)}): run `bash bench/setup_peers.sh` or --skip-peers"
            )

    def sb3_cmd(lib: str) -> list[str]:
        cmd = [str(pythons[lib]), str(HERE / "peers/peer_sb3.py"), "--lib", lib, "--task", "sac_pendulum"]
        return [*cmd, "--stop-at-threshold", "--threads", str(args.sb3_threads)]

    rejax_cmd = [
        str(pythons["rejax"]),
        str(HERE / "peers/peer_rejax.py"),
        "--task",
        "sac_pendulum",
        "--seeds",
        "1",
    ]
    ms = {n: Measurement(n) for n in ("proxrl 1 seed", "Rejax 1 seed", "SBX 1 seed", "SB3 1 seed")}
    for r in range(args.repeats):
        print(f"repeat {r + 1}/{args.repeats}", flush=True)
        measure(ms["proxrl 1 seed"], [*me, "--seeds", "1", "--seed", str(r)], args.timeout)
        if not args.skip_peers:
            measure(ms["Rejax 1 seed"], [*rejax_cmd, "--seed", str(r)], args.timeout)
            measure(ms["SBX 1 seed"], [*sb3_cmd("sbx"), "--seed", str(r)], args.timeout)
            measure(ms["SB3 1 seed"], [*sb3_cmd("sb3"), "--seed", str(r)], args.timeout)

    print("\nSAC Pendulum-v1, time to −200 — median [min–max], n")
    print(
        f"{'measurement':<16} | {'t_hit s':<24} | {'compile s':<24} | {'run / train s':<24} | process wall s | "
        "process CPU s | seeds hit"
    )
    for n, m in ms.items():
        if not m.runs and not m.failures:
            continue
        hit = sum(int(r.get("n_hit", 1 if r.get("t_hit_s") is not None else 0)) for r in m.runs)
        run_key = "run_s" if n.startswith(("proxrl", "Rejax")) else "train_s"
        notes = (f" retries {m.retries}" if m.retries else "") + (
            f" failed {len(m.failures)}" if m.failures else ""
        )
        print(
            f"{n:<16} | {stat(m.values('t_hit_s')):<24} | {stat(m.values('compile_s')):<24} | "
            f"{stat(m.values(run_key)):<24} | {fmt(median(m.values('process_wall_s'))):<14} | "
            f"{fmt(median(m.values('process_cpu_s'))):<13} | {hit}/{len(m.runs)}{notes}"
        )
    ours = median(ms["proxrl 1 seed"].values("t_hit_s"))
    ours_cpu = median(ms["proxrl 1 seed"].values("process_cpu_s"))
    print("\nRatios (peer / proxrl; goals on time to −200: > 1 vs Rejax, ≥ 5 vs SB3):")
    for n in ("Rejax 1 seed", "SBX 1 seed", "SB3 1 seed"):
        theirs, theirs_cpu = median(ms[n].values("t_hit_s")), median(ms[n].values("process_cpu_s"))
        time_ratio = f"{theirs / ours:6.2f}×" if ours and theirs else "   n/a (missing figure)"
        cpu_ratio = f"{theirs_cpu / ours_cpu:.2f}×" if ours_cpu and theirs_cpu else "n/a"
        print(f"  {n:<14} time to −200 {time_ratio}, whole-process CPU seconds {cpu_ratio}")


if __name__ == "__main__":
    main()
