"""Finite discounted MDPs with exact policy evaluation and exact optimal values.

An MDP is ``(P, R, γ, ρ)``: ``P[s, a, s']`` the transition probabilities, ``R[s, a]`` the expected
reward, ``γ ∈ [0, 1)`` the discount and ``ρ[s]`` the start distribution (lecture, "Policy Learning in
MDPs"). A policy is a table ``π[s, a]`` whose rows are distributions. Everything is exact:

    V^π = (I − γ P_π)⁻¹ r_π                      P_π[s, s'] = Σ_a π(a|s) P[s, a, s'],  r_π[s] = Σ_a π(a|s) R[s, a]
    Q^π(s, a) = R(s, a) + γ Σ_s' P[s, a, s'] V^π(s')
    A^π(s, a) = Q^π(s, a) − V^π(s)
    d_ρ^π = ρᵀ (I − γ P_π)⁻¹                      d_ρ^π(s) = Σ_{h≥1} γ^{h−1} Pr(s_h = s | s_1 ∼ ρ, π)

``d_ρ^π`` is the lecture's **unnormalised** discounted state distribution: ``Σ_s d_ρ^π(s) = 1/(1−γ)``.
Multiply by ``1 − γ`` for a probability distribution.

:class:`FiniteMDP` is a NamedTuple, hence a pytree: every function here is pure JAX and vmaps over a
stack of MDPs of one shape (:func:`stack`). Build one with :func:`finite_mdp`, which validates on the
host and raises :class:`~proxrl.errors.ConfigError` with a one-line message.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.errors import ConfigError, check_distribution, check_in_range
from proxrl.types import Array

#: Tolerance on row sums of ``P`` (and on ``ρ``) accepted by :func:`finite_mdp`.
ROW_SUM_ATOL = 1e-6


class FiniteMDP(NamedTuple):
    """A finite discounted MDP (a pytree; leading axes, if any, are a stack of MDPs).

    ``P``: ``[S, A, S]`` transition probabilities. ``R``: ``[S, A]`` expected rewards.
    ``gamma``: scalar discount in ``[0, 1)``. ``rho``: ``[S]`` start distribution.
    ``terminal``: ``[S]`` bool, states where the episode has ended; each is absorbing with zero
    reward (``P[s, a, s] = 1``, ``R[s, a] = 0``), so values are unaffected and samplers may stop there.
    """

    P: Array
    R: Array
    gamma: Array
    rho: Array
    terminal: Array

    @property
    def num_states(self) -> int:
        return int(self.P.shape[-3])

    @property
    def num_actions(self) -> int:
        return int(self.P.shape[-2])


class Evaluation(NamedTuple):
    """Exact evaluation of one policy: ``v`` ``[S]``, ``q`` ``[S, A]``, ``adv`` ``[S, A]``, ``d`` ``[S]``
    (unnormalised ``d_ρ^π``) and ``value`` (scalar ``V^π(ρ) = Σ_s ρ(s) V^π(s)``)."""

    v: Array
    q: Array
    adv: Array
    d: Array
    value: Array


class Optimal(NamedTuple):
    """``v`` = V* ``[S]``, ``q`` = Q* ``[S, A]``, ``pi`` = a greedy π* ``[S, A]`` (one-hot),
    ``iterations`` used, and ``bound``: a bound on ``‖v − V*‖_∞`` (0 for policy iteration, whose V is
    exact up to the linear solve)."""

    v: Array
    q: Array
    pi: Array
    iterations: Array
    bound: Array


def _float_dtype() -> jnp.dtype:
    """The default float dtype: float32, or float64 inside ``jax.enable_x64(True)``."""
    return jnp.result_type(float)


def finite_mdp(
    P: Array | np.ndarray,
    R: Array | np.ndarray,
    gamma: float,
    rho: Array | np.ndarray | None = None,
    terminal: Array | np.ndarray | None = None,
) -> FiniteMDP:
    """Validate ``(P, R, γ, ρ)`` on the host and build a :class:`FiniteMDP` in the default float dtype.

    Checks: ``P`` is ``[S, A, S]`` with ``S, A ≥ 1``, finite, non-negative, every row ``P[s, a, ·]``
    summing to 1 (to ``1e-6``); ``R`` is ``[S, A]`` and finite; ``γ ∈ [0, 1)``; ``ρ`` (default uniform)
    a distribution over the ``S`` states; ``terminal`` (default none) a bool ``[S]`` whose states are
    absorbing with zero reward. Any failure raises :class:`ConfigError` with a one-line message.
    """
    P_np = np.asarray(P, dtype=float)
    if P_np.ndim != 3:
        raise ConfigError(f"P must have shape (S, A, S), got shape {P_np.shape}")
    S, A, S2 = P_np.shape
    if S == 0:
        raise ConfigError("the MDP must have at least one state, got S = 0")
    if A == 0:
        raise ConfigError("the MDP must have at least one action, got A = 0")
    if S2 != S:
        raise ConfigError(f"P must have shape (S, A, S) with matching S, got shape {P_np.shape}")
    if not np.all(np.isfinite(P_np)) or np.any(P_np < 0):
        s, a, s2 = np.argwhere(~np.isfinite(P_np) | (P_np < 0))[0]
        raise ConfigError(f"P must have finite entries >= 0, got P[{s}, {a}, {s2}] = {P_np[s, a, s2]!r}")
    sums = P_np.sum(-1)
    bad = np.abs(sums - 1.0) > ROW_SUM_ATOL
    if np.any(bad):
        s, a = np.argwhere(bad)[0]
        raise ConfigError(
            f"every row P[s, a, :] must be a distribution summing to 1, got sum {sums[s, a]:.6g} at (s={s}, a={a})"
        )
    R_np = np.asarray(R, dtype=float)
    if R_np.shape != (S, A):
        raise ConfigError(f"R must have shape (S, A) = ({S}, {A}), got shape {R_np.shape}")
    if not np.all(np.isfinite(R_np)):
        raise ConfigError("R must have finite entries, got a NaN or infinity")
    check_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
    rho_np = np.full(S, 1.0 / S) if rho is None else np.asarray(rho, dtype=float)
    if rho_np.shape != (S,):
        raise ConfigError(f"rho must have shape (S,) = ({S},), got shape {rho_np.shape}")
    check_distribution("rho", rho_np)
    term = np.zeros(S, bool) if terminal is None else np.asarray(terminal, dtype=bool)
    if term.shape != (S,):
        raise ConfigError(f"terminal must have shape (S,) = ({S},), got shape {term.shape}")
    for s in np.nonzero(term)[0]:
        if not (np.allclose(P_np[s, :, s], 1.0, atol=ROW_SUM_ATOL) and np.all(R_np[s] == 0)):
            raise ConfigError(
                f"terminal state {s} must be absorbing with zero reward (P[s, a, s] = 1, R[s, a] = 0)"
            )
    dt = _float_dtype()
    return FiniteMDP(
        P=jnp.asarray(P_np / sums[..., None], dt),
        R=jnp.asarray(R_np, dt),
        gamma=jnp.asarray(gamma, dt),
        rho=jnp.asarray(rho_np / rho_np.sum(), dt),
        terminal=jnp.asarray(term),
    )


def stack(mdps: list[FiniteMDP]) -> FiniteMDP:
    """Stack MDPs of one shape along a new leading axis (for ``jax.vmap``)."""
    shapes = {m.P.shape for m in mdps}
    if len(shapes) != 1:
        raise ConfigError(f"stacked MDPs must share one shape (S, A, S), got {sorted(shapes)}")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *mdps)


def check_policy_table(mdp: FiniteMDP, pi: Array, name: str = "policy") -> None:
    """Raise :class:`ConfigError` unless ``pi`` has shape ``[S, A]`` (static, so safe under jit/vmap)."""
    want = (mdp.num_states, mdp.num_actions)
    got = tuple(jnp.shape(pi))
    if got != want:
        raise ConfigError(f"{name} must have shape (S, A) = {want}, got {got}")


def transition_matrix(mdp: FiniteMDP, pi: Array) -> Array:
    """``P_π[s, s'] = Σ_a π(a|s) P[s, a, s']``, shape ``[S, S]``."""
    check_policy_table(mdp, pi)
    return jnp.einsum("sa,sat->st", pi, mdp.P)


def policy_reward(mdp: FiniteMDP, pi: Array) -> Array:
    """``r_π[s] = Σ_a π(a|s) R(s, a)``, shape ``[S]``."""
    check_policy_table(mdp, pi)
    return jnp.sum(pi * mdp.R, axis=-1)


def _resolvent_system(mdp: FiniteMDP, pi: Array) -> Array:
    """``I − γ P_π``, shape ``[S, S]``."""
    return jnp.eye(mdp.num_states, dtype=mdp.P.dtype) - mdp.gamma * transition_matrix(mdp, pi)


def v_pi(mdp: FiniteMDP, pi: Array) -> Array:
    """``V^π = (I − γ P_π)⁻¹ r_π``, shape ``[S]`` (one linear solve)."""
    return jnp.linalg.solve(_resolvent_system(mdp, pi), policy_reward(mdp, pi))


def q_from_v(mdp: FiniteMDP, v: Array) -> Array:
    """``Q(s, a) = R(s, a) + γ Σ_s' P[s, a, s'] V(s')``, shape ``[S, A]``."""
    return mdp.R + mdp.gamma * jnp.einsum("sat,t->sa", mdp.P, v)


def q_pi(mdp: FiniteMDP, pi: Array) -> Array:
    """``Q^π``, shape ``[S, A]``."""
    return q_from_v(mdp, v_pi(mdp, pi))


def adv_pi(mdp: FiniteMDP, pi: Array) -> Array:
    """``A^π(s, a) = Q^π(s, a) − V^π(s)``, shape ``[S, A]``."""
    v = v_pi(mdp, pi)
    return q_from_v(mdp, v) - v[:, None]


def state_distribution(mdp: FiniteMDP, pi: Array) -> Array:
    """Unnormalised ``d_ρ^π(s) = Σ_{h≥1} γ^{h−1} Pr(s_h = s)`` = ``ρᵀ(I − γ P_π)⁻¹``, shape ``[S]``.

    Sums to ``1/(1 − γ)``; ``(1 − γ)·d_ρ^π`` is the normalised (probability) version.
    """
    return jnp.linalg.solve(_resolvent_system(mdp, pi).T, mdp.rho)


def value(mdp: FiniteMDP, pi: Array) -> Array:
    """``V^π(ρ) = Σ_s ρ(s) V^π(s)`` (a scalar); differentiable in ``pi``."""
    return mdp.rho @ v_pi(mdp, pi)


def evaluate(mdp: FiniteMDP, pi: Array) -> Evaluation:
    """``V^π, Q^π, A^π, d_ρ^π, V^π(ρ)`` from one LU factorisation: ``(I − γP_π)⁻¹`` by one solve, then
    ``V = (I − γP_π)⁻¹ r_π`` and ``d = (I − γP_π)⁻ᵀ ρ``. One LAPACK call, not two: jaxlib 0.10's batched LAPACK
    kernels split a vmapped factorisation across XLA's CPU pool and two of them at once can deadlock it
    (the likely cause of a deadlock of the vmapped η grid in tests/test_tabular.py while it made two)."""
    m = _resolvent_system(mdp, pi)
    inv = jnp.linalg.solve(m, jnp.eye(mdp.num_states, dtype=m.dtype))
    v = inv @ policy_reward(mdp, pi)
    d = inv.T @ mdp.rho
    q = q_from_v(mdp, v)
    return Evaluation(v=v, q=q, adv=q - v[:, None], d=d, value=mdp.rho @ v)


def greedy(q: Array) -> Array:
    """A deterministic greedy policy ``π(a|s) = 1{a = argmax_b q(s, b)}`` (ties: lowest index), ``[S, A]``."""
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1], dtype=q.dtype)


def bellman_optimality(mdp: FiniteMDP, v: Array) -> Array:
    """``(T V)(s) = max_a R(s, a) + γ Σ_s' P[s, a, s'] V(s')``, shape ``[S]``."""
    return jnp.max(q_from_v(mdp, v), axis=-1)


def value_iteration(mdp: FiniteMDP, tol: float = 1e-6, max_iters: int = 100_000) -> Optimal:
    """``V_{t+1} = T V_t`` from ``V_0 = 0`` until ``γ/(1−γ)·‖V_{t+1} − V_t‖_∞ ≤ tol``.

    Since ``T`` is a γ-contraction, ``‖V_{t+1} − V*‖_∞ ≤ γ/(1−γ)·‖V_{t+1} − V_t‖_∞``, so on exit
    ``‖v − V*‖_∞ ≤ tol`` (reported as ``bound``), unless ``max_iters`` sweeps ran first. In float32 the
    achievable ``tol`` is limited by rounding (about ``1e-7·max|V|·γ/(1−γ)``); use ``jax.enable_x64``
    for tighter tolerances. ``pi`` is greedy in ``q = Q(v)``.
    """
    g = mdp.gamma
    factor = g / jnp.maximum(1.0 - g, 1e-30)

    def cond(c):
        _, bound, it = c
        return (bound > tol) & (it < max_iters)

    def body(c):
        v, _, it = c
        v_new = bellman_optimality(mdp, v)
        return v_new, factor * jnp.max(jnp.abs(v_new - v)), it + 1

    v0 = jnp.zeros(mdp.num_states, mdp.P.dtype)
    v, bound, it = jax.lax.while_loop(cond, body, (v0, jnp.asarray(jnp.inf, mdp.P.dtype), jnp.asarray(0)))
    q = q_from_v(mdp, v)
    return Optimal(v=v, q=q, pi=greedy(q), iterations=it, bound=bound)


def policy_iteration(mdp: FiniteMDP, max_iters: int = 1_000) -> Optimal:
    """Howard's policy iteration: ``π_{t+1} = greedy(Q^{π_t})`` from ``π_0 = greedy(R)``.

    An action is switched only where it improves ``Q^{π_t}(s, ·)`` by more than a rounding margin, so
    the loop stops (no cycling on ties) once the policy is stable; it is then optimal, and ``V^{π}`` is
    exact up to the linear solve. Terminates in finitely many steps (at most ``A^S``; in practice a
    handful); ``max_iters`` only guards against rounding pathologies.
    """
    eps = 10 * jnp.finfo(mdp.P.dtype).eps

    def improve(pi: Array) -> tuple[Array, Array, Array]:
        v = v_pi(mdp, pi)
        q = q_from_v(mdp, v)
        current = jnp.sum(pi * q, axis=-1)
        best = jnp.max(q, axis=-1)
        switch = best > current + eps * (1.0 + jnp.abs(current))
        new = jnp.where(switch[:, None], greedy(q), pi)
        return new, jnp.any(switch), v

    def cond(c):
        _, changed, it = c
        return changed & (it < max_iters)

    def body(c):
        pi, _, it = c
        new, changed, _ = improve(pi)
        return new, changed, it + 1

    pi0 = greedy(mdp.R)
    pi, _, it = jax.lax.while_loop(cond, body, (pi0, jnp.asarray(True), jnp.asarray(0)))
    v = v_pi(mdp, pi)
    q = q_from_v(mdp, v)
    return Optimal(v=v, q=q, pi=pi, iterations=it, bound=jnp.zeros((), mdp.P.dtype))


def optimal_value(mdp: FiniteMDP) -> Array:
    """``V*(ρ)`` by policy iteration (a scalar)."""
    return mdp.rho @ policy_iteration(mdp).v
