"""Evolution strategies against their peers, side by side, ratios printed.

    python bench/bench_es_peers.py evosax [--envs CartPole-v1,Pendulum-v1] [--seeds 4]
    python bench/bench_es_peers.py ars [--envs HalfCheetah-v5,Hopper-v5] [--generations 300] [--seed 0]

``evosax``: ``proxrl train es`` on gymnax against evosax's OpenAI-ES (bench/peers/peer_evosax.py, run with the
evosax venv's python: ``bash bench/setup_peers.sh evosax``), the same population of antithetic pairs, the same
network (an MLP on [s, ξ], 32×32 tanh, one noise input), σ, Adam step and centered ranks, seeds vmapped and the
generations in one compiled scan on both sides. The time to a threshold counts the compilation: compile seconds +
run seconds × (first generation whose population mean return reaches the threshold) / generations (the run is
one compiled call, so the time of a generation is the run's time over its generations). Both are printed per
seed, with the median ratio proxrl / evosax. The two differ in one point the settings cannot align: evosax scores
every member on whole episodes from the same reset keys for the whole population (common random numbers), while
proxrl's members each step their own environment for ``num_steps`` and are scored on the episodes inside it.

``ars``: ARS-style linear policies (``--linear --noise-dim 0``, V2-t: observation normalisation, top-b pairs,
returns over their standard deviation, the plain step θ + ηĝ) on host-side Gymnasium MuJoCo, against the episodes
to a threshold published by Mania et al. 2018 (Table 1, on Hopper-v1/HalfCheetah-v1 of Gym 0.9.3 with MuJoCo
1.31; here the v5 environments of Gymnasium with MuJoCo 3, whose rewards are close to but not the same as v1's).
ARS's step θ + (α/(b σ_R)) Σ (r⁺ − r⁻) δ has no 1/ν; ours divides by 2σ, so η = 2να. As in ARS every generation
resets the environments and scores each member on its first episode (``score_episodes="first"``), so a generation
costs 2N episodes, counted as the paper counts them (evaluation episodes excluded; ``steps_scored`` gives their
steps); evaluations run every ``--eval-generations`` generations (10 generations = 10·2N·1000 lockstep steps, as the
paper evaluates every 10 iterations).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

EVOSAX_TASKS = {
    # env: (threshold, population, num_steps, evosax rollouts, σ, lr, generations)
    "CartPole-v1": (475.0, 32, 1000, 1, 0.05, 0.03, 20),
    "Pendulum-v1": (-300.0, 64, 1000, 5, 0.05, 0.05, 300),  # the preset "pendulum"
}
EVOSAX_OPTIONS = {"Pendulum-v1": {"crn": "pairs", "obs_norm": False}}
"""proxrl's further options per task (the Pendulum preset's); the peer then runs on raw observations too."""

ARS_TASKS = {
    # env: threshold(s), ARS V2-t setting (N directions, α, ν, shift; b = 4 and 1000-step episodes in
    # proxrl.run.presets.ars_v2t), and the paper's Table 1:
    # episodes of ARS V2-t to the threshold on the v1 environment, mean over 3 seeds
    "HalfCheetah-v5": dict(
        thresholds=(3000.0, 3430.0),
        directions=32,
        alpha=0.02,
        nu=0.03,
        shift=0.0,
        published={3430.0: 1707},
    ),
    "Hopper-v5": dict(
        thresholds=(3120.0,),
        directions=8,
        alpha=0.01,
        nu=0.025,
        shift=1.0,
        published={3120.0: 1973},
    ),
}


def first_reached(curve: np.ndarray, threshold: float) -> int | None:
    """1-based index of the first entry ≥ threshold, None if none."""
    hit = np.flatnonzero(curve >= threshold)
    return int(hit[0]) + 1 if hit.size else None


def proxrl_gymnax(env_id: str, seeds: int, seed: int) -> dict:
    import jax

    from proxrl.config import override
    from proxrl.deep.implicit.es import ESConfig
    from proxrl.deep.loops import SEED_AXIS
    from proxrl.run.train import make_evaluate, make_train

    _, population, num_steps, _, sigma, lr, generations = EVOSAX_TASKS[env_id]
    options = EVOSAX_OPTIONS.get(env_id, {})
    cfg = override(ESConfig(), num_envs=population, num_steps=num_steps, sigma=sigma, lr=lr, **options)
    fn = jax.jit(jax.vmap(make_train(cfg, env_id, generations * cfg.rollout.size), axis_name=SEED_AXIS))
    keys = jax.random.split(jax.random.key(seed), seeds)
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = fn.lower(keys).compile()
    t1, c1 = time.perf_counter(), time.process_time()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2, c2 = time.perf_counter(), time.process_time()
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, env_id, episodes=10)))
    final = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), seeds)))
    return dict(
        compile_wall=t1 - t0,
        compile_cpu=c1 - c0,
        run_wall=t2 - t1,
        run_cpu=c2 - c1,
        curve=np.asarray(metrics["fitness_mean"]).tolist(),
        final=final.tolist(),
    )


def evosax_run(python: Path, env_id: str, seeds: int, seed: int, timeout: float) -> dict:
    _, population, _, rollouts, sigma, lr, generations = EVOSAX_TASKS[env_id]
    cmd = [str(python), str(HERE / "peers/peer_evosax.py"), "--env", env_id, "--seeds", str(seeds)]
    cmd += ["--generations", str(generations), "--population", str(population), "--rollouts", str(rollouts)]
    cmd += ["--sigma", str(sigma), "--lr", str(lr), "--seed", str(seed)]
    if EVOSAX_OPTIONS.get(env_id, {}).get("obs_norm") is False:
        cmd += ["--raw-obs"]
    for attempt in (1, 2):  # a fresh process each time; retried once on a timeout or a failure
        try:
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=timeout).stdout
            return json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
            print(f"  evosax on {env_id}: attempt {attempt} failed ({type(e).__name__})", flush=True)
    sys.exit(f"evosax on {env_id} failed twice")


def time_to(result: dict, threshold: float, generations: int) -> list[float | None]:
    per_gen = result["run_wall"] / generations
    reached = [first_reached(np.asarray(c), threshold) for c in result["curve"]]
    return [None if g is None else result["compile_wall"] + g * per_gen for g in reached]


def bench_evosax(args: argparse.Namespace) -> None:
    python = Path(args.peers_dir) / "evosax/bin/python"
    order = args.order.split(",")
    if sorted(order) != ["evosax", "proxrl"]:
        sys.exit(f"--order: give proxrl and evosax once each, in the order to run them (got {args.order!r})")
    if not python.exists():
        sys.exit(f"evosax venv missing ({python}): run `bash bench/setup_peers.sh evosax`")
    for env_id in args.envs.split(","):
        threshold, population, num_steps, rollouts, sigma, lr, generations = EVOSAX_TASKS[env_id]
        print(f"\n== {env_id}: population {population}, σ {sigma}, Adam {lr}, {generations} generations, "
              f"{args.seeds} seeds vmapped; threshold {threshold:g} on the population mean return")  # fmt: skip
        results = {}
        for lib in order:
            results[lib] = (
                proxrl_gymnax(env_id, args.seeds, args.seed)
                if lib == "proxrl"
                else evosax_run(python, env_id, args.seeds, args.seed, args.timeout)
            )
        for lib, r in results.items():
            per_member = (
                num_steps if lib == "proxrl" else rollouts * (500 if env_id == "CartPole-v1" else 200)
            )
            steps = generations * population * per_member
            reached = [first_reached(np.asarray(c), threshold) for c in r["curve"]]
            t = time_to(r, threshold, generations)
            print(f"{lib:>7}: compile {r['compile_wall']:.1f} s wall ({r['compile_cpu']:.1f} CPU), run "
                  f"{r['run_wall']:.1f} s wall ({r['run_cpu']:.1f} CPU) for {steps:,} steps per seed "
                  f"({args.seeds * steps / r['run_wall'] / 1e6:.2f}M steps/s); first generation ≥ threshold "
                  f"{reached}; time to threshold (compile included) "
                  f"{[None if x is None else round(x, 1) for x in t]} s; final ξ = 0 evaluation "
                  f"{[round(float(x), 1) for x in r['final']]}")  # fmt: skip
        a, b = (
            time_to(results["proxrl"], threshold, generations),
            time_to(results["evosax"], threshold, generations),
        )
        ratios = [x / y for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        if ratios:
            print(f"ratio proxrl / evosax, time to threshold: median {np.median(ratios):.2f} over {len(ratios)} "
                  f"seeds reached by both ({[round(x, 2) for x in ratios]})")  # fmt: skip
        run_ratio = results["proxrl"]["run_wall"] / results["evosax"]["run_wall"]
        print(f"ratio proxrl / evosax, run time of the whole budget (compile excluded): {run_ratio:.2f}")


def bench_ars(args: argparse.Namespace) -> None:
    from proxrl.config import override
    from proxrl.deep.implicit.es import ESConfig
    from proxrl.run.presets import ars_v2t
    from proxrl.run.train import RunConfig, make_runner, train

    for env_id in args.envs.split(","):
        task = ARS_TASKS[env_id]
        options = ars_v2t(
            task["directions"], task["alpha"], task["nu"], shift=task["shift"], score_episodes="first"
        )
        cfg = override(ESConfig(), **options)
        population = cfg.rollout.num_envs
        out = Path(args.out) / f"es-{env_id}-seed{args.seed}"
        per_generation = cfg.rollout.size
        total_steps = args.generations * per_generation
        run_cfg = RunConfig(num_seeds=1, total_steps=total_steps, eval_every=args.eval_generations * per_generation,
                            eval_episodes=args.eval_episodes, backend="gymnasium", progress=False, out=out,
                            seed=args.seed)  # fmt: skip
        print(f"\n== {env_id}: ARS V2-t, {task['directions']} directions, top {cfg.perturbation.top_b}, α {task['alpha']} "
              f"(η = 2να = {cfg.step.lr:g}), ν {task['nu']}, shift {task['shift']}, {population} members × "
              f"{cfg.rollout.num_steps} steps per generation, {args.generations} generations, seed {args.seed}")  # fmt: skip
        t0, c0 = time.perf_counter(), time.process_time()
        rd = train(make_runner(cfg, env_id, run_cfg), run_cfg, cfg, env_id)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        with open(rd.path / "metrics.csv") as f:
            rows = list(csv.DictReader(f))
        with open(rd.path / "eval.csv") as f:
            evals = list(csv.DictReader(f))
        steps = np.array([float(r["step"]) for r in rows])
        episodes = np.cumsum([float(r["episodes_scored"]) for r in rows])  # one rollout per member, as ARS
        ars_steps = np.cumsum([float(r["steps_scored"]) for r in rows])  # the steps of those rollouts
        eval_steps = np.array([float(r["step"]) for r in evals])
        eval_ret = np.array([float(r["eval_return_mean"]) for r in evals])
        print(
            f"{wall:.0f} s wall, {cpu:.0f} s CPU ({total_steps / wall:.0f} lockstep steps/s); run directory {rd.path}"
        )
        print(f"evaluations ({args.eval_episodes} episodes): " + ", ".join(
            f"{int(s):,}: {r:.0f}" for s, r in zip(eval_steps, eval_ret, strict=True)))  # fmt: skip
        for threshold in task["thresholds"]:
            i = first_reached(eval_ret, threshold)
            if i is None:
                print(f"threshold {threshold:g}: not reached within {args.generations} generations "
                      f"({int(episodes[-1]):,} episodes); best evaluation {eval_ret.max():.0f}")  # fmt: skip
                continue
            at = eval_steps[i - 1]
            j = min(int(np.searchsorted(steps, at)), len(steps) - 1)
            n_ep, published = int(episodes[j]), task["published"].get(threshold)
            ratio = (
                f"; ARS V2-t (Table 1, v1, mean of 3 seeds): {published:,}, ratio {n_ep / published:.2f}"
                if published
                else ""
            )
            print(f"threshold {threshold:g}: reached at the evaluation after generation {j + 1} = {n_ep:,} "
                  f"training episodes ({int(ars_steps[j]):,} steps in them){ratio}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="part", required=True)
    e = sub.add_parser("evosax")
    e.add_argument("--envs", default="CartPole-v1,Pendulum-v1")
    e.add_argument("--seeds", type=int, default=4)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--order", default="proxrl,evosax")
    e.add_argument("--timeout", type=float, default=3600.0, help="seconds before an evosax run is retried")
    e.add_argument(
        "--peers-dir", default=os.environ.get("PEERS_DIR", str(Path.home() / ".cache/proxrl-peers"))
    )
    a = sub.add_parser("ars")
    a.add_argument("--envs", default="HalfCheetah-v5,Hopper-v5")
    a.add_argument("--generations", type=int, default=300, help="budget per environment, in generations")
    a.add_argument("--eval-generations", type=int, default=10, help="generations between evaluations")
    a.add_argument("--eval-episodes", type=int, default=20)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out", default="runs/bench_es_peers")
    args = p.parse_args()
    (bench_evosax if args.part == "evosax" else bench_ars)(args)


if __name__ == "__main__":
    main()
