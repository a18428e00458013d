"""Natural-gradient solves ``w = F⁺ g``.

Under softmax the Fisher matrix ``F = diag π − ππᵀ`` is singular (``F 1 = 0``), so the lecture uses
the pseudo-inverse, or equivalently the least-squares form (compatible function approximation)::

    F⁺ g = argmin_w Σ_a π(a) (∇log π(a)ᵀ w − A(a))²      (minimum-norm solution)

For large parameter vectors (neural policies) ``F`` is never formed: :func:`conjugate_gradient`
solves ``(F + λI) w = g`` from Fisher-vector products.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from proxrl.types import Array


def pinv_solve(fisher: Array, g: Array, rcond: float | None = None) -> Array:
    """``F⁺ g`` by the Moore-Penrose pseudo-inverse; ``fisher`` ``[..., P, P]``, ``g`` ``[..., P]``."""
    return jnp.einsum("...ij,...j->...i", jnp.linalg.pinv(fisher, rtol=rcond), g)


def lstsq_solve(features: Array, targets: Array, weights: Array | None = None) -> Array:
    """``argmin_w Σ_i weights_i (features_iᵀ w − targets_i)²``, minimum-norm.

    ``features`` ``[N, P]`` (rows ``∇log π(a_i)``), ``targets`` ``[N]`` (advantages), ``weights``
    ``[N]`` (``π(a)`` for the exact form, 1 for samples). The solution is ``F⁺ g`` with
    ``F = Σ_i w_i x_i x_iᵀ`` and ``g = Σ_i w_i x_i y_i``: the normal equations of the regression.
    """
    if weights is not None:
        sw = jnp.sqrt(weights)
        features, targets = features * sw[:, None], targets * sw
    return jnp.linalg.lstsq(features, targets)[0]


def conjugate_gradient(
    matvec: Callable[[Array], Array], b: Array, iters: int = 10, tol: float = 1e-10
) -> tuple[Array, Array]:
    """Solve ``M x = b`` for symmetric positive (semi-)definite ``M`` given ``x ↦ M x``.

    Runs exactly ``iters`` iterations (a fixed count keeps it jittable); once the squared residual
    falls below ``tol`` the iterate is frozen. Returns ``(x, ‖b − M x‖²)``.
    """

    def body(carry, _):
        x, r, p, rr = carry
        mp = matvec(p)
        alpha = rr / jnp.maximum(jnp.vdot(p, mp), 1e-30)
        live = rr > tol
        x = jnp.where(live, x + alpha * p, x)
        r_new = jnp.where(live, r - alpha * mp, r)
        rr_new = jnp.vdot(r_new, r_new)
        p = jnp.where(live, r_new + (rr_new / jnp.maximum(rr, 1e-30)) * p, p)
        return (x, r_new, p, jnp.where(live, rr_new, rr)), None

    x0 = jnp.zeros_like(b)
    (x, r, _, _), _ = jax.lax.scan(body, (x0, b, b, jnp.vdot(b, b)), None, length=iters)
    return x, jnp.vdot(r, r)
