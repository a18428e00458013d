"""Assertions several test files share (imported as ``from helpers import ...``; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.types import Transition


class SeedRuns(NamedTuple):
    """Two separate calls of one compiled, vmapped ``train`` (see :func:`train_seeds`)."""

    states: tuple[Any, Any]
    """The final states of the two calls, each with a leading seed axis."""
    metrics: tuple[dict[str, np.ndarray], dict[str, np.ndarray]]
    """The metrics of the two calls (numpy), each ``[lanes, ...]``."""
    evals: tuple[np.ndarray, np.ndarray]
    """The final evaluation return of each lane of each call, ``[lanes]``."""

    @property
    def returns(self) -> np.ndarray:
        """The final evaluation return of every distinct seed: the first call's lanes, then the second's
        lanes 1, 2, … (its lane 0 repeats the first call's seed 0): ``[2·lanes − 1]``."""
        return np.concatenate([self.evals[0], self.evals[1][1:]])


def train_seeds(train: Callable, evaluate: Callable, lanes: int) -> SeedRuns:
    """A learning check's seeds and a determinism check at no extra cost: the jitted, vmapped
    ``train(keys) -> (state, metrics)`` is called twice with ``lanes`` keys from ``jax.random.key(0)``; the
    first key is the same in both calls, the others all differ, so the two calls train ``2·lanes − 1``
    distinct seeds and lane 0 of the second call repeats lane 0 of the first in a separate call (the
    compiled function is reused: no second compilation). ``evaluate(states, keys) -> returns [lanes]``
    (jitted, vmapped) evaluates each call's final states with the same keys from ``jax.random.key(1)``."""
    keys = jax.random.split(jax.random.key(0), 2 * lanes - 1)
    eval_keys = jax.random.split(jax.random.key(1), lanes)
    states, metrics, evals = [], [], []
    for call_keys in (keys[:lanes], jnp.concatenate([keys[:1], keys[lanes:]])):
        state, m = jax.block_until_ready(train(call_keys))
        states.append(state)
        metrics.append(jax.tree.map(np.asarray, m))
        evals.append(np.asarray(jax.block_until_ready(evaluate(state, eval_keys))))
    return SeedRuns(tuple(states), tuple(metrics), tuple(evals))


def assert_seeds_differ_and_repeat(runs: SeedRuns, name: str) -> None:
    """Lane 0 of the two separate calls of :func:`train_seeds` (the same seed) agrees exactly in every metric
    and in its evaluation return; lanes 0 and 1 of the first call (two seeds) differ in ``metrics[name]``
    (NaN read as 0)."""
    first, second = runs.metrics
    assert set(first) == set(second)
    a, b = np.nan_to_num(first[name][0]), np.nan_to_num(first[name][1])
    assert not np.allclose(a, b), f"seeds 0 and 1 gave the same {name}"
    for key, value in first.items():
        np.testing.assert_array_equal(value[0], second[key][0], err_msg=f"{key}: same seed, second call")
    np.testing.assert_array_equal(runs.evals[0][0], runs.evals[1][0], err_msg="evaluation, second call")


def rounded(values: Any, digits: int = 1) -> list[float]:
    """``values`` as a list of Python floats rounded to ``digits`` decimals (for printed per-seed values)."""
    return np.round(np.asarray(values, np.float64), digits).tolist()


def assert_learns(returns: np.ndarray, median_at_least: float, what: str) -> None:
    """The median over seeds of the final evaluation returns is at least ``median_at_least``. The per-seed
    values are printed (seen with ``pytest -s`` or on failure) and named in the failure message."""
    returns = np.asarray(returns, np.float64)
    report = f"{what}: {returns.size} seeds, median {np.median(returns):.1f}, per seed {rounded(returns)}"
    print(report)
    assert np.all(np.isfinite(returns)), report
    assert np.median(returns) >= median_at_least, f"{report}; want median >= {median_at_least}"


def assert_one_line_config_error(
    config: Any, make: Callable[[Any, str], Any], env_id: str, fragment: str | None = None
) -> str:
    """``config.validate()`` raises a one-line :class:`ConfigError` (containing ``fragment`` if given), and so
    does building the algorithm with ``make(config, env_id, 100_000)`` (``make_train`` with a step budget);
    returns the message."""
    with pytest.raises(ConfigError) as err:
        config.validate()
    message = str(err.value)
    assert "\n" not in message, message
    if fragment is not None:
        assert fragment in message, message
    with pytest.raises(ConfigError):
        make(config, env_id, 100_000)
    return message


class GymnaxLoop(NamedTuple):
    """One seed of an algorithm on a gymnax environment, one update at a time (for tests that look inside a run):
    ``init(key) -> state``, ``update(state) -> (state, metrics)``, ``evaluate(state, key) -> mean return``."""

    init: Callable
    update: Callable
    evaluate: Callable


def gymnax_loop(config: Any, env_id: str, eval_episodes: int = 10, total_steps: int = 100_000) -> GymnaxLoop:
    """The :class:`GymnaxLoop` of ``config``'s algorithm on ``env_id`` (the driver's loop functions), with schedules
    planned for a run of ``total_steps``."""
    from proxrl.deep import loops
    from proxrl.deep.registry import entry_for
    from proxrl.run.train import make_evaluate

    env, norm = loops.env_for(env_id), loops.Normalization()
    learner = entry_for(config)[1].make_learner(config, env.observation_space, env.action_space, total_steps)
    return GymnaxLoop(
        lambda key: loops.loop_init(learner, env, norm, key),
        lambda state: loops.loop_update(learner, env, norm, state),
        make_evaluate(config, env_id, eval_episodes),
    )


def _ppo_pendulum() -> Any:
    from proxrl.deep.on_policy.ppo import PPOConfig
    from proxrl.run.presets import apply_preset
    from proxrl.run.train import RunConfig

    return apply_preset("ppo", "pendulum", PPOConfig(), RunConfig())[0]


# PPO on Pendulum with a Gaussian policy (learned state-independent log σ): the preset "pendulum", RL-Zoo-like
# shapes without gSDE; value clipping off: with raw Pendulum returns (≈ −100 per state at γ = 0.9) a value step
# clipped to ±ε stalls the critic (with clipping on, 4 seeds stayed at −1000 to −1200 after 100k steps; off: −104
# to −294). Used by the
# learning checks of tests/test_ppo.py (σ learned) and tests/test_sigma_schedule.py (σ scheduled).
PPO_PENDULUM = _ppo_pendulum()
PPO_PENDULUM_STEPS = 100_352


def hand_rollout(seed: int = 0, T: int = 8, B: int = 2) -> Transition:
    """A hand-made CartPole-shaped rollout: column 0 terminates at t = 2 and is truncated at t = 5."""
    k_obs, k_next, k_act, k_rew = jax.random.split(jax.random.key(seed), 4)
    return Transition(
        obs=jax.random.normal(k_obs, (T, B, 4)),
        action=jax.random.randint(k_act, (T, B), 0, 2),
        reward=jax.random.uniform(k_rew, (T, B)),
        terminated=jnp.zeros((T, B), bool).at[2, 0].set(True),
        truncated=jnp.zeros((T, B), bool).at[5, 0].set(True),
        next_obs=jax.random.normal(k_next, (T, B, 4)),
    )


def gae_by_hand(traj: Transition, v, v_next, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """GAE(λ) by a backward loop per column: δ_t = r_t + γ(1 − term_t)V(s'_t) − V(s_t), and the sum stops at
    every episode end (terminated or truncated) and at the rollout's end. Returns (Â, Â + V)."""
    r, term = np.asarray(traj.reward, np.float64), np.asarray(traj.terminated)
    end = term | np.asarray(traj.truncated)
    v, v_next = np.asarray(v, np.float64), np.asarray(v_next, np.float64)
    adv = np.zeros_like(r)
    for b in range(r.shape[1]):
        running = 0.0
        for t in reversed(range(r.shape[0])):
            delta = r[t, b] + gamma * (0.0 if term[t, b] else v_next[t, b]) - v[t, b]
            running = delta + (0.0 if end[t, b] else gamma * lam * running)
            adv[t, b] = running
    return adv, adv + v
