"""Builders of finite MDPs: random (Garnet), a chain with a sparse distant reward, gridworlds, and
Gymnasium's toy-text environments converted from their transition tables.

Every builder returns a validated :class:`~proxrl.tabular.mdp.FiniteMDP`. Terminal states are
absorbing with zero reward: the reward of the step that *enters* a terminal state is kept (it is part
of ``R[s, a]`` of the state left), and nothing is earned afterwards, so ``V^π`` equals the expected
episodic discounted return. :func:`garnet` is pure JAX (``jax.vmap`` it over keys for many MDPs).
"""

from __future__ import annotations

import difflib
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
