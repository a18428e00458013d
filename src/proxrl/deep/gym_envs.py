"""Host-side Gymnasium vector environments emitting the same ``Transition`` as the JAX back end.

Gymnasium's default (NEXT_STEP) autoreset spends one step of every episode boundary on a dummy
transition. We run a :class:`gymnasium.vector.SyncVectorEnv` in ``AutoresetMode.SAME_STEP`` instead:
the step that ends an episode returns the *reset* observation, and the true final observation is in
``info["final_obs"][i]`` (with the mask ``info["_final_obs"]``). We put the reset observation in
``EnvStep.obs`` (the policy acts on it next) and the true final one in ``EnvStep.next_obs`` (the
truncation bootstrap V(s_{t+1}) needs it), exactly like :mod:`proxrl.deep.jax_envs`.

    env = make_gym_env("HalfCheetah-v5", num_envs=4)
    obs = env.reset(seed=0)
    traj, obs = env.rollout(obs, jitted_policy, num_steps=128)   # numpy [T, B, ...]; policy(obs, t)
    returns = env.episodes(jitted_mode, seed=1, max_steps=1000)   # one episode per copy

Arrays are numpy; observations and rewards are float32. The environment is stateful (it is a host
simulator); everything the learner sees is a plain array.

That state can be rebuilt exactly. With ``record_episodes=True`` every copy remembers how its current episode
began (the seed of a seeded reset, or the state of its random generator before an unseeded one) and the
actions it has taken since (:class:`EpisodeRecorder`). :meth:`GymVecEnv.episode_record` returns that record,
and :meth:`GymVecEnv.replay` resets each copy as its episode began and steps it through the same actions: a
simulator that is a deterministic function of its generator and its actions (MuJoCo and the classic-control
and toy-text environments are) is then exactly where it was. This is how a resumed run continues its episodes.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, EnvStep, Space, unknown_env_message
from proxrl.errors import ConfigError, check_int_at_least
from proxrl.types import Transition


def convert_gym_space(space: gym.Space) -> Space:
    """A Gymnasium ``Discrete`` or ``Box`` as our :data:`Space`."""
    if isinstance(space, gym.spaces.Discrete):
        if int(space.start) != 0:
            raise ConfigError(f"Discrete spaces must start at 0, got start={int(space.start)}")
        return DiscreteSpace(int(space.n))
    if isinstance(space, gym.spaces.Box):
        return BoxSpace(space.low.astype(np.float32), space.high.astype(np.float32), tuple(space.shape))
    raise ConfigError(f"space must be a Discrete or Box space, got {type(space).__name__}")


EPISODE_RECORD_LIMIT = 100_000
"""An episode longer than this many steps is no longer recorded (its copy cannot be replayed)."""


def _generator_state(generator: np.random.Generator) -> dict[str, Any] | None:
    """The generator's bit-generator state if it is plain JSON (PCG64's is), else None."""
    state = generator.bit_generator.state
    try:
        json.dumps(state, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return state


class EpisodeRecorder(gym.Wrapper):
    """One copy's record of its current episode: how it began and the actions taken since.

    ``start`` is ``{"seed": s}`` after ``reset(seed=s)``, ``{"rng": state}`` after an unseeded reset (``state``:
    the copy's generator before that reset, as JSON), or None when the episode cannot be replayed (reset
    options, a generator whose state is not JSON, an episode longer than :data:`EPISODE_RECORD_LIMIT`).
    ``actions`` are the actions exactly as the copy received them.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.start: dict[str, Any] | None = None
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        if options is not None:
            self.start = None
        elif seed is not None:
            self.start = {"seed": int(seed)}
        else:
            state = _generator_state(self.env.np_random)
            self.start = None if state is None else {"rng": state}
        self.actions = []
        return super().reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self.start is not None:
            if len(self.actions) >= EPISODE_RECORD_LIMIT:
                self.start, self.actions = None, []
            else:
                self.actions.append(np.array(action, copy=True))
        return super().step(action)


@dataclasses.dataclass(frozen=True)
class EpisodeRecord:
    """How every copy's current episode began (``starts``, JSON) and its actions since (``actions[i]``:
    ``[t_i, *action_shape]``)."""

    starts: list[dict[str, Any]]
    actions: list[np.ndarray]


@dataclasses.dataclass(eq=False)
class GymVecEnv:
    """``num_envs`` copies of a Gymnasium environment, stepped together on the host."""

    env_id: str
    vec_env: gym.vector.VectorEnv
    observation_space: Space
    action_space: Space
    num_envs: int

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every copy (copy i seeded with ``seed + i``); returns ``obs[B, ...]``."""
        obs, _ = self.vec_env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float32)

    def step(self, action: np.ndarray) -> EnvStep:
        """One step of every copy, auto-resetting in the same step.

        Box actions are clipped to the bounds before they reach the simulator (the policy's own
        sample is what the caller stores, so its log-probability stays exact).
        """
        action = np.asarray(action)
        if isinstance(self.action_space, BoxSpace):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        obs, reward, terminated, truncated, info = self.vec_env.step(action)
        obs = np.asarray(obs, dtype=np.float32)
        return EnvStep(
            obs=obs,
            reward=np.asarray(reward, dtype=np.float32),
            terminated=np.asarray(terminated, dtype=bool),
            truncated=np.asarray(truncated, dtype=bool),
            next_obs=true_next_obs(obs, info),
        )

    def rollout(
        self, obs: np.ndarray, policy: Callable[[np.ndarray, int], np.ndarray], num_steps: int
    ) -> tuple[Transition, np.ndarray]:
        """``num_steps`` steps from ``obs[B, ...]`` under ``policy(obs, t) -> action[B, ...]`` (jit it).

        The host side of every Gymnasium run: training rollouts (:class:`~proxrl.run.host.HostRunner`) and
        evaluation (:meth:`episodes`). Returns a time-major numpy :class:`~proxrl.types.Transition`
        ``[T, B, ...]`` (actions as the policy gave them, before clipping to the bounds) and the observation
        to continue from.
        """
        steps = []
        for t in range(num_steps):
            action = np.asarray(policy(obs, t))
            out = self.step(action)
            steps.append(Transition(obs, action, out.reward, out.terminated, out.truncated, out.next_obs))
            obs = out.obs
        traj = Transition(*(np.stack(field) for field in zip(*steps, strict=True)))
        return traj, obs

    def first_episodes(
        self, obs: np.ndarray, policy: Callable[[np.ndarray, int], np.ndarray], num_steps: int
    ) -> tuple[Transition, np.ndarray]:
        """:meth:`rollout` for episodic learners (:attr:`proxrl.types.Learner.episodic`), which use each copy's
        first episode only: a copy is stepped until its first episode ends (then reset, as SAME_STEP would, and
        left waiting), and the rollout stops once every copy has ended. The rows after a copy's end are
        padding: its reset observation (as ``obs`` and ``next_obs``), a zero action and reward, no end. Up to
        each copy's first end the rows equal :meth:`rollout`'s. Same shapes as :meth:`rollout`."""
        envs = list(self.vec_env.envs)
        alive = np.ones(self.num_envs, bool)
        steps: list[Transition] = []
        for t in range(num_steps):
            action = np.asarray(policy(obs, t))
            sent = action
            if isinstance(self.action_space, BoxSpace):
                sent = np.clip(action, self.action_space.low, self.action_space.high)
            reward = np.zeros(self.num_envs, np.float32)
            terminated = np.zeros(self.num_envs, bool)
            truncated = np.zeros(self.num_envs, bool)
            next_obs, new_obs = obs.copy(), obs.copy()
            for i in np.flatnonzero(alive):
                o, r, terminated[i], truncated[i], _ = envs[i].step(sent[i])
                reward[i], next_obs[i], new_obs[i] = r, o, o
                if terminated[i] or truncated[i]:
                    new_obs[i] = envs[i].reset()[0]
            row_action = np.where(alive.reshape(-1, *[1] * (action.ndim - 1)), action, np.zeros_like(action))
            steps.append(Transition(obs, row_action, reward, terminated, truncated, next_obs))
            alive &= ~(terminated | truncated)
            obs = new_obs
            if not alive.any():
                break
        while len(steps) < num_steps:  # every copy has ended: padding rows
            last = steps[-1]
            steps.append(
                Transition(
                    obs,
                    np.zeros_like(last.action),
                    np.zeros_like(last.reward),
                    np.zeros_like(last.terminated),
                    np.zeros_like(last.truncated),
                    obs,
                )
            )
        traj = Transition(*(np.stack(field) for field in zip(*steps, strict=True)))
        return traj, obs

    def episodes(
        self,
        policy: Callable[[np.ndarray], np.ndarray],
        seed: int,
        max_steps: int,
        on_step: Callable[[], None] | None = None,
    ) -> np.ndarray:
        """Undiscounted return of one episode per copy ``[B]``: every copy reset (copy i seeded ``seed + i``) and
        stepped under ``policy(obs[B, ...]) -> action[B, ...]`` until each has ended once (rewards after a copy's
        first end are not counted) or ``max_steps``. ``on_step()`` runs after each step while an episode goes on
        (recording frames)."""
        obs = self.reset(seed=seed)
        total = np.zeros(self.num_envs)
        alive = np.ones(self.num_envs, bool)
        for _ in range(max_steps):
            out = self.step(np.asarray(policy(obs)))
            total += np.where(alive, out.reward, 0.0)
            alive &= ~(out.terminated | out.truncated)
            obs = out.obs
            if not alive.any():
                break
            if on_step is not None:
                on_step()
        return total

    def episode_record(self) -> EpisodeRecord | None:
        """Every copy's :class:`EpisodeRecorder` record, or None if one of them cannot be replayed (or the
        environment was made without ``record_episodes``)."""
        recorders = list(self.vec_env.envs)
        if not all(isinstance(r, EpisodeRecorder) and r.start is not None for r in recorders):
            return None
        space = self.vec_env.single_action_space
        empty = np.zeros((0, *space.shape), space.dtype)
        return EpisodeRecord(
            starts=[dict(r.start) for r in recorders],
            actions=[np.stack(r.actions) if r.actions else empty for r in recorders],
        )

    def replay(self, record: EpisodeRecord) -> np.ndarray:
        """Rebuild every copy's episode from ``record``: reset it as the episode began, then step it through
        the recorded actions. Returns the observations ``[B, ...]`` to continue from (compare them with the ones
        saved: equal observations show the replay arrived). ValueError if the record does not fit these copies
        or an episode ends during its replay."""
        envs = list(self.vec_env.envs)
        if len(record.starts) != len(envs) or len(record.actions) != len(envs):
            raise ValueError(f"the record holds {len(record.starts)} copies, the environment {len(envs)}")
        obs = []
        for env, start, actions in zip(envs, record.starts, record.actions, strict=True):
            if "seed" in start:
                o, _ = env.reset(seed=int(start["seed"]))
            else:
                state = start["rng"]
                generator = np.random.Generator(getattr(np.random, state["bit_generator"])())
                generator.bit_generator.state = state
                env.np_random = generator
                o, _ = env.reset()
            for a in actions:
                o, _, terminated, truncated, _ = env.step(a)
                if terminated or truncated:
                    raise ValueError("an episode ended during its replay")
            obs.append(o)
        return np.asarray(obs, dtype=np.float32)

    def close(self) -> None:
        self.vec_env.close()


def true_next_obs(obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
    """``obs`` with the rows of ended episodes replaced by their final observation (SAME_STEP info)."""
    if "final_obs" not in info:
        return obs
    next_obs = obs.copy()
    for i in np.flatnonzero(info["_final_obs"]):
        next_obs[i] = info["final_obs"][i]
    return next_obs


def make_gym_env(
    env_id: str, num_envs: int = 1, record_episodes: bool = False, **env_kwargs: Any
) -> GymVecEnv:
    """A synchronous Gymnasium vector environment in SAME_STEP autoreset mode.

    ``env_kwargs`` go to ``gymnasium.make`` for each copy (e.g. ``max_episode_steps=200``). An unknown
    id raises :class:`~proxrl.errors.ConfigError` naming the closest registered ids. ``record_episodes``
    wraps each copy in an :class:`EpisodeRecorder` (see :meth:`GymVecEnv.replay`).
    """
    num_envs = check_int_at_least("num_envs", num_envs, 1)
    known = list(gym.registry)
    if env_id not in known:
        raise ConfigError(unknown_env_message(env_id, known, "Gymnasium"))
    try:
        vec_env = gym.make_vec(
            env_id,
            num_envs=num_envs,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
            wrappers=[EpisodeRecorder] if record_episodes else None,
            **env_kwargs,
        )
    except (gym.error.Error, ImportError) as e:  # a missing dependency (Box2D, MuJoCo, ALE, …), a bad spec
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"env_id {env_id!r} cannot be made here: {reason}") from None
    try:
        observation_space = convert_gym_space(vec_env.single_observation_space)
        action_space = convert_gym_space(vec_env.single_action_space)
    except ConfigError as e:
        vec_env.close()
        raise ConfigError(f"env_id {env_id!r}: its {e}") from None
    return GymVecEnv(
        env_id=env_id,
        vec_env=vec_env,
        observation_space=observation_space,
        action_space=action_space,
        num_envs=num_envs,
    )


def resolve_backend(env_id: str, backend: str = "auto") -> str:
    """``"gymnax"`` or ``"gymnasium"`` for ``env_id``: the one asked for, or with ``"auto"`` gymnax when it
    registers the id (a whole run then compiles into one function) and Gymnasium otherwise. An id neither
    registers raises :class:`~proxrl.errors.ConfigError` naming the closest ids of both."""
    import gymnax

    in_gymnax, in_gym = env_id in gymnax.registered_envs, env_id in gym.registry
    if backend == "gymnax" or (backend == "auto" and in_gymnax):
        if not in_gymnax:
            raise ConfigError(unknown_env_message(env_id, list(gymnax.registered_envs), "gymnax"))
        return "gymnax"
    if backend in ("gymnasium", "auto") and in_gym:
        return "gymnasium"
    known = list(gym.registry) if backend == "gymnasium" else [*gymnax.registered_envs, *gym.registry]
    raise ConfigError(
        unknown_env_message(env_id, known, "Gymnasium" if backend == "gymnasium" else "gymnax or Gymnasium")
    )
