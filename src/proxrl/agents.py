"""Agent objects in the style of Stable-Baselines3: make, learn, predict, evaluate, save, load.

An agent is a thin handle on one training run of the single driver (:func:`proxrl.run.train.train`), so
everything a ``proxrl train`` run does it does too: the same configuration (:mod:`proxrl.config`), seeds
vmapped in one call, a run directory with metrics.csv, eval.csv, TensorBoard events and a verified safetensors
checkpoint after every evaluation interval, non-finite values stopped with the last good checkpoint kept::

    from proxrl import PPO

    agent = PPO("CartPole-v1", lr=3e-4, num_envs=8, seed=0)  # or Agent("ppo", "CartPole-v1", ...)
    agent.learn(100_000)                 # a run directory under runs/ (or out=...)
    action, _ = agent.predict(obs, deterministic=True)
    agent.evaluate(episodes=20)          # mean return per seed
    agent.save("ppo_cartpole.safetensors")
    agent = PPO.load("ppo_cartpole.safetensors")   # or a run directory

``learn(n)`` trains ``n`` more environment steps per seed: the first call starts the run, later calls resume
it with the budget raised by ``n`` (as ``proxrl train --resume RUN --total-steps …``; schedules planned on
the budget, e.g. PPO's learning-rate annealing, are re-planned from the current update on).
``callback(report)`` runs after each evaluation interval (:class:`proxrl.run.train.ChunkReport`: steps,
evaluation returns per seed, mean metrics); returning a false value (not ``None``) stops the run there.

Where proxrl differs from Stable-Baselines3: the environment is given by id (gymnax ids run as one compiled
function, any other Gymnasium id host-side); the options are the flat option names of ``proxrl train ALGO
--help`` (``lr``, ``num_envs``, …) and the run options of :class:`~proxrl.run.train.RunConfig`; an agent may
train several seeds at once (``num_seeds``), ``predict`` then acts with seed ``seed_index``; checkpoints are
safetensors, never pickle.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Self

import jax
import numpy as np

from proxrl.config import override
from proxrl.deep import loops
from proxrl.deep.config import check_unused
from proxrl.deep.gym_envs import resolve_backend
from proxrl.deep.jax_envs import BoxSpace
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError, check_int_at_least, check_seed
from proxrl.run.checkpoints import read_metadata
from proxrl.run.host import gym_spaces
from proxrl.run.presets import apply_preset
from proxrl.run.records import RunDir
from proxrl.run.train import (
    CHECKPOINT,
    ChunkReport,
    JaxRunner,
    RunConfig,
    _learner,
    budget_note,
    checkpoint_info,
    make_runner,
    read_config_json,
    train,
)


def _python_names(error: ConfigError) -> ConfigError:
    """``error`` with the command-line flags it names (``--total-steps``) written as the Python argument names
    (``total_steps``), for messages the driver shares with the command line."""
    text = re.sub(r"(?<![\w-])--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), str(error))
    if text.startswith("env_id "):  # the library's name of the environment; here it is the argument env
        text = "env" + text.removeprefix("env_id")
    return ConfigError(text)


def _checked(method: Any) -> Any:
    """``method`` raising its ConfigErrors with Python argument names (:func:`_python_names`)."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ConfigError as e:
            raise _python_names(e) from None

    return wrapper


NO_VERBOSE = (
    "proxrl agents take no verbose level: progress=True shows a progress bar, and every run writes "
    "metrics.csv, summary.md and TensorBoard events to its run directory"
)
"""The answer to Stable-Baselines3's ``verbose`` argument."""

RUN_OPTIONS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in ("total_steps", "resume"))
"""The run options an agent takes beside the algorithm's (:class:`~proxrl.run.train.RunConfig`); the budget is
``learn``'s argument."""


class Agent:
    """One algorithm on one environment, trained by :meth:`learn` into a run directory.

    ``algo``: a name of ``proxrl train --help`` (``"ppo"``, ``"sac"``, …); ``env``: a gymnax or Gymnasium id;
    ``preset``: a preset of that algorithm (``proxrl train ALGO --help``), applied before the options given
    here; ``options``: algorithm options by name (``lr=3e-4``) and run options (``seed``, ``num_seeds``,
    ``eval_every``, ``eval_episodes``, ``normalize_obs``, ``out``, ``progress`` (off by default here), …). Every
    option is checked here: a bad one is a one-line :class:`~proxrl.errors.ConfigError` naming it."""

    algo: str = ""
    """Set by the per-algorithm classes (:class:`PPO`, :class:`SAC`, …)."""

    @_checked
    def __init__(
        self, algo: str, env: str = "CartPole-v1", *, preset: str | None = None, **options: Any
    ) -> None:
        if algo not in TRAINERS:
            raise ConfigError(f"algo {algo!r} is not a proxrl algorithm; choose one of {', '.join(TRAINERS)}")
        if not isinstance(env, str):
            raise ConfigError(f"env must be an environment id (a string), got {env!r}")
        if "total_steps" in options:
            raise ConfigError("total_steps is learn()'s argument: agent.learn(total_steps)")
        if "verbose" in options:  # Stable-Baselines3's logging level
            raise ConfigError(NO_VERBOSE)
        config, run = TRAINERS[algo].config(), RunConfig(progress=False)
        if preset is not None:
            config, run = apply_preset(algo, preset, config, run)
        config = override(config, **{k: v for k, v in options.items() if k not in RUN_OPTIONS})
        check_unused(config)
        run = dataclasses.replace(run, **{k: v for k, v in options.items() if k in RUN_OPTIONS})
        self._setup(algo, env, config, run)

    def _setup(self, algo: str, env: str, config: Any, run: RunConfig) -> None:
        """Check the configuration on the environment's spaces and start with no run."""
        config.validate()
        run.validate()
        if type(self).algo and algo != type(self).algo:
            raise ConfigError(f"{type(self).__name__} trains {type(self).algo!r}, not {algo!r}")
        self.algo, self.env_id, self.config, self.run_config = algo, env, config, run
        if resolve_backend(env, run.backend) == "gymnax" and run.num_actors == 0 and algo != "appo":
            jax_env = loops.env_for(env)
            spaces = jax_env.observation_space, jax_env.action_space
        else:
            spaces = gym_spaces(env)
        self.observation_space, self.action_space = spaces
        # the algorithm on these spaces (SAC needs a Box, …) and what only a runner checks; Ray actors start
        # with learn(), so for them the learner alone is built here
        if run.num_actors == 0 and algo != "appo":
            make_runner(config, env, dataclasses.replace(run, total_steps=config.rollout.size)).close()
        else:
            _learner(config, env, *spaces, config.rollout.size)
        self.run_dir: Path | None = None
        self.num_timesteps = 0
        """Environment steps per seed trained so far (the last checkpoint's)."""
        self._runner: Any = None
        self._state: Any = None
        self._key = jax.random.key(run.seed + 1_000_003)  # draws of predict(deterministic=False)

    # --- training ---------------------------------------------------------------------------------------------

    @_checked
    def learn(
        self, total_steps: int | None = None, callback: Any = None, progress: bool | None = None, **other: Any
    ) -> Self:
        """Train ``total_steps`` more environment steps per seed (whole updates), writing the run's records.
        ``callback(report: ChunkReport)`` runs after each evaluation interval; a false answer (not ``None``)
        stops the run there. ``progress``: show a progress bar (default: the agent's ``progress`` option).
        Returns the agent."""
        if other:
            name = next(iter(other))
            hint = (
                ": total_steps is Stable-Baselines3's total_timesteps (steps more, per seed)"
                if name == "total_timesteps"
                else ""
            )
            raise ConfigError(
                f"learn() has no argument {name!r}; it takes total_steps, callback and progress{hint}"
            )
        if total_steps is None:
            raise ConfigError("learn() needs total_steps: the environment steps per seed to train")
        total_steps = check_int_at_least("total_steps", total_steps)
        if self.run_dir is not None and (self.run_dir / CHECKPOINT).exists():
            # the run's own count: another handle on the same run directory may have trained it further
            self.num_timesteps = int(read_metadata(self.run_dir / CHECKPOINT)["step"])
        if callback is not None and not callable(callback):
            raise ConfigError(f"callback must be callable (report) -> bool | None, got {callback!r}")
        run = dataclasses.replace(
            self.run_config,
            total_steps=self.num_timesteps + total_steps,
            progress=self.run_config.progress if progress is None else bool(progress),
        )
        size = self.config.rollout.size
        if self.num_timesteps and run.total_steps // size * size <= self.num_timesteps:
            raise ConfigError(
                f"total_steps must add at least one update of {size} steps (num_envs·num_steps) to the "
                f"{self.num_timesteps:,} trained, got {total_steps}"
            )
        self._release()
        runner = make_runner(self.config, self.env_id, run)
        try:
            if self.run_dir is not None:
                run = dataclasses.replace(run, out=None, resume=self.run_dir)
            else:  # named now, so that a run stopped by an error is found and continued by the next learn()
                rd = RunDir(f"{self.algo}-{self.env_id.replace('/', '_')}", run.out)
                rd.close()
                run = dataclasses.replace(run, out=rd.path)
        except BaseException:
            runner.close()
            raise
        try:
            note = budget_note(total_steps, size, "total_steps")
            if note is not None:
                print(note, file=sys.stderr)
            train(runner, run, self.config, self.env_id, callback, note_budget=False)
        finally:
            path = Path(run.resume or run.out)  # type: ignore[arg-type]
            if (path / "config.json").exists():
                self.run_dir = path
            if (path / CHECKPOINT).exists():
                self.num_timesteps = int(read_metadata(path / CHECKPOINT)["step"])
        return self

    # --- acting -----------------------------------------------------------------------------------------------

    def _loaded(self) -> tuple[Any, Any]:
        """The runner and the trained state of every seed, loaded once from the run's verified checkpoint."""
        if self._runner is None:
            if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
                raise ConfigError("the agent has not been trained yet: call learn() first (or load a run)")
            from proxrl.run.commands import load_run

            _, _, _, self._runner, self._state = load_run(self.run_dir, self.run_config.eval_episodes)
        return self._runner, self._state

    @_checked
    def predict(
        self,
        observation: Any,
        deterministic: bool = True,
        seed_index: int = 0,
        *,
        state: Any = None,
        episode_start: Any = None,
    ) -> tuple[np.ndarray, None]:
        """``(action, None)`` for one observation (``observation_space.shape``) or a batch ``[B, ...]`` of them,
        by seed ``seed_index``'s policy: the deterministic policy (argmax, Gaussian mean, μ_θ; as evaluations
        use) or, with ``deterministic=False``, the behaviour policy that collected the training data (a sample,
        exploration noise included). Observations are standardised as in training when ``normalize_obs`` is on;
        continuous actions are clipped to the action space. The ``None`` stands for the recurrent state of
        Stable-Baselines3's ``predict`` (proxrl's policies have none): its ``state`` and ``episode_start`` are
        accepted by name and not used, so that loops written for Stable-Baselines3 run unchanged."""
        del state, episode_start  # no recurrent state
        if not isinstance(deterministic, bool | np.bool_):
            raise ConfigError(f"deterministic must be True or False, got {deterministic!r}")
        runner, state = self._loaded()
        n = self.run_config.num_seeds
        check_int_at_least("seed_index", seed_index, 0)
        if seed_index >= n:
            raise ConfigError(f"seed_index must be < num_seeds = {n}, got {seed_index}")
        shape = tuple(self.observation_space.shape)
        try:
            obs = np.asarray(observation, dtype=np.float32)
        except (TypeError, ValueError):
            raise ConfigError(
                f"observation must be numbers of shape {shape}, got {observation!r:.80}"
            ) from None
        single = obs.shape == shape
        if not single and (obs.ndim != len(shape) + 1 or obs.shape[1:] != shape or len(obs) == 0):
            raise ConfigError(
                f"observation must have shape {shape} or [batch >= 1, *{shape}], got {tuple(obs.shape)}"
            )
        batch = obs[None] if single else obs
        seeds = np.broadcast_to(batch, (n, *batch.shape))
        if deterministic:
            action = runner.mode(state, seeds)[seed_index]
        else:
            self._key, key = jax.random.split(self._key)
            carry = state.carry if isinstance(runner, JaxRunner) else state
            act = jax.vmap(lambda c, o, k: loops.act(runner.learner, runner.norm, c, o, k))
            action = np.asarray(act(carry, seeds, jax.random.split(key, n)))[seed_index]
        if isinstance(self.action_space, BoxSpace):
            action = np.clip(action, self.action_space.low, self.action_space.high)
        return (action[0] if single else action), None

    @_checked
    def evaluate(self, episodes: int = 10, seed: int = 123) -> np.ndarray:
        """Mean return of ``episodes`` deterministic episodes per seed ``[num_seeds]``, seeded by ``seed`` (the
        evaluation of ``proxrl evaluate``)."""
        check_int_at_least("episodes", episodes)
        check_seed("seed", seed)
        from proxrl.run.commands import load_run

        runner, state = self._loaded()
        if runner.eval_episodes != episodes:
            self._release()
            _, _, _, self._runner, self._state = load_run(self.run_dir, episodes)  # type: ignore[arg-type]
            runner, state = self._runner, self._state
        keys = jax.random.split(jax.random.key(seed), self.run_config.num_seeds)
        return np.asarray(runner.evaluate(state, keys, seed))

    # --- files ------------------------------------------------------------------------------------------------

    @_checked
    def save(self, path: str | Path) -> Path:
        """Copy the run's verified checkpoint (its configuration inside) to ``path``; :meth:`load` reads it."""
        if self.run_dir is None or not (self.run_dir / CHECKPOINT).exists():
            raise ConfigError("the agent has not been trained yet: nothing to save (call learn() first)")
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"save path {str(path)!r} is a directory; give a file name")
        read_metadata(self.run_dir / CHECKPOINT)  # verified before it is copied
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"save path {str(path)!r}: cannot create its folder: {e.strerror}") from None
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(self.run_dir / CHECKPOINT, tmp)
        tmp.replace(path)
        return path

    @classmethod
    @_checked
    def load(cls, path: str | Path, **options: Any) -> Agent:
        """An agent from a run directory (``proxrl train``'s or an agent's; :meth:`learn` continues that run in
        place) or from a file :meth:`save` wrote. A file becomes a new run directory holding its configuration
        and checkpoint (``out``, default ``runs/<algo>-<env>-<time>``), so that :meth:`learn` continues it with
        records of its own and :meth:`predict` reads the verified checkpoint as for any run. ``Agent.load``
        returns the algorithm's class (:class:`PPO`, …). ``options``: the run options ``out`` (a file only),
        ``progress``, ``compile_cache``, ``compile_cache_dir``."""
        from proxrl.config import from_record

        allowed = ("out", "progress", "compile_cache", "compile_cache_dir")
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            if "verbose" in unknown:
                raise ConfigError(NO_VERBOSE)
            raise ConfigError(f"load() takes the run options {', '.join(allowed)}; got {unknown[0]!r}")
        path = Path(path)
        step = 0
        if path.is_dir():
            if "out" in options:
                raise ConfigError(
                    f"out is for loading a file; the run directory {str(path)!r} is continued in place"
                )
            if (path / CHECKPOINT).exists():
                meta = read_metadata(path / CHECKPOINT)  # verified
                record, step = checkpoint_info(meta, path / CHECKPOINT).config, int(meta["step"])
            else:  # a run stopped before its first checkpoint: learn() starts it again
                record = read_config_json(path)
                if record is None:
                    raise ConfigError(f"{str(path)!r} holds no run (no config.json, no {CHECKPOINT})")
        else:
            meta = read_metadata(path)  # verified
            record, step = checkpoint_info(meta, path).config, int(meta["step"])
        algo, env = record.get("algo"), record.get("env")
        if algo not in TRAINERS or not isinstance(env, str) or not isinstance(record.get("run"), dict):
            raise ConfigError(f"{str(path)!r} holds a {algo!r} run, not an agent's")
        if cls.algo and algo != cls.algo:
            raise ConfigError(f"{str(path)!r} holds a {algo!r} agent, not {cls.algo!r}")
        config = from_record(TRAINERS[algo].config, record["algo_config"], "the checkpoint's algo_config")
        run = from_record(RunConfig, {**record["run"], "out": None, "resume": None, "progress": False}, "run")
        run = dataclasses.replace(run, **options)
        agent = AGENTS[algo].__new__(AGENTS[algo])
        agent._setup(algo, env, config, dataclasses.replace(run, out=None))  # every check before any file
        if path.is_dir():
            agent.run_dir = path
        else:
            rd = RunDir(f"{algo}-{env.replace('/', '_')}", run.out, lock=True)
            try:
                rd.write_config(record)
                tmp = rd.path / f".{CHECKPOINT}.load.tmp"
                shutil.copyfile(path, tmp)
                tmp.replace(rd.path / CHECKPOINT)
            finally:
                rd.close()
            agent.run_dir = rd.path
        agent.num_timesteps = step
        return agent

    # --- resources --------------------------------------------------------------------------------------------

    def _release(self) -> None:
        if self._runner is not None:
            self._runner.close()
        self._runner, self._state = None, None

    def close(self) -> None:
        """Release the environments (and Ray actors) the agent holds for predict and evaluate."""
        self._release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f", run_dir={str(self.run_dir)!r}" if self.run_dir is not None else ""
        return f"{type(self).__name__}({self.env_id!r}, steps={self.num_timesteps:,}{where})"


def _agent_class(algo: str, name: str) -> type[Agent]:
    def __init__(self: Agent, *args: Any, preset: str | None = None, **options: Any) -> None:
        policy = (args and isinstance(args[0], str) and args[0].endswith("Policy")) or "policy" in options
        if policy or len(args) > 1 or (args and "env" in options):
            raise ConfigError(
                f"{name} takes the environment id first and no policy name: {name}('CartPole-v1', hidden=(64, 64)); "
                "the networks are set by options such as hidden and activation"
            )
        env = args[0] if args else options.pop("env", "CartPole-v1")
        Agent.__init__(self, algo, env, preset=preset, **options)

    doc = (
        f"{TRAINERS[algo].description}\n\nAn :class:`Agent` for ``{algo}``: ``{name}(env, preset=None, **options)``, "
        f"the options of ``proxrl train {algo} --help`` by name."
    )
    return type(name, (Agent,), {"algo": algo, "__init__": __init__, "__doc__": doc, "__module__": __name__})


CLASS_NAMES = {
    "reinforce": "REINFORCE",
    "npg": "NPG",
    "qac": "QAC",
    "a2c": "A2C",
    "ppo": "PPO",
    "appo": "APPO",
    "dpg": "DPG",
    "dpg_onpolicy": "DPGOnPolicy",
    "ddpg": "DDPG",
    "td3": "TD3",
    "sac": "SAC",
    "offpolicy_ac": "OffPolicyAC",
    "es": "ES",
    "implicit_ac": "ImplicitAC",
}
"""The class of each algorithm's agent (every name of :data:`proxrl.deep.registry.TRAINERS`)."""

AGENTS: dict[str, type[Agent]] = {algo: _agent_class(algo, CLASS_NAMES[algo]) for algo in TRAINERS}
"""Each algorithm's agent class by algorithm name."""

REINFORCE = AGENTS["reinforce"]
NPG = AGENTS["npg"]
QAC = AGENTS["qac"]
A2C = AGENTS["a2c"]
PPO = AGENTS["ppo"]
APPO = AGENTS["appo"]
DPG = AGENTS["dpg"]
DPGOnPolicy = AGENTS["dpg_onpolicy"]
DDPG = AGENTS["ddpg"]
TD3 = AGENTS["td3"]
SAC = AGENTS["sac"]
OffPolicyAC = AGENTS["offpolicy_ac"]
ES = AGENTS["es"]
ImplicitAC = AGENTS["implicit_ac"]

__all__ = ["AGENTS", "Agent", "ChunkReport", *CLASS_NAMES.values()]
