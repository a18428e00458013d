"""proxrl: policy-based reinforcement learning as proximal steps.

Every update is ``θ_{k+1} = argmax_θ L_k(θ) − (1/η)·D(θ, θ_k)``: a surrogate built from an advantage
estimate, a geometry D (Euclidean or KL), and a solver (closed form, Fisher solve, inner steps).
"""

import os as _os

# XLA's multithreaded Eigen pool on CPU can deadlock on vmapped programs (the computation never
# completes; seen here with vmapped PPO seeds and batched SVDs on 2 cores). Single-threaded Eigen costs
# ~5-10% on our benchmarks. Set PROXRL_XLA_MULTI_THREAD_EIGEN=1 to keep XLA's default. Takes effect only
# if JAX's CPU backend has not started yet (import proxrl before running JAX code).
if _os.environ.get(
    "PROXRL_XLA_MULTI_THREAD_EIGEN"
) != "1" and "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

from proxrl.errors import ConfigError
from proxrl.types import ProxStep, TableBatch, Transition

__all__ = ["ConfigError", "ProxStep", "TableBatch", "Transition"]
__version__ = "0.1.0"
