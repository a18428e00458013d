"""Env-runner actors on Ray feeding one learner: the lecture's parallel experience collection, synchronous and
asynchronous ("Additional Technique 3").

Each :class:`EnvRunner` is a Ray actor (its own process, on this machine or on any node of a cluster) stepping
its own Gymnasium vector environments host-side with the parameters it was last sent, and returning whole
rollouts. :class:`ActorRunner` is the learner's side, a :class:`~proxrl.run.host.HostRunner` whose rollouts come
from the actors, so the training driver (:func:`proxrl.run.train.train`: seeds, chunks, evaluations,
checkpoints) runs it unchanged. Three schedules:

- **sync** (any algorithm with ``--num-actors N``): every update sends θ_k to all N actors, each steps its share
  of the learner's ``num_envs`` environments, and the learner concatenates their rollouts: the synchronised
  parallel actor-critic, the same update as one process (policy lag 0).
- **async** (``appo``, ``--lag-mode async``): every actor has a rollout request in flight, carrying the newest
  parameters when it was sent; the learner learns from whichever rollout arrives first, then sends that actor a
  new request with the parameters it has just computed. The lag (updates between acting and learning, about
  N − 1 with N actors) depends on timing.
- **fixed** (``appo``, ``--lag-mode fixed --lag L``, Cleanba's reproducible design): update k learns from the
  rollout of actor k mod N collected with the parameters θ_{k−L}; the request for it is sent as soon as θ_{k−L}
  exists, so acting overlaps learning, and every rollout's parameters, environment states and random keys are
  fixed in advance: the same seed gives the same numbers however the processes are scheduled.

Every update's metrics add ``policy_lag`` (k minus the update whose parameters acted) and take
``episodic_return`` / ``episodes`` from the actors' own episode counts. An actor's environment copy (seed s,
environment j, actor i) is seeded ``seed + s·B + j + 100003·i`` (``B``: the learner's ``num_envs``);
in the sync schedule actor i holds environments ``j = i·B/N … (i+1)·B/N − 1``, so that with one actor the copies
are seeded as in the host runner. Rollout request r draws its keys from fold_in(fold_in(key(seed), s), r); the
sync schedule numbers update k's requests k·N + i (actor i), async and fixed number theirs in the order they are
sent, so no two rollouts share a key.

A checkpoint holds what the actors are doing, so a resumed run continues exactly (:meth:`ActorRunner.host_state`):
the rollouts in flight (waited for, and saved whole), every actor's record of its environments' episodes (how each
began and the actions since, :class:`~proxrl.deep.gym_envs.EpisodeRecorder`) and running returns, and for appo
with ``--normalize-reward`` each actor's running discounted returns. The resumed actors replay their episodes, and
the saved rollouts are handed to the schedule as if they had just arrived; with the sync and fixed schedules the
records then equal an uninterrupted run's byte for byte.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.deep import registry
from proxrl.deep.appo import BehaviourTransition, behaviour
from proxrl.deep.gym_envs import EpisodeRecord, make_gym_env
from proxrl.deep.loops import Carry, Normalization, observe
from proxrl.deep.on_policy.common import make_agent
from proxrl.errors import ConfigError
from proxrl.run.cluster import init_ray
from proxrl.run.host import NO_RECORD, REPLAY_MISSED, UNRECORDABLE, HostRunner
from proxrl.run.runner import HostState
from proxrl.types import Learner, Metrics, Transition

ASYNC_DEPTH = 1
"""Rollout requests in flight per actor in the async schedule. With one, an actor waits for its next request while
the learner learns from its rollout, but with two or more actors another one is collecting meanwhile; two per
actor kept the actors busier but made the lag about 2N − 1 updates, which made PPO's step at lr 1e-3 unstable
on CartPole."""
ACTOR_SEED_STRIDE = 100_003


class EnvRunner:
    """One actor's environments and policy (run as a Ray actor by :class:`ActorRunner`).

    ``num_seeds × envs_per_seed`` Gymnasium copies; ``rollout(weights, version, request)`` steps them
    ``num_steps`` times with the parameters in ``weights`` (the learner state and observation statistics of
    every seed) and keys drawn from ``(seed, request)``, and returns the rollout ``[N, T, b, ...]``."""

    def __init__(
        self,
        algo_config: Any,
        env_id: str,
        num_seeds: int,
        envs_per_seed: int,
        env_offset: int,
        norm: Normalization,
        seed: int,
        index: int,
        total_steps: int,
        record_behaviour: bool,
    ) -> None:
        env = make_gym_env(env_id, num_envs=num_seeds * envs_per_seed, record_episodes=True)
        self.env, self.n, self.b, self.seed = env, num_seeds, envs_per_seed, seed
        entry = registry.entry_for(algo_config)[1]
        learner: Learner = entry.make_learner(
            algo_config, env.observation_space, env.action_space, total_steps
        )
        self.num_steps = learner.num_steps
        stride = learner.num_envs
        seeds = [
            seed + s * stride + env_offset + j + ACTOR_SEED_STRIDE * index
            for s in range(num_seeds)
            for j in range(envs_per_seed)
        ]
        self._seeds = seeds
        self.obs = np.asarray(env.vec_env.reset(seed=seeds)[0], np.float32)
        # the return of every copy's current episode so far
        self.running = np.zeros(num_seeds * envs_per_seed)
        agent = (
            make_agent(env.observation_space, env.action_space, algo_config.network)
            if record_behaviour
            else None
        )

        def act(
            state: Any, stats: Any, obs: jax.Array, base: jax.Array, t: jax.Array
        ) -> tuple[jax.Array, jax.Array]:
            x, key = observe(stats, obs, norm), jax.random.fold_in(base, t)
            if agent is None:
                action = learner.act(state, x, key)
                return action, jnp.zeros(action.shape[:1])
            return behaviour(agent, state.params["actor"], x, key)

        self._act = jax.jit(jax.vmap(act, in_axes=(0, 0, 0, 0, None)))
        self._keys = jax.jit(
            jax.vmap(
                lambda s, r: jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), s), r), (0, None)
            )
        )

    def rollout(self, weights: tuple[Any, Any], version: int, request: int) -> dict[str, Any]:
        """``num_steps`` steps of every copy under ``weights``; the transitions ``[N, T, b, ...]``, ``logp_mu``,
        the episodes that ended (sum and count of their returns per seed) and ``version``."""
        state, stats = jax.device_put(weights)  # once per rollout, not on every step's call
        n, b = self.n, self.b
        base = self._keys(jnp.arange(n), request)
        logps: list[np.ndarray] = []
        ep_sum, ep_count = np.zeros(n), np.zeros(n)

        def policy(obs: np.ndarray, t: int) -> np.ndarray:
            action, logp = self._act(state, stats, obs.reshape(n, b, *obs.shape[1:]), base, t)
            logps.append(np.asarray(logp))
            action = np.asarray(action)
            return action.reshape(n * b, *action.shape[2:])

        traj, self.obs = self.env.rollout(self.obs, policy, self.num_steps)
        for reward, done in zip(traj.reward, traj.terminated | traj.truncated, strict=True):
            self.running += reward
            ended = self.running[done].reshape(-1)
            per_seed = np.flatnonzero(done) // b
            np.add.at(ep_sum, per_seed, ended)
            np.add.at(ep_count, per_seed, 1)
            self.running[done] = 0.0

        def split(x: np.ndarray) -> np.ndarray:  # [T, N·b, ...] -> [N, T, b, ...]
            return np.swapaxes(x.reshape(x.shape[0], n, b, *x.shape[2:]), 0, 1)

        return {
            "traj": [split(np.asarray(f)) for f in traj],
            "logp_mu": np.swapaxes(np.stack(logps), 0, 1),  # [N, T, b]
            "episode_sum": ep_sum,
            "episode_count": ep_count,
            "version": version,
        }

    def episodes(self) -> dict[str, Any]:
        """Where this actor's environments stand: every copy's episode record (``starts`` None if one cannot be
        replayed), the observations to continue from and the running returns."""
        record = self.env.episode_record()
        return {
            "starts": None if record is None else record.starts,
            "actions": [] if record is None else record.actions,
            "obs": self.obs,
            "running": self.running.copy(),
        }

    def continue_episodes(
        self, starts: list[dict[str, Any]], actions: list[np.ndarray], obs: np.ndarray, running: np.ndarray
    ) -> str | None:
        """Rebuild the episodes :meth:`episodes` described by replaying them: None when the replay arrives at
        ``obs``, else why not (the environments are then reset afresh, with the seeds of a resume)."""
        try:
            replayed = self.env.replay(EpisodeRecord(starts, actions))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            why: str | None = f"the environments' episodes could not be replayed ({e})"
        else:
            why = None if replayed.shape == obs.shape and np.array_equal(replayed, obs) else REPLAY_MISSED
        if why is None:
            self.obs, self.running = replayed, np.array(running, np.float64)
        else:
            self.restart_episodes()
        return why

    def restart_episodes(self) -> None:
        """Fresh episodes: every copy reset with its seed + 1,000,000 (as the host runner does on a resume)."""
        self.obs = np.asarray(
            self.env.vec_env.reset(seed=[s + 1_000_000 for s in self._seeds])[0], np.float32
        )
        self.running = np.zeros_like(self.running)

    def cpu_seconds(self) -> float:
        """CPU time this actor's process has used."""
        return time.process_time()

    def close(self) -> None:
        self.env.close()


def ensure_ray(num_actors: int, address: str | None = None) -> bool:
    """Ray in this process: joins the cluster at ``address`` (HOST:PORT), or ``RAY_ADDRESS`` if set, else starts
    on this machine with max(cores, ``num_actors``) CPUs; reuses a Ray already started. Returns whether this
    call started it. An unreachable cluster is a one-line ConfigError."""
    import ray

    if ray.is_initialized():
        return False
    if address is not None:
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5.0):
                pass
            init_ray(address=address)
        except (OSError, ConnectionError, RuntimeError, ValueError) as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot join the Ray cluster at --address {address}: {reason}") from None
    elif os.environ.get("RAY_ADDRESS"):
        init_ray()
    else:
        # address="local": a new instance even where `ray start` left a (possibly dead) cluster behind
        init_ray(address="local", num_cpus=max(os.cpu_count() or 1, num_actors), include_dashboard=False)
    return True


class ActorRunner(HostRunner):
    """The learner's side of env-runner actors (module docstring): the host runner's ``absorb`` and evaluation,
    rollouts from ``num_actors`` :class:`EnvRunner` actors in the schedule ``mode`` ("sync", "async", "fixed")."""

    def __init__(
        self,
        learner: Learner,
        algo_config: Any,
        env_id: str,
        num_seeds: int,
        norm: Normalization,
        eval_episodes: int,
        seed: int,
        num_actors: int,
        total_steps: int,
        address: str | None = None,
    ) -> None:
        import ray

        if learner.episodic:
            raise ConfigError(
                f"{learner.name} resets its environments for every rollout (episodic scoring); env-runner actors "
                "keep theirs running: leave out --num-actors"
            )
        appo = learner.name == "appo"
        mode = algo_config.lag.lag_mode if appo else "sync"
        self.schedule, self.lag = mode, (algo_config.lag.lag if appo else 0)
        b = learner.num_envs
        if mode == "sync" and b % num_actors:
            raise ConfigError(
                f"num_envs ({b}) must be divisible by num_actors ({num_actors}) to share them out"
            )
        super().__init__(learner, env_id, num_seeds, norm, eval_episodes, seed)
        self._started_ray = ensure_ray(num_actors, address)
        per_actor = b // num_actors if mode == "sync" else b
        remote = ray.remote(num_cpus=1)(EnvRunner)
        self.actors = [
            remote.remote(
                algo_config,
                env_id,
                num_seeds,
                per_actor,
                i * per_actor if mode == "sync" else 0,
                norm,
                seed,
                i if mode != "sync" else 0,
                total_steps,
                appo,
            )
            for i in range(num_actors)
        ]
        self.num_actors, self.appo = num_actors, appo
        self.version = 0  # updates done: the parameters θ_version are the newest
        self.requests = 0
        self._pending: dict[Any, tuple[int, int]] = {}  # async: ref -> (actor, request)
        self._fixed: dict[int, Any] = {}  # fixed: update index -> ref
        self._weights: Any = None
        self.rollout_wait_s = 0.0
        # appo with several actors: each actor's environments have their own running discounted returns for
        # --normalize-reward (the return statistics are shared); swapped into the carry for that actor's rollout
        self._returns: dict[int, Any] = {}
        self._per_actor_returns = appo and norm.reward and num_actors > 1

    # -- the schedules --
    def _publish(self, carry: Carry) -> Any:
        import ray

        self._weights = ray.put(jax.device_get((carry.learner, carry.obs_stats)))
        return self._weights

    def _request(self, actor: int, request: int) -> Any:
        return self.actors[actor].rollout.remote(self._weights, self.version, request)

    def _next_rollouts(self, carry: Carry) -> list[dict[str, Any]]:
        import ray

        k = self.version
        if self._weights is None:
            self._publish(carry)
        if self.schedule == "sync":  # request k·N + i: every actor its own keys (one actor: request k)
            n = self.num_actors
            return ray.get([self._request(i, k * n + i) for i in range(n)])
        if self.schedule == "fixed":
            if not self._fixed:  # start (or restart after a resume): requests k .. k + lag, all with θ_k
                for j in range(k, k + self.lag + 1):
                    self._fixed[j] = self._request(j % self.num_actors, j)
            return [ray.get(self._fixed.pop(k))]
        if not self._pending:
            for _ in range(ASYNC_DEPTH):
                for i in range(self.num_actors):
                    self._pending[self._request(i, self.requests)] = (i, self.requests)
                    self.requests += 1
        ready, _ = ray.wait(list(self._pending), num_returns=1)
        ref = min(ready, key=lambda r: self._pending[r][1])
        self._async_actor = self._pending.pop(ref)[0]
        return [ray.get(ref)]

    def _after_update(self, carry: Carry) -> None:
        """Send the new parameters where the schedule needs them."""
        if self.schedule == "sync":
            self._weights = None
            return
        self._publish(carry)
        if self.schedule == "fixed":
            j = self.version + self.lag  # the rollout of update version + lag acts with θ_version
            self._fixed[j] = self._request(j % self.num_actors, j)
        else:
            self._pending[self._request(self._async_actor, self.requests)] = (
                self._async_actor,
                self.requests,
            )
            self.requests += 1

    def update(self, carry: Carry) -> tuple[Carry, Metrics]:
        """One update: the schedule's rollout(s), ``absorb`` (learn) for every seed, then new requests."""
        t0 = time.perf_counter()
        outs = self._next_rollouts(carry)
        self.rollout_wait_s += time.perf_counter() - t0
        fields = [
            np.concatenate([o["traj"][i] for o in outs], axis=2) for i in range(len(Transition._fields))
        ]
        if self.appo:
            traj: Any = BehaviourTransition(*fields, np.concatenate([o["logp_mu"] for o in outs], axis=2))
        else:
            traj = Transition(*fields)
        lag = self.version - min(o["version"] for o in outs)
        if self._per_actor_returns:
            actor = self._async_actor if self.schedule == "async" else self.version % self.num_actors
            rn = carry.reward_norm
            carry = carry._replace(
                reward_norm=rn._replace(ret=self._returns.get(actor, jnp.zeros_like(rn.ret)))
            )
            carry, metrics = self._absorb(carry, traj)
            self._returns[actor] = carry.reward_norm.ret
        else:
            carry, metrics = self._absorb(carry, traj)
        count = sum(o["episode_count"] for o in outs)
        total = sum(o["episode_sum"] for o in outs)
        with np.errstate(invalid="ignore", divide="ignore"):
            metrics = dict(
                metrics, episodic_return=np.where(count > 0, total / count, np.nan), episodes=count
            )
        metrics["policy_lag"] = np.full(self.num_seeds, float(lag))
        self.version += 1
        self._after_update(carry)
        return carry, metrics

    def _in_flight(self) -> list[tuple[int, int, Any]]:
        """The rollouts requested and not yet learnt from: ``(key, actor, ref)``, keyed by the update that will
        learn from it (fixed) or by the request's number (async); none between the updates of the sync
        schedule."""
        if self.schedule == "fixed":
            return [(j, j % self.num_actors, ref) for j, ref in sorted(self._fixed.items())]
        return sorted(((r, a, ref) for ref, (a, r) in self._pending.items()), key=lambda x: x[0])

    def host_state(self) -> HostState:
        """The actors' part of a checkpoint (module docstring): the rollouts in flight, waited for, as tensors under
        ``host/inflight/KEY/``; each actor's episode record (``host/actor/I/actions/C``), observations and running
        returns, with the records' starts in the metadata; appo's per-actor running discounted returns
        (``host/returns/I``). An actor's record is taken after the rollouts it was asked for (Ray runs an actor's
        calls in order), so it is where those rollouts left its environments."""
        import ray

        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"schedule": self.schedule, "requests": self.requests}
        in_flight = self._in_flight()
        inflight_meta = []
        for (key, actor, _), out in zip(in_flight, ray.get([ref for *_, ref in in_flight]), strict=True):
            prefix = f"host/inflight/{key}/"
            arrays |= {f"{prefix}traj/{i}": np.asarray(f) for i, f in enumerate(out["traj"])}
            for name in ("logp_mu", "episode_sum", "episode_count"):
                arrays[prefix + name] = np.asarray(out[name])
            inflight_meta.append({"key": key, "actor": actor, "version": int(out["version"])})
        meta["inflight"] = inflight_meta
        records = ray.get([a.episodes.remote() for a in self.actors])
        if all(r["starts"] is not None for r in records):
            meta["actors"] = [r["starts"] for r in records]
            for i, r in enumerate(records):
                arrays |= {f"host/actor/{i}/actions/{c}": a for c, a in enumerate(r["actions"])}
                arrays[f"host/actor/{i}/obs"] = np.asarray(r["obs"])
                arrays[f"host/actor/{i}/running"] = np.asarray(r["running"])
        for actor, ret in self._returns.items():
            arrays[f"host/returns/{actor}"] = np.asarray(ret)
        return HostState(arrays, meta)

    def _replay(self, host: HostState | None) -> str | None:
        """Continue the actors' episodes and the rollouts in flight from ``host``: None when done, else why not
        (the actors' environments then restart from fresh resets and the schedule from its update count)."""
        import ray

        if host is None:
            return NO_RECORD
        actors, inflight = host.meta.get("actors"), host.meta.get("inflight")
        if host.meta.get("schedule") != self.schedule or not isinstance(inflight, list):
            return "the checkpoint holds no record of the actors' episodes"
        if actors is None:
            return UNRECORDABLE
        arrays = host.arrays
        try:
            if not isinstance(actors, list) or len(actors) != self.num_actors:
                raise KeyError("actors")
            replays = [
                actor.continue_episodes.remote(
                    starts,
                    [arrays[f"host/actor/{i}/actions/{c}"] for c in range(len(starts))],
                    arrays[f"host/actor/{i}/obs"],
                    arrays[f"host/actor/{i}/running"],
                )
                for i, (actor, starts) in enumerate(zip(self.actors, actors, strict=True))
            ]
            fields = len(Transition._fields)
            outs = []
            for item in inflight:
                prefix = f"host/inflight/{item['key']}/"
                outs.append(
                    {
                        "traj": [arrays[f"{prefix}traj/{i}"] for i in range(fields)],
                        "logp_mu": arrays[prefix + "logp_mu"],
                        "episode_sum": arrays[prefix + "episode_sum"],
                        "episode_count": arrays[prefix + "episode_count"],
                        "version": int(item["version"]),
                    }
                )
        except (KeyError, TypeError):
            for actor in self.actors:
                actor.restart_episodes.remote()
            return "the checkpoint's record of the actors' episodes does not fit this run"
        why = next((w for w in ray.get(replays) if w is not None), None)
        if why is not None:
            for actor in self.actors:
                actor.restart_episodes.remote()
            return why
        for item, out in zip(inflight, outs, strict=True):  # as if they had just arrived
            ref = ray.put(out)
            if self.schedule == "fixed":
                self._fixed[int(item["key"])] = ref
            else:
                self._pending[ref] = (int(item["actor"]), int(item["key"]))
        self.requests = int(host.meta["requests"])
        self._returns = {
            int(k.rsplit("/", 1)[1]): jnp.asarray(v)
            for k, v in arrays.items()
            if k.startswith("host/returns/")
        }
        return None

    def resumed(self, carry: Carry, host: HostState | None = None) -> Carry:
        """A restored state, continued on the actors' saved episodes and rollouts in flight (module docstring),
        or, where they cannot be rebuilt, with the schedule restarted from its update count (in-flight rollouts
        dropped) and the actors' episodes from fresh resets, which one line on stderr says."""
        update = getattr(carry.learner, "update", None)
        self.version = int(np.asarray(update).reshape(-1)[0]) if update is not None else 0
        self.requests, self._pending, self._fixed, self._weights = (
            self.version * self.num_actors,
            {},
            {},
            None,
        )
        self._returns = {}
        return super().resumed(carry, host)

    def actor_cpu_seconds(self) -> float:
        """CPU seconds used so far by the actors' processes (for throughput figures)."""
        import ray

        return float(sum(ray.get([a.cpu_seconds.remote() for a in self.actors])))

    def close(self) -> None:
        import ray

        for actor in self.actors:  # queued rollouts die with their actor
            ray.kill(actor)
        self.actors, self._pending, self._fixed = [], {}, {}
        super().close()
        if self._started_ray:
            ray.shutdown()


def make_actor_runner(
    config: Any, env_id: str, run_cfg: Any, norm: Normalization, budget: int
) -> ActorRunner:
    """The :class:`ActorRunner` of ``config``'s algorithm with ``run_cfg.num_actors`` actors (appo: at least 1)
    on the Gymnasium environment ``env_id``."""
    import gymnasium as gym

    from proxrl.run.host import gym_spaces

    # (the options were checked by proxrl.run.train.make_runner: no replay learner, no gymnax back end)
    if env_id not in gym.registry:
        from proxrl.deep.gym_envs import resolve_backend

        resolve_backend(env_id, "gymnasium")  # the one-line unknown-id message
    entry = registry.entry_for(config)[1]
    learner = entry.make_learner(config, *gym_spaces(env_id), budget)
    actors = max(1, run_cfg.num_actors)
    return ActorRunner(
        learner,
        config,
        env_id,
        run_cfg.num_seeds,
        norm,
        run_cfg.eval_episodes,
        run_cfg.seed,
        actors,
        budget,
        getattr(run_cfg, "address", None),
    )


__all__ = ["ActorRunner", "EnvRunner", "ensure_ray", "make_actor_runner"]
