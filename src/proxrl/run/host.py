"""Host-side training on Gymnasium environments (MuJoCo included), many seeds at once.

The learner is the same :class:`~proxrl.types.Learner` the gymnax back end traces; only the collect step
differs. For ``N`` seeds of a learner with ``B`` environments, one synchronous Gymnasium vector
environment holds ``N·B`` copies (SAME_STEP autoreset, :mod:`proxrl.deep.gym_envs`)::

    per step:    a = act(carry_s, obs_s, key)  for every seed s   (one jitted, vmapped call)
                 obs, r, terminated, truncated, next_obs = env.step(a)          (host)
    per rollout: carry_s = absorb(carry_s, traj_s)                              (one jitted, vmapped call)

``act`` and ``absorb`` are :func:`proxrl.deep.loops.act` and :func:`~proxrl.deep.loops.absorb`, the
functions the gymnax back end uses inside its scan, so normalisation, episode statistics and ``learn`` are
the same code on both back ends. Copy ``s·B + b`` of the vector environment is seeded ``seed + s·B + b``.

The environments are host state. A checkpoint holds how every copy's current episode began and the actions
it has taken since (:meth:`HostRunner.host_state`, :class:`~proxrl.deep.gym_envs.EpisodeRecorder`); a resumed
run replays them, checks that the replay arrives at the saved observations, and continues the same episodes, so
its records equal an uninterrupted run's. Where that is not possible (a checkpoint written without this record,
an environment that cannot be replayed, a replay that arrives elsewhere) the run says so in one line and
restarts its episodes from fresh resets; the learner, the normalisation statistics and the keys are restored
exactly either way.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.deep import loops
from proxrl.deep.gym_envs import EPISODE_RECORD_LIMIT, EpisodeRecord, GymVecEnv, make_gym_env
from proxrl.deep.loops import Carry, Normalization
from proxrl.errors import ConfigError
from proxrl.run.runner import HostState, Runner
from proxrl.types import Learner, Metrics, PRNGKey, Transition

EPISODIC_SEED_OFFSET = 2_000_000
"""An episodic learner's rollout k resets environment i with seed ``seed + EPISODIC_SEED_OFFSET + k·N·B + i``
(apart from the seeds of the first reset, ``seed + i``, and of a resume, ``seed + 1_000_000 + i``)."""


NO_RECORD = "the checkpoint holds no record of the environments' episodes"
"""Why a resume restarts the episodes of a checkpoint written without their record (by an older proxrl)."""
UNRECORDABLE = (
    "the environments' episodes could not be recorded (reset options, a random generator whose state is not JSON, "
    f"or an episode longer than {EPISODE_RECORD_LIMIT:,} steps)"
)
"""Why a checkpoint holds no episode record although the runner keeps one (said when a resume restarts them)."""
REPLAY_MISSED = "replaying the environments' episodes did not arrive at the saved observations"
"""Why a resume restarts the episodes when their replay ends elsewhere than the checkpoint's observations."""


def _max_episode_steps(env_id: str) -> int:
    import gymnasium as gym

    spec = gym.spec(env_id)
    return int(spec.max_episode_steps or 1000)


class HostRunner(Runner):
    """``num_seeds`` runs of a learner on host Gymnasium environments (see the module docstring)."""

    def __init__(
        self,
        learner: Learner,
        env_id: str,
        num_seeds: int,
        norm: Normalization,
        eval_episodes: int,
        seed: int,
    ) -> None:
        if learner.env_groups:
            raise ConfigError(
                f"{learner.name}: common random numbers (crn) need a gymnax environment; the Gymnasium back end "
                "resets every environment independently (use crn='none')"
            )
        self.learner, self.env_id, self.norm = learner, env_id, norm
        self._updates_reset = 0  # rollouts that began from a reset (episodic learners)
        self.first_episodes_only = learner.episodic and not norm.reward
        self.name, self.steps_per_update = learner.name, learner.num_envs * learner.num_steps
        self.num_seeds, self.eval_episodes, self.seed = num_seeds, eval_episodes, seed
        self.env: GymVecEnv = make_gym_env(
            env_id, num_envs=num_seeds * learner.num_envs, record_episodes=True
        )
        self._eval_env: GymVecEnv | None = None
        self.observation_space, self.action_space = self.env.observation_space, self.env.action_space
        self._obs: np.ndarray | None = None

        num_steps = learner.num_steps

        def rollout_keys(carry: Carry) -> jax.Array:
            # the gymnax loop's keys: step t of the rollout keyed fold_in(K, 1) split T ways (none of them is
            # K's successor split(K)[0], which the next rollout starts from); derived once per rollout
            return jax.random.split(jax.random.fold_in(carry.key, 1), num_steps)

        def act(carry: Carry, obs: jax.Array, keys: jax.Array, t: jax.Array) -> jax.Array:
            # the policy's half of step t's split, as in the gymnax loop
            return loops.act(learner, norm, carry, obs, jax.random.split(keys[t])[0])

        self._rollout_keys = jax.jit(jax.vmap(rollout_keys))
        self._act = jax.jit(jax.vmap(act, in_axes=(0, 0, 0, None)))
        # the carry is donated: its buffers (a replay buffer of up to 10⁶ transitions) are updated in place
        # instead of copied on every call (a 1e6-transition buffer copy cost TD3 ≈ 50 ms per step)
        # the seed axis is named so that schedule branches stay branches (loops.lockstep)
        absorb = jax.vmap(lambda c, tr: loops.absorb(learner, norm, c, tr), axis_name=loops.SEED_AXIS)
        self._absorb = jax.jit(absorb, donate_argnums=0)
        self._init = jax.jit(jax.vmap(lambda k, o: loops.carry_init(learner, k, o, norm)))

        self._mode = jax.jit(jax.vmap(lambda carry, obs: loops.mode(learner, norm, carry, obs)))

    def mode(self, carry: Carry, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions ``[N, B, ...]`` for raw observations ``[N, B, ...]``."""
        return np.asarray(self._mode(carry, obs))

    # -- shapes: the vector environment is flat [N·B]; the learner sees [N, B] --
    def _split(self, x: np.ndarray, per_seed: int) -> np.ndarray:
        return x.reshape(self.num_seeds, per_seed, *x.shape[1:])

    def _reset(self, offset: int = 0) -> None:
        self._obs = self._split(self.env.reset(seed=self.seed + offset), self.learner.num_envs)

    def init(self, keys: PRNGKey) -> Carry:
        """Every seed's carry, initialised on its first observations (keys ``[N]``)."""
        self._reset()
        return self._init(keys, self._obs)

    def host_state(self) -> HostState:
        """The episode record of every environment copy (``host/actions/i`` and the observations ``host/obs``
        to continue from) and the count of episodic resets; see the module docstring."""
        meta: dict[str, Any] = {"updates_reset": self._updates_reset}
        record = self.env.episode_record()
        if record is None or self._obs is None:
            return HostState({}, meta)
        arrays = {f"host/actions/{i}": a for i, a in enumerate(record.actions)}
        arrays["host/obs"] = np.asarray(self._obs)
        return HostState(arrays, meta | {"starts": record.starts})

    def resumed(self, carry: Carry, host: HostState | None = None) -> Carry:
        """Continue a restored carry: on the same episodes, rebuilt from ``host`` (see the module docstring), or,
        where they cannot be rebuilt, on freshly reset environments (one line on stderr says so)."""
        if host is not None:
            self._updates_reset = int(host.meta.get("updates_reset", 0))
        why = self._replay(host)
        if why is None:
            return carry
        print(
            f"{self.name} {self.env_id}: {why}; its episodes restart from fresh resets, so from here on its "
            "records differ from an uninterrupted run's",
            file=sys.stderr,
        )
        self._reset(offset=1_000_000)
        return carry._replace(episode_return=jnp.zeros_like(carry.episode_return))

    def _replay(self, host: HostState | None) -> str | None:
        """Rebuild the environments' episodes from ``host``: None when done, else why not."""
        if host is None:
            return NO_RECORD
        if "starts" not in host.meta:
            return UNRECORDABLE
        n = self.num_seeds * self.learner.num_envs
        starts = host.meta["starts"]
        keys = [f"host/actions/{i}" for i in range(n)] + ["host/obs"]
        if not isinstance(starts, list) or len(starts) != n or any(k not in host.arrays for k in keys):
            return "the checkpoint's record of the environments does not fit this run"
        record = EpisodeRecord(starts, [host.arrays[f"host/actions/{i}"] for i in range(n)])
        try:
            obs = self.env.replay(record)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            return f"the environments' episodes could not be replayed ({e})"
        saved = host.arrays["host/obs"]
        shape = (self.num_seeds, self.learner.num_envs, *obs.shape[1:])
        if saved.shape != shape or not np.array_equal(obs, saved.reshape(obs.shape)):
            return REPLAY_MISSED
        self._obs = self._split(obs, self.learner.num_envs)
        return None

    def update(self, carry: Carry) -> tuple[Carry, Metrics]:
        """One rollout of ``num_steps`` steps per environment, then ``absorb`` (learn) for every seed."""
        n, b = self.num_seeds, self.learner.num_envs
        keys = self._rollout_keys(carry)  # [N, T]

        def policy(obs: np.ndarray, t: int) -> np.ndarray:  # [N·B, ...] -> [N·B, ...]
            action = np.asarray(self._act(carry, self._split(obs, b), keys, t))
            return action.reshape(n * b, *action.shape[2:])

        if self.learner.episodic:  # every rollout from freshly reset environments, seeded by the update
            self._updates_reset += 1
            self._reset(offset=EPISODIC_SEED_OFFSET + self._updates_reset * n * b)
        flat_obs = self._obs.reshape(n * b, *self._obs.shape[2:])
        # an episodic learner uses each environment's first episode only: the rest is not simulated (unless
        # reward normalisation, which folds in every step, is on)
        collect = self.env.first_episodes if self.first_episodes_only else self.env.rollout
        traj, obs = collect(flat_obs, policy, self.learner.num_steps)  # [T, N·B, ...]
        self._obs = self._split(obs, b)
        traj = Transition(*(np.swapaxes(f.reshape(f.shape[0], n, -1, *f.shape[2:]), 0, 1) for f in traj))
        return self._absorb(carry, traj)

    def chunk(self, carry: Carry, updates: int) -> tuple[Carry, dict[str, np.ndarray]]:
        """``updates`` updates; metrics stacked as ``[N, updates]`` numpy arrays (the gymnax layout)."""
        rows: list[Metrics] = []
        for _ in range(updates):
            carry, metrics = self.update(carry)
            rows.append(metrics)
        stacked = {k: np.stack([np.asarray(r[k]) for r in rows], axis=1) for k in rows[0]}
        return carry, stacked

    def evaluate(self, carry: Carry, keys: PRNGKey, round_index: int) -> np.ndarray:
        """Mean undiscounted return of ``eval_episodes`` deterministic episodes per seed ``[N]``, on a
        separate vector environment (seeded by the evaluation round; ``keys`` unused), each episode to its
        first end (:meth:`~proxrl.deep.gym_envs.GymVecEnv.episodes`)."""
        if self._eval_env is None:
            self._eval_env = make_gym_env(self.env_id, num_envs=self.num_seeds * self.eval_episodes)
        n, e = self.num_seeds, self.eval_episodes

        def policy(obs: np.ndarray) -> np.ndarray:
            action = self.mode(carry, self._split(obs, e))
            return action.reshape(n * e, *action.shape[2:])

        seed = self.seed + 10_000_000 + max(1000, n * e) * round_index  # rounds never share an episode seed
        returns = self._eval_env.episodes(policy, seed, _max_episode_steps(self.env_id))
        return returns.reshape(n, e).mean(axis=1)

    def close(self) -> None:
        self.env.close()
        if self._eval_env is not None:
            self._eval_env.close()


def gym_spaces(env_id: str) -> tuple[Any, Any]:
    """``(observation_space, action_space)`` of a Gymnasium id, as :mod:`proxrl.deep.jax_envs` spaces."""
    env = make_gym_env(env_id, num_envs=1)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
