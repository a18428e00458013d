"""Closed-form proximal steps.

Euclidean geometry (policy gradient)::

    θ_{k+1} = argmax_θ ⟨θ − θ_k, g⟩ − (1/2η)‖θ − θ_k‖²  =  θ_k + η g

KL geometry on a softmax table (exponential weights / policy mirror descent)::

    π_{k+1} = argmax_π ⟨π − π_k, q⟩ − (1/η) KL(π, π_k)   ⇒   π_{k+1}(a) ∝ π_k(a) exp(η q(a))
            ⇔  θ_{k+1} = θ_k + η q        (up to a per-state constant, which π ignores)
"""

from __future__ import annotations

from proxrl.types import Array


def euclidean_step(theta: Array, g: Array, eta: Array | float) -> Array:
    """``θ_k + η g``: the maximiser of ``⟨θ − θ_k, g⟩ − (1/2η)‖θ − θ_k‖²``."""
    return theta + eta * g


def mirror_step(theta: Array, q: Array, eta: Array | float) -> Array:
    """``θ_k + η q``, i.e. ``π_{k+1}(a|s) ∝ π_k(a|s) exp(η q(s,a))``: the KL-proximal maximiser."""
    return theta + eta * q
