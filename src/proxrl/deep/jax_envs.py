"""JAX-native environments (gymnax 1.0) behind one small, pure interface.

``make_jax_env(env_id)`` returns a :class:`JaxEnv` whose functions are pure, so a whole run jits and
vmaps (over parallel environments and over seeds):

    obs, state = env.reset(key)                      # one environment
    out, state = env.step(key, state, action)        # auto-resets; out.next_obs is the TRUE s_{t+1}
    obs, state = env.reset_batch(key, num_envs)      # leading axis B
    traj, state, obs = env.rollout(key, state, obs, policy_fn, params, num_steps)   # Transition [T, B]

gymnax 1.0's ``step`` returns ``(obs, state, reward, terminated, truncated, info)``; after an episode
ends its ``obs`` is already the *reset* observation and the true final one is in
``info["final_observation"]``. We keep both: the reset observation is what the policy acts on next,
the final one goes to ``Transition.next_obs`` so that a truncated step bootstraps from V(s_{t+1}).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces as gspaces

from proxrl.errors import ConfigError
from proxrl.types import Array, Params, PRNGKey, Transition

EnvState = Any  # a gymnax state pytree
PolicyFn = Callable[[Params, Array, PRNGKey], Array]
"""``policy_fn(params, obs[B, ...], key) -> action[B, ...]``, pure and jittable."""


class DiscreteSpace(NamedTuple):
    """Actions (or observations) ``{0, …, n − 1}``; a single element has shape ``()``."""

    n: int

    @property
    def shape(self) -> tuple[int, ...]:
        return ()


class BoxSpace(NamedTuple):
    """A box ``low ≤ x ≤ high`` (elementwise) of the given ``shape``; bounds may be ±inf."""

    low: np.ndarray
    high: np.ndarray
    shape: tuple[int, ...]


Space = DiscreteSpace | BoxSpace


class EnvStep(NamedTuple):
    """What one environment step returns (any leading batch axes).

    ``obs``: the observation to act on next (the reset one after an episode end);
    ``next_obs``: the true s_{t+1} (the final observation of an ending episode).
    """

    obs: Array
    reward: Array
    terminated: Array
    truncated: Array
    next_obs: Array


def convert_gymnax_space(space: gspaces.Space) -> Space:
    """A gymnax ``Discrete`` or ``Box`` as our :data:`Space` (numpy bounds broadcast to ``shape``)."""
    if isinstance(space, gspaces.Discrete):
        return DiscreteSpace(int(space.n))
    if isinstance(space, gspaces.Box):
        shape = tuple(int(s) for s in space.shape)
        low = np.broadcast_to(np.asarray(space.low, dtype=np.float32), shape).copy()
        high = np.broadcast_to(np.asarray(space.high, dtype=np.float32), shape).copy()
        return BoxSpace(low, high, shape)
    raise ConfigError(f"space must be a Discrete or Box space, got {type(space).__name__}")


def unknown_env_message(env_id: str, known: list[str], backend: str) -> str:
    """One line naming the bad id and the closest registered ones."""
    close = difflib.get_close_matches(env_id, list(dict.fromkeys(known)), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; see {backend}'s registry"
    return f"env_id {env_id!r} is not a registered {backend} environment{hint}"


@dataclasses.dataclass(frozen=True, eq=False)
class JaxEnv:
    """A gymnax environment with its parameters bound, as pure functions (hashable by identity)."""

    env_id: str
    env: Any
    env_params: Any
    observation_space: Space
    action_space: Space

    def reset(self, key: PRNGKey) -> tuple[Array, EnvState]:
        """``(obs, state)`` of one freshly reset environment."""
        return self.env.reset(key, self.env_params)

    def step(self, key: PRNGKey, state: EnvState, action: Array) -> tuple[EnvStep, EnvState]:
        """One step of one environment, auto-resetting after termination or truncation.

        Box actions are clipped to the bounds before they reach the dynamics (the caller stores the
        policy's own sample, so its log-probability stays exact).
        """
        if isinstance(self.action_space, BoxSpace):
            action = jnp.clip(action, self.action_space.low, self.action_space.high)
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, self.env_params)
        out = EnvStep(
            obs=obs,
            reward=jnp.asarray(reward, jnp.float32),
            terminated=jnp.asarray(terminated, bool),
            truncated=jnp.asarray(truncated, bool),
            next_obs=info["final_observation"],
        )
        return out, state

    def reset_batch(self, key: PRNGKey, num_envs: int, groups: int = 0) -> tuple[Array, EnvState]:
        """``num_envs`` resets: ``obs[B, ...]`` and a state with leading axis B; independent, or with ``groups``
        G > 0 environment i reset like environment i mod G (:func:`env_keys`)."""
        return jax.vmap(self.reset)(env_keys(key, num_envs, groups))

    def step_batch(
        self, key: PRNGKey, state: EnvState, action: Array, groups: int = 0
    ) -> tuple[EnvStep, EnvState]:
        """:meth:`step` over a leading batch axis B of ``state`` and ``action`` (keys by :func:`env_keys`)."""
        num_envs = jax.tree.leaves(state)[0].shape[0]
        return jax.vmap(self.step)(env_keys(key, num_envs, groups), state, action)

    def rollout(
        self,
        key: PRNGKey,
        env_state: EnvState,
        obs: Array,
        policy_fn: PolicyFn,
        params: Params,
        num_steps: int,
        groups: int = 0,
    ) -> tuple[Transition, EnvState, Array]:
        """``num_steps`` steps of B parallel environments under ``policy_fn`` (a ``lax.scan``).

        Args:
          key: PRNG key.
          env_state: batched state (leading axis B), e.g. from :meth:`reset_batch`.
          obs: observations to act on, ``[B, ...]``.
          policy_fn: ``(params, obs[B, ...], key) -> action[B, ...]``.
          params: the policy parameters θ_k.
          num_steps: T, a Python int.
          groups: 0, or G > 0 for common random numbers: environment i steps (and auto-resets) with the key of
            environment i mod G (:func:`env_keys`).

        Returns:
          ``(traj, env_state, obs)``: a time-major :class:`Transition` ``[T, B, ...]`` and the carry
          to continue from. Log-probabilities and values under θ_k are recomputed from ``traj`` by
          the caller (one forward pass), which keeps this function independent of the policy's form.
        """

        def one_step(carry: tuple[EnvState, Array], k: PRNGKey) -> tuple[tuple[EnvState, Array], Transition]:
            state, o = carry
            k_act, k_env = jax.random.split(k)
            action = policy_fn(params, o, k_act)
            out, state = self.step_batch(k_env, state, action, groups)
            tr = Transition(o, action, out.reward, out.terminated, out.truncated, out.next_obs)
            return (state, out.obs), tr

        (env_state, obs), traj = jax.lax.scan(one_step, (env_state, obs), jax.random.split(key, num_steps))
        return traj, env_state, obs


def env_keys(key: PRNGKey, num_envs: int, groups: int = 0) -> Array:
    """One key per environment: ``num_envs`` independent keys (``groups`` = 0, the plain split), or with G > 0
    the G keys of ``split(key, G)`` repeated, environment i getting key i mod G (common random numbers)."""
    if not groups:
        return jax.random.split(key, num_envs)
    return jax.random.split(key, groups)[jnp.arange(num_envs) % groups]


def make_jax_env(env_id: str, **param_overrides: Any) -> JaxEnv:
    """Build a gymnax environment by id, overriding fields of its default ``EnvParams``.

    Example: ``make_jax_env("CartPole-v1", max_steps_in_episode=200)``. An unknown id or parameter
    name raises :class:`~proxrl.errors.ConfigError` with the closest registered names. Without overrides the
    environment is built once per id and reused (its spaces are read from device arrays: building it again
    later would queue small device computations behind whatever training is in flight, and with jax 0.10.2 on
    CPU such a queued conversion can wait for ever).
    """
    if not param_overrides:
        return _default_jax_env(env_id)
    return _build_jax_env(env_id, **param_overrides)


@functools.cache
def _default_jax_env(env_id: str) -> JaxEnv:
    return _build_jax_env(env_id)


def _build_jax_env(env_id: str, **param_overrides: Any) -> JaxEnv:
    known = list(gymnax.registered_envs)
    if env_id not in known:
        raise ConfigError(unknown_env_message(env_id, known, "gymnax"))
    env, env_params = gymnax.make(env_id)
    fields = [f.name for f in dataclasses.fields(env_params)]
    for name in param_overrides:
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=3, cutoff=0.4)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; allowed: {', '.join(fields)}"
            raise ConfigError(f"{env_id} has no parameter {name!r}{hint}")
    env_params = env_params.replace(**param_overrides)
    return JaxEnv(
        env_id=env_id,
        env=env,
        env_params=env_params,
        observation_space=convert_gymnax_space(env.observation_space(env_params)),
        action_space=convert_gymnax_space(env.action_space(env_params)),
    )
