"""PPO, SAC and TD3 on one host-side HalfCheetah-v5 environment: environment steps per second, learning included.

    .venv/bin/python bench/bench_host.py [--algo ppo|sac|td3] [--steps N] [--repeats 3] [--skip-peers]

Three measurements per repeat, interleaved so that machine load hits them alike, each a fresh subprocess:

- ``bare``: the Gymnasium vector environment (1 copy, SAME_STEP autoreset) stepped with uniformly random
  actions — the limit a host-side training loop cannot beat;
- ``proxrl``: ``proxrl.run.host.HostRunner`` with PPO in the PPO paper's MuJoCo setting (1 environment,
  2048 steps per rollout, 10 epochs of 32 minibatches of 64, Adam 3e-4, γ 0.99, λ 0.95, ε 0.2, 64×64 tanh,
  observation and reward normalisation); one untimed update compiles everything, then ``--steps`` steps
  (whole updates) are timed: the policy's act call on every step plus every learning update;
- ``sb3``: Stable-Baselines3 PPO with its defaults (the same setting) through ``bench/peers/peer_sb3.py
  --task ppo_halfcheetah`` in its own venv (``bash bench/setup_peers.sh sb3``); its ``steps_per_s`` is
  ``model.num_timesteps / learn() seconds``.

With ``--algo sac`` / ``--algo td3`` (default ``--steps`` 3000): the library defaults on both sides (256×256
networks, batch 256, one gradient step per environment step, Adam 3e-4, a 10⁶ replay buffer — SB3's SAC/TD3
defaults, and proxrl's SAC/TD3 with lr 3e-4 and buffer_size 10⁶), with 100 random warm-up steps (SB3's ``learning_starts`` default) so the timed steps all
learn. proxrl: one untimed learn call compiles; SB3: ``--task sac_halfcheetah`` / ``td3_halfcheetah``.

Prints a table of medians [min–max] and the ratios proxrl/SB3 (PPO goal ≥ 3) and proxrl/bare (PPO goal ≥ 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ENV_ID = "HalfCheetah-v5"


def part_bare(steps: int) -> dict:
    import numpy as np

    from proxrl.deep.gym_envs import make_gym_env

    env = make_gym_env(ENV_ID, num_envs=1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    low, high = env.action_space.low, env.action_space.high
    actions = rng.uniform(low, high, size=(steps, 1, *env.action_space.shape)).astype(np.float32)
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    seconds = time.perf_counter() - t0
    return {"part": "bare", "steps": steps, "seconds": seconds, "steps_per_s": steps / seconds}


def part_proxrl(steps: int, algo: str) -> dict:
    import jax

    from proxrl.config import override
    from proxrl.deep.loops import Normalization
    from proxrl.run.host import HostRunner, gym_spaces

    if algo == "ppo":
        from proxrl.deep.on_policy.ppo import PPOConfig, make_learner

        config = override(
            PPOConfig(),
            num_envs=1,
            num_steps=2048,
            update_epochs=10,
            num_minibatches=32,
            lr=3e-4,
            ent_coef=0.0,
        )
        norm = Normalization(obs=True, reward=True)
    else:
        from proxrl.deep.off_policy import sac, td3

        module = {"sac": sac, "td3": td3}[algo]
        config_cls = {"sac": sac.SACConfig, "td3": td3.TD3Config}[algo]
        config = override(config_cls(), learning_starts=100, lr=3e-4, q_lr=3e-4, buffer_size=1_000_000)
        make_learner = module.make_learner
        norm = Normalization()
        if algo == "sac":
            config = override(config, alpha_lr=3e-4)
    learner = make_learner(config, *gym_spaces(ENV_ID), 1_000_000)
    runner = HostRunner(learner, ENV_ID, 1, norm, 1, 0)
    t0 = time.perf_counter()
    carry = runner.init(jax.random.split(jax.random.key(0), 1))
    carry, _ = runner.update(carry)
    jax.block_until_ready(carry)
    warmup = time.perf_counter() - t0
    updates = max(1, steps // learner.num_steps)
    t0 = time.perf_counter()
    for _ in range(updates):
        carry, _ = runner.update(carry)
    jax.block_until_ready(carry)
    seconds = time.perf_counter() - t0
    done = updates * learner.num_steps
    return {
        "part": "proxrl",
        "steps": done,
        "seconds": seconds,
        "steps_per_s": done / seconds,
        "warmup_s": warmup,
    }


def part_sb3(steps: int, peers: Path, algo: str) -> dict:
    python = peers / "sb3" / "bin" / "python"
    if not python.exists():
        raise FileNotFoundError(f"{python} missing: run `bash bench/setup_peers.sh sb3`")
    cmd = [str(python), str(HERE / "peers" / "peer_sb3.py"), "--lib", "sb3", "--task", f"{algo}_halfcheetah"]
    cmd += ["--total", str(steps), "--seed", "0", "--eval-episodes", "0"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, env=env, check=True).stdout
    row = json.loads(out.strip().splitlines()[-1])
    return {
        "part": "sb3",
        "steps": row["steps_done"],
        "seconds": row["train_s"],
        "steps_per_s": row["steps_per_s"],
    }


def run_part(part: str, steps: int, peers: Path, timeout: float, algo: str) -> dict | None:
    """One measurement in a fresh process (retried once: jax on CPU here occasionally hangs)."""
    cmd = [
        sys.executable,
        __file__,
        "--part",
        part,
        "--steps",
        str(steps),
        "--peers",
        str(peers),
        "--algo",
        algo,
    ]
    for attempt in (1, 2):
        try:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True).stdout
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return {**json.loads(out.strip().splitlines()[-1]), "process_cpu_s": round(cpu, 2)}
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as e:
            print(f"  {part}: attempt {attempt} failed ({type(e).__name__})", file=sys.stderr)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", choices=("ppo", "sac", "td3"), default="ppo")
    p.add_argument(
        "--steps", type=int, default=None, help="timed environment steps (default 20480 PPO, 3000 SAC/TD3)"
    )
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-peers", action="store_true")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument(
        "--peers", type=Path, default=Path(os.environ.get("PEERS_DIR", Path.home() / ".cache/proxrl-peers"))
    )
    p.add_argument("--part", choices=("bare", "proxrl", "sb3"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.steps is None:
        args.steps = 20_480 if args.algo == "ppo" else 3000
    if args.part:
        if args.part == "bare":
            result = part_bare(args.steps)
        elif args.part == "proxrl":
            result = part_proxrl(args.steps, args.algo)
        else:
            result = part_sb3(args.steps, args.peers, args.algo)
        print(json.dumps(result), flush=True)
        return

    parts = ["bare", "proxrl"] + ([] if args.skip_peers else ["sb3"])
    rates: dict[str, list[float]] = {p: [] for p in parts}
    cpu: dict[str, list[float]] = {p: [] for p in parts}  # whole-process CPU seconds (start-up included)
    for r in range(args.repeats):
        for part in parts:
            row = run_part(part, args.steps, args.peers, args.timeout, args.algo)
            if row is not None:
                rates[part].append(row["steps_per_s"])
                cpu[part].append(row["process_cpu_s"])
                print(
                    f"repeat {r + 1} {part:7s} {row['steps_per_s']:9.0f} steps/s "
                    f"(process CPU {row['process_cpu_s']:.1f} s)",
                    flush=True,
                )
    print(
        f"\n{args.algo.upper()} on {ENV_ID}, 1 environment, {args.steps} steps per measurement, {args.repeats} repeats"
    )
    print(f"{'':8s} {'steps/s (median [min–max])':>32s}   process CPU s (median)")
    med = {}
    for part, values in rates.items():
        if values:
            med[part] = statistics.median(values)
            print(
                f"{part:8s} {med[part]:12.0f} [{min(values):.0f}–{max(values):.0f}], n={len(values)}   "
                f"{statistics.median(cpu[part]):.1f}"
            )
    ppo = args.algo == "ppo"  # the goals are issue 4's, for PPO; the off-policy figures have none
    if "proxrl" in med and "sb3" in med:
        print(f"proxrl / SB3:  {med['proxrl'] / med['sb3']:.2f}×" + ("  (goal ≥ 3)" if ppo else ""))
    if "proxrl" in med and "bare" in med:
        print(f"proxrl / bare: {med['proxrl'] / med['bare']:.2f}" + ("   (goal ≥ 0.5)" if ppo else ""))


if __name__ == "__main__":
    main()
