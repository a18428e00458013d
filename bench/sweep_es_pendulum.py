"""The search behind ``proxrl train es --preset pendulum``: ES on gymnax Pendulum-v1, one structural setting per
call, a grid of (σ, lr) × seeds trained in one vmapped call (``make_train(..., hyper=...)``).

    python bench/sweep_es_pendulum.py --sigma 0.05,0.1 --lr 0.02,0.05 --option noise_dim=0
    python bench/sweep_es_pendulum.py --seed 1 --seeds 8 --sigma 0.05 --lr 0.05        (the old preset)
    python bench/sweep_es_pendulum.py --seed 1 --seeds 8 --gens 150 --sigma 0.05 --lr 0.1 \
        --option crn=pairs --option obs_norm=False                                      (the search's last rows)
    python bench/sweep_es_pendulum.py --preset --seed 2 --seeds 12                     (the preset, fresh seeds)

``--preset`` starts from ``--preset pendulum``'s options and step budget (``--option``, ``--sigma``, ``--lr`` and
``--gens`` still override them; without ``--gens`` the generations are the budget over the rollout size, so
``--option num_steps=400`` keeps the 19.2M steps in 750 generations).

Per grid point: the final deterministic evaluation (20 episodes, ξ = 0) of every seed, how many reach −300, the
first generation whose population mean return reached −300, and the mean return of the last 10 generations.
Figures in bench/RESULTS.md ("Evolution strategies against evosax and the ARS paper").
"""

from __future__ import annotations

import argparse
import ast
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.config import override
from proxrl.deep.implicit.es import ESConfig
from proxrl.deep.loops import SEED_AXIS
from proxrl.run.presets import PRESETS
from proxrl.run.train import make_evaluate, make_train


def parse_option(text: str) -> tuple[str, object]:
    name, value = text.split("=", 1)
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name, value


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", action="store_true", help="start from the options of --preset pendulum")
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gens", type=int, default=None, help="generations (default 300, or the preset's)")
    p.add_argument("--sigma", default=None, help="comma-separated σ values (default 0.1, or the preset's)")
    p.add_argument("--lr", default=None, help="comma-separated step sizes (default 0.05, or the preset's)")
    p.add_argument("--option", action="append", default=[], help="a structural ES option NAME=VALUE")
    a = p.parse_args()
    preset = PRESETS["es"]["pendulum"]
    base = dict(preset.algo) if a.preset else {"num_envs": 64, "num_steps": 1000, "sigma": 0.1, "lr": 0.05}
    opts = {**base, **dict(parse_option(o) for o in a.option)}
    sigma, lr = opts.pop("sigma"), opts.pop("lr")  # the grid's defaults
    a.sigma, a.lr = a.sigma or str(sigma), a.lr or str(lr)
    cfg = override(ESConfig(), **opts)
    if a.gens is None:
        a.gens = preset.run["total_steps"] // cfg.rollout.size if a.preset else 300
    grid = list(
        itertools.product([float(x) for x in a.sigma.split(",")], [float(x) for x in a.lr.split(",")])
    )
    train = make_train(cfg, "Pendulum-v1", a.gens * cfg.rollout.size)
    keys = jnp.concatenate([jax.random.split(jax.random.key(a.seed), a.seeds)] * len(grid))
    sigmas = jnp.repeat(jnp.array([g[0] for g in grid]), a.seeds)
    lrs = jnp.repeat(jnp.array([g[1] for g in grid]), a.seeds)
    fn = jax.jit(jax.vmap(lambda k, s, r: train(k, {"sigma": s, "lr": r}), axis_name=SEED_AXIS))
    t0, c0 = time.perf_counter(), time.process_time()
    state, m = jax.block_until_ready(fn(keys, sigmas, lrs))
    t1, c1 = time.perf_counter(), time.process_time()
    ev = jax.jit(jax.vmap(make_evaluate(cfg, "Pendulum-v1", episodes=20)))
    ret = np.asarray(ev(state, jax.random.split(jax.random.key(1), len(keys))))
    fit = np.asarray(m["fitness_mean"])
    print(
        f"options {opts}, {a.gens} generations, seeds from key({a.seed}): {t1 - t0:.0f} s wall, {c1 - c0:.0f} s CPU "
        f"({len(keys)} runs, compilation included)"
    )
    for gi, (s, r) in enumerate(grid):
        sl = slice(gi * a.seeds, (gi + 1) * a.seeds)
        reached = [int(np.argmax(f >= -300)) + 1 if np.any(f >= -300) else None for f in fit[sl]]
        print(f"  sigma={s} lr={r}: eval {np.round(ret[sl]).tolist()} ok {int(np.sum(ret[sl] >= -300))}/{a.seeds}"
              f"  first generation ≥ −300 {reached}  last 10 generations {np.round(np.nanmean(fit[sl, -10:], axis=1)).tolist()}")  # fmt: skip


if __name__ == "__main__":
    main()
