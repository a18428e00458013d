"""proxrl: policy-based reinforcement learning as proximal steps.

Every update is ``θ_{k+1} = argmax_θ L_k(θ) − (1/η)·D(θ, θ_k)``: a surrogate built from an advantage
estimate, a geometry D (Euclidean or KL), and a solver (closed form, Fisher solve, inner steps).
"""

import os as _os

# XLA flags proxrl sets on import (only if XLA_FLAGS does not already name them; they take effect only if JAX's
# CPU backend has not started yet, so import proxrl before running JAX code):
# - --xla_backend_optimization_level=1: LLVM's -O1 for XLA's generated CPU code. Measured on the 2-core machine:
#   compile 6.3 → 4.5–5.0 s for 8 vmapped PPO CartPole seeds and 4.8 → 4.0 s for SAC on Pendulum, run times
#   unchanged within noise (PPO 6.5 s, SAC 10.3 s, the expert benchmark's EW and PG no slower). Results differ from
#   the default level in the last bits, so seeded runs differ from runs made with the default. Set
#   XLA_FLAGS=--xla_backend_optimization_level=2 (or any level) to override.
# - --xla_cpu_multi_thread_eigen=false: XLA's Eigen pool single-threaded. Added first against computations that
#   never completed on this 2-core machine; their cause, found later with gdb, was jaxlib 0.10's LAPACK QR, which
#   splits a batched factorisation across XLA's intra-op pool and blocks a pool thread on the pieces, so two QRs
#   at once (flax's orthogonal initialiser under vmap over seeds) deadlock; proxrl's networks now use an
#   orthogonal initialiser without LAPACK (proxrl.deep.networks.orthogonal). The flag stays because it is
#   also faster here: host-side SAC on HalfCheetah 169 vs 158 steps/s with the default (2 runs each); the expert
#   benchmark 5-10% slower. Set PROXRL_XLA_MULTI_THREAD_EIGEN=1 to keep JAX's default.
_flags = _os.environ.get("XLA_FLAGS", "")
if "xla_backend_optimization_level" not in _flags:
    _flags += " --xla_backend_optimization_level=1"
if _os.environ.get("PROXRL_XLA_MULTI_THREAD_EIGEN") != "1" and "xla_cpu_multi_thread_eigen" not in _flags:
    _flags += " --xla_cpu_multi_thread_eigen=false"
_os.environ["XLA_FLAGS"] = _flags.strip()

from proxrl.errors import ConfigError  # noqa: E402
from proxrl.prox import ProxStep  # noqa: E402
from proxrl.types import TableBatch, Transition  # noqa: E402

_AGENTS = ("Agent", "REINFORCE", "NPG", "QAC", "A2C", "PPO", "APPO", "DPG", "DPGOnPolicy", "DDPG", "TD3", "SAC",
           "OffPolicyAC", "ES", "ImplicitAC")  # fmt: skip


def __getattr__(name: str) -> object:
    """The agent classes (:mod:`proxrl.agents`), imported on first use: ``from proxrl import PPO``."""
    if name in _AGENTS:
        from proxrl import agents

        return getattr(agents, name)
    raise AttributeError(f"module 'proxrl' has no attribute {name!r}")


__all__ = ["ConfigError", "ProxStep", "TableBatch", "Transition", *_AGENTS]
__version__ = "0.1.0"
