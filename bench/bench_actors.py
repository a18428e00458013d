"""Env-runner actors on Ray: throughput against the in-process host runner, and APPO's learning check.

    .venv/bin/python bench/bench_actors.py throughput [--envs CartPole-v1 HalfCheetah-v5] [--updates 30] [--repeats 2]
    .venv/bin/python bench/bench_actors.py learn [--lag-mode fixed|async] [--seeds 3] [--steps 150000]

``throughput``: environment steps per second of one learner with the same APPO configuration (64×64 tanh, 4
environments × 128 steps per rollout, 4 epochs of 4 minibatches, one seed) collected

- ``host``: in the learner's process (:class:`proxrl.run.host.HostRunner`; the learner sees its own data, μ = π_θk);
- ``async-1``, ``async-2``: by 1 or 2 env-runner actors in the async schedule (:class:`proxrl.run.actors.ActorRunner`);
- ``sync-2``: PPO with 2 actors sharing its 4 environments (the synchronous parallel actor-critic), for reference
  against ``host`` with PPO (``host-ppo``).

Two untimed updates compile everything; then ``--updates`` updates are timed. CPU seconds are the learner's
process time plus the actors' (their processes' time, read before and after). Ray starts once, in-process,
with 2 CPUs. The configurations run interleaved, ``--repeats`` times; the table gives the median.

``learn``: ``proxrl train appo`` on Gymnasium's CartPole-v1 with 2 actors, Adam 5e-4 annealed (``--lr``), no
entropy bonus, otherwise APPO's defaults (4 environments × 128 steps per actor, 4 epochs × 4 minibatches, λ 0.95,
ρ̄ = c̄ = 1), ``--seeds`` seeds vmapped, 150k steps; prints each seed's evaluation (10 deterministic episodes)
every 25k steps and exits 0 if the median final return reaches 475.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import ray

from proxrl.config import override
from proxrl.deep.appo import APPOConfig
from proxrl.deep.loops import Normalization
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.deep.registry import entry_for
from proxrl.run.actors import ActorRunner
from proxrl.run.host import HostRunner, gym_spaces
from proxrl.run.train import RunConfig, make_runner, train

SHAPE = {"num_envs": 4, "num_steps": 128, "update_epochs": 4, "num_minibatches": 4}


def build(kind: str, env_id: str, updates: int):
    budget = (updates + 2) * 512
    if kind in ("host", "host-ppo"):
        config = override(APPOConfig() if kind == "host" else PPOConfig(), **SHAPE)
        learner = entry_for(config)[1].make_learner(config, *gym_spaces(env_id), budget)
        return HostRunner(learner, env_id, 1, Normalization(), 1, 0)
    if kind == "sync-2":
        config = override(PPOConfig(), **SHAPE)
        actors = 2
    else:
        config = override(APPOConfig(), **SHAPE, lag_mode="async")
        actors = int(kind.split("-")[1])
    run_cfg = RunConfig(
        num_seeds=1, total_steps=budget, eval_every=budget, backend="gymnasium", num_actors=actors
    )
    return make_runner(config, env_id, run_cfg)


def measure(kind: str, env_id: str, updates: int) -> dict:
    runner = build(kind, env_id, updates)
    state = runner.init(jax.random.split(jax.random.key(0), 1))
    state, _ = runner.chunk(state, 2)  # compile
    jax.block_until_ready(state)
    actors = isinstance(runner, ActorRunner)
    c0, a0, t0 = time.process_time(), runner.actor_cpu_seconds() if actors else 0.0, time.perf_counter()
    state, metrics = runner.chunk(state, updates)
    jax.block_until_ready(state)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0 + ((runner.actor_cpu_seconds() - a0) if actors else 0.0)
    lag = float(np.mean(metrics["policy_lag"])) if "policy_lag" in metrics else 0.0
    runner.close()
    steps = updates * runner.steps_per_update
    return {
        "kind": kind,
        "env": env_id,
        "steps_per_s": steps / wall,
        "cpu_s_per_1k": 1000 * cpu / steps,
        "lag": lag,
    }


def throughput(args: argparse.Namespace) -> None:
    ray.init(
        address="local",
        num_cpus=args.cpus,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    kinds = ["host", "async-1", "async-2", "host-ppo", "sync-2"]
    rows: dict[tuple[str, str], list[dict]] = {}
    for _ in range(args.repeats):
        for env_id in args.envs:
            for kind in kinds:
                r = measure(kind, env_id, args.updates)
                print(
                    f"  {env_id:<15} {kind:<9} {r['steps_per_s']:8.0f} steps/s  {r['cpu_s_per_1k']:.2f} CPU s/1k steps  lag {r['lag']:.2f}",
                    flush=True,
                )
                rows.setdefault((env_id, kind), []).append(r)
    print(
        f"\n| environment | collection | steps/s (median of {args.repeats}) | CPU s per 1k steps | mean policy lag |"
    )
    print("|---|---|---|---|---|")
    for (env_id, kind), rs in rows.items():
        med = lambda k: statistics.median(r[k] for r in rs)  # noqa: B023
        print(
            f"| {env_id} | {kind} | {med('steps_per_s'):.0f} | {med('cpu_s_per_1k'):.2f} | {med('lag'):.2f} |"
        )
    ray.shutdown()


def parse_set(item: str) -> tuple[str, object]:
    from proxrl.run.sweep import parse_value

    name, _, text = item.partition("=")
    return name, parse_value(text)


def learn(args: argparse.Namespace) -> None:
    options = {"lr": args.lr, "ent_coef": args.ent_coef, "lag_mode": args.lag_mode, "lag": args.lag}
    config = override(APPOConfig(), **options, **dict(parse_set(s) for s in args.set))
    print(f"appo on CartPole-v1, {args.seeds} seeds × {args.steps} steps, 2 actors: {options} {args.set}")
    out = Path(tempfile.mkdtemp(prefix="appo-cartpole-"))
    run_cfg = RunConfig(
        num_seeds=args.seeds,
        total_steps=args.steps,
        eval_every=args.steps // 6,
        eval_episodes=10,
        backend="gymnasium",
        num_actors=2,
        out=out,
        progress=False,
    )
    t0 = time.perf_counter()
    rd = train(make_runner(config, "CartPole-v1", run_cfg), run_cfg, config, "CartPole-v1")
    rows = np.genfromtxt(rd.path / "eval.csv", delimiter=",", names=True)
    seeds = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
    final = np.array([rows[n][-1] for n in seeds])
    metrics = np.genfromtxt(rd.path / "metrics.csv", delimiter=",", names=True)
    print(f"run directory {rd.path}; {time.perf_counter() - t0:.0f} s")
    for step, row in zip(rows["step"], rows, strict=True):
        print(f"  step {int(step):>7}: " + ", ".join(f"{row[n]:.1f}" for n in seeds))
    print(
        f"final per seed {final.tolist()}, median {np.median(final):.1f} (want >= 475); "
        f"policy lag mean {np.mean(metrics['policy_lag']):.2f}, max {np.max(metrics['policy_lag']):.0f}"
    )
    sys.exit(0 if np.median(final) >= 475 else 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--envs", nargs="+", default=["CartPole-v1", "HalfCheetah-v5"])
    t.add_argument("--updates", type=int, default=30)
    t.add_argument("--repeats", type=int, default=2)
    t.add_argument(
        "--cpus", type=int, default=os.cpu_count() or 2, help="CPUs Ray may use (default: this machine's)"
    )
    lp = sub.add_parser("learn")
    lp.add_argument("--lag-mode", default="fixed", choices=("async", "fixed"))
    lp.add_argument("--seeds", type=int, default=3)
    lp.add_argument("--steps", type=int, default=150_000)
    lp.add_argument("--lr", type=float, default=5e-4)
    lp.add_argument("--ent-coef", type=float, default=0.0)
    lp.add_argument("--lag", type=int, default=1)
    lp.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="other APPO options")
    args = p.parse_args()
    throughput(args) if args.cmd == "throughput" else learn(args)


if __name__ == "__main__":
    main()
