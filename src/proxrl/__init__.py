"""proxrl: policy-based reinforcement learning as proximal steps.

Every update is ``θ_{k+1} = argmax_θ L_k(θ) − (1/η)·D(θ, θ_k)``: a surrogate built from an advantage
estimate, a geometry D (Euclidean or KL), and a solver (closed form, Fisher solve, inner steps).
"""

import os as _os

# JAX's CPU runtime used to stop for ever on this 2-core machine (all threads parked, the caller waiting in
# ArrayImpl._value). The cause, found with gdb: jaxlib 0.10's LAPACK QR splits a batched factorisation across
# XLA's intra-op pool and blocks a pool thread until the pieces finish; two such QRs at once (flax's orthogonal
# initialiser under vmap over seeds) hold both pool threads and wait for each other. proxrl's networks now
# use an orthogonal initialiser without LAPACK (proxrl.policies.networks.orthogonal). proxrl also runs XLA's
# Eigen pool single-threaded (an earlier mitigation, 5-10% slower on bench_expert; kept until measured
# without). Set PROXRL_XLA_MULTI_THREAD_EIGEN=1 to keep JAX's default. Takes effect only if JAX's CPU backend
# has not started yet (import proxrl before running JAX code).
_SAFE_CPU = _os.environ.get("PROXRL_XLA_MULTI_THREAD_EIGEN") != "1"
if _SAFE_CPU and "xla_cpu_multi_thread_eigen" not in _os.environ.get("XLA_FLAGS", ""):
    _os.environ["XLA_FLAGS"] = (
        _os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    ).strip()

from proxrl.errors import ConfigError  # noqa: E402
from proxrl.types import ProxStep, TableBatch, Transition  # noqa: E402

__all__ = ["ConfigError", "ProxStep", "TableBatch", "Transition"]
__version__ = "0.1.0"
