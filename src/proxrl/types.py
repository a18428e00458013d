"""Shared types. No logic lives here.

The lecture reduces every policy-based method to one loop::

    for k = 1, 2, ...:
        data_k  = collect(π_θk)
        Â_k     = estimate(data_k)
        θ_{k+1} = argmax_θ  L_k(θ; Â_k) − (1/η)·D(θ, θ_k)      # the proximal step

The proximal step (the last line) and its parts live in :mod:`proxrl.prox`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree
State = Any  # a pytree
Metrics = dict[str, Array]


class TableBatch(NamedTuple):
    """What a softmax-table proximal step consumes.

    ``q``: the advantage or action-value estimate ``Q̂_k(s, a)`` (or ``R̂_k(a)`` without states),
    shape ``[..., A]``; any per-state constant added to it leaves every step unchanged.
    ``d``: state weights ``d_ρ^{π_k}(s)`` of the surrogate ``Σ_s d(s) Σ_a π_θ(a|s) Q̂(s,a)``,
    shape ``q.shape[:-1]`` (a scalar 1.0 for the expert and bandit settings).
    """

    q: Array
    d: Array | float = 1.0


class Transition(NamedTuple):
    """One environment step, emitted identically by every environment back end.

    Shapes are ``[T, B, ...]`` (time-major) once stacked. ``terminated``: the episode ended inside
    the MDP (no bootstrap); ``truncated``: it was cut from outside (time limit; bootstrap from
    ``V(next_obs)``). ``next_obs`` is the true next observation, not the reset one.
    """

    obs: Array
    action: Array
    reward: Array
    terminated: Array
    truncated: Array
    next_obs: Array


ScheduleFn = Callable[[Array], Array]


class Learner(NamedTuple):
    """An algorithm as pure functions, independent of where its data comes from.

    The same learner trains on a JAX-native environment (the rollout is traced into the update,
    :func:`proxrl.deep.loops.loop_update`) and on host-side Gymnasium environments (one jitted
    ``act`` per step, one jitted ``learn`` per rollout, :mod:`proxrl.run.host`):

    - ``init(key, obs) -> state``: ``obs`` are example observations ``[num_envs, ...]``;
    - ``act(state, obs, key) -> action``: the behaviour policy (sampling, exploration noise, warm-up);
    - ``mode(state, obs) -> action``: the deterministic policy used for evaluation (argmax / mean / μ_θ);
    - ``learn(state, traj) -> (state, metrics)``: one iteration's estimate → proximal step on the
      time-major rollout ``traj`` ``[num_steps, num_envs, ...]`` just collected with ``act`` under ``state``.

    All four are pure and jit/vmap-safe (``vmap`` over seeds gives many runs in one call). Observations
    reach the learner already normalised when observation normalisation is on, and rewards scaled when
    reward normalisation is on. ``num_envs``, ``num_steps``: the rollout shape ``learn`` expects.
    ``env_groups`` (gymnax environments only): 0, every environment draws its own randomness; G > 0,
    environment i draws the reset and transition randomness of environment i mod G (common random numbers: the
    environments of a group start from the same states, and restart from the same states whenever their episodes
    end at the same step).
    ``learn_raw(state, traj, view) -> (state, metrics)`` (optional, learners that keep data, such as a replay
    buffer): ``learn`` on the raw rollout, keeping it raw, with ``view`` normalising whatever batch the learner
    draws (observations standardised, rewards scaled) by the statistics of the time it is drawn, as
    Stable-Baselines3's VecNormalize does with a replay buffer; used when normalisation is on. Without it such a
    learner would keep each transition normalised by the statistics of its own time. A wrapper that replaces
    ``learn`` (``learner._replace(learn=…)``) replaces ``learn_raw`` too, or sets it to ``None``: otherwise runs
    with normalisation would call the unwrapped one.
    ``episodic``: every rollout starts from freshly reset environments (each environment's first episode begins
    at the rollout's first step), for learners that score a policy by whole episodes from the start (ARS). Only
    each environment's first episode counts: ``learn`` must not use the steps after its first end (the host back
    end does not simulate them and pads them with the environment's next observation, a zero
    action and reward, no end).
    """

    name: str
    init: Callable[[PRNGKey, Array], State]
    act: Callable[[State, Array, PRNGKey], Array]
    mode: Callable[[State, Array], Array]
    learn: Callable[[State, Transition], tuple[State, Metrics]]
    num_envs: int
    num_steps: int
    env_groups: int = 0
    episodic: bool = False
    learn_raw: (
        Callable[[State, Transition, Callable[[Transition], Transition]], tuple[State, Metrics]] | None
    ) = None
