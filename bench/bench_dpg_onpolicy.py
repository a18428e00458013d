"""DPG in the lecture's on-policy form (rollouts from μ_θ plus noise, SARSA critic, no replay) on Pendulum-v1,
seeds vmapped in one compiled call.

    python bench/bench_dpg_onpolicy.py --seeds 4 --steps 100000
    python bench/bench_dpg_onpolicy.py --seeds 4 --steps 100000 --set actor_steps=10 q_epochs=10 gamma=0.95

``--set name=value`` overrides any option of ``DPGOnPolicyConfig`` (values parsed as Python literals). Prints one
JSON line: the options, the per-seed mean return of ``--eval-episodes`` deterministic episodes (μ_θ) after
training, the mean return of the training episodes finished in each tenth of the run (seed mean), and seconds.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np

import proxrl  # noqa: F401  (sets proxrl's XLA flags before JAX starts its CPU backend)
from proxrl.config import override
from proxrl.deep.on_policy.dpg import DPGOnPolicyConfig
from proxrl.run.train import make_evaluate, make_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    options = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = override(DPGOnPolicyConfig(), **options)
    start = time.perf_counter()
    train = jax.jit(jax.vmap(make_train(config, args.env, args.steps)))
    state, metrics = jax.block_until_ready(train(jax.random.split(jax.random.key(0), args.seeds)))
    evaluate = jax.jit(jax.vmap(make_evaluate(config, args.env, episodes=args.eval_episodes)))
    returns = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), args.seeds)))
    episodic = np.asarray(metrics["episodic_return"])
    curve = [round(float(np.nanmean(chunk)), 1) for chunk in np.array_split(episodic, 10, axis=1)]
    row = {
        "env": args.env,
        "steps": args.steps,
        "options": options,
        "eval_returns": np.round(returns, 1).tolist(),
        "median": round(float(np.median(returns)), 1),
        "train_return_by_tenth": curve,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
