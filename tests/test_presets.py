"""Presets: published settings by name, applied under the options typed beside them."""

from __future__ import annotations

import dataclasses

import pytest
import tyro

from proxrl.cli import main
from proxrl.config import get, override
from proxrl.deep.registry import TRAINERS
from proxrl.run.commands import make_train_command, preset_defaults
from proxrl.run.presets import PRESETS
from proxrl.run.train import RunConfig


def _parse(algo: str, argv: list[str]):
    command = make_train_command(algo, TRAINERS[algo].config)
    return tyro.cli(
        command, args=argv, default=preset_defaults(command, argv), config=(tyro.conf.OmitArgPrefixes,)
    )


def test_ppo_mujoco_preset_is_the_ppo_paper_setting_and_typed_options_override_it():
    cmd = _parse("ppo", ["--env", "HalfCheetah-v5", "--preset", "mujoco", "--lr", "1e-4", "--num-seeds", "3"])
    a = cmd.algo
    assert (a.rollout.num_envs, a.rollout.num_steps, a.step.update_epochs, a.step.num_minibatches) == (
        1,
        2048,
        10,
        32,
    )
    assert a.surrogate.ent_coef == 0.0 and a.step.lr == 1e-4  # typed: overrides the preset's 3e-4
    assert cmd.run.normalize_obs and cmd.run.normalize_reward and cmd.run.num_seeds == 3
    assert cmd.preset == "mujoco"
    plain = _parse("ppo", ["--env", "HalfCheetah-v5"])
    assert (
        plain.algo.rollout.num_steps == TRAINERS["ppo"].config().rollout.num_steps
        and not plain.run.normalize_obs
    )
    # the preset's run options too, and typed ones (either spelling of the flag) override them
    preset = _parse("ppo", ["--env", "HalfCheetah-v5", "--preset=mujoco"])
    assert (preset.run.eval_every, preset.run.eval_episodes, preset.run.normalize_reward) == (
        102_400,
        5,
        True,
    )
    typed = _parse("ppo", ["--env", "HalfCheetah-v5", "--preset", "mujoco", "--no-normalize-reward",
                           "--eval-every", "5000"])  # fmt: skip
    assert (typed.run.eval_every, typed.run.normalize_reward, typed.run.normalize_obs) == (5000, False, True)


def test_an_agents_preset_is_applied_before_its_options():
    from proxrl import ES

    preset = PRESETS["es"]["pendulum"]
    agent = ES("Pendulum-v1", preset="pendulum", lr=0.02, eval_episodes=3)
    assert agent.config == override(TRAINERS["es"].config(), **{**preset.algo, "lr": 0.02})
    assert preset.algo["lr"] != 0.02 and agent.run_config.eval_episodes == 3 != preset.run["eval_episodes"]
    assert agent.run_config.eval_every == preset.run["eval_every"] != RunConfig().eval_every
    agent.close()


@pytest.mark.parametrize(("algo", "name"), [(a, n) for a, table in PRESETS.items() for n in table])
def test_every_preset_names_real_options_with_valid_values(algo, name):
    preset = PRESETS[algo][name]
    config = override(TRAINERS[algo].config(), **preset.algo).validate()
    dataclasses.replace(RunConfig(), **preset.run).validate()
    assert all(get(config, k) == v for k, v in preset.algo.items())


def test_an_unknown_preset_is_one_line_and_exit_2(capsys):
    assert main(["train", "a2c", "--preset", "mujoco"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--preset 'mujoco' is not a preset of a2c" in err
