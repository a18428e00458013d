"""Throughput of the lecture's expert experiment: seed·η·rounds per second, compile time separate.

    python bench/bench_expert.py [--seeds 1000] [--etas 30] [--rounds 1000] [--repeats 3]

Runs EW and PG over ``etas`` step sizes × ``seeds`` seeds × ``rounds`` rounds in one vmapped,
jitted call each (η and seeds both vmapped) and reports compile time and the median run time.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

from proxrl.tabular import expert
from proxrl.tabular.rewards import bernoulli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=1000)
    p.add_argument("--etas", type=int, default=30)
    p.add_argument("--rounds", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    etas = np.logspace(-2, 3, a.etas)
    keys = jax.random.split(jax.random.key(0), a.seeds)
    work = a.seeds * a.etas * a.rounds
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {platform.processor() or platform.machine()}"
    )
    print(f"work per algorithm: {a.seeds} seeds × {a.etas} η × {a.rounds} rounds = {work:.3g} seed·η·rounds")
    total = 0.0
    for algo in ("ew", "pg"):
        f = expert.sweep(algo, bernoulli([0.6, 0.4]), [1e-4, 0.9999], a.rounds)
        t0 = time.perf_counter()
        jax.block_until_ready(f(etas, keys))
        first = time.perf_counter() - t0
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(f(etas, keys))
            times.append(time.perf_counter() - t0)
        run = float(np.median(times))
        total += run
        print(
            f"{algo.upper():>3}: compile ≈ {first - run:5.2f} s, run {run:5.2f} s "
            f"[{min(times):.2f}–{max(times):.2f}], {work / run:.3g} seed·η·rounds/s"
        )
    print(f"both algorithms, excluding compile: {total:.2f} s")


if __name__ == "__main__":
    main()
