"""The training driver shared by every algorithm: seeds vmapped, updates scanned, nothing lost.

    state_s = init(key_s)                        for seeds s = 1..N      (one vmapped call)
    repeat until the step budget is spent:
        state, metrics = scan(update, state, length=K)   (K updates, one jitted call, all seeds)
        evaluate the deterministic policy
        stop (NonFiniteError) if the state, a metric or an evaluation is non-finite: nothing of the chunk written
        append metrics (mean over seeds) to metrics.csv, returns to eval.csv, seconds to timing.csv, TensorBoard
        write checkpoint.safetensors atomically and verified (state + progress + configuration, hashed)

The chunk length K = ``eval_every`` steps / ``steps_per_update``. The same seed, configuration and
machine give the same numbers, whether or not the run was interrupted and resumed: ``resume=RUN_DIR`` cuts
the records back to the checkpoint's step, so metrics.csv and eval.csv of a run killed at any moment and resumed
equal an uninterrupted run's byte for byte (host-side Gymnasium environments too: the checkpoint holds the
record of their episodes and the resume replays it, see :mod:`proxrl.run.host`; env-runner actors save theirs
and their rollouts in flight, see :mod:`proxrl.run.actors`). One process at a time trains in a run directory (its
lock file).

A :class:`~proxrl.run.runner.Runner` hides the back end: :class:`JaxRunner` compiles a whole chunk of a
learner on a gymnax environment (all seeds, K updates) into one call; :class:`~proxrl.run.host.HostRunner`
steps Gymnasium vector environments on the host around the same learner. :func:`make_runner` picks one for an
environment id. :func:`make_train` is the same gymnax loop as one pure ``train(key, hyper)`` function.
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from proxrl.config import check_finite, check_numbers, is_piece, override, to_record
from proxrl.deep import loops, registry
from proxrl.deep.gym_envs import resolve_backend
from proxrl.deep.jax_envs import JaxEnv, Space
from proxrl.deep.loops import Normalization
from proxrl.deep.on_policy.common import num_updates
from proxrl.errors import (
    ConfigError,
    NonFiniteError,
    check_choice,
    check_int_at_least,
    check_memory,
    check_seed,
)
from proxrl.run import faults
from proxrl.run.cache import enable_compilation_cache
from proxrl.run.checkpoints import EXTRA_PREFIX, Checkpoint, read_checkpoint, restore, save_checkpoint
from proxrl.run.host import HostRunner, gym_spaces
from proxrl.run.records import RunDir, to_jsonable
from proxrl.run.runner import HostState, Runner
from proxrl.run.stats import mean_ci, return_range
from proxrl.run.summary import finish_run, latest_per_step  # noqa: F401  (latest_per_step re-exported)
from proxrl.types import Learner, Metrics, PRNGKey

CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class RunConfig:
    """Options every training run shares."""

    num_seeds: int = 1
    """Seeds trained at once, in one vmapped call."""
    total_steps: int = 100_000
    """Environment steps per seed."""
    eval_every: int = 10_000
    """Environment steps between evaluations and checkpoints (rounded down to whole updates, at least one)."""
    log_every: int = 1_000
    """Environment steps between rows of metrics.csv, each the mean of the updates since the last row (whole updates, at least one)."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation (per seed)."""
    seed: int = 0
    """Base seed; seed i uses fold_in(key(seed), i)."""
    out: Path | None = None
    """Run directory (default: runs/<algo>-<env>-<timestamp>)."""
    resume: Path | None = None
    """Continue the run in this directory from its checkpoint (same algorithm and configuration; --total-steps may change), its records cut back to the checkpoint first; a run stopped before its first checkpoint starts again from scratch."""
    # Development note, not help text: a small PPO run started in 6.2 s instead of 12.8 s from a warm cache.
    # The cache was off by default while runs loaded from it hung (2 of 15); the hang was the LAPACK QR deadlock
    # since fixed (see proxrl/__init__.py), after which 20 of 20 warm runs completed.
    compile_cache: bool = True
    """Use JAX's persistent compilation cache, so a configuration run before starts faster."""
    compile_cache_dir: Path | None = None
    """Where the compilation cache lives (default: ~/.cache/proxrl/jax)."""
    progress: bool = True
    """Show a progress bar."""
    backend: str = "auto"
    """Environment back end: "auto" (gymnax if it has the id, else gymnasium), "gymnax" or "gymnasium"."""
    normalize_obs: bool = False
    """Standardise observations with running statistics (saved with checkpoints)."""
    normalize_reward: bool = False
    """Scale rewards by the running standard deviation of the discounted return (saved with checkpoints)."""
    num_actors: int = 0
    """Env-runner actors (Ray processes) stepping Gymnasium environments for the learner: 0 steps them in this process; N >= 1 shares num_envs among N actors, each update waiting for all (appo: N actors, at least 1, each with num_envs environments)."""
    address: str | None = None
    """A Ray cluster for the env-runner actors (HOST:PORT of 'ray start --head'); default: Ray started in this process."""

    def validate(self) -> None:
        """One-line ConfigError naming the first bad option."""
        if isinstance(self.seed, int) and not isinstance(self.seed, bool):
            check_seed("seed", self.seed)  # (before the general bound, so that every bad seed reads alike)
        check_numbers(self)
        check_choice("backend", self.backend, BACKENDS)
        check_int_at_least("num_actors", self.num_actors, 0)
        check_int_at_least("num_seeds", self.num_seeds)
        check_int_at_least("total_steps", self.total_steps)
        check_int_at_least("eval_every", self.eval_every)
        check_int_at_least("log_every", self.log_every)
        check_int_at_least("eval_episodes", self.eval_episodes)
        check_seed("seed", self.seed)
        if self.address is not None:
            host, sep, port = self.address.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ConfigError(
                    f"--address must be HOST:PORT (a cluster started with 'ray start --head'), got {self.address!r}"
                )
        for name in ("out", "resume", "compile_cache_dir"):
            value = getattr(self, name)
            if value is not None and str(value) in ("", "."):
                raise ConfigError(f"--{name.replace('_', '-')} must name a directory, got {str(value)!r}")
        if self.out is not None and self.resume is not None and Path(self.out) != Path(self.resume):
            raise ConfigError(
                f"--out {str(self.out)!r} with --resume {str(self.resume)!r}: a resumed run writes into its own "
                "directory; leave --out out"
            )


BACKENDS = ("auto", "gymnax", "gymnasium")


class JaxRunner(Runner):
    """A learner on a gymnax environment: a chunk of K updates of all seeds is one jitted call
    (:func:`proxrl.deep.loops.loop_update` scanned, vmapped over seeds)."""

    def __init__(self, learner: Learner, env: JaxEnv, norm: Normalization, eval_episodes: int) -> None:
        check_int_at_least("eval_episodes", eval_episodes, 1)
        self.learner, self.env, self.norm, self.eval_episodes = learner, env, norm, eval_episodes
        self.name, self.steps_per_update = learner.name, learner.num_envs * learner.num_steps
        self._chunks: dict[int, Callable] = {}
        self._evaluate = jax.jit(jax.vmap(self.evaluate_one))
        self._mode = jax.jit(jax.vmap(lambda state, obs: loops.mode(learner, norm, state.carry, obs)))

    def evaluate_one(self, state: loops.LoopState, key: PRNGKey) -> jax.Array:
        """Mean return of ``eval_episodes`` deterministic episodes of one seed (pure, jittable)."""
        policy = lambda obs: loops.mode(self.learner, self.norm, state.carry, obs)
        return jnp.mean(loops.evaluate(self.env, policy, key, self.eval_episodes))

    def init(self, keys: PRNGKey) -> Any:
        return jax.jit(jax.vmap(lambda k: loops.loop_init(self.learner, self.env, self.norm, k)))(keys)

    def chunk(self, state: Any, updates: int) -> tuple[Any, dict[str, np.ndarray]]:
        if updates not in self._chunks:

            def run(s: Any) -> Any:
                step = lambda c, _: loops.loop_update(self.learner, self.env, self.norm, c)
                return jax.lax.scan(step, s, None, length=updates)

            # the seed axis is named so that schedule branches stay branches (loops.lockstep)
            self._chunks[updates] = jax.jit(jax.vmap(run, axis_name=loops.SEED_AXIS))
        state, metrics = self._chunks[updates](state)
        return state, {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}

    def evaluate(self, state: Any, keys: PRNGKey, round_index: int) -> np.ndarray:
        return np.asarray(self._evaluate(state, keys))

    def close(self) -> None:
        """Nothing to release: gymnax environments are pure functions."""

    def mode(self, state: Any, obs: np.ndarray) -> np.ndarray:
        return np.asarray(self._mode(state, obs))


def _learner(
    config: Any, env_id: str, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """The registered algorithm of ``config`` for an environment's spaces and the run's step budget (for
    schedules); its ConfigErrors name the environment."""
    _, entry = registry.entry_for(config)
    try:
        return entry.make_learner(config, observation_space, action_space, total_steps)
    except ConfigError as e:  # the learner sees only spaces: name the environment in its message
        if env_id in str(e):
            raise
        raise ConfigError(f"{e} ({env_id})") from None


def _check_run(config: Any, run_cfg: RunConfig) -> tuple[Normalization, int, bool]:
    """What :func:`make_runner` checks before it builds anything (one-line ConfigErrors): the options, their
    combinations, and what env-runner actors need; returns ``(normalisation, step budget, actors)``."""
    registry.entry_for(config)  # a config of a registered algorithm (one line naming them otherwise)
    check_finite_config(config)
    check_finite(run_cfg)
    run_cfg.validate()
    config.validate()
    if run_cfg.normalize_obs and getattr(getattr(config, "network", None), "obs_norm", False):
        raise ConfigError(
            f"normalize_obs and {registry.entry_for(config)[0]}'s obs_norm (on by default) would standardise the "
            "observations twice: turn one of them off"
        )
    gamma = float(config.rollout.gamma)
    norm = Normalization(obs=run_cfg.normalize_obs, reward=run_cfg.normalize_reward, gamma=gamma).validate()
    budget = planned_steps(run_cfg, config.rollout.size)  # schedules see the real budget
    actors = run_cfg.num_actors > 0 or registry.entry_for(config)[0] == "appo"
    if run_cfg.address is not None and not actors:
        raise ConfigError(
            "--address joins a Ray cluster for env-runner actors: use it with --num-actors N or appo"
        )
    if actors and hasattr(config, "replay"):
        raise ConfigError(
            "env-runner actors receive the learner's whole state every update, and a replay learner keeps its buffer "
            "in it: run this algorithm without --num-actors"
        )
    if actors and run_cfg.backend == "gymnax":
        raise ConfigError("env-runner actors step Gymnasium environments: use --backend auto or gymnasium")
    return norm, budget, actors


def check_fit(config: Any, env_id: str, run_cfg: RunConfig) -> None:
    """What :func:`make_runner` checks, and the algorithm of ``config`` built on the spaces of ``env_id``, without
    a runner or environments to step: a one-line ConfigError where they do not fit (SAC on a discrete action
    space, options that exclude each other, …). Cheap, so that a sweep checks every cell before any runs."""
    _, budget, actors = _check_run(config, run_cfg)
    gymnax = not actors and resolve_backend(env_id, run_cfg.backend) == "gymnax"
    _learner(config, env_id, *_spaces(env_id, gymnax), budget)


@functools.lru_cache(maxsize=64)
def _spaces(env_id: str, gymnax: bool) -> tuple[Space, Space]:
    """``(observation_space, action_space)`` of a gymnax or Gymnasium environment, made once per process."""
    if gymnax:
        env = loops.env_for(env_id)
        return env.observation_space, env.action_space
    return gym_spaces(env_id)


def make_runner(config: Any, env_id: str, run_cfg: RunConfig) -> Runner:
    """The runner of the algorithm ``config`` configures on ``env_id``, on the back end ``run_cfg.backend``
    resolves to (see :class:`RunConfig`); the reward normaliser discounts with the config's ``gamma``."""
    norm, budget, actors = _check_run(config, run_cfg)
    if actors:  # Ray env-runner actors
        from proxrl.run.actors import make_actor_runner

        return make_actor_runner(config, env_id, run_cfg, norm, budget)
    if resolve_backend(env_id, run_cfg.backend) == "gymnax":
        env = loops.env_for(env_id)
        learner = _learner(config, env_id, env.observation_space, env.action_space, budget)
        check_run_memory(learner, env.observation_space, run_cfg.num_seeds)
        return JaxRunner(learner, env, norm, run_cfg.eval_episodes)
    observation_space, action_space = gym_spaces(env_id)
    learner = _learner(config, env_id, observation_space, action_space, budget)
    check_run_memory(learner, observation_space, run_cfg.num_seeds)
    return HostRunner(learner, env_id, run_cfg.num_seeds, norm, run_cfg.eval_episodes, run_cfg.seed)


def make_train(
    config: Any, env_id: str | JaxEnv, total_steps: int, norm: Normalization | None = None
) -> Callable[..., tuple[loops.LoopState, Metrics]]:
    """``train(key, hyper=None) -> (final_state, metrics)``: the whole run of any registered algorithm on a
    gymnax environment as one pure function.

    ``total_steps`` environment steps per seed (whole updates of ``num_envs × num_steps``) as one ``lax.scan``,
    so it jits once; ``jax.vmap(train, axis_name=loops.SEED_AXIS)(keys)`` trains many seeds in one compiled call.
    ``hyper``: a dict of numeric options by name (e.g. ``{"lr": …, "ent_coef": …}``, see
    :func:`proxrl.config.override`) given as arrays, replacing
    the config's values inside the trace, so a vmap over hyperparameters works like one over seeds (the config
    is validated with its own values; the traced ones are not checked). ``metrics[name]`` has shape
    ``[num_updates]``, plus ``env_steps``; ``state.carry.learner`` is the algorithm's state.
    """
    registry.entry_for(config)  # a config of a registered algorithm (one line naming them otherwise)
    config.validate()
    env = loops.env_for(env_id)
    norm = (norm or Normalization()).validate()
    name = env_id if isinstance(env_id, str) else "the environment"
    updates = num_updates(total_steps, config.rollout.size)
    # a bad config, budget or space fails here, not inside a trace
    _learner(config, name, env.observation_space, env.action_space, total_steps)

    def train(key: PRNGKey, hyper: dict[str, Any] | None = None) -> tuple[loops.LoopState, Metrics]:
        cfg = override(config, **(hyper or {}))
        learner = _learner(cfg, name, env.observation_space, env.action_space, total_steps)
        return loops.run_updates(learner, env, norm, key, updates)

    return train


def make_evaluate(
    config: Any, env_id: str | JaxEnv, episodes: int = 10, norm: Normalization | None = None
) -> Callable[[loops.LoopState, PRNGKey], jax.Array]:
    """``evaluate(state, key) -> mean return`` of ``episodes`` deterministic episodes of one seed's final state of
    :func:`make_train` (pure; vmap it over seeds). ``norm`` must be the one given to :func:`make_train`: the
    policy sees observations standardised by the state's statistics only when ``norm.obs`` is on."""
    env = loops.env_for(env_id)
    norm = (norm or Normalization()).validate()
    name = env_id if isinstance(env_id, str) else "the environment"
    budget = config.rollout.size  # one update: evaluation runs no schedule
    runner = JaxRunner(
        _learner(config, name, env.observation_space, env.action_space, budget), env, norm, episodes
    )
    return runner.evaluate_one


def plan(run_cfg: RunConfig, steps_per_update: int) -> tuple[int, int]:
    """``(updates per chunk K, number of chunks)``: the budget is ``U = total_steps // steps_per_update`` whole
    updates, cut into chunks of ``K = eval_every // steps_per_update`` updates (at least 1, at most U); the last
    chunk holds what is left, so a run takes exactly U updates. A resumed run's chunks start at its checkpoint's
    update (see :func:`train`)."""
    updates = max(1, run_cfg.total_steps // steps_per_update)
    k = min(max(1, run_cfg.eval_every // steps_per_update), updates)
    return k, -(-updates // k)


def planned_steps(run_cfg: RunConfig, steps_per_update: int) -> int:
    """Environment steps per seed that :func:`train` will take: whole updates, the budget rounded down to a
    multiple of ``steps_per_update`` (:func:`budget_note` says so when it is not one)."""
    return max(1, run_cfg.total_steps // steps_per_update) * steps_per_update


def budget_note(steps: int, steps_per_update: int, option: str = "--total-steps") -> str | None:
    """A one-line note when a budget of ``steps`` (the option ``option`` the user gave) is not a whole number of
    updates (None when it is)."""
    if steps % steps_per_update == 0:
        return None
    updates = max(1, steps // steps_per_update)
    return (
        f"note: {option} {steps:,} is not a multiple of the {steps_per_update:,} steps of one update "
        f"(num_envs·num_steps); training {updates * steps_per_update:,} steps "
        f"({updates:,} update{'s' if updates != 1 else ''})"
    )


def estimated_bytes(learner: Learner, observation_space: Space, num_seeds: int) -> int:
    """Bytes the training state of ``num_seeds`` seeds (parameters, optimiser state, replay buffer, …) and one
    rollout hold, from the shapes alone (``jax.eval_shape``: nothing is allocated)."""
    shape = (learner.num_envs, *observation_space.shape)
    obs = jax.ShapeDtypeStruct(shape, jnp.float32)
    state = jax.eval_shape(learner.init, jax.ShapeDtypeStruct((), jax.random.key(0).dtype), obs)
    state_bytes = sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(state))
    obs_size = int(np.prod(observation_space.shape)) if observation_space.shape else 1
    rollout_bytes = learner.num_envs * learner.num_steps * (2 * obs_size + 8) * 4
    return num_seeds * (state_bytes + rollout_bytes)


def check_run_memory(learner: Learner, observation_space: Space, num_seeds: int) -> None:
    """Refuse, before anything is allocated, a run whose state and rollouts exceed the memory available."""
    check_memory(
        estimated_bytes(learner, observation_space, num_seeds),
        "training state and rollouts",
        "num_seeds, num_envs·num_steps, buffer_size and the network sizes",
    )


def _nanmean(values: np.ndarray) -> float:
    """The mean of the finite-or-NaN values (NaN when all are NaN: the quantity was not measured)."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")


def _mean_scalars(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Average over every axis but the first (updates): ``[K, N, ...] -> [K]`` per metric."""
    with warnings.catch_warnings():  # an update with no finished episode has a NaN episodic_return
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: np.nanmean(v.reshape(v.shape[0], -1), axis=1) for k, v in metrics.items()}


class ChunkReport(NamedTuple):
    """What :func:`train` tells its ``callback`` after each chunk, once that chunk's rows and checkpoint are
    written."""

    step: int
    """Environment steps per seed so far."""
    total_steps: int
    """Environment steps per seed the run is planned for."""
    eval_returns: np.ndarray
    """This chunk's evaluation: mean return of the deterministic policy per seed ``[N]``."""
    metrics: dict[str, float]
    """This chunk's training metrics, each the mean over its updates and the seeds."""
    run_dir: Path


def train(
    runner: Runner,
    run_cfg: RunConfig,
    algo_config: Any,
    env_id: str,
    callback: Callable[[ChunkReport], bool | None] | None = None,
    *,
    note_budget: bool = True,
) -> RunDir:
    """Train ``run_cfg.num_seeds`` seeds with ``runner`` (see :func:`make_runner`); return the run directory.

    ``callback(report)`` runs after every chunk (one evaluation interval, :class:`ChunkReport`), once its rows
    and checkpoint are on disk; a false answer (``False`` or a false NumPy bool; ``None`` is not one) stops the
    run there, as finished at that step (its summary says how far it went; resuming with a budget beyond it
    continues it). A resumed run continues from its checkpoint's update in chunks of ``eval_every``: the
    uninterrupted run's chunks when it stopped at a chunk's end, whole intervals from its last step when its
    budget is raised after a shorter last chunk.

    Every chunk is checked before anything of it is written: a NaN or an infinity in the training state
    (parameters, optimiser and normaliser statistics, …), in the evaluation returns, or an infinity in a metric
    stops the run with a one-line :class:`~proxrl.errors.NonFiniteError` naming the value, the update and the
    seed; the bad chunk's rows and checkpoint are not written, so the last good checkpoint stays. (A NaN metric
    alone is not a fault: ``episodic_return`` is NaN in an update in which no episode ended, off-policy
    learners report NaN before learning starts; a metric that turns NaN as the state does is named.)
    Configurations holding a NaN or infinite option are refused before anything runs.

    The run directory is locked while the run writes to it (see :meth:`RunDir.lock`). With
    ``run_cfg.resume``, the run continues from its verified checkpoint, after its records are cut back to the
    checkpoint's step (:meth:`RunDir.cut_back`), so that the records equal an uninterrupted run's; a directory
    holding a config.json but no checkpoint yet (a run stopped before its first checkpoint) starts again from
    scratch. A budget that is not a whole number of updates is noted on stderr (:func:`budget_note`) unless
    ``note_budget`` is false (a caller that notes it in its own terms)."""
    check_finite_config(algo_config)
    check_finite(run_cfg)
    run_cfg.validate()
    if run_cfg.compile_cache:
        enable_compilation_cache(run_cfg.compile_cache_dir)
    record = config_record(runner.name, env_id, run_cfg, algo_config)
    spu = runner.steps_per_update
    updates_per_chunk, _ = plan(run_cfg, spu)
    budget = planned_steps(run_cfg, spu) // spu  # updates
    if run_cfg.resume is not None:
        raw = getattr(runner, "learner", None) is not None and runner.learner.learn_raw is not None  # type: ignore[attr-defined]
        raw = raw and (run_cfg.normalize_obs or run_cfg.normalize_reward)
        rd, start, checkpoint, record = _resume(
            Path(run_cfg.resume), runner.name, record, budget * spu, spu, raw_replay=raw
        )
    else:
        rd = RunDir(f"{runner.name}-{env_id.replace('/', '_')}", run_cfg.out, lock=True)
        start, checkpoint = 0, None
        try:
            record = {**record, "run_id": uuid.uuid4().hex}
            rd.write_config(record)
            faults.inject("config")
        except BaseException:
            rd.close()
            raise

    note = budget_note(run_cfg.total_steps, runner.steps_per_update) if note_budget else None
    if note is not None:
        print(note, file=sys.stderr)
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    try:
        base = jax.random.key(run_cfg.seed)
        seeds = np.arange(run_cfg.num_seeds)
        state = runner.init(jax.vmap(lambda i: jax.random.fold_in(base, i))(seeds))
        if checkpoint is not None:
            state = runner.resumed(
                restore(checkpoint, state, f"checkpoint {str(rd.path / CHECKPOINT)!r}"),
                host_state(checkpoint),
            )
        eval_key = jax.random.fold_in(base, 1_000_003)
        # chunks of K updates from the checkpoint's update on (the last holds what is left of the budget); a run
        # resumed at a chunk's end takes the uninterrupted run's chunks, one whose budget was raised after a
        # shorter last chunk continues from there
        done = 0 if checkpoint is None else int(checkpoint.metadata["step"]) // spu
        sizes = [min(updates_per_chunk, budget - u) for u in range(done, budget, updates_per_chunk)]
        try:
            with Progress(*columns, disable=not run_cfg.progress, transient=True) as bar:
                task = bar.add_task(
                    f"{runner.name} {env_id} ×{run_cfg.num_seeds}",
                    total=start + len(sizes),
                    completed=start,
                    info="",
                )
                for c, n in enumerate(sizes, start):
                    t0 = time.perf_counter()
                    new_state, metrics = runner.chunk(state, n)
                    fault = non_finite(metrics, new_state)
                    if fault is None:  # (a broken policy is not evaluated: some simulators fail on NaN)
                        keys = jax.random.split(jax.random.fold_in(eval_key, c), run_cfg.num_seeds)
                        returns = runner.evaluate(new_state, keys, c)
                        fault = non_finite_returns(returns, n - 1)
                    if fault is not None:
                        kept = (
                            f"its checkpoint of step {done * spu:,} is kept" if done else "no checkpoint yet"
                        )
                        raise NonFiniteError(
                            f"{fault.message(done, spu, run_cfg.seed)}; "
                            f"the run stopped before writing that chunk's rows or checkpoint ({kept})"
                        )
                    seconds = time.perf_counter() - t0
                    state = new_state
                    means = _mean_scalars({k: np.swapaxes(np.asarray(v), 0, 1) for k, v in metrics.items()})
                    group = max(1, run_cfg.log_every // runner.steps_per_update)
                    for u0 in range(0, n, group):  # one row per log_every steps: the mean of its updates
                        u1 = min(u0 + group, n)
                        step = (done + u1) * spu
                        rd.log_scalars(step, {k: _nanmean(v[u0:u1]) for k, v in means.items()})
                    done += n
                    step = done * spu
                    ci = mean_ci(returns, bounds=return_range(env_id))
                    rd.log_scalars(
                        step,
                        {"eval_return_mean": ci.mean, "eval_return_lo": ci.lo, "eval_return_hi": ci.hi}
                        | {f"eval_return_seed{i}": float(r) for i, r in enumerate(returns)},
                        table="eval",
                    )
                    rd.log({"step": step, "chunk_seconds": seconds}, table="timing")
                    rd.flush()  # TensorBoard events for this chunk
                    faults.inject("eval-row")
                    host = runner.host_state()
                    save_checkpoint(
                        rd.path / CHECKPOINT,
                        state,
                        {"algo": runner.name, "chunk": c + 1, "step": step, "config": record}
                        | {"replay_storage": REPLAY_STORAGE}
                        | ({} if host is None else {"host": host.meta}),
                        None if host is None else host.arrays,
                    )
                    bar.update(task, advance=1, info=f"step {step:,}  eval {ci.mean:8.1f}")
                    if callback is not None:
                        report = ChunkReport(
                            step,
                            budget * spu,
                            np.asarray(returns),
                            {k: _nanmean(v) for k, v in means.items()},
                            rd.path,
                        )
                        answer = callback(report)
                        if answer is not None and not answer:  # False, or a false NumPy bool
                            break
        finally:
            runner.close()
        rd.flush()
        if (
            rd.path / "eval.csv"
        ).exists():  # (a run made from a bare checkpoint and already at its budget has none)
            finish_run(rd, runner.name, env_id, run_cfg)
    except KeyboardInterrupt as e:  # Ctrl-C: the caller names the directory to resume
        e.run_dir = rd.path  # type: ignore[attr-defined]
        raise
    finally:
        rd.close()
    return rd


def host_state(checkpoint: Checkpoint) -> HostState | None:
    """The runner's :class:`~proxrl.run.runner.HostState` saved in a checkpoint (None if it holds none)."""
    meta = checkpoint.metadata.get("host")
    if not isinstance(meta, dict):
        return None
    arrays = {k: v for k, v in checkpoint.arrays.items() if k.startswith(EXTRA_PREFIX)}
    return HostState(arrays, meta)


def config_record(algo: str, env_id: str, run_cfg: RunConfig, algo_config: Any) -> dict[str, Any]:
    """The JSON record of a run's configuration, as config.json and every checkpoint hold it (plus the run's
    ``run_id``): ``{"algo", "env", "run", "algo_config"}``; ``run`` less the options that only say where
    and how to show it (out, resume, progress), ``algo_config`` as :func:`proxrl.config.to_record` writes it."""
    run = to_record(run_cfg)
    for name in ("out", "resume", "progress"):
        run.pop(name)
    algo_record = to_record(algo_config) if is_piece(algo_config) else to_jsonable(algo_config)
    return json.loads(json.dumps({"algo": algo, "env": env_id, "run": run, "algo_config": algo_record}))


def check_finite_config(config: Any) -> None:
    """No option of ``config`` (a config dataclass, or a plain mapping of options) is a NaN or infinite float
    (one-line ConfigError naming it)."""
    if is_piece(config):
        check_finite(config)
    elif isinstance(config, Mapping):
        for name, value in config.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, got {value!r}")


@dataclass(frozen=True)
class Fault:
    """A non-finite value of a chunk: what (``metric 'x'``, ``parameter …``, ``the evaluation return``), its
    value, the update within the chunk (0-based) at which it was seen and the seed index; ``after``: seen at
    the end of the chunk (the state and the evaluation are checked there); ``also``: a related finding."""

    what: str
    value: float
    update: int
    seed: int
    after: bool = False
    also: str = ""

    def message(self, updates_before: int, steps_per_update: int, base_seed: int) -> str:
        """One line naming the value, the run's update and step, and the seed."""
        u = updates_before + self.update + 1
        when = "after" if self.after else "at"
        also = f" ({self.also})" if self.also else ""
        return (
            f"non-finite value: {self.what} is {self.value} {when} update {u} (step {u * steps_per_update:,}) "
            f"of seed {self.seed} (--seed {base_seed}){also}"
        )


@jax.jit
def _finite_per_seed(leaves: list[jax.Array]) -> list[jax.Array]:
    """For each leaf ``[N, ...]``: whether each seed's values are all finite ``[N]``."""
    return [jnp.isfinite(x).reshape(x.shape[0], -1).all(axis=1) for x in leaves]


def _may_be_nan(metric: str) -> bool:
    """Metrics that are NaN when undefined (no episode ended in the update)."""
    return "episod" in metric


def _first(values: np.ndarray, bad: np.ndarray) -> float:
    """The first value of ``values`` (flattened) where ``bad`` holds."""
    return float(values.reshape(-1)[np.argmax(bad.reshape(-1))])


def non_finite(metrics: dict[str, np.ndarray], state: Any) -> Fault | None:
    """The first non-finite value of a chunk, or None. ``metrics[name]``: ``[N, K, ...]``; ``state``: leaves
    ``[N, ...]``. Faults: an infinity in a metric (at its update), a NaN or infinity in a floating leaf of the
    state (seen after the chunk; named by the first metric of that seed that turned non-finite in the chunk, if
    any, as where it began). A NaN metric alone is no fault (see :func:`train`)."""
    found: list[Fault] = []
    arrays = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
    arrays = {k: v.reshape(v.shape[0], v.shape[1], -1) for k, v in arrays.items()}  # [N, K, values]
    for name, v in arrays.items():
        inf = np.isinf(v).any(axis=2)  # [N, K]
        if inf.any():
            u = int(np.flatnonzero(inf.any(axis=0))[0])
            seed = int(np.argmax(inf[:, u]))
            found.append(Fault(f"metric {name!r}", _first(v[seed, u], np.isinf(v[seed, u])), u, seed))
    last = next(iter(arrays.values())).shape[1] - 1 if arrays else 0
    named = [
        (jax.tree_util.keystr(path), leaf)
        for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        if np.ndim(leaf) > 0 and jnp.issubdtype(getattr(leaf, "dtype", np.int32), jnp.inexact)
    ]
    fine = [np.asarray(ok) for ok in _finite_per_seed([leaf for _, leaf in named])] if named else []
    for (path, leaf), ok in zip(named, fine, strict=True):
        if ok.all():
            continue
        seed = int(np.argmin(ok))
        values = np.asarray(leaf[seed])
        fault = Fault(f"parameter {path}", _first(values, ~np.isfinite(values)), last, seed, after=True)
        turned = []  # (update, metric) where a metric of this seed turned non-finite in this chunk
        for name, v in arrays.items():
            bad = ~np.isfinite(v[seed]).all(axis=1)  # [K]
            starts = [u for u in np.flatnonzero(bad) if u == 0 or not bad[u - 1]]
            if starts and not _may_be_nan(name):
                turned.append((int(starts[0]), name))
        if turned:
            u, name = min(turned, key=lambda t: t[0])
            row = arrays[name][seed, u]
            also = f"parameter {path} is non-finite after the chunk"
            fault = Fault(f"metric {name!r}", _first(row, ~np.isfinite(row)), u, seed, also=also)
        found.append(fault)
        break
    return min(found, key=lambda f: (f.update, f.after)) if found else None


def non_finite_returns(returns: np.ndarray, update: int) -> Fault | None:
    """A non-finite evaluation return ``[N]`` (seen after the chunk's last update, ``update``), or None."""
    bad = ~np.isfinite(np.asarray(returns, dtype=np.float64))
    if not bad.any():
        return None
    seed = int(np.argmax(bad))
    return Fault("the evaluation return", float(returns[seed]), update, seed, after=True)


FREE_OPTIONS = ("total_steps", "compile_cache", "compile_cache_dir", "address")
"""Run options a resume may change: the step budget and where compilations are cached. Resuming with the same
budget reproduces the uninterrupted run exactly; a larger budget re-plans budget-based schedules (e.g.
learning-rate annealing) from the current update on."""


def _comparable(record: dict) -> dict:
    """A configuration record less what a resume may change (:data:`FREE_OPTIONS`) and the run's id."""
    run = {k: v for k, v in record.get("run", {}).items() if k not in FREE_OPTIONS}
    return {k: v for k, v in record.items() if k != "run_id"} | {"run": run}


def first_difference(a: Any, b: Any, path: tuple[str, ...] = ()) -> tuple[tuple[str, ...], Any, Any] | None:
    """The first place where two JSON records differ: ``(path of keys, value in a, value in b)``; tables are
    compared key by key, anything else as a whole; a key missing on one side has the value ``"missing"``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return (*path, key), a.get(key, "missing"), b.get(key, "missing")
            diff = first_difference(a[key], b[key], (*path, key))
            if diff is not None:
                return diff
        return None
    return None if a == b and type(a) is type(b) else (path, a, b)


def read_config_json(run_dir: Path) -> dict[str, Any] | None:
    """The record in ``run_dir/config.json`` (None if there is none; a one-line ConfigError if it does not
    parse)."""
    p = Path(run_dir) / "config.json"
    if not p.exists():
        return None
    try:
        record = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        raise ConfigError(
            f"config.json in {str(run_dir)!r} does not parse ({reason}): it is not a run directory proxrl wrote, "
            "or its config.json is damaged"
        ) from None
    if not isinstance(record, dict):
        raise ConfigError(
            f"config.json in {str(run_dir)!r} does not hold a table of options: it is not a run directory proxrl "
            "wrote, or its config.json is damaged"
        )
    return record


@dataclass(frozen=True)
class CheckpointInfo:
    """The fields of a training checkpoint's metadata, checked."""

    algo: str
    chunk: int
    step: int
    config: dict[str, Any]


def checkpoint_info(meta: dict[str, Any], path: Path) -> CheckpointInfo:
    """The checked fields of a training checkpoint's metadata (one-line ConfigError naming a field that is
    missing or of the wrong kind)."""
    where = f"checkpoint {str(path)!r}"
    kinds = {"algo": str, "chunk": int, "step": int, "config": dict}
    for name, kind in kinds.items():
        value = meta.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"{where}: metadata field {name!r} is {value!r}, not a {kind.__name__}")
    if meta["chunk"] < 1 or meta["step"] < 1:
        raise ConfigError(
            f"{where}: metadata fields chunk and step must be >= 1, got {meta['chunk']}, {meta['step']}"
        )
    config = meta["config"]
    for name, kind in {"algo": str, "env": str, "run": dict, "algo_config": dict}.items():
        if not isinstance(config.get(name), kind):
            raise ConfigError(
                f"{where}: configuration field {name!r} is {config.get(name)!r}, not a {kind.__name__}"
            )
    return CheckpointInfo(meta["algo"], meta["chunk"], meta["step"], config)


def check_config_json(stored: dict[str, Any], info: CheckpointInfo, run_dir: Path) -> None:
    """config.json agrees with the configuration the checkpoint holds (the options a resume may change,
    :data:`FREE_OPTIONS`, aside); a one-line ConfigError names the first difference."""
    diff = first_difference(_comparable(stored), _comparable(info.config))
    if diff is None:
        diff = first_difference(stored.get("run_id"), info.config.get("run_id"), ("run_id",))
    if diff is not None:
        where, ours, theirs = diff
        raise ConfigError(
            f"config.json in {str(run_dir)!r} disagrees with the checkpoint's configuration: "
            f"{'.'.join(map(str, where)) or 'the record'} is {ours!r} in config.json, {theirs!r} in the checkpoint"
        )


def _option(path: tuple[str, ...]) -> str:
    """The command-line option of a record path (``("algo_config", "step", "lr")`` → ``--lr``)."""
    return "--" + str(path[-1]).replace("_", "-") if path else "the configuration"


REPLAY_STORAGE = "raw"
"""What a checkpoint's replay buffer holds (metadata ``replay_storage``): raw transitions, normalised when drawn
(:attr:`proxrl.types.Learner.learn_raw`). Checkpoints without the field were written when a replay learner with
normalisation stored normalised transitions; such a run is not resumed (its buffer would be normalised twice)."""


def _resume(
    path: Path,
    algo: str,
    record: dict,
    budget_steps: int,
    steps_per_update: int,
    raw_replay: bool = False,
) -> tuple[RunDir, int, Checkpoint | None, dict]:
    """The locked run directory ``path``, cut back to its checkpoint, the number of chunks done, the verified
    checkpoint (None: a run stopped before its first checkpoint, started again from scratch) and the
    configuration record with the run's id. The checkpoint's step must lie within the budget (``budget_steps``
    per seed). ``raw_replay``: the run keeps raw transitions in a replay buffer with normalisation on, so its
    checkpoint must say it holds raw ones (:data:`REPLAY_STORAGE`)."""
    if not path.is_dir():
        raise ConfigError(f"resume {str(path)!r} is not a run directory")
    rd = RunDir.reopen(path)
    rd.lock()
    try:
        rd.refuse_links()
        stored = read_config_json(path)
        if (path / CHECKPOINT).exists():
            checkpoint = read_checkpoint(path / CHECKPOINT)
            info = checkpoint_info(checkpoint.metadata, path / CHECKPOINT)
            previous, start = info.config, info.chunk
            if stored is not None:
                check_config_json(stored, info, path)
            if info.algo != algo or previous["algo"] != algo:
                raise ConfigError(f"resume {str(path)!r} holds a {info.algo!r} run, not {algo!r}")
        elif stored is not None:
            checkpoint, previous, start = None, stored, 0
            if stored.get("algo") != algo:
                raise ConfigError(f"resume {str(path)!r} holds a {stored.get('algo')!r} run, not {algo!r}")
        else:
            raise ConfigError(f"resume {str(path)!r} holds no run (no config.json, no {CHECKPOINT})")
        diff = first_difference(_comparable(previous), _comparable(record))
        if diff is not None:
            where, before, now = diff
            raise ConfigError(
                f"resume {str(path)!r} was run with another configuration: {_option(where)} was {before!r}, "
                f"now {now!r}; leave it out (proxrl train takes the run's options with --resume) or pass the run's value"
            )
        if raw_replay and checkpoint is not None and "replay_storage" not in checkpoint.metadata:
            raise ConfigError(
                f"checkpoint {str(path / CHECKPOINT)!r} holds a replay buffer of normalised transitions, written "
                "before replay buffers kept raw ones (normalised when drawn); this version would normalise them "
                "twice: start the run again in a new directory"
            )
        step = 0 if checkpoint is None else info.step
        if step % steps_per_update:
            raise ConfigError(
                f"checkpoint {str(path / CHECKPOINT)!r} is at step {step:,}, not a whole number of updates of "
                f"{steps_per_update} steps"
            )
        if step > budget_steps:
            raise ConfigError(
                f"checkpoint {str(path / CHECKPOINT)!r} is at step {step:,}, beyond this budget of "
                f"{budget_steps:,} steps: give total_steps >= {step} to resume it"
            )
        rd.cut_back(step)
        record = {**record, "run_id": previous.get("run_id") or uuid.uuid4().hex}
        if stored != record:
            rd.write_config(record)
    except BaseException:
        rd.close()
        raise
    return rd, start, checkpoint, record
