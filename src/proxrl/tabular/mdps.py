"""Builders of finite MDPs: random (Garnet), a chain with a sparse distant reward, gridworlds, and
Gymnasium's toy-text environments converted from their transition tables.

Every builder returns a validated :class:`~proxrl.tabular.mdp.FiniteMDP`. Terminal states are
absorbing with zero reward: the reward of the step that *enters* a terminal state is kept (it is part
of ``R[s, a]`` of the state left), and nothing is earned afterwards, so ``V^π`` equals the expected
episodic discounted return. :func:`garnet` is pure JAX (``jax.vmap`` it over keys for many MDPs).
"""

from __future__ import annotations

import difflib
import math
import warnings
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.errors import ConfigError, check_in_range, check_int_at_least
from proxrl.tabular.mdp import FiniteMDP, finite_mdp
from proxrl.types import Array, PRNGKey


def garnet(key: PRNGKey, num_states: int, num_actions: int, branching: int, gamma: float = 0.9) -> FiniteMDP:
    """A random Garnet-style MDP (Archibald et al., 1995).

    Each ``(s, a)`` moves to ``branching`` distinct next states chosen uniformly, with probabilities
    given by the gaps between ``branching − 1`` sorted uniform cut points of ``[0, 1]``; rewards
    ``R(s, a) ∼ U[0, 1]``; ``ρ`` uniform; no terminal states. Pure JAX: ``jax.vmap(lambda k: garnet(k,
    ...))(keys)`` builds a stack of MDPs. The integer sizes are static and checked on the host.
    """
    S = check_int_at_least("num_states", num_states, 1)
    A = check_int_at_least("num_actions", num_actions, 1)
    b = check_int_at_least("branching", branching, 1)
    if b > S:
        raise ConfigError(f"branching must be <= num_states ({S}), got {b}")
    check_in_range("gamma", float(gamma), 0.0, 1.0, high_open=True)
    dt = jnp.result_type(float)
    k_next, k_cut, k_r = jax.random.split(key, 3)

    def row(k_n: PRNGKey, k_c: PRNGKey) -> Array:
        nxt = jax.random.choice(k_n, S, (b,), replace=False)
        cuts = jnp.sort(jax.random.uniform(k_c, (b - 1,), dt))
        probs = jnp.diff(jnp.concatenate([jnp.zeros(1, dt), cuts, jnp.ones(1, dt)]))
        return jnp.zeros(S, dt).at[nxt].add(probs)

    kn = jax.random.split(k_next, S * A)
    kc = jax.random.split(k_cut, S * A)
    P = jax.vmap(row)(kn, kc).reshape(S, A, S)
    R = jax.random.uniform(k_r, (S, A), dt)
    return FiniteMDP(P, R, jnp.asarray(gamma, dt), jnp.full(S, 1.0 / S, dt), jnp.zeros(S, bool))


def random_mdp(seed: int, num_states: int, num_actions: int, branching: int, gamma: float = 0.9) -> FiniteMDP:
    """:func:`garnet` from an integer seed, validated through :func:`~proxrl.tabular.mdp.finite_mdp`."""
    m = garnet(jax.random.key(seed), num_states, num_actions, branching, gamma)
    return finite_mdp(np.asarray(m.P), np.asarray(m.R), gamma, np.asarray(m.rho))


def chain(
    length: int = 10,
    num_actions: int = 2,
    gamma: float = 0.9,
    far_reward: float = 1.0,
    near_reward: float = 0.0,
    slip: float = 0.0,
) -> FiniteMDP:
    """A chain ``0 → 1 → … → length−1`` with a sparse reward at its far end.

    Action 0 moves right (from the last state it stays and earns ``far_reward``); every other action
    returns to state 0, earning ``near_reward`` there if taken in state 0. With probability ``slip`` any
    action has the effect of a return to 0. ``ρ = δ_0``. The optimal policy always moves right; a
    policy that rarely does so needs ``≈ (1/π(right))^length`` steps to see the reward once, which is
    where softmax PG's plateaus come from.
    """
    n = check_int_at_least("length", length, 2)
    A = check_int_at_least("num_actions", num_actions, 2)
    check_in_range("slip", slip, 0.0, 1.0)
    P = np.zeros((n, A, n))
    R = np.zeros((n, A))
    for s in range(n):
        P[s, 0, min(s + 1, n - 1)] += 1.0 - slip
        P[s, 0, 0] += slip
        P[s, 1:, 0] = 1.0
    R[n - 1, 0] = (1.0 - slip) * far_reward
    R[0, 1:] = near_reward
    rho = np.zeros(n)
    rho[0] = 1.0
    return finite_mdp(P, R, gamma, rho)


#: The default gridworld: start S, goal G (+1, terminal), pit X (−1, terminal), walls #.
DEFAULT_GRID = ("S..#....", "..#..X..", "....#...", ".X.....G")

#: Gridworld moves, in action order: left, down, right, up (FrozenLake's order).
MOVES = ((0, -1), (1, 0), (0, 1), (-1, 0))


def gridworld(
    layout: Sequence[str] = DEFAULT_GRID,
    gamma: float = 0.95,
    slip: float = 0.0,
    step_reward: float = 0.0,
    goal_reward: float = 1.0,
    pit_reward: float = -1.0,
) -> FiniteMDP:
    """A gridworld from a text ``layout``: ``S`` start, ``G`` goal, ``X`` pit, ``#`` wall, ``.`` free.

    States are the non-wall cells in row-major order. Actions left, down, right, up; a move into a wall
    or off the grid stays put. With probability ``slip`` the move goes to one of the two perpendicular
    directions instead (``slip/2`` each). Every step earns ``step_reward``; entering ``G`` earns
    ``goal_reward``, entering ``X`` earns ``pit_reward``, and both are terminal (absorbing, zero reward).
    """
    rows = [str(r) for r in layout]
    if not rows or any(len(r) != len(rows[0]) for r in rows) or len(rows[0]) == 0:
        raise ConfigError("layout must be a non-empty list of equal-length rows")
    chars = set("".join(rows))
    if not chars <= set("SGX#."):
        raise ConfigError(
            f"layout may only hold S, G, X, #, '.', got {''.join(sorted(chars - set('SGX#.')))!r}"
        )
    if "".join(rows).count("S") != 1:
        raise ConfigError("layout must hold exactly one start cell S")
    check_in_range("slip", slip, 0.0, 1.0)
    cells = [(i, j) for i, r in enumerate(rows) for j, c in enumerate(r) if c != "#"]
    index = {c: k for k, c in enumerate(cells)}
    S, A = len(cells), len(MOVES)
    P = np.zeros((S, A, S))
    R = np.zeros((S, A))
    terminal = np.array([rows[i][j] in "GX" for i, j in cells])

    def land(cell: tuple[int, int], move: tuple[int, int]) -> int:
        i, j = cell[0] + move[0], cell[1] + move[1]
        ok = 0 <= i < len(rows) and 0 <= j < len(rows[0]) and rows[i][j] != "#"
        return index[(i, j)] if ok else index[cell]

    for s, cell in enumerate(cells):
        if terminal[s]:
            P[s, :, s] = 1.0
            continue
        for a in range(A):
            outcomes = [(a, 1.0 - slip), ((a + 1) % 4, slip / 2), ((a + 3) % 4, slip / 2)]
            for b, p in outcomes:
                s2 = land(cell, MOVES[b])
                P[s, a, s2] += p
                c2 = rows[cells[s2][0]][cells[s2][1]]
                bonus = goal_reward if c2 == "G" else pit_reward if c2 == "X" else 0.0
                R[s, a] += p * (step_reward + bonus)
    rho = np.zeros(S)
    rho[[k for k, (i, j) in enumerate(cells) if rows[i][j] == "S"]] = 1.0
    return finite_mdp(P, R, gamma, rho, terminal)


def toy_text_ids() -> list[str]:
    """Ids of the installed Gymnasium's toy-text environments that expose a transition table ``P``."""
    import gymnasium as gym

    ids = []
    for env_id, spec in gym.registry.items():
        ep = str(spec.entry_point)
        if "toy_text" in ep and "blackjack" not in ep.lower():
            ids.append(env_id)
    return sorted(ids)


def toy_text(env_id: str, gamma: float = 0.99, **kwargs: object) -> FiniteMDP:
    """Convert a Gymnasium toy-text environment (FrozenLake, CliffWalking, Taxi) to a :class:`FiniteMDP`.

    Reads ``env.unwrapped.P[s][a] = [(p, s', r, terminated), ...]`` and ``initial_state_distrib``:
    ``P[s, a, s'] += p`` and ``R[s, a] += p·r``. A transition with ``terminated = True`` ends the
    episode: its reward is kept and its target becomes absorbing with zero reward. When a target is
    reached only by terminating transitions (FrozenLake's holes and goal, CliffWalking's goal) that
    state is made absorbing in place; otherwise (Taxi, whose drop-off states can also be reached
    without terminating) terminating transitions are redirected to one extra absorbing state ``S``.
    ``kwargs`` go to ``gymnasium.make`` (e.g. ``is_slippery=False``, ``map_name="8x8"``).
    Unknown ids raise :class:`ConfigError` naming the closest registered ids.
    """
    import gymnasium as gym

    known = toy_text_ids()
    if env_id not in known:
        close = difflib.get_close_matches(env_id, known, n=3, cutoff=0.4)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        raise ConfigError(f"unknown toy-text environment {env_id!r}; {hint}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            env = gym.make(env_id, **kwargs).unwrapped
        except TypeError as e:
            raise ConfigError(f"bad options for {env_id}: {e}") from None
    S, A = int(env.observation_space.n), int(env.action_space.n)
    table = env.P
    ends_into: set[int] = set()
    plain_into: set[int] = set()
    for s in range(S):
        for a in range(A):
            for p, s2, _, done in table[s][a]:
                if p > 0:
                    (ends_into if done else plain_into).add(int(s2))
    extra = bool(ends_into & plain_into)
    n = S + 1 if extra else S
    P = np.zeros((n, A, n))
    R = np.zeros((n, A))
    terminal = np.zeros(n, bool)
    if extra:
        terminal[S] = True
    else:
        terminal[sorted(ends_into)] = True
    for s in range(S):
        for a in range(A):
            for p, s2, r, done in table[s][a]:
                P[s, a, S if (done and extra) else int(s2)] += p
                R[s, a] += p * float(r)
    P[terminal] = 0.0
    R[terminal] = 0.0
    for s in np.nonzero(terminal)[0]:
        P[s, :, s] = 1.0
    rho = np.zeros(n)
    rho[:S] = np.asarray(env.initial_state_distrib, dtype=float)
    return finite_mdp(P, R, gamma, rho, terminal)


def frozen_lake(slippery: bool = True, map_name: str = "4x4", gamma: float = 0.99) -> FiniteMDP:
    """FrozenLake-v1 (``map_name`` ``"4x4"`` or ``"8x8"``, slippery or not) via :func:`toy_text`."""
    return toy_text("FrozenLake-v1", gamma, is_slippery=slippery, map_name=map_name)


#: Sutton & Barto's short corridor at γ = 1: the best probability of "right" shared by all states, 2 − √2,
#: and its value V(s_0) = −(6 + 4√2) ≈ −11.657 (:func:`short_corridor_value`).
SHORT_CORRIDOR_P_STAR = 2.0 - math.sqrt(2.0)
SHORT_CORRIDOR_V_STAR = -(6.0 + 4.0 * math.sqrt(2.0))


def short_corridor(gamma: float = 0.99999) -> FiniteMDP:
    """Sutton & Barto's short corridor with switched actions (*Reinforcement Learning*, 2nd ed., Example 13.1).

    States 0, 1, 2 and a terminal state 3; actions 0 = left, 1 = right; reward −1 per step; start in 0. In
    states 0 and 2 the actions move as labelled (left in 0 stays in 0, right in 2 ends the episode); state 1
    reverses them (right goes to 0, left to 2). The point of the example is a policy that cannot tell the
    states apart: pair it with :func:`short_corridor_observations` (one class for every state,
    :mod:`proxrl.tabular.aliasing`). Every deterministic such policy never terminates, and the best one,
    ``π(right) = p* = 2 − √2``, has value ``−(6 + 4√2) ≈ −11.657`` at ``γ = 1``.

    :class:`~proxrl.tabular.mdp.FiniteMDP` needs ``γ < 1``; at the default ``γ = 0.99999`` the best aliased
    ``p`` is ``2 − √2 + 1.2e-6`` and its value ``−11.6558`` (``1.1e-3`` above the ``γ = 1`` value: the
    difference is about ``(1 − γ)·E[τ²]/2`` for an episode of length τ).
    """
    P = np.zeros((4, 2, 4))
    R = np.full((4, 2), -1.0)
    P[0, 0, 0] = P[0, 1, 1] = 1.0  # left: wall; right: on
    P[1, 1, 0] = P[1, 0, 2] = 1.0  # reversed
    P[2, 0, 1] = P[2, 1, 3] = 1.0  # right: the goal
    P[3, :, 3] = 1.0
    R[3] = 0.0
    rho = np.array([1.0, 0.0, 0.0, 0.0])
    return finite_mdp(P, R, gamma, rho, terminal=np.array([False, False, False, True]))


def short_corridor_observations() -> np.ndarray:
    """The short corridor's observation map: every state looks the same (one class, ``θ`` of shape ``[1, 2]``)."""
    return np.zeros(4, dtype=np.int32)


def short_corridor_value(p: float | Array) -> float | Array:
    """``V(s_0)`` of the short corridor at ``γ = 1`` when every state goes right with probability ``p ∈ (0, 1)``.

    From ``v_0 = −1 + p v_1 + (1−p) v_0``, ``v_1 = −1 + p v_0 + (1−p) v_2``, ``v_2 = −1 + (1−p) v_1``:
    ``v_0 = (2p − 4)/(p(1 − p))``, maximised where ``p² − 4p + 2 = 0``, at ``p* = 2 − √2``.
    """
    return (2.0 * p - 4.0) / (p * (1.0 - p))
