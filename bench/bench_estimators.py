"""A2C (or PPO, NPG) on CartPole-v1 with each advantage estimator of the lecture's slide, seeds vmapped.

    python bench/bench_estimators.py --seeds 4 --steps 200000
    python bench/bench_estimators.py --algo ppo --estimators gae q --steps 100000 --set lr=1e-3 ent_coef=0.0

Prints one JSON line per estimator: the per-seed mean return of ``--eval-episodes`` deterministic episodes after
training, the median, how many seeds reach 475, and seconds. ``--set name=value`` overrides other options (values
parsed as Python literals).
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
from proxrl.deep.config import ESTIMATORS
from proxrl.deep.registry import TRAINERS
from proxrl.run.train import make_evaluate, make_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="a2c", choices=["a2c", "ppo", "npg"])
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--estimators", nargs="*", default=list(ESTIMATORS))
    parser.add_argument("--n-steps", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    options = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in args.set)}
    for estimator in args.estimators:
        n = {"n_steps": args.n_steps} if estimator in ("n_step", "q_n_step") else {}  # only they have an n
        config = override(TRAINERS[args.algo].config(), estimator=estimator, **n, **options)
        start = time.perf_counter()
        train = jax.jit(jax.vmap(make_train(config, args.env, args.steps)))
        state, _ = jax.block_until_ready(train(jax.random.split(jax.random.key(0), args.seeds)))
        evaluate = jax.jit(jax.vmap(make_evaluate(config, args.env, episodes=args.eval_episodes)))
        returns = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), args.seeds)))
        row = {
            "algo": args.algo,
            "env": args.env,
            "estimator": estimator,
            "n_steps": args.n_steps if estimator in ("n_step", "q_n_step") else None,
            "options": options,
            "steps": args.steps,
            "returns": np.round(returns, 1).tolist(),
            "median": round(float(np.median(returns)), 1),
            "at_475": int(np.sum(returns >= 475)),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
