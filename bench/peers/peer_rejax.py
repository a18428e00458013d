"""Rejax peer harness: N seeds in one ``jax.vmap``-ed, jitted call of Rejax's ``train``; one JSON line.

Runs inside the Rejax venv (made by ``bench/setup_peers.sh``)::

    ~/.cache/proxrl-peers/rejax/bin/python bench/peers/peer_rejax.py --task ppo_cartpole --seeds 32

Two builds of the same configuration (Rejax's own, from its repository's ``configs/gymnax`` files):

* the *timed* build evaluates only once, at the end (``eval_freq = total_timesteps``), so its run time is
  training alone: ``compile_s`` = ``jax.jit(vmap(train)).lower(keys).compile()``, ``run_s`` = the
  compiled call on the whole budget;
* the *probe* build (compiled and run untimed) uses Rejax's periodic in-loop evaluation — the mean
  return of its 128 evaluation episodes every ``--eval-freq`` steps — to find the step at which each seed
  first reaches the threshold.

Time to threshold is then computed as ``compile_s + run_s × step_hit / total_timesteps`` (for N seeds: the
last seed's step), the same rule the proxrl side uses. Rejax's criterion (128 evaluation episodes) is
stricter than the last-10-training-episodes criterion of the proxrl and SB3 harnesses.

Tasks live in :data:`TASKS`; a new one is a new entry (Rejax algorithm name, threshold, config).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
from importlib.metadata import version  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
import rejax  # noqa: E402

TASKS: dict[str, tuple[str, float, dict[str, Any]]] = {
    # Rejax configs/gymnax/cartpole.yaml, "ppo".
    "ppo_cartpole": (
        "ppo",
        475.0,
        {
            "env": "CartPole-v1",
            "agent_kwargs": {"activation": "tanh"},
            "num_envs": 5,
            "num_steps": 100,
            "num_epochs": 5,
            "num_minibatches": 5,
            "learning_rate": 0.00075,
            "max_grad_norm": 0.5,
            "total_timesteps": 100_000,
            "eval_freq": 1000,
            "gamma": 0.99,
            "gae_lambda": 0.95,
            "clip_eps": 0.2,
            "ent_coef": 0.01,
            "vf_coef": 0.5,
        },
    ),
    # Rejax configs/gymnax/pendulum.yaml, "sac" (its own tuned settings: lr 1e-2, swish, 10k steps).
    "sac_pendulum": (
        "sac",
        -200.0,
        {
            "env": "Pendulum-v1",
            "agent_kwargs": {"activation": "swish"},
            "num_envs": 1,
            "buffer_size": 10_000,
            "fill_buffer": 256,
            "batch_size": 256,
            "learning_rate": 0.01,
            "num_epochs": 1,
            "total_timesteps": 10_000,
            "eval_freq": 100,
            "gamma": 0.99,
            "polyak": 0.98,
            "target_entropy_ratio": None,
            "normalize_observations": True,
        },
    ),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one call")
    p.add_argument("--seed", type=int, default=0, help="base key: seeds are split from PRNGKey(seed)")
    p.add_argument("--total", type=int, default=None, help="environment steps (default: the config's)")
    p.add_argument(
        "--eval-freq", type=int, default=None, help="probe evaluation period (default: the config's)"
    )
    return p.parse_args()


def compile_train(algo: Any, keys: jax.Array) -> tuple[Any, float]:
    """``jax.jit(jax.vmap(algo.train))`` compiled for ``keys``, and the compile time in seconds."""
    t0 = time.perf_counter()
    compiled = jax.jit(jax.vmap(algo.train)).lower(keys).compile()
    return compiled, time.perf_counter() - t0


def main() -> None:
    """Compile and run the timed and probe builds; print the JSON result line."""
    args = parse_args()
    algo_name, threshold, config = TASKS[args.task]
    config = dict(config)
    if args.total:
        config["total_timesteps"] = args.total
    total = int(config["total_timesteps"])
    algo_cls = rejax.get_algo(algo_name)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)

    timed_algo = algo_cls.create(**dict(config, eval_freq=total, skip_initial_evaluation=True))
    startup_s = time.perf_counter() - _T_START
    timed, compile_s = compile_train(timed_algo, keys)
    t0 = time.perf_counter()
    _, (_, final_returns) = timed(keys)
    jax.block_until_ready(final_returns)
    run_s = time.perf_counter() - t0

    eval_freq = args.eval_freq or int(config["eval_freq"])
    probe, probe_compile_s = compile_train(algo_cls.create(**dict(config, eval_freq=eval_freq)), keys)
    t0 = time.perf_counter()
    _, (_, returns) = probe(keys)
    jax.block_until_ready(returns)
    probe_run_s = time.perf_counter() - t0
    means = np.asarray(returns).mean(axis=-1)  # [seeds, evaluations]; evaluation 0 is before training
    steps_hit: list[int | None] = []
    for row in means:
        reached = np.flatnonzero(row >= threshold)
        steps_hit.append(int(reached[0]) * eval_freq if reached.size else None)
    all_hit = all(s is not None for s in steps_hit)
    last_step = max(s for s in steps_hit if s is not None) if any(s is not None for s in steps_hit) else None

    result = {
        "lib": "rejax",
        "version": version("rejax"),
        "gymnax": version("gymnax"),
        "jax": jax.__version__,
        "task": args.task,
        "algo": algo_name,
        "env": config["env"],
        "seeds": args.seeds,
        "budget_steps": total,
        "startup_s": round(startup_s, 3),
        "compile_s": round(compile_s, 3),
        "run_s": round(run_s, 3),
        "steps_per_s": round(args.seeds * total / run_s, 1),
        "threshold": threshold,
        "criterion": "mean of Rejax's 128 evaluation episodes",
        "eval_freq": eval_freq,
        "steps_hit": steps_hit,
        "n_hit": sum(s is not None for s in steps_hit),
        "t_hit_s": round(compile_s + run_s * last_step / total, 3)
        if all_hit and last_step is not None
        else None,
        "final_eval_mean": [round(float(r), 1) for r in np.asarray(final_returns).mean(axis=-1).reshape(-1)],
        "probe_compile_s": round(probe_compile_s, 3),
        "probe_run_s": round(probe_run_s, 3),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
