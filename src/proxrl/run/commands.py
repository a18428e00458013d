"""The ``train`` and ``evaluate`` commands: configuration dataclasses and what they run."""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import jax
import numpy as np
import tyro

from proxrl.algos.registry import TRAINERS
from proxrl.errors import ConfigError, check_int_at_least
from proxrl.run.checkpoints import load_checkpoint
from proxrl.run.records import RunDir, atomic_write_text
from proxrl.run.stats import mean_ci
from proxrl.run.train import CHECKPOINT, RunConfig, planned_steps, train

ENV_HELP = "Environment id (gymnax: CartPole-v1, Acrobot-v1, Pendulum-v1, MountainCarContinuous-v0, …)."


def make_train_command(algo: str, config_type: type) -> type:
    """A dataclass ``{env, run: RunConfig, algo: <config_type>}`` for ``proxrl train <algo>``."""

    @dataclass(frozen=True)
    class TrainCommand:
        env: Annotated[str, tyro.conf.arg(help=ENV_HELP)] = "CartPole-v1"
        run: RunConfig = field(default_factory=RunConfig)
        """Seeds, budget, evaluation, output."""
        algo: config_type = field(default_factory=config_type)  # type: ignore[valid-type]  (a real type: no lazy annotations here)
        """Algorithm hyperparameters."""

    TrainCommand.__doc__ = f"Train {algo.upper()}: {TRAINERS[algo].description}"
    TrainCommand.__name__ = TrainCommand.__qualname__ = f"Train{algo.upper()}"
    TrainCommand.algo_name = algo  # type: ignore[attr-defined]
    return TrainCommand


def _algo_config(config: Any, total_steps: int) -> Any:
    """The algorithm's configuration with its step budget taken from ``--total-steps``."""
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, total_timesteps=total_steps) if "total_timesteps" in names else config


def run_train(cmd: Any) -> RunDir:
    algo = cmd.algo_name
    entry = TRAINERS[algo]
    cmd.run.validate()
    steps_per_update = entry.make(_algo_config(cmd.algo, cmd.run.total_steps), cmd.env, 1).steps_per_update
    config = _algo_config(cmd.algo, planned_steps(cmd.run, steps_per_update))  # schedules see the real budget
    return train(lambda: entry.make(config, cmd.env, cmd.run.eval_episodes), cmd.run, config, cmd.env)


@dataclass(frozen=True)
class EvaluateCommand:
    """Evaluate a training run's checkpoint with the deterministic policy."""

    run_dir: tyro.conf.Positional[Path]
    """A directory written by ``proxrl train``."""
    episodes: int = 20
    """Episodes per seed."""
    seed: int = 123
    """Seed of the evaluation episodes."""
    gif: Path | None = None
    """Write one episode of seed 0 as a GIF here (Gymnasium environments that render rgb_array)."""
    gif_steps: int = 500
    """Longest episode to record."""


def load_run(run_dir: Path) -> tuple[str, str, Any, Any, Any]:
    """``(algo, env, config, trainer, state)`` of a training run, from config.json and its checkpoint."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a training run directory (no config.json)")
    record = json.loads(cfg_path.read_text())
    algo, env = record.get("algo"), record.get("env")
    if algo not in TRAINERS:
        raise ConfigError(
            f"{str(run_dir)!r} holds a {algo!r} run; trainable algorithms: {', '.join(TRAINERS)}"
        )
    entry = TRAINERS[algo]
    fields = {f.name: f for f in dataclasses.fields(entry.config)}
    values = {
        k: tuple(v) if isinstance(v, list) else v for k, v in record["algo_config"].items() if k in fields
    }
    config = entry.config(**values)
    trainer = entry.make(config, env, 1)
    num_seeds = int(record["run"]["num_seeds"])
    template = jax.vmap(trainer.init)(jax.random.split(jax.random.key(0), num_seeds))
    state, _ = load_checkpoint(run_dir / CHECKPOINT, template)
    return algo, env, config, trainer, state


def run_evaluate(cmd: EvaluateCommand) -> RunDir:
    check_int_at_least("episodes", cmd.episodes)
    algo, env, config, _, state = load_run(cmd.run_dir)
    entry = TRAINERS[algo]
    trainer = entry.make(config, env, cmd.episodes)
    num_seeds = jax.tree.leaves(state)[0].shape[0]
    keys = jax.random.split(jax.random.key(cmd.seed), num_seeds)
    returns = np.asarray(jax.jit(jax.vmap(trainer.evaluate))(state, keys))
    ci = mean_ci(returns)
    lines = [
        f"# Evaluation of {algo} on {env}",
        "",
        f"{cmd.episodes} deterministic episodes per seed, evaluation seed {cmd.seed}.",
        "",
        f"- mean return over seeds: {ci.mean:.2f} (95% CI [{ci.lo:.2f}, {ci.hi:.2f}])",
        f"- per seed: {', '.join(f'{r:.2f}' for r in returns)}",
    ]
    rd = RunDir.reopen(cmd.run_dir)
    if cmd.gif is not None:
        frames = record_episode(
            algo, env, config, jax.tree.map(lambda x: x[0], state), cmd.gif_steps, cmd.seed
        )
        write_gif(frames, cmd.gif)
        lines.append(f"- GIF of seed 0 ({len(frames)} frames): {cmd.gif}")
    atomic_write_text(rd.path / "evaluation.md", "\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    return rd


def record_episode(
    algo: str, env_id: str, config: Any, state: Any, max_steps: int, seed: int
) -> list[np.ndarray]:
    """Roll the deterministic policy of one seed in Gymnasium's ``env_id`` (``render_mode="rgb_array"``)."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # pygame renders off-screen; no sound device
    import gymnasium as gym

    from proxrl.algos.actor_critic import features, make_agent
    from proxrl.settings.jax_envs import make_jax_env

    if env_id not in gym.registry:
        raise ConfigError(
            f"--gif needs a Gymnasium environment with rgb_array rendering; {env_id!r} is not registered there"
        )
    agent = make_agent(make_jax_env(env_id), tuple(config.hidden), config.activation)
    act = jax.jit(lambda obs: agent.mode(agent.actor.apply(state.params["actor"], features(agent, obs))))
    env = gym.make(env_id, render_mode="rgb_array")
    obs, _ = env.reset(seed=seed)
    try:
        frames = [env.render()]
    except gym.error.DependencyNotInstalled as e:
        raise ConfigError(f"--gif cannot render {env_id}: {str(e).splitlines()[0]}") from None
    for _ in range(max_steps):
        action = np.asarray(act(np.asarray(obs, np.float32)))
        obs, _, terminated, truncated, _ = env.step(action.item() if action.ndim == 0 else action)
        frames.append(env.render())
        if terminated or truncated:
            break
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
