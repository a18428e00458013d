"""Named settings per algorithm, in one place: ``proxrl train ppo --env HalfCheetah-v5 --preset mujoco``.

A preset sets algorithm options (and run options such as normalisation and the evaluation schedule) to a
published setting; options typed on the command line still override it. The settings below are the ones the
figures in bench/RESULTS.md were measured with.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

from proxrl.config import override
from proxrl.errors import ConfigError


class Preset(NamedTuple):
    """``algo``: algorithm options by name (:func:`proxrl.config.override`); ``run``:
    :class:`~proxrl.run.train.RunConfig` fields."""

    description: str
    algo: dict[str, Any]
    run: dict[str, Any]


_MUJOCO_OFF_POLICY_RUN = {"eval_every": 25_000, "eval_episodes": 10}


def ars_v2t(directions: int, alpha: float, nu: float, **extra: object) -> dict[str, object]:
    """ES options for ARS V2-t (Mania et al. 2018) with N directions, step α and noise ν: a linear policy without
    noise input on standardised observations, 2N members of one 1000-step episode, top 4 pairs, returns over their
    standard deviation, the plain step θ + ηĝ with η = 2να (ARS's step has no 1/ν; ĝ divides by 2σ), σ = ν."""
    return {
        "num_envs": 2 * directions,
        "num_steps": 1000,
        "linear": True,
        "noise_dim": 0,
        "obs_norm": True,
        "shaping": "std",
        "top_b": 4,
        "solver": "sgd",
        "lr": 2 * nu * alpha,
        "sigma": nu,
        **extra,
    }


PRESETS: dict[str, dict[str, Preset]] = {
    "ppo": {
        "mujoco": Preset(
            "the PPO paper's MuJoCo setting: 1 environment, 2048-step rollouts, 10 epochs of 32 minibatches, "
            "Adam 3e-4 annealed, no entropy bonus, observations and rewards normalised",
            {
                "num_envs": 1,
                "num_steps": 2048,
                "update_epochs": 10,
                "num_minibatches": 32,
                "lr": 3e-4,
                "ent_coef": 0.0,
            },
            {"normalize_obs": True, "normalize_reward": True, "eval_every": 102_400, "eval_episodes": 5},
        ),
        "classic": Preset(
            "classic control (CartPole-v1, Acrobot-v1): Adam 1e-3, no entropy bonus",
            {"lr": 1e-3, "ent_coef": 0.0},
            {},
        ),
        "pendulum": Preset(
            "Pendulum-v1 (RL Zoo's shapes without gSDE): 4 environments × 1024 steps, 10 epochs of 16 minibatches, "
            "Adam 1e-3, γ 0.9, no entropy bonus, no value clipping (raw returns of ≈ −100 per state stall a "
            "critic whose step is clipped to ±ε)",
            {
                "num_envs": 4,
                "num_steps": 1024,
                "update_epochs": 10,
                "num_minibatches": 16,
                "lr": 1e-3,
                "gamma": 0.9,
                "ent_coef": 0.0,
                "clip_vloss": False,
            },
            {},
        ),
    },
    "td3": {
        "mujoco": Preset(
            "the TD3 paper / CleanRL MuJoCo setting: 10^6-transition buffer, 25k random steps before learning",
            {"buffer_size": 1_000_000, "learning_starts": 25_000},
            _MUJOCO_OFF_POLICY_RUN,
        ),
    },
    "sac": {
        "mujoco": Preset(
            "the SAC / CleanRL MuJoCo setting: 10^6-transition buffer, 10k random steps, Adam 3e-4 for the networks "
            "and the temperature",
            {"buffer_size": 1_000_000, "learning_starts": 10_000, "lr": 3e-4, "q_lr": 3e-4, "alpha_lr": 3e-4},
            _MUJOCO_OFF_POLICY_RUN,
        ),
    },
    "es": {
        "pendulum": Preset(
            "Pendulum-v1 (gymnax; use with --env Pendulum-v1): 64 members (32 antithetic pairs) × 1000 steps (5 "
            "episodes each), both members of a pair from the same initial states and noise (crn pairs), raw "
            "observations (no obs_norm), σ = 0.05, Adam 0.05, centered ranks, 32×32 tanh generator with one noise "
            "input, 300 generations (19.2M steps); reaches −300 on nearly every seed (see "
            "docs/methods/implicit-policies.md)",
            {"num_envs": 64, "num_steps": 1000, "sigma": 0.05, "lr": 0.05, "crn": "pairs", "obs_norm": False},
            {"total_steps": 19_200_000, "eval_every": 640_000, "eval_episodes": 10},
        ),
        "ars_halfcheetah": Preset(
            "ARS V2-t's HalfCheetah setting (Mania et al. 2018): a linear policy without noise input on standardised "
            "observations, 32 directions (64 members × one 1000-step episode), top 4, returns over their standard "
            "deviation, the plain step with α = 0.02 (η = 2να = 0.0012), ν = σ = 0.03",
            ars_v2t(directions=32, alpha=0.02, nu=0.03),
            {"eval_every": 128_000, "eval_episodes": 3},
        ),
        "ars_hopper": Preset(
            "ARS V2-t's Hopper setting (Mania et al. 2018): a linear policy without noise input on standardised "
            "observations, 8 directions (16 members, each scored on one episode from a reset, at most 1000 steps), "
            "top 4, returns over their standard deviation, the survival bonus subtracted while scoring (shift 1), "
            "the plain step with α = 0.01 (η = 2να = 0.0005), ν = σ = 0.025",
            ars_v2t(directions=8, alpha=0.01, nu=0.025, shift=1.0, score_episodes="first"),
            {"eval_every": 160_000, "eval_episodes": 20},
        ),
    },
}


def presets_help(algo: str) -> str:
    """The ``--preset`` help of ``proxrl train <algo>``."""
    table = PRESETS.get(algo, {})
    if not table:
        return "Named settings (none for this algorithm)."
    listed = "; ".join(f"{name}: {preset.description}" for name, preset in table.items())
    return f"Named settings applied under the options you type: {listed}."


def apply_preset(algo: str, name: str, algo_config: Any, run_config: Any) -> tuple[Any, Any]:
    """``(algo_config, run_config)`` with preset ``name`` of ``algo`` applied (a one-line ConfigError if unknown)."""
    table = PRESETS.get(algo, {})
    if name not in table:
        allowed = ", ".join(table) if table else "none exist for this algorithm"
        raise ConfigError(f"--preset {name!r} is not a preset of {algo}; choose one of: {allowed}")
    preset = table[name]
    return override(algo_config, **preset.algo), dataclasses.replace(run_config, **preset.run)
