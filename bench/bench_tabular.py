"""Tabular benchmarks: exact NPG iterations per second (S = 200, A = 10, 64 MDPs vmapped) and sampled
REINFORCE trajectories per second. Compile time is reported separately from steady-state throughput.

    .venv/bin/python bench/bench_tabular.py [--mdps 64] [--states 200] [--actions 10] [--iters 20]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from proxrl.tabular import exact as exact_algos
from proxrl.tabular import mdp as tb
from proxrl.tabular import mdps
from proxrl.tabular import sampled as sampled_algos


def _timed(f, *args) -> tuple[float, object]:
    t = time.perf_counter()
    out = jax.block_until_ready(f(*args))
    return time.perf_counter() - t, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mdps", type=int, default=64)
    p.add_argument("--states", type=int, default=200)
    p.add_argument("--actions", type=int, default=10)
    p.add_argument("--branching", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--traj", type=int, default=256, help="trajectories per REINFORCE iteration (per MDP)")
    p.add_argument("--reinforce-iters", type=int, default=20)
    p.add_argument("--max-len", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--algo",
        default="npg_closed",
        help="exact NPG form: npg_closed (θ += ηA, the tabular closed form), npg (block pinv), npg_lstsq",
    )
    a = p.parse_args()
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")

    keys = jax.random.split(jax.random.key(0), a.mdps)
    stack = jax.jit(jax.vmap(lambda k: mdps.garnet(k, a.states, a.actions, a.branching, 0.9)))(keys)
    theta0 = jnp.zeros((a.mdps, a.states, a.actions))
    v_star = jax.jit(jax.vmap(tb.optimal_value))(stack)
    etas = jnp.ones(a.mdps)

    def npg(stack, theta0, etas, v_star):
        run = lambda m, th, e, v: exact_algos.run(a.algo, m, th, a.iters, e, v_star=v)
        return jax.vmap(run)(stack, theta0, etas, v_star).final_gap

    f = jax.jit(npg)
    compile_s, _ = _timed(f, stack, theta0, etas, v_star)
    best = min(_timed(f, stack, theta0, etas, v_star)[0] for _ in range(a.repeats))
    print(
        f"exact NPG ({a.algo})   S={a.states} A={a.actions}, {a.mdps} MDPs vmapped, {a.iters} iterations/call: "
        f"compile+first {compile_s:.2f} s; steady {best:.3f} s/call = {a.iters / best:.1f} iterations/s "
        f"(x{a.mdps} MDPs = {a.iters * a.mdps / best:.0f} MDP-iterations/s)"
    )

    g = sampled_algos.sweep("reinforce", a.reinforce_iters, a.traj, a.max_len, "geometric", "learned")
    rkeys = jax.random.split(jax.random.key(1), a.mdps)
    fr = lambda: g(stack, theta0, rkeys, jnp.full(a.mdps, 0.5)).final_gap
    compile_s, _ = _timed(fr)
    best = min(_timed(fr)[0] for _ in range(a.repeats))
    n = a.mdps * a.traj * a.reinforce_iters
    print(
        f"REINFORCE   S={a.states} A={a.actions}, {a.mdps} MDPs x {a.traj} trajectories x {a.reinforce_iters} "
        f"iterations (cap {a.max_len}, mean length ≈ 10): compile+first {compile_s:.2f} s; steady {best:.3f} s "
        f"= {n / best:,.0f} trajectories/s"
    )


if __name__ == "__main__":
    main()
