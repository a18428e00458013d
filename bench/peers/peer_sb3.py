"""Stable-Baselines3 / SBX peer harness: one training run, one JSON line on stdout.

Runs inside the peer's own venv (made by ``bench/setup_peers.sh``), never in proxrl's::

    ~/.cache/proxrl-peers/sb3/bin/python bench/peers/peer_sb3.py --lib sb3 --task ppo_cartpole --seed 0
    ~/.cache/proxrl-peers/sbx/bin/python bench/peers/peer_sb3.py --lib sbx --task sac_pendulum --seed 0

Time to threshold: wall-clock seconds from the start of ``model.learn()`` until the mean undiscounted
return of the last ``--window`` completed *training* episodes (Monitor's ``info["episode"]``) first
reaches the task's threshold. ``startup_s`` is the time from interpreter start to the moment ``learn()``
begins (imports, environments, model construction). With ``--stop-at-threshold`` training ends there
(the figure is unchanged; the benchmark just finishes sooner).

Tasks live in :data:`TASKS`; a new one is a new :class:`Task` entry (environment, threshold, budget, and
the algorithm's keyword arguments for each ``--config``).
"""

from __future__ import annotations

import time

_T_START = time.perf_counter()  # before the heavy imports, so startup_s covers them

import argparse  # noqa: E402
import json  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402


def linear_schedule(initial: float) -> Callable[[float], float]:
    """SB3 schedule decaying linearly from ``initial`` (progress_remaining = 1) to 0."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule


@dataclass(frozen=True)
class Task:
    """One benchmark task: which algorithm on which environment, judged against which threshold."""

    algo: str
    """"PPO" or "SAC" (looked up in the chosen library)."""
    env_id: str
    """Gymnasium environment id."""
    threshold: float | None
    """Training-return threshold for the time-to-threshold figure; None: throughput only."""
    total_timesteps: int
    """Default budget."""
    n_envs: dict[str, int]
    """Parallel environments per ``--config``."""
    kwargs: dict[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    """Per ``--config``: a factory of the algorithm's keyword arguments (fresh schedules each call)."""


def defaults_only(algo: str, env_id: str, total_timesteps: int) -> Task:
    """A throughput task: the library's defaults (both ``--config`` values), one environment, no threshold."""
    return Task(algo, env_id, None, total_timesteps, {"zoo": 1, "default": 1}, {"zoo": dict, "default": dict})


TASKS: dict[str, Task] = {
    # RL-Baselines3-Zoo hyperparams/ppo.yml, CartPole-v1 (8 envs); "default": the library's defaults, 1 env.
    "ppo_cartpole": Task(
        algo="PPO",
        env_id="CartPole-v1",
        threshold=475.0,
        total_timesteps=100_000,
        n_envs={"zoo": 8, "default": 1},
        kwargs={
            "zoo": lambda: {
                "n_steps": 32,
                "batch_size": 256,
                "gae_lambda": 0.8,
                "gamma": 0.98,
                "n_epochs": 20,
                "ent_coef": 0.0,
                "learning_rate": linear_schedule(1e-3),
                "clip_range": linear_schedule(0.2),
            },
            "default": dict,
        },
    ),
    # Library defaults on one MuJoCo environment: steps-per-second figures, no threshold (SAC/TD3 with SB3's
    # learning_starts 100).
    "ppo_halfcheetah": defaults_only("PPO", "HalfCheetah-v5", 50_000),
    "sac_halfcheetah": defaults_only("SAC", "HalfCheetah-v5", 3000),
    "td3_halfcheetah": defaults_only("TD3", "HalfCheetah-v5", 3000),
    # RL-Baselines3-Zoo hyperparams/sac.yml, Pendulum-v1: the defaults with learning_rate 1e-3, 20k steps.
    "sac_pendulum": Task(
        algo="SAC",
        env_id="Pendulum-v1",
        threshold=-200.0,
        total_timesteps=20_000,
        n_envs={"zoo": 1, "default": 1},
        kwargs={"zoo": lambda: {"learning_rate": 1e-3}, "default": dict},
    ),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lib", choices=["sb3", "sbx"], default="sb3")
    p.add_argument("--task", choices=sorted(TASKS), required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--total", type=int, default=None, help="environment steps (default: the task's)")
    p.add_argument("--config", choices=["zoo", "default"], default="zoo")
    p.add_argument("--window", type=int, default=10, help="training episodes averaged for the threshold")
    p.add_argument("--stop-at-threshold", action="store_true", help="end training once the threshold is hit")
    p.add_argument(
        "--eval-episodes", type=int, default=0, help="deterministic evaluation episodes after training"
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (sb3; default: torch's choice)")
    return p.parse_args()


def main() -> None:
    """Train once and print the JSON result line."""
    args = parse_args()
    task = TASKS[args.task]
    import numpy as np
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    if args.lib == "sb3":
        import stable_baselines3 as lib
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        backend = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    else:
        import jax
        import sbx as lib

        backend = f"jax {jax.__version__} {jax.default_backend()}"
    algo_cls = getattr(lib, task.algo)

    class ThresholdTracker(BaseCallback):
        """Records completed training episodes and the first time their windowed mean reaches the threshold."""

        def __init__(self, threshold: float | None, window: int, stop: bool) -> None:
            super().__init__()
            self.threshold, self.stop = threshold, stop
            self.recent: deque[float] = deque(maxlen=window)
            self.episodes = 0
            self.t_hit: float | None = None
            self.step_hit: int | None = None
            self.t0 = time.perf_counter()

        def _on_training_start(self) -> None:
            self.t0 = time.perf_counter()

        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                episode = info.get("episode")
                if episode is None:
                    continue
                self.episodes += 1
                self.recent.append(float(episode["r"]))
                full = len(self.recent) == self.recent.maxlen
                if (
                    self.t_hit is None
                    and self.threshold is not None
                    and full
                    and np.mean(self.recent) >= self.threshold
                ):
                    self.t_hit = time.perf_counter() - self.t0
                    self.step_hit = int(self.num_timesteps)
            return not (self.stop and self.t_hit is not None)

    env = make_vec_env(task.env_id, n_envs=task.n_envs[args.config], seed=args.seed)
    model = algo_cls("MlpPolicy", env, seed=args.seed, verbose=0, **task.kwargs[args.config]())
    tracker = ThresholdTracker(task.threshold, args.window, args.stop_at_threshold)
    total = args.total or task.total_timesteps
    startup_s = time.perf_counter() - _T_START
    t0 = time.perf_counter()
    model.learn(total_timesteps=total, callback=tracker)
    train_s = time.perf_counter() - t0

    result: dict[str, Any] = {
        "lib": args.lib,
        "version": lib.__version__,
        "backend": backend,
        "task": args.task,
        "env": task.env_id,
        "config": args.config,
        "seed": args.seed,
        "budget_steps": total,
        "steps_done": int(model.num_timesteps),
        "startup_s": round(startup_s, 3),
        "train_s": round(train_s, 3),
        "steps_per_s": round(model.num_timesteps / train_s, 1),
        "threshold": task.threshold,
        "window": args.window,
        "t_hit_s": None if tracker.t_hit is None else round(tracker.t_hit, 3),
        "step_hit": tracker.step_hit,
        "episodes": tracker.episodes,
        "last_train_mean": round(float(np.mean(tracker.recent)), 2) if tracker.recent else None,
    }
    if args.eval_episodes > 0:
        eval_env = make_vec_env(task.env_id, n_envs=1, seed=args.seed + 10_000)
        mean_r, std_r = evaluate_policy(
            model, eval_env, n_eval_episodes=args.eval_episodes, deterministic=True
        )
        result.update(eval_mean=round(float(mean_r), 2), eval_std=round(float(std_r), 2))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
