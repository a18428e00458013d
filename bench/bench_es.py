"""Evolution strategies (``proxrl train es``) on gymnax CartPole-v1 / Pendulum-v1, seeds vmapped in one call, and
host-side on Gymnasium through the same driver.

    python bench/bench_es.py cartpole --seeds 5 --generations 20
    python bench/bench_es.py pendulum --seeds 8 --seed 1 --generations 300      (the search's base setting)
    python bench/bench_es.py gym-cartpole --generations 10        (Gymnasium's CartPole-v1 stepped on the host)

Prints the compile and run times, the final deterministic evaluation return of every seed, and the first
generation at which each seed's population mean fitness reached the threshold (CartPole 475, Pendulum −300).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from proxrl.config import override
from proxrl.deep.implicit.es import ESConfig
from proxrl.deep.loops import SEED_AXIS
from proxrl.run.train import RunConfig, make_evaluate, make_runner, make_train, train

ENVS = {
    "cartpole": ("CartPole-v1", 475.0, {"num_envs": 32, "num_steps": 1000}),
    # the Pendulum search's base setting; the preset "pendulum" of `proxrl train es` adds crn="pairs" and
    # obs_norm=False to it (proxrl.run.presets.PRESETS["es"]["pendulum"])
    "pendulum": ("Pendulum-v1", -300.0, {"num_envs": 64, "num_steps": 1000, "sigma": 0.05, "lr": 0.05}),
}


def parse_option(text: str) -> tuple[str, object]:
    name, value = text.split("=", 1)
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def gymnax(args: argparse.Namespace) -> None:
    env_id, threshold, defaults = ENVS[args.env]
    cfg = override(ESConfig(), **{**defaults, **dict(map(parse_option, args.option))})
    steps = args.generations * cfg.rollout.size
    fn = jax.jit(jax.vmap(make_train(cfg, env_id, steps), axis_name=SEED_AXIS))
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = fn.lower(keys).compile()
    t1, c1 = time.perf_counter(), time.process_time()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2, c2 = time.perf_counter(), time.process_time()
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, env_id, episodes=args.eval_episodes)))
    returns = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), args.seeds)))
    fitness = np.asarray(metrics["fitness_mean"])  # [seeds, generations]
    reached = [int(np.argmax(f >= threshold)) + 1 if np.any(f >= threshold) else None for f in fitness]
    print(f"ES on {env_id}: {args.seeds} seeds × {args.generations} generations of {cfg.rollout.num_envs} × "
          f"{cfg.rollout.num_steps} steps = {steps:,} steps per seed; options {dataclasses.asdict(cfg.perturbation)}, "
          f"lr {cfg.step.lr}, solver {cfg.step.solver}, hidden {cfg.network.hidden}, noise_dim {cfg.network.noise_dim}")  # fmt: skip
    print(
        f"compile {t1 - t0:.1f} s wall ({c1 - c0:.1f} s CPU), run {t2 - t1:.1f} s wall ({c2 - c1:.1f} s CPU)"
    )
    print(
        f"final evaluation ({args.eval_episodes} episodes, ξ = 0) per seed: {[round(float(r), 1) for r in returns]}"
    )
    print(f"seeds with final evaluation ≥ {threshold:g}: {int(np.sum(returns >= threshold))}/{args.seeds}")
    print(f"first generation with population mean fitness ≥ {threshold:g}, per seed: {reached}")
    tenth = max(1, fitness.shape[1] // 10)
    print(f"population mean fitness by tenth of the run (mean over seeds): {[round(float(v), 1) for v in np.nanmean(fitness, axis=0)[tenth - 1 :: tenth]]}")  # fmt: skip


def gym_cartpole(args: argparse.Namespace) -> None:
    cfg = override(ESConfig(), num_envs=32, num_steps=1000, **dict(map(parse_option, args.option)))
    steps = args.generations * cfg.rollout.size
    run_cfg = RunConfig(num_seeds=args.seeds, total_steps=steps, eval_every=5 * cfg.rollout.size,
                        eval_episodes=args.eval_episodes, backend="gymnasium", progress=False,
                        out=Path(args.out) if args.out else None, seed=args.seed)  # fmt: skip
    t0 = time.perf_counter()
    rd = train(make_runner(cfg, "CartPole-v1", run_cfg), run_cfg, cfg, "CartPole-v1")
    print(f"ES on Gymnasium CartPole-v1 (host-side), {args.seeds} seeds × {args.generations} generations: "
          f"{time.perf_counter() - t0:.1f} s; run directory {rd.path}")  # fmt: skip
    print((rd.path / "summary.md").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("env", choices=[*ENVS, "gym-cartpole"])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--option", action="append", default=[], help="an ES option NAME=VALUE (repeatable)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    (gym_cartpole if args.env == "gym-cartpole" else gymnax)(args)


if __name__ == "__main__":
    main()
