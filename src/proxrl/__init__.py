"""proxrl: policy-based reinforcement learning as proximal steps.

Every update is ``θ_{k+1} = argmax_θ L_k(θ) − (1/η)·D(θ, θ_k)``: a surrogate built from an advantage
estimate, a geometry D (Euclidean or KL), and a solver (closed form, Fisher solve, inner steps).
"""

from proxrl.errors import ConfigError
from proxrl.types import ProxStep, TableBatch, Transition

__all__ = ["ConfigError", "ProxStep", "TableBatch", "Transition"]
__version__ = "0.1.0"
