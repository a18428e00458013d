"""Trainable algorithms by name: a config dataclass and ``make_learner(config, observation_space, action_space)``.

The driver (:mod:`proxrl.run.train`) runs any of them on gymnax (traced) or Gymnasium (host) environments;
:func:`entry_for` finds an algorithm from its config.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from proxrl.deep import appo
from proxrl.deep.implicit import ac as implicit_ac
from proxrl.deep.implicit import es
from proxrl.deep.implicit.policy import ImplicitNetwork
from proxrl.deep.off_policy import ddpg, dpg, offpolicy_ac, sac, td3
from proxrl.deep.on_policy import a2c, npg, ppo, qac, reinforce
from proxrl.deep.on_policy import dpg as dpg_onpolicy
from proxrl.errors import ConfigError
from proxrl.types import Learner


class Entry(NamedTuple):
    config: type
    make_learner: Callable[..., Learner]
    """``make_learner(config, observation_space, action_space, total_steps=None)``."""
    description: str


TRAINERS: dict[str, Entry] = {
    "reinforce": Entry(
        reinforce.REINFORCEConfig,
        reinforce.make_learner,
        "REINFORCE: Monte Carlo policy gradient; baseline none (unfinished episodes masked) or learned V.",
    ),
    "npg": Entry(
        npg.NPGConfig,
        npg.make_learner,
        "NPG / TRPO: Fisher-vector products + conjugate gradient, trust-region step, optional line search.",
    ),
    "qac": Entry(
        qac.QACConfig,
        qac.make_learner,
        "Q actor-critic: TD-trained Q critic, sampled-action or all-actions policy gradient.",
    ),
    "a2c": Entry(
        a2c.A2CConfig,
        a2c.make_learner,
        "A2C: synchronous advantage actor-critic, one gradient step per rollout.",
    ),
    "ppo": Entry(
        ppo.PPOConfig,
        ppo.make_learner,
        "PPO (clip, KL fixed/adaptive, or none) with GAE.",
    ),
    "appo": Entry(
        appo.APPOConfig,
        appo.make_learner,
        "APPO: asynchronous PPO; env-runner actors (Ray) act with stale parameters, V-trace's truncated "
        "importance weights correct the clipped step (--lag-mode fixed: a reproducible fixed lag).",
    ),
    "dpg": Entry(
        dpg.DPGConfig,
        dpg.make_learner,
        "DPG: deterministic policy gradient with a replay buffer, no target networks (continuous actions).",
    ),
    "dpg_onpolicy": Entry(
        dpg_onpolicy.DPGOnPolicyConfig,
        dpg_onpolicy.make_learner,
        "DPG, the lecture's on-policy form: fresh rollouts from μ_θ plus noise, SARSA critic target, no replay.",
    ),
    "ddpg": Entry(
        ddpg.DDPGConfig,
        ddpg.make_learner,
        "DDPG: DPG with replay, Polyak target networks and Gaussian exploration (continuous actions).",
    ),
    "td3": Entry(
        td3.TD3Config,
        td3.make_learner,
        "TD3: twin critics (clipped double Q), target policy smoothing, delayed actor updates (continuous actions).",
    ),
    "sac": Entry(
        sac.SACConfig,
        sac.make_learner,
        "SAC: tanh-Gaussian actor, twin critics with Polyak targets, learned temperature (continuous actions).",
    ),
    "offpolicy_ac": Entry(
        offpolicy_ac.OffPolicyACConfig,
        offpolicy_ac.make_learner,
        "Off-policy actor-critic with replay: Σ_a ∇π·Q actor, expected-SARSA critic (discrete actions).",
    ),
    "es": Entry(
        es.ESConfig,
        es.make_learner,
        "Evolution strategies: antithetic parameter perturbations of an implicit policy a = g(s, ξ), returns only.",
    ),
    "implicit_ac": Entry(
        implicit_ac.ImplicitACConfig,
        implicit_ac.make_learner,
        "Implicit actor-critic: a = g(s, ξ) trained through a learned Q by reparameterisation, DDPG-style (continuous actions).",
    ),
}


IMPLICIT: tuple[str, ...] = ("es", "implicit_ac")
"""The algorithms that train an implicit policy a = g_θ(s, ξ) (whose density is not available)."""

LOG_PI: tuple[str, ...] = ("reinforce", "npg", "qac", "a2c", "ppo", "sac", "offpolicy_ac")
"""The algorithms whose update needs log π_θ(a|s) (score function, ratio, KL or entropy)."""


def check_policy_class(name: str, config: Any) -> None:
    """An implicit policy (:class:`~proxrl.deep.implicit.policy.ImplicitNetwork`) only with the algorithms that
    train one (:data:`IMPLICIT`): a one-line :class:`ConfigError` otherwise, since the others would read it as
    their own network and drop the noise input."""
    network = getattr(config, "network", None)
    if name in IMPLICIT or not isinstance(network, ImplicitNetwork):
        return
    why = (
        "it needs log π_θ(a|s), which an implicit policy a = g_θ(s, ξ) does not have"
        if name in LOG_PI
        else "its actor is a deterministic μ_θ(s) with no noise input"
    )
    raise ConfigError(f"{name} cannot train an implicit policy: {why}; use {' or '.join(IMPLICIT)}")


def entry_for(config: Any) -> tuple[str, Entry]:
    """``(name, entry)`` of the algorithm whose config type ``config`` is (a :class:`ConfigError` otherwise, and
    for an implicit policy given to an algorithm that cannot train one: :func:`check_policy_class`)."""
    for name, entry in TRAINERS.items():
        if type(config) is entry.config:
            check_policy_class(name, config)
            return name, entry
    if isinstance(config, type) and any(config is entry.config for entry in TRAINERS.values()):
        raise ConfigError(f"{config.__name__} is a class: give a config, {config.__name__}()")
    raise ConfigError(
        f"{type(config).__name__} is not the config of a registered algorithm ({', '.join(TRAINERS)})"
    )
