"""DPG / DDPG / TD3 / SAC on a gymnax environment (Pendulum-v1 by default): seeds vmapped in one compiled call.

    python bench/bench_off_policy.py td3 --seeds 5 --steps 20000            # the issue's acceptance check
    python bench/bench_off_policy.py ddpg --seeds 5 --steps 20000 --hidden 64,64
    python bench/bench_off_policy.py td3 --env MountainCarContinuous-v0 --seeds 3 --steps 50000 \
        --exploration-noise 0.5 --threshold 90

Prints one JSON line: the per-seed mean return of ``--eval-episodes`` deterministic episodes (μ_θ) after
training, how many seeds reach ``--threshold``, compile and run wall-clock seconds, and the mean return of
the training episodes finished in each tenth of the run (seed mean).
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
from proxrl.deep.loops import SEED_AXIS
from proxrl.deep.off_policy import ddpg, dpg, sac, td3
from proxrl.run.train import make_evaluate, make_train

ALGOS = {
    "sac": sac.SACConfig,
    "td3": td3.TD3Config,
    "ddpg": ddpg.DDPGConfig,
    "dpg": dpg.DPGConfig,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("algo", choices=sorted(ALGOS))
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="keys = split(key(seed), seeds)")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--hidden", default="256,256")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument(
        "--exploration-noise", type=float, default=None, help="DDPG/TD3: σ of the Gaussian action noise"
    )
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--threshold", type=float, default=-200.0)
    args = parser.parse_args()

    config_cls = ALGOS[args.algo]
    fields = dict(
        buffer_size=args.steps,
        hidden=tuple(int(h) for h in args.hidden.split(",")),
        learning_starts=args.learning_starts,
    )
    if args.lr is not None:
        fields["lr"] = fields["q_lr"] = args.lr  # actor and critics
    if args.exploration_noise is not None:
        fields["exploration_noise"] = args.exploration_noise
    config = override(config_cls(), **fields)
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    train = jax.jit(jax.vmap(make_train(config, args.env, args.steps), axis_name=SEED_AXIS))
    t0 = time.time()
    compiled = train.lower(keys).compile()
    t1 = time.time()
    state, metrics = jax.block_until_ready(compiled(keys))
    t2 = time.time()
    evaluate = make_evaluate(config, args.env, episodes=args.eval_episodes)
    eval_keys = jax.random.split(jax.random.key(10_000 + args.seed), args.seeds)
    returns = np.asarray(jax.jit(jax.vmap(evaluate))(state, eval_keys))
    episodic = np.asarray(metrics["episodic_return"])  # [seeds, updates], NaN where no episode ended
    curve = [float(np.nanmean(chunk)) for chunk in np.array_split(episodic, 10, axis=1)]
    print(
        json.dumps(
            {
                "algo": args.algo,
                "env": args.env,
                "steps": args.steps,
                "seeds": args.seeds,
                "seed": args.seed,
                "hidden": fields["hidden"],
                "lr": config.step.lr,
                "learning_starts": config.replay.learning_starts,
                "eval_returns": [round(float(r), 1) for r in returns],
                "reached_threshold": int(np.sum(returns >= args.threshold)),
                "threshold": args.threshold,
                "compile_s": round(t1 - t0, 1),
                "run_s": round(t2 - t1, 1),
                "train_return_by_tenth": [round(c, 1) for c in curve],
            }
        )
    )


if __name__ == "__main__":
    main()
