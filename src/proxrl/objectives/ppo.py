"""PPO's surrogates, as pure functions of log-probabilities, advantages and divergence terms.

The lecture's PPO ("NPG + V_φ") takes, from data collected with π_θk, the proximal step

    θ_{k+1} = argmax_θ  (1/n) Σ_{i,h} ratio_h^{(i)}·A_h^{(i)}
                        − (1/η)(1/n) Σ_{i,h} KL(π_θ(·|s_h^{(i)}), π_θk(·|s_h^{(i)}))
                        + c·(1/n) Σ_{i,h} H(π_θ(·|s_h^{(i)})),

    ratio = π_θ(a|s) / π_θk(a|s) = exp(log π_θ(a|s) − log π_θk(a|s)),

with β = 1/η, and offers the clipped objective ``min{ratio·A, clip_{[1−ε, 1+ε]}(ratio)·A}`` in place
of ``ratio·A − β·KL``. The four variants of the PPO paper's table are selected by name:

| ``kind``        | per-sample surrogate ℓ                          | β                               |
|-----------------|-------------------------------------------------|---------------------------------|
| ``"none"``      | ratio·A                                         | —                               |
| ``"clip"``      | min(ratio·A, clip(ratio, 1−ε, 1+ε)·A)           | —                               |
| ``"kl_fixed"``  | ratio·A − β·KL                                  | fixed                           |
| ``"kl_adaptive"``| ratio·A − β·KL                                 | :func:`adapt_beta` per update   |

Every function here works on flat sample arrays ``[N]`` (any shape, really: all are elementwise
until the final mean) and returns *objectives to maximise* unless its name says ``loss``.
At θ = θ_k the ratio is 1 and ∇ratio = ∇log π_θ, so every variant's gradient is the policy
gradient ``Ê[∇log π_θ(a|s)·A]`` there (the KL term has zero gradient at its minimum).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from proxrl.errors import check_choice
from proxrl.types import Array

SURROGATES = ("none", "clip", "kl_fixed", "kl_adaptive")
"""The selectable surrogate kinds (see the module table)."""


def ratio(logp: Array, logp_old: Array) -> Array:
    """``ratio = π_θ(a|s)/π_θk(a|s) = exp(log π_θ(a|s) − log π_θk(a|s))``, elementwise."""
    return jnp.exp(logp - logp_old)


def ratio_surrogate(logp: Array, logp_old: Array, adv: Array) -> Array:
    """The unclipped importance-weighted advantage ``ratio·A`` (PPO's "no clipping or penalty"), per sample."""
    return ratio(logp, logp_old) * adv


def clipped_surrogate(logp: Array, logp_old: Array, adv: Array, clip_eps: Array | float) -> Array:
    """The clipped objective, per sample,

        ℓ^CLIP = min{ ratio·A,  clip_{[1−ε, 1+ε]}(ratio)·A }.

    For A > 0 it stops rewarding increases of ratio beyond 1 + ε; for A < 0 decreases below 1 − ε.
    It is a pessimistic (lower) bound of ratio·A, so where the clip binds the gradient is zero.
    """
    r = ratio(logp, logp_old)
    return jnp.minimum(r * adv, jnp.clip(r, 1.0 - clip_eps, 1.0 + clip_eps) * adv)


def kl_penalised_surrogate(logp: Array, logp_old: Array, adv: Array, kl: Array, beta: Array | float) -> Array:
    """The regularisation form of the NPG step, per sample: ``ratio·A − β·KL(π_θ(·|s), π_θk(·|s))``.

    ``kl`` is the per-state divergence (exact for categorical and Gaussian heads); β = 1/η.
    """
    return ratio(logp, logp_old) * adv - beta * kl


def adapt_beta(beta: Array | float, kl: Array | float, kl_target: Array | float) -> Array:
    """The PPO paper's adaptive KL coefficient, applied once per update with d = the measured KL:

    d < d_targ / 1.5  ⇒  β ← β / 2        (the step moved too little: penalise less)
    d > d_targ · 1.5  ⇒  β ← β · 2        (it moved too far: penalise more)
    otherwise            β unchanged.
    """
    beta = jnp.asarray(beta, jnp.float32)
    beta = jnp.where(kl < kl_target / 1.5, beta / 2.0, beta)
    return jnp.where(kl > kl_target * 1.5, beta * 2.0, beta)


def entropy_bonus(entropy: Array, ent_coef: Array | float) -> Array:
    """The entropy bonus ``c·(1/n) Σ H(π_θ(·|s))``, i.e. ``−c·KL(π_θ, π_unif)`` up to a constant."""
    return ent_coef * jnp.mean(entropy)


def value_loss(v: Array, v_old: Array, returns: Array, clip_eps: Array | float | None = None) -> Array:
    """The critic's regression loss ``½·mean (V_φ(s) − R̂)²`` toward the targets R̂ (GAE λ-returns).

    With ``clip_eps`` (the PPO implementation detail "value clipping") the prediction is kept near
    the old one, ``V_clip = V_φk(s) + clip(V_φ(s) − V_φk(s), −ε, ε)``, and the loss is the pessimistic
    ``½·mean max{(V_φ − R̂)², (V_clip − R̂)²}``.
    """
    unclipped = (v - returns) ** 2
    if clip_eps is None:
        return 0.5 * jnp.mean(unclipped)
    v_clipped = v_old + jnp.clip(v - v_old, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum(unclipped, (v_clipped - returns) ** 2))


def approx_kl(logp: Array, logp_old: Array) -> Array:
    """Sampled estimate of KL(π_θk, π_θ) from the stored actions (a ∼ π_θk), always ≥ 0:

    KL ≈ mean[(ratio − 1) − log ratio]      (Schulman's low-variance "k3" estimator).
    """
    log_ratio = logp - logp_old
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def clip_fraction(logp: Array, logp_old: Array, clip_eps: Array | float) -> Array:
    """Fraction of samples whose ratio lies outside [1 − ε, 1 + ε] (where the clip can bind)."""
    return jnp.mean((jnp.abs(ratio(logp, logp_old) - 1.0) > clip_eps).astype(jnp.float32))


class PolicyTerms(NamedTuple):
    """What :func:`policy_loss` reports besides the loss (all scalars)."""

    surrogate: Array
    approx_kl: Array
    clip_frac: Array


def policy_loss(
    kind: str,
    logp: Array,
    logp_old: Array,
    adv: Array,
    *,
    clip_eps: Array | float = 0.2,
    kl: Array | None = None,
    beta: Array | float = 0.0,
) -> tuple[Array, PolicyTerms]:
    """``−mean ℓ`` for the surrogate ``kind`` (one of :data:`SURROGATES`), to minimise.

    ``kind`` is static (a Python string); ``kl`` (per sample) is needed by the KL kinds. The
    diagnostics use ``clip_eps`` for ``clip_frac`` whatever the kind.
    """
    check_choice("surrogate", kind, SURROGATES)
    if kind == "none":
        per_sample = ratio_surrogate(logp, logp_old, adv)
    elif kind == "clip":
        per_sample = clipped_surrogate(logp, logp_old, adv, clip_eps)
    else:
        if kl is None:
            raise ValueError(f"surrogate {kind!r} needs the per-sample kl")
        per_sample = kl_penalised_surrogate(logp, logp_old, adv, kl, beta)
    surrogate = jnp.mean(per_sample)
    terms = PolicyTerms(surrogate, approx_kl(logp, logp_old), clip_fraction(logp, logp_old, clip_eps))
    return -surrogate, terms
