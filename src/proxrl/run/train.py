"""The training driver shared by every algorithm: seeds vmapped, updates scanned, nothing lost.

    state_s = init(key_s)                        for seeds s = 1..N      (one vmapped call)
    repeat until the step budget is spent:
        state, metrics = scan(update, state, length=K)   (K updates, one jitted call, all seeds)
        append metrics (mean over seeds, and per seed) to metrics.csv and TensorBoard
        evaluate the deterministic policy; append to eval.csv
        write checkpoint.safetensors atomically (state + progress), resumable with resume=RUN_DIR

The chunk length K = ``eval_every`` steps / ``steps_per_update``. The same seed, configuration and
machine give the same numbers, whether or not the run was interrupted and resumed (on gymnax; host-side
Gymnasium environments restart their episodes on resume, see :mod:`proxrl.run.host`).

A :class:`~proxrl.run.runner.Runner` hides the back end: :class:`JaxRunner` compiles a whole chunk of a
learner on a gymnax environment (all seeds, K updates) into one call; :class:`~proxrl.run.host.HostRunner`
steps Gymnasium vector environments on the host around the same learner. :func:`make_runner` picks one for an
environment id. :func:`make_train` is the same gymnax loop as one pure ``train(key, hyper)`` function.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from proxrl.config import override
from proxrl.deep import loops, registry
from proxrl.deep.gym_envs import resolve_backend
from proxrl.deep.jax_envs import JaxEnv, Space
from proxrl.deep.loops import Normalization
from proxrl.deep.on_policy.common import num_updates
from proxrl.errors import ConfigError, check_choice, check_int_at_least
from proxrl.run.cache import enable_compilation_cache
from proxrl.run.checkpoints import load_checkpoint, read_metadata, save_checkpoint
from proxrl.run.host import HostRunner, gym_spaces
from proxrl.run.plots import band, figure
from proxrl.run.records import RunDir, to_jsonable
from proxrl.run.runner import Runner
from proxrl.run.stats import mean_ci
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
    """Environment steps between evaluations, metric rows and checkpoints."""
    eval_episodes: int = 10
    """Deterministic episodes per evaluation (per seed)."""
    seed: int = 0
    """Base seed; seed i uses fold_in(key(seed), i)."""
    out: Path | None = None
    """Run directory (default: runs/<algo>-<env>-<timestamp>)."""
    resume: Path | None = None
    """Continue the run in this directory from its checkpoint (same algorithm and configuration)."""
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

    def validate(self) -> None:
        check_choice("backend", self.backend, BACKENDS)
        check_int_at_least("num_actors", self.num_actors, 0)
        check_int_at_least("num_seeds", self.num_seeds)
        check_int_at_least("total_steps", self.total_steps)
        check_int_at_least("eval_every", self.eval_every)
        check_int_at_least("eval_episodes", self.eval_episodes)


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


def make_runner(config: Any, env_id: str, run_cfg: RunConfig) -> Runner:
    """The runner of the algorithm ``config`` configures on ``env_id``, on the back end ``run_cfg.backend``
    resolves to (see :class:`RunConfig`); the reward normaliser discounts with the config's ``gamma``."""
    run_cfg.validate()
    config.validate()
    gamma = float(config.rollout.gamma)
    norm = Normalization(obs=run_cfg.normalize_obs, reward=run_cfg.normalize_reward, gamma=gamma).validate()
    budget = planned_steps(run_cfg, config.rollout.size)  # schedules see the real budget
    if run_cfg.num_actors > 0 or registry.entry_for(config)[0] == "appo":  # Ray env-runner actors
        from proxrl.run.actors import make_actor_runner

        return make_actor_runner(config, env_id, run_cfg, norm, budget)
    if resolve_backend(env_id, run_cfg.backend) == "gymnax":
        env = loops.env_for(env_id)
        learner = _learner(config, env_id, env.observation_space, env.action_space, budget)
        return JaxRunner(learner, env, norm, run_cfg.eval_episodes)
    learner = _learner(config, env_id, *gym_spaces(env_id), budget)
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
    :func:`make_train` (pure; vmap it over seeds)."""
    env = loops.env_for(env_id)
    norm = (norm or Normalization()).validate()
    name = env_id if isinstance(env_id, str) else "the environment"
    budget = config.rollout.size  # one update: evaluation runs no schedule
    runner = JaxRunner(
        _learner(config, name, env.observation_space, env.action_space, budget), env, norm, episodes
    )
    return runner.evaluate_one


def plan(run_cfg: RunConfig, steps_per_update: int) -> tuple[int, int]:
    """``(updates per chunk K, number of chunks)``: ``K = eval_every // steps_per_update`` (at least 1)
    and the budget rounded to the nearest whole number of chunks (at least one), so a run takes
    ``planned_steps`` = K·chunks·steps_per_update environment steps per seed."""
    k = max(1, run_cfg.eval_every // steps_per_update)
    return k, max(1, round(run_cfg.total_steps / (k * steps_per_update)))


def planned_steps(run_cfg: RunConfig, steps_per_update: int) -> int:
    """Environment steps per seed that :func:`train` will take (see :func:`plan`)."""
    k, chunks = plan(run_cfg, steps_per_update)
    return k * chunks * steps_per_update


def _mean_scalars(metrics: dict[str, np.ndarray]) -> dict[str, float]:
    """Average over every axis but the first (updates): ``[K, N, ...] -> [K]`` per metric."""
    with warnings.catch_warnings():  # an update with no finished episode has a NaN episodic_return
        warnings.simplefilter("ignore", RuntimeWarning)
        return {k: np.nanmean(v.reshape(v.shape[0], -1), axis=1) for k, v in metrics.items()}


def train(runner: Runner, run_cfg: RunConfig, algo_config: Any, env_id: str) -> RunDir:
    """Train ``run_cfg.num_seeds`` seeds with ``runner`` (see :func:`make_runner`); return the run directory."""
    run_cfg.validate()
    if run_cfg.compile_cache:
        enable_compilation_cache(run_cfg.compile_cache_dir)
    config_record = {
        "algo": runner.name,
        "env": env_id,
        "run": to_jsonable(run_cfg),
        "algo_config": to_jsonable(algo_config),
    }
    config_record["run"].pop("out"), config_record["run"].pop("resume"), config_record["run"].pop("progress")

    updates_per_chunk, num_chunks = plan(run_cfg, runner.steps_per_update)
    steps_per_chunk = updates_per_chunk * runner.steps_per_update
    base = jax.random.key(run_cfg.seed)
    seeds = np.arange(run_cfg.num_seeds)
    state = runner.init(jax.vmap(lambda i: jax.random.fold_in(base, i))(seeds))

    if run_cfg.resume is not None:
        rd, state, start = _resume(run_cfg.resume, runner.name, config_record, state)
        state = runner.resumed(state)
    else:
        name = f"{runner.name}-{env_id.replace('/', '_')}"
        rd = RunDir(name, run_cfg.out)
        rd.write_config(config_record)
        start = 0
    eval_key = jax.random.fold_in(base, 1_000_003)

    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
    ]
    try:
        with Progress(*columns, disable=not run_cfg.progress, transient=True) as bar:
            task = bar.add_task(
                f"{runner.name} {env_id} ×{run_cfg.num_seeds}", total=num_chunks, completed=start, info=""
            )
            for c in range(start, num_chunks):
                t0 = time.perf_counter()
                state, metrics = runner.chunk(state, updates_per_chunk)
                keys = jax.random.split(jax.random.fold_in(eval_key, c), run_cfg.num_seeds)
                returns = runner.evaluate(state, keys, c)
                seconds = time.perf_counter() - t0
                means = _mean_scalars({k: np.swapaxes(np.asarray(v), 0, 1) for k, v in metrics.items()})
                for u in range(updates_per_chunk):
                    step = (c * updates_per_chunk + u + 1) * runner.steps_per_update
                    rd.log_scalars(step, {k: float(v[u]) for k, v in means.items()})
                step = (c + 1) * steps_per_chunk
                ci = mean_ci(returns)
                rd.log_scalars(
                    step,
                    {
                        "eval_return_mean": ci.mean,
                        "eval_return_lo": ci.lo,
                        "eval_return_hi": ci.hi,
                        "chunk_seconds": seconds,
                    }
                    | {f"eval_return_seed{i}": float(r) for i, r in enumerate(returns)},
                    table="eval",
                )
                rd.flush()  # TensorBoard events for this chunk, written while no JAX work runs
                save_checkpoint(
                    rd.path / CHECKPOINT,
                    state,
                    {"algo": runner.name, "chunk": c + 1, "step": step, "config": config_record},
                )
                bar.update(task, advance=1, info=f"step {step:,}  eval {ci.mean:8.1f}")
    finally:
        runner.close()
    rd.close()
    _finish(rd, runner.name, env_id, run_cfg)
    return rd


def _resume(path: Path, algo: str, config_record: dict, template: Any) -> tuple[RunDir, Any, int]:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"--resume {str(path)!r} is not a run directory")
    meta = read_metadata(path / CHECKPOINT)
    meta.get("config", {}).get("run", {}).setdefault(
        "num_actors", 0
    )  # runs recorded before the option existed
    if meta.get("algo") != algo:
        raise ConfigError(f"--resume {str(path)!r} holds a {meta.get('algo')!r} run, not {algo!r}")
    if _comparable(meta.get("config", {})) != _comparable(json.loads(json.dumps(config_record))):
        raise ConfigError(f"--resume {str(path)!r} was run with another configuration; pass the same options")
    state, _ = load_checkpoint(path / CHECKPOINT, template)
    return RunDir.reopen(path), state, int(meta["chunk"])


def _comparable(record: dict) -> dict:
    """A run's configuration less what a resume may change: the step budget (``total_steps``) and the cache
    location. Resuming with the same
    budget reproduces the uninterrupted run exactly; a larger budget re-plans budget-based schedules
    (e.g. learning-rate annealing) from the current update on."""
    free = ("total_steps", "compile_cache", "compile_cache_dir")
    run = {k: v for k, v in record.get("run", {}).items() if k not in free}
    algo = {k: v for k, v in record.get("algo_config", {}).items() if k not in free}
    return {**record, "run": run, "algo_config": algo}


def latest_per_step(rows: np.ndarray) -> np.ndarray:
    """The rows of an append-only table (a structured array with a ``step`` field) keeping, for each step,
    the last row written, in step order. A run killed after logging a chunk but before its checkpoint is
    resumed from the earlier checkpoint and logs that chunk again; the later rows are the resumed run's."""
    steps = rows["step"]
    last = {float(step): i for i, step in enumerate(steps)}
    return rows[sorted(last.values(), key=lambda i: steps[i])]


def _finish(rd: RunDir, algo: str, env_id: str, run_cfg: RunConfig) -> None:
    """Learning-curve PNG (mean and 95% band over seeds) and summary.md from eval.csv."""
    rows = latest_per_step(np.atleast_1d(np.genfromtxt(rd.path / "eval.csv", delimiter=",", names=True)))
    cols = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
    per_seed = np.stack([rows[n] for n in cols], axis=1)  # [E, N]
    steps = rows["step"]
    fig, ax = figure()
    seeds = f"{len(cols)} seed{'s' if len(cols) > 1 else ''}"
    band(ax[0, 0], steps, per_seed.T, f"{algo} ({seeds})")
    ax[0, 0].set(
        xlabel="environment steps (per seed)", ylabel="evaluation return", title=f"{algo} on {env_id}"
    )
    ax[0, 0].legend()
    rd.save_figure(fig, "learning_curve")
    final = mean_ci(per_seed[-1])
    best = per_seed.max(axis=0)
    rd.write_summary(
        f"# {algo} on {env_id}\n\n"
        f"{seeds} × {int(steps[-1]):,} environment steps"
        f"{', seeds trained together (vmapped)' if len(cols) > 1 else ''}.\n\n"
        f"- final evaluation return: {final.mean:.1f} ({final.interval()}), "
        f"{run_cfg.eval_episodes} deterministic episodes per seed\n"
        f"- per seed: {', '.join(f'{r:.1f}' for r in per_seed[-1])}\n"
        f"- best evaluation per seed: {', '.join(f'{r:.1f}' for r in best)}\n"
        f"- training time: {rows['chunk_seconds'].sum():.1f} s (compile included in the first chunk)\n\n"
        "Files: `metrics.csv` (per update, mean over seeds), `eval.csv`, `tb/` (TensorBoard), "
        "`learning_curve.png`, `checkpoint.safetensors`.\n"
    )
