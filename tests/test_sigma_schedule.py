"""The scheduled-σ Gaussian policy (the lecture's option 2: σ a hyperparameter decreasing over time) in every
on-policy algorithm with a Gaussian policy: σ_k follows the schedule exactly, no step moves it, bad input."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from helpers import assert_one_line_config_error
from proxrl.config import override
from proxrl.deep.distributions import LOG_2PI_E
from proxrl.deep.on_policy.common import policy_sigma
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.train import make_train

TINY = {
    "reinforce": {"num_steps": 16},
    "npg": {"num_steps": 16},
    "qac": {"num_steps": 16, "gradient": "sampled"},
    "a2c": {"num_steps": 16},
    "ppo": {"num_steps": 16, "num_minibatches": 2, "update_epochs": 2},
}
UPDATES = 6


def _config(algo: str, **options):
    config = TRAINERS[algo].config()
    return override(config, num_envs=2, hidden=(8,), **TINY[algo], **options)


def _expected(kind: str, start: float, end: float, horizon: int, per_update: int, updates: int) -> np.ndarray:
    """σ_k for k = 0 … updates − 1, from the formulas (not from proxrl's schedule)."""
    f = np.minimum(np.arange(updates) * per_update / horizon, 1.0)
    return start + (end - start) * f if kind == "linear" else start * (end / start) ** f


@pytest.mark.parametrize(
    ("algo", "kind"),
    [
        ("reinforce", "linear"),
        ("npg", "exponential"),
        ("qac", "linear"),
        ("a2c", "exponential"),
        ("ppo", "linear"),
    ],
)
def test_sigma_follows_the_schedule(algo, kind):
    """Four updates to reach σ_end, six updates run: σ_k of each update (the metric, and the policy's entropy)
    and the σ the final policy holds are the schedule's; no step moved σ."""
    config = _config(algo, sigma=kind, sigma_start=0.8, sigma_end=0.2, sigma_horizon=4 * 32)
    per_update = config.rollout.size
    assert per_update == 32
    state, metrics = jax.jit(make_train(config, "Pendulum-v1", UPDATES * per_update))(jax.random.key(0))
    want = _expected(kind, 0.8, 0.2, 4 * 32, per_update, UPDATES)
    np.testing.assert_allclose(metrics["sigma"], want, rtol=1e-6)
    assert want[-1] == pytest.approx(0.2) and want[1] < want[0]
    # every one of these steps reports the entropy at θ_k: H(N(μ, σ²)) = ½·log(2πe) + log σ (one action dimension)
    np.testing.assert_allclose(metrics["entropy"], 0.5 * LOG_2PI_E + np.log(want), rtol=1e-5)
    assert np.all(metrics["step_norm"] > 0)  # the policy moved, σ did not (it is the schedule's)
    theta = state.carry.learner.params["actor"]
    np.testing.assert_allclose(theta["schedule"]["sigma"], 0.2, rtol=1e-6)  # σ_6, for the next rollout
    assert "log_std" not in theta["params"]  # σ is no parameter of the policy


def test_sigma_horizon_zero_spans_the_budget():
    """sigma_horizon = 0: the schedule spans the run's budget (here 4 updates of 32 steps); without a budget it
    is a one-line error; a learned σ has no schedule."""
    config = _config("ppo", sigma="linear", sigma_start=1.0, sigma_end=0.5)
    sigma_at = policy_sigma(config.network, config.rollout, 4 * 32)
    np.testing.assert_allclose(
        [float(sigma_at(k)) for k in range(5)], [1.0, 0.875, 0.75, 0.625, 0.5], rtol=1e-6
    )
    with pytest.raises(ConfigError, match="sigma_horizon = 0"):
        policy_sigma(config.network, config.rollout, None)
    assert policy_sigma(_config("ppo").network, config.rollout, 4 * 32) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"sigma": "cosine"}, "sigma must be one of learned, linear, exponential; got 'cosine'"),
        ({"sigma_start": -1.0}, "sigma_start must be a finite number > 0, got -1.0"),
        ({"sigma_end": -0.1}, "sigma_end must be a finite number > 0, got -0.1"),
        ({"sigma_end": 0.0}, "sigma_end must be a finite number > 0, got 0.0"),
        ({"sigma_start": 0.5, "sigma_end": 0.8}, "sigma_end must be <= sigma_start = 0.5, got 0.8"),
        ({"sigma_horizon": -10}, "sigma_horizon must be an integer >= 0, got -10"),
    ],
)
@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_bad_schedule_is_a_one_line_error(algo, change, message):
    config = override(TRAINERS[algo].config(), **{"sigma": "linear", **change})
    assert assert_one_line_config_error(config, make_train, "Pendulum-v1") == message


def test_scheduled_sigma_needs_box_actions():
    with pytest.raises(ConfigError, match="use sigma='learned'") as err:
        make_train(override(TRAINERS["a2c"].config(), sigma="exponential"), "CartPole-v1", 10_000)
    assert "\n" not in str(err.value)


def test_schedule_formula_values():
    """The expected values used above, at a glance: linear 0.8 → 0.2 over 4 updates, and geometric."""
    np.testing.assert_allclose(_expected("linear", 0.8, 0.2, 128, 32, 6), [0.8, 0.65, 0.5, 0.35, 0.2, 0.2])
    np.testing.assert_allclose(_expected("exponential", 0.8, 0.2, 128, 32, 3), [0.8, 0.8 / math.sqrt(2), 0.4])


def test_ppo_with_a_linear_sigma_schedule_learns_pendulum():
    """Learning works with σ scheduled: PPO with tests/test_ppo.py's Pendulum settings and σ decaying linearly
    from 1.0 to the default end 0.5 over the budget, 4 seeds vmapped, 10 deterministic episodes each. A random
    policy scores about −1200; measured here (AMD EPYC, 2 cores) per seed −215.5, −116.9, −318.9, −300.5 (median
    −258.0, bench/bench_sigma.py), so a median of −500 leaves about 240 of margin and sits 700 above random."""
    from helpers import PPO_PENDULUM, PPO_PENDULUM_STEPS, assert_learns
    from proxrl.run.train import make_evaluate

    config, steps = override(PPO_PENDULUM, sigma="linear"), PPO_PENDULUM_STEPS
    keys = jax.random.split(jax.random.key(0), 4)
    state, metrics = jax.jit(jax.vmap(make_train(config, "Pendulum-v1", steps)))(keys)
    sigma = np.asarray(metrics["sigma"])
    np.testing.assert_allclose(sigma[:, 0], 1.0, rtol=1e-6)
    np.testing.assert_allclose(sigma[:, -1], 1.0 - 0.5 * (sigma.shape[1] - 1) * 4096 / steps, rtol=1e-5)
    returns = jax.jit(jax.vmap(make_evaluate(config, "Pendulum-v1", episodes=10)))(
        state, jax.random.split(jax.random.key(1), 4)
    )
    assert_learns(np.asarray(returns), -500.0, "PPO Pendulum-v1, σ linear 1.0 → 0.5, 100k steps")
