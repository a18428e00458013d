"""The ``train`` and ``evaluate`` commands: configuration dataclasses and what they run."""

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jax
import numpy as np
import tyro

from proxrl.config import check_finite, from_record
from proxrl.deep.config import check_unused
from proxrl.deep.gym_envs import make_gym_env
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError, check_int_at_least, check_seed
from proxrl.run.checkpoints import read_checkpoint, read_metadata, restore
from proxrl.run.presets import apply_preset, presets_help
from proxrl.run.records import RunDir, atomic_write_text
from proxrl.run.runner import Runner
from proxrl.run.stats import mean_ci, return_range
from proxrl.run.train import (
    CHECKPOINT,
    RunConfig,
    check_config_json,
    checkpoint_info,
    make_runner,
    read_config_json,
    train,
)

ENV_HELP = (
    "Environment id: a gymnax id (CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0, …) "
    "or any Gymnasium id (HalfCheetah-v5, Hopper-v5, …); see --backend."
)


def make_train_command(algo: str, config_type: type) -> type:
    """A dataclass ``{env, preset, run: RunConfig, algo: <config_type>}`` for ``proxrl train <algo>``."""
    preset_help = presets_help(algo)

    @dataclass(frozen=True)
    class TrainCommand:
        env: Annotated[str, tyro.conf.arg(help=ENV_HELP)] = "CartPole-v1"
        preset: Annotated[str | None, tyro.conf.arg(help=preset_help)] = None
        run: RunConfig = field(default_factory=RunConfig)
        """Seeds, budget, evaluation, output."""
        algo: config_type = field(default_factory=config_type)  # type: ignore[valid-type]  (a real type: no lazy annotations here)
        """Algorithm hyperparameters."""

    TrainCommand.__doc__ = TRAINERS[algo].description
    TrainCommand.__name__ = TrainCommand.__qualname__ = f"Train{algo.upper()}"
    TrainCommand.algo_name = algo  # type: ignore[attr-defined]
    return TrainCommand


def typed_value(argv: list[str], flag: str) -> str | None:
    """The value typed for ``flag`` in ``argv`` (``--flag VALUE`` or ``--flag=VALUE``; the last one wins), or
    None."""
    value = None
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg.split("=", 1)[1]
    return value


def preset_defaults(command: type, argv: list[str]) -> Any | None:
    """The command's defaults with the preset named by ``--preset NAME`` in ``argv`` applied (None without one),
    so that the options typed beside it override the preset."""
    name = typed_value(argv, "--preset")
    if name is None:
        return None
    base = command()
    algo_config, run_config = apply_preset(command.algo_name, name, base.algo, base.run)
    return dataclasses.replace(base, preset=name, algo=algo_config, run=run_config)


def resume_defaults(command: type, argv: list[str]) -> Any | None:
    """The command's defaults taken from the run that ``--resume RUN_DIR`` in ``argv`` names (None without one,
    or where RUN_DIR holds no config.json: training then says what is wrong): its environment, hyperparameters
    and run options, so that a resume needs only ``--resume`` (and a new ``--total-steps``). Options typed beside
    it override these, and the resume refuses those that differ from the run's."""
    path = typed_value(argv, "--resume")
    if path is None:
        return None
    record = read_config_json(Path(path))
    if record is None:
        return None
    algo = record.get("algo")
    if not isinstance(algo, str) or algo not in TRAINERS:
        raise ConfigError(
            f"--resume {path!r}: its config.json names no algorithm proxrl trains ({algo!r}): it is not a run "
            "directory proxrl wrote, or it is damaged"
        )
    if algo != command.algo_name:
        raise ConfigError(
            f"--resume {path!r} holds a {algo!r} run, not {command.algo_name!r}: continue it with "
            f"'proxrl train {algo} --resume {path}'"
        )
    try:
        algo_config = from_record(
            TRAINERS[algo].config, record["algo_config"], "its config.json's algo_config"
        )
        # where compilations are cached and which cluster to join belong to this session, not to the run
        here = {
            name: getattr(RunConfig(), name) for name in ("address", "compile_cache", "compile_cache_dir")
        }
        run_record = {**record["run"], **here, "out": None, "resume": Path(path), "progress": True}
        run_config = from_record(RunConfig, run_record, "its config.json's run options")
        env = record["env"]
    except (KeyError, TypeError) as e:
        what = f"lacks {e}" if isinstance(e, KeyError) else f"does not hold the tables of a run ({e})"
        raise ConfigError(
            f"--resume {path!r}: its config.json {what}: it is not a run directory proxrl wrote, or it is damaged"
        ) from None
    preset = typed_value(argv, "--preset")
    if preset is not None:  # applied on the run's options: the resume then refuses whatever it changes
        algo_config, run_config = apply_preset(algo, preset, algo_config, run_config)
    return dataclasses.replace(command(), env=env, preset=preset, algo=algo_config, run=run_config)


def run_train(cmd: Any) -> RunDir:
    check_finite(cmd.algo)  # NaN or infinite options are refused before anything is built
    check_finite(cmd.run)
    if cmd.run.resume is None:  # (a resumed run continues with the options it was recorded with)
        check_unused(cmd.algo)
    runner = make_runner(cmd.algo, cmd.env, cmd.run)
    return train(runner, cmd.run, cmd.algo, cmd.env)


@dataclass(frozen=True)
class EvaluateCommand:
    """Evaluate a training run's checkpoint with the deterministic policy."""

    run_dir: tyro.conf.Positional[Path]
    """A run directory written by 'proxrl train'."""
    episodes: int = 20
    """Episodes per seed."""
    seed: int = 123
    """Seed of the evaluation episodes: the keys of gymnax resets; on Gymnasium those of the training's evaluation round of that number (--seed R replays round R's episodes)."""
    gif: Path | None = None
    """Write one episode of seed 0 as a GIF here (Gymnasium environments that render rgb_array)."""
    gif_steps: int = 500
    """Longest episode to record."""


def load_run(run_dir: Path, eval_episodes: int = 10) -> tuple[str, str, Any, Runner, Any]:
    """``(algo, env, config, runner, state)`` of a training run, rebuilt from the configuration its verified
    checkpoint holds. config.json, the human-readable copy, must agree with it (the options a resume may
    change aside): a one-line ConfigError names the first difference, as it does a corrupt or foreign
    checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a training run directory (no config.json)")
    stored = read_config_json(run_dir)
    checkpoint = read_checkpoint(run_dir / CHECKPOINT)
    info = checkpoint_info(checkpoint.metadata, run_dir / CHECKPOINT)
    check_config_json(stored or {}, info, run_dir)
    record = info.config
    algo, env = record["algo"], record["env"]
    if algo not in TRAINERS:
        raise ConfigError(
            f"{str(run_dir)!r} holds a {algo!r} run; trainable algorithms: {', '.join(TRAINERS)}"
        )
    config = from_record(TRAINERS[algo].config, record["algo_config"], "the checkpoint's algo_config")
    run_record = {**record["run"], "out": None, "resume": None, "progress": False}
    run_cfg = from_record(RunConfig, run_record, "the checkpoint's run configuration")
    run_cfg = dataclasses.replace(run_cfg, eval_episodes=eval_episodes)
    runner = make_runner(config, env, run_cfg)
    template = runner.init(jax.random.split(jax.random.key(0), run_cfg.num_seeds))
    state = restore(checkpoint, template, f"checkpoint {str(run_dir / CHECKPOINT)!r}")
    return algo, env, config, runner, state


def run_evaluate(cmd: EvaluateCommand) -> RunDir:
    check_int_at_least("episodes", cmd.episodes)
    check_int_at_least("gif_steps", cmd.gif_steps)
    check_seed("seed", cmd.seed)
    if cmd.gif is not None and (str(cmd.gif) in ("", ".") or cmd.gif.is_dir()):
        raise ConfigError(f"--gif must name a file, got {str(cmd.gif)!r}")
    algo, env, _, runner, state = load_run(cmd.run_dir, cmd.episodes)
    step = int(read_metadata(Path(cmd.run_dir) / CHECKPOINT)["step"])
    num_seeds = jax.tree.leaves(state)[0].shape[0]
    keys = jax.random.split(jax.random.key(cmd.seed), num_seeds)
    returns = runner.evaluate(state, keys, cmd.seed)
    ci = mean_ci(returns, bounds=return_range(env))
    lines = [
        f"# Evaluation of {algo} on {env}",
        "",
        f"The checkpoint at step {step:,} (per seed); {cmd.episodes} deterministic "
        f"episode{'s' if cmd.episodes > 1 else ''} per seed, evaluation seed {cmd.seed}.",
        "",
        f"- mean return over seeds: {ci.mean:.2f} ({ci.interval(2)})",
        f"- per seed: {', '.join(f'{r:.2f}' for r in returns)}",
    ]
    rd = RunDir.reopen(cmd.run_dir)
    if cmd.gif is not None:
        frames = record_episode(runner, env, jax.tree.map(lambda x: x[:1], state), cmd.gif_steps, cmd.seed)
        write_gif(frames, cmd.gif)
        lines.append(f"- GIF of seed 0 ({len(frames)} frames): {cmd.gif}")
    runner.close()
    atomic_write_text(rd.path / "evaluation.md", "\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return rd


def record_episode(runner: Runner, env_id: str, state: Any, max_steps: int, seed: int) -> list[np.ndarray]:
    """Frames of one episode of the deterministic policy of one seed (``state`` with a seed axis of 1) in
    Gymnasium's ``env_id`` (``render_mode="rgb_array"``), run by the evaluation loop
    (:meth:`~proxrl.deep.gym_envs.GymVecEnv.episodes`); observations are normalised as in training."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renders off-screen; no sound device
    import gymnasium as gym

    if env_id not in gym.registry:
        raise ConfigError(
            f"--gif needs a Gymnasium environment with rgb_array rendering; {env_id!r} is not registered there"
        )
    env = make_gym_env(env_id, num_envs=1, render_mode="rgb_array")
    env.reset(seed=seed)
    try:
        frames = [env.vec_env.render()[0]]
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"--gif cannot render {env_id}: {str(e).splitlines()[0]}") from None

    def policy(obs: np.ndarray) -> np.ndarray:  # [1, ...] -> [1, ...]
        return np.asarray(runner.mode(state, obs[None]))[0]

    env.episodes(policy, seed, max_steps, on_step=lambda: frames.append(env.vec_env.render()[0]))
    env.close()
    return frames


def write_gif(frames: list[np.ndarray], path: Path, fps: int = 30) -> None:
    """Write RGB frames as an animated GIF (Pillow, which matplotlib installs)."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(f) for f in frames]
    tmp = path.with_name(f".{path.name}.tmp.gif")
    images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    tmp.replace(path)
