"""Trainable algorithms by name: each a config dataclass and a factory ``make(config, env_id, eval_episodes) -> Trainer``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from proxrl.algos import a2c, ppo
from proxrl.types import Trainer


class Entry(NamedTuple):
    config: type
    make: Callable[[Any, str, int], Trainer]
    description: str


TRAINERS: dict[str, Entry] = {
    "a2c": Entry(
        a2c.A2CConfig, a2c.make_a2c, "A2C: synchronous advantage actor-critic, one gradient step per rollout."
    ),
    "ppo": Entry(
        ppo.PPOConfig,
        ppo.make_ppo,
        "PPO (clip, KL fixed/adaptive, or none) with GAE, on gymnax environments.",
    ),
}
