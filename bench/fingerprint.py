"""Fingerprints of short runs of every trainable algorithm: same seed, same config, same machine → same lines.

Prints one line per case: a SHA-256 of the final parameters (every floating leaf of the learner's parameters,
two seeds vmapped) and of the episodic returns. Run it on two checkouts on the same machine and diff the output
to see which algorithms a change moved, bit for bit:

    python bench/fingerprint.py > after.txt
    git stash; python bench/fingerprint.py > before.txt; git stash pop; diff before.txt after.txt

``--only ppo-cartpole td3`` runs a subset (names as printed; an unknown name is an error).
"""

from __future__ import annotations

import argparse
import hashlib

import jax
import numpy as np

import proxrl  # noqa: F401  (sets proxrl's XLA flags before JAX starts its CPU backend)
from proxrl.config import override
from proxrl.deep import registry
from proxrl.deep.loops import SEED_AXIS
from proxrl.run.train import make_train

ON = dict(num_envs=2, num_steps=32, hidden=(16, 16))
OFF = dict(learning_starts=200, buffer_size=1000, batch_size=32, hidden=(16, 16))


def cases() -> list[tuple[str, object, str, int]]:
    """``(name, config, environment, total steps)`` for every algorithm and the main variants."""

    def t_(name: str):
        return lambda **options: override(registry.TRAINERS[name].config(), **options)

    t = {name: t_(name) for name in registry.TRAINERS}
    out: list[tuple[str, object, str, int]] = []
    for name in ("reinforce", "npg", "qac", "a2c", "ppo"):
        out.append((f"{name}-cartpole", t[name](**ON), "CartPole-v1", 1024))
        extra = {"gradient": "sampled"} if name == "qac" else {}
        out.append((f"{name}-pendulum", t[name](**ON, **extra), "Pendulum-v1", 1024))
    for surrogate in ("none", "kl_fixed", "kl_adaptive"):
        out.append((f"ppo-{surrogate}", t["ppo"](surrogate=surrogate, **ON), "CartPole-v1", 1024))
    out.append(("npg-fixed", t["npg"](step="fixed", line_search=False, **ON), "CartPole-v1", 1024))
    out.append(("a2c-adam-anneal", t["a2c"](optimiser="adam", anneal_lr=True, **ON), "CartPole-v1", 1024))
    out.append(
        (
            "qac-sampled-expected",
            t["qac"](gradient="sampled", td_target="expected", **ON),
            "CartPole-v1",
            1024,
        )
    )
    for name in ("dpg", "ddpg", "td3", "sac"):
        out.append((name, t[name](**OFF), "Pendulum-v1", 600))
    out.append(("offpolicy_ac", t["offpolicy_ac"](**OFF), "CartPole-v1", 600))
    out.append(("dpg_onpolicy", t["dpg_onpolicy"](**ON), "Pendulum-v1", 1024))
    es = dict(num_envs=8, num_steps=100, hidden=(8,))
    out.append(("es-cartpole", t["es"](**es), "CartPole-v1", 2400))
    out.append(("es-pendulum-crn", t["es"](**es, crn="pairs", obs_norm=False), "Pendulum-v1", 2400))
    out.append(("es-cartpole-first", t["es"](**es, score_episodes="first"), "CartPole-v1", 2400))
    return out


def fingerprint(config: object, env_id: str, total_steps: int) -> tuple[str, str]:
    """SHA-256 (first 16 hex digits) of the final parameters and of the episodic returns of 2 seeds."""
    train = jax.jit(jax.vmap(make_train(config, env_id, total_steps), axis_name=SEED_AXIS))
    state, metrics = train(jax.random.split(jax.random.key(3), 2))
    learner = state.carry.learner
    if hasattr(learner, "params"):
        params = learner.params
    else:  # ES keeps the mean θ_k; the deterministic actor-critics keep an agent
        params = learner.theta if hasattr(learner, "theta") else learner.agent.params
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(params):
        leaf = np.asarray(leaf)
        if np.issubdtype(leaf.dtype, np.floating):
            h.update(leaf.tobytes())
    returns = np.asarray(metrics["episodic_return"])
    return h.hexdigest()[:16], hashlib.sha256(returns.tobytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="case names to run (default: all)")
    args = parser.parse_args()
    known = [name for name, *_ in cases()]
    unknown = sorted(set(args.only or ()) - set(known))
    if unknown:
        parser.error(f"--only: unknown case(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    for name, config, env_id, steps in cases():
        if args.only and name not in args.only:
            continue
        params, returns = fingerprint(config, env_id, steps)
        print(f"{name:24s} params {params}  returns {returns}", flush=True)


if __name__ == "__main__":
    main()
