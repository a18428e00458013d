"""Gaussian-policy PPO on Pendulum-v1 with σ learned or scheduled (the lecture's options 1 and 2), seeds vmapped.

    python bench/bench_sigma.py --seeds 4 --steps 100352
    python bench/bench_sigma.py --algo a2c --sigmas learned linear --seeds 4 --steps 200000

The PPO settings are those of the Pendulum check in tests/test_ppo.py (4 envs × 1024 steps, 10 epochs × 16
minibatches, lr 1e-3, γ 0.9, no entropy bonus, no value clipping). A scheduled σ decays over the whole budget
from ``--sigma-start`` to ``--sigma-end``. Prints one JSON line per σ option: the per-seed mean return of
``--eval-episodes`` deterministic episodes (the Gaussian mean) after training, the median, and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np

import proxrl  # noqa: F401  (sets proxrl's XLA flags before JAX starts its CPU backend)
from proxrl.config import override
from proxrl.deep.registry import TRAINERS
from proxrl.run.presets import PRESETS
from proxrl.run.train import make_evaluate, make_train

SETTINGS = {
    "ppo": PRESETS["ppo"]["pendulum"].algo,
    "a2c": dict(num_envs=8, num_steps=16, optimiser="adam", lr=1e-3, gamma=0.9, norm_adv=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=sorted(SETTINGS))
    parser.add_argument("--sigmas", nargs="*", default=["learned", "linear", "exponential"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=100_352)
    parser.add_argument("--sigma-start", type=float, default=1.0)
    parser.add_argument("--sigma-end", type=float, default=0.5)
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args()
    for sigma in args.sigmas:
        config = override(
            TRAINERS[args.algo].config(),
            sigma=sigma,
            sigma_start=args.sigma_start,
            sigma_end=args.sigma_end,
            **SETTINGS[args.algo],
        )
        start = time.perf_counter()
        train = jax.jit(jax.vmap(make_train(config, "Pendulum-v1", args.steps)))
        evaluate = jax.jit(jax.vmap(make_evaluate(config, "Pendulum-v1", episodes=args.eval_episodes)))
        state, metrics = jax.block_until_ready(train(jax.random.split(jax.random.key(0), args.seeds)))
        returns = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), args.seeds)))
        first = np.nanmean(np.asarray(metrics["episodic_return"])[:, :3], axis=1)
        row = {
            "algo": args.algo,
            "sigma": sigma,
            "sigma_start": args.sigma_start if sigma != "learned" else None,
            "sigma_end": args.sigma_end if sigma != "learned" else None,
            "steps": args.steps,
            "first_updates": np.round(first, 1).tolist(),
            "returns": np.round(returns, 1).tolist(),
            "median": round(float(np.median(returns)), 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
