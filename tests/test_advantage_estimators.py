"""The advantage estimators an actor-critic selects (``--estimator``, ``--n-steps``): each against a hand-computed
rollout through the config, the Q forms with an action-value critic, bad input, and the CLI flag."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_learns, assert_one_line_config_error, gymnax_loop
from proxrl.config import override
from proxrl.deep.distributions import categorical
from proxrl.deep.on_policy.a2c import A2CConfig
from proxrl.deep.on_policy.common import Agent, estimate
from proxrl.deep.on_policy.npg import NPGConfig
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.errors import ConfigError
from proxrl.run.train import make_evaluate, make_train
from proxrl.types import Transition


class Table(NamedTuple):
    """A "network" that looks its output up in a table by the state index held in the observation."""

    table: Any

    def apply(self, params: Any, obs: jax.Array) -> jax.Array:
        return jnp.asarray(self.table)[obs[..., 0].astype(jnp.int32)]


# Two environments, five steps, γ = 0.5. States are indices; s_t = t, next states 1, 5, 3, 4, 6 (5 and 6 are
# the states after an episode's end). Environment 0 terminates at t = 1, environment 1 is truncated there.
GAMMA = 0.5
V = np.arange(1.0, 8.0)  # V(s) = s + 1
Q = 10.0 * np.arange(7.0)[:, None] + np.array(
    [0.0, 1.0]
)  # Q(s, a) = 10s + a; π uniform ⇒ E_π Q(s) = 10s + 0.5


def _traj() -> Transition:
    column = lambda x: jnp.stack([jnp.asarray(x), jnp.asarray(x)], axis=1)
    ended = np.array([False, True, False, False, False])
    return Transition(
        obs=column(np.arange(5.0))[..., None],
        action=column(np.array([1, 0, 1, 1, 0])),
        reward=column(np.arange(1.0, 6.0)),
        terminated=jnp.stack([ended, ~ended & False], axis=1),
        truncated=jnp.stack([~ended & False, ended], axis=1),
        next_obs=column(np.array([1.0, 5.0, 3.0, 4.0, 6.0]))[..., None],
    )


def _agent(critic_kind: str) -> Agent:
    actor = Table(np.zeros((7, 2)))  # uniform π
    critic = Table(V if critic_kind == "v" else Q)
    return Agent(actor, critic, categorical, lambda z: jnp.argmax(z, -1), 1, critic_kind)


# (options, Â of environment 0, Â of environment 1, critic targets of environment 0, of environment 1)
CASES = {
    "td": (
        {"estimator": "td"},
        [1.0, 0.0, 2.0, 2.5, 3.5],
        [1.0, 3.0, 2.0, 2.5, 3.5],
        [2.0, 2.0, 5.0, 6.5, 8.5],
        [2.0, 5.0, 5.0, 6.5, 8.5],
    ),
    "n_step": (
        {"estimator": "n_step", "n_steps": 2},
        [1.0, 0.0, 3.25, 4.25, 3.5],
        [2.5, 3.0, 3.25, 4.25, 3.5],
        [2.0, 2.0, 6.25, 8.25, 8.5],
        [3.5, 5.0, 6.25, 8.25, 8.5],
    ),
    "mc": (
        {"estimator": "mc"},
        [1.0, 0.0, 4.125, 4.25, 3.5],
        [2.5, 3.0, 4.125, 4.25, 3.5],
        [2.0, 2.0, 7.125, 8.25, 8.5],
        [3.5, 5.0, 7.125, 8.25, 8.5],
    ),
    "gae-1": (
        {"estimator": "gae", "gae_lambda": 1.0},
        [1.0, 0.0, 4.125, 4.25, 3.5],
        [2.5, 3.0, 4.125, 4.25, 3.5],
        [2.0, 2.0, 7.125, 8.25, 8.5],
        [3.5, 5.0, 7.125, 8.25, 8.5],
    ),
    "gae-0": (
        {"estimator": "gae", "gae_lambda": 0.0},
        [1.0, 0.0, 2.0, 2.5, 3.5],
        [1.0, 3.0, 2.0, 2.5, 3.5],
        [2.0, 2.0, 5.0, 6.5, 8.5],
        [2.0, 5.0, 5.0, 6.5, 8.5],
    ),
    # Q − E_πQ; the critic's SARSA targets r + γ_t·Q(s_{t+1}, a_{t+1}), E_πQ at s_{t+1} after the last step and
    # after the truncation
    "q": (
        {"estimator": "q"},
        [0.5, -0.5, 0.5, 0.5, -0.5],
        [0.5, -0.5, 0.5, 0.5, -0.5],
        [6.0, 2.0, 18.5, 24.0, 35.25],
        [6.0, 27.25, 18.5, 24.0, 35.25],
    ),
    # r_t + γ_t r_{t+1} + γ_t γ_{t+1} Q(s_{t+2}, a_{t+2}) − E_πQ(s_t)
    "q_n_step": (
        {"estimator": "q_n_step", "n_steps": 2},
        [1.5, -8.5, -5.5, -8.875, -5.25],
        [14.125, 16.75, -5.5, -8.875, -5.25],
        [2.0, 2.0, 15.0, 21.625, 35.25],
        [14.625, 27.25, 15.0, 21.625, 35.25],
    ),
}


# every estimator through A2C's config; PPO's and NPG's pieces (the same estimate) on two of them
CONFIGS = [(case, A2CConfig) for case in CASES] + [
    (case, config_type) for case in ("n_step", "q_n_step") for config_type in (PPOConfig, NPGConfig)
]


@pytest.mark.parametrize(("case", "config_type"), CONFIGS, ids=lambda x: getattr(x, "__name__", x))
def test_estimator_against_hand_computed_rollout(case, config_type):
    options, adv0, adv1, ret0, ret1 = CASES[case]
    config = override(config_type(), gamma=GAMMA, **options).validate()
    assert config.advantage.q_critic == case.startswith("q")
    agent = _agent("q_discrete" if config.advantage.q_critic else "v")
    batch = estimate(agent, {"actor": None, "critic": None}, _traj(), config.rollout.gamma, config.advantage)
    # flat [T·B]: row t of environment b is entry 2t + b
    np.testing.assert_allclose(batch.adv[0::2], adv0, rtol=1e-6)
    np.testing.assert_allclose(batch.adv[1::2], adv1, rtol=1e-6)
    np.testing.assert_allclose(batch.returns[0::2], ret0, rtol=1e-6)
    np.testing.assert_allclose(batch.returns[1::2], ret1, rtol=1e-6)
    critic_at_inputs = (
        [1.0, 10.0, 21.0, 31.0, 40.0] if config.advantage.q_critic else [1.0, 2.0, 3.0, 4.0, 5.0]
    )
    np.testing.assert_allclose(batch.value_old[0::2], critic_at_inputs)
    np.testing.assert_allclose(batch.logp_old, np.log(0.5), rtol=1e-6)


def test_n_step_with_n_1_is_td_and_q_n_step_with_n_1_is_the_sarsa_target():
    traj = _traj()
    td = estimate(
        _agent("v"),
        {"actor": None, "critic": None},
        traj,
        GAMMA,
        override(A2CConfig(), estimator="td").advantage,
    )
    n1 = estimate(
        _agent("v"),
        {"actor": None, "critic": None},
        traj,
        GAMMA,
        override(A2CConfig(), estimator="n_step", n_steps=1).advantage,
    )
    np.testing.assert_allclose(n1.adv, td.adv, rtol=1e-6)
    q = estimate(
        _agent("q_discrete"),
        {"actor": None, "critic": None},
        traj,
        GAMMA,
        override(A2CConfig(), estimator="q").advantage,
    )
    q1 = estimate(
        _agent("q_discrete"),
        {"actor": None, "critic": None},
        traj,
        GAMMA,
        override(A2CConfig(), estimator="q_n_step", n_steps=1).advantage,
    )
    np.testing.assert_allclose(q1.returns, q.returns, rtol=1e-6)
    np.testing.assert_allclose(q1.adv, q.returns - np.repeat([0.5, 10.5, 20.5, 30.5, 40.5], 2), rtol=1e-6)


def test_a2c_steps_with_a_q_critic():
    """A2C runs an update with Q_φ(s, a) (Pendulum: E_πQ from sampled actions); the critic's regression moves φ.
    (Q_φ(s, ·) on CartPole runs in the CLI test below.)"""
    config = override(A2CConfig(), num_envs=2, num_steps=8, hidden=(16,), estimator="q")
    trainer = gymnax_loop(config, "Pendulum-v1", 1)
    state = trainer.init(jax.random.key(0))
    new, metrics = jax.jit(trainer.update)(state)
    for name in ("value_loss", "policy_loss", "explained_variance", "kl"):
        assert np.isfinite(float(metrics[name])), name
    phi0, phi1 = state.carry.learner.params["critic"], new.carry.learner.params["critic"]
    moved = sum(
        float(jnp.sum(jnp.abs(a - b)))
        for a, b in zip(jax.tree.leaves(phi0), jax.tree.leaves(phi1), strict=True)
    )
    assert moved > 0
    # Q_φ(s, a) on (s, a): Pendulum's 3 observation and 1 action inputs
    assert phi0["params"]["MLP_0"]["hidden_0"]["kernel"].shape == (4, 16)


def test_cli_flags_select_the_estimator(tmp_path):
    """``proxrl train a2c --estimator q_n_step --n-steps 3`` trains with that estimator (a Q_φ(s, ·) critic on
    CartPole: one output per action in the checkpoint) and records it."""
    import json

    from proxrl.cli import main

    out = tmp_path / "run"
    args = [
        "train",
        "a2c",
        "--estimator",
        "q_n_step",
        "--n-steps",
        "3",
        "--num-envs",
        "2",
        "--num-steps",
        "8",
    ]
    args += ["--hidden", "16", "--total-steps", "64", "--eval-every", "64", "--eval-episodes", "1"]
    assert main([*args, "--no-progress", "--no-compile-cache", "--out", str(out)]) == 0
    record = json.loads((out / "config.json").read_text())
    advantage = record["algo_config"]["advantage"]
    assert (advantage["estimator"], advantage["n_steps"]) == ("q_n_step", 3)
    from safetensors.numpy import load_file

    shapes = {name: array.shape for name, array in load_file(out / "checkpoint.safetensors").items()}
    head = ".carry.learner.params['critic']['params']['q']['kernel']"  # Q_φ(s, ·): [seeds, 16, 2 actions]
    assert shapes[head] == (1, 16, 2), shapes


UNUSED_N = (
    "n_steps needs estimator 'n_step' or 'q_n_step' (it is their n; estimator '{}' does not use it); the rollout "
    "length per environment, which Stable-Baselines3 calls by this name, is num_steps"
)


@pytest.mark.parametrize(
    ("change", "estimator"), [({"n_steps": 2048}, "gae"), ({"estimator": "q", "n_steps": 3}, "q")]
)
def test_n_steps_without_an_n_is_refused_where_a_configuration_is_built(change, estimator, tmp_path, capsys):
    """n_steps (Stable-Baselines3's name for the rollout length) set with an estimator that has no n is refused
    where a configuration is built: the command line, an agent, a sweep cell; a recorded configuration holding
    it (written before the check) still validates, so its run loads and resumes as it ran."""
    from proxrl.agents import A2C
    from proxrl.cli import main
    from proxrl.deep.config import check_unused

    config = override(A2CConfig(), **change)
    config.validate()  # a recorded run's configuration
    with pytest.raises(ConfigError) as err:
        check_unused(config)
    assert str(err.value) == UNUSED_N.format(estimator)
    with pytest.raises(ConfigError, match="n_steps needs estimator"):
        A2C("CartPole-v1", **change)
    flags = [f"--{k.replace('_', '-')}" if i % 2 == 0 else str(v) for k, v in change.items() for i in (0, 1)]
    assert main(["train", "a2c", *flags, "--out", str(tmp_path / "x")]) == 2
    assert "--n-steps needs estimator 'n_step' or 'q_n_step'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"n_steps": 0}, "n_steps must be an integer >= 1, got 0"),
        ({"n_steps": -3}, "n_steps must be an integer >= 1, got -3"),
        ({"estimator": "lambda"}, "estimator must be one of gae, td, n_step, mc, q, q_n_step; got 'lambda'"),
        ({"num_action_samples": 0}, "num_action_samples must be an integer >= 1, got 0"),
    ],
)
def test_bad_estimator_options(change, message):
    for config_type in (A2CConfig, PPOConfig, NPGConfig):
        config = override(config_type(), **change)
        with pytest.raises(ConfigError) as err:
            config.validate()
        assert str(err.value) == message
    got = assert_one_line_config_error(override(A2CConfig(), **change), make_train, "CartPole-v1")
    assert got == message


@pytest.mark.parametrize(
    ("config", "steps", "median_at_least", "measured"),
    [
        # measured here (AMD EPYC, 2 cores), per seed: 500, 500, 500, 500
        (override(PPOConfig(), num_envs=4, num_steps=128, lr=1e-3, ent_coef=0.0), 200_000, 400.0, "500 × 4"),
        # NPG's defaults (trust region δ = 0.01): measured 107.3, 256.6, 127.3, 101.9 (median 117.3) after 100k
        # steps, from ≈ 20 for the initial policy; the threshold asks for three times the random policy's return
        (NPGConfig(), 100_000, 60.0, "107.3, 256.6, 127.3, 101.9"),
    ],
    ids=["ppo", "npg"],
)
def test_ppo_and_npg_learn_cartpole_with_the_n_step_q_estimator(config, steps, median_at_least, measured):
    """End to end: PPO and NPG with Â = Σ_{j<n} γ^j r_{t+j} + γ^n Q_φ(s_{t+n}, a_{t+n}) − E_{a∼π}Q_φ(s_t, a)
    (estimator "q_n_step", n = 3, a Q_φ(s, ·) critic) learn CartPole-v1: 4 seeds vmapped, 10 deterministic
    evaluation episodes each, the median against a threshold well below the measured figures."""
    config = override(config, estimator="q_n_step", n_steps=3)
    keys = jax.random.split(jax.random.key(0), 4)
    state, metrics = jax.jit(jax.vmap(make_train(config, "CartPole-v1", steps)))(keys)
    first = np.nanmean(np.asarray(metrics["episodic_return"])[:, :3], axis=1)
    assert np.all(first < 40.0), first  # the initial policies are near random (≈ 22)
    returns = jax.jit(jax.vmap(make_evaluate(config, "CartPole-v1", episodes=10)))(
        state, jax.random.split(jax.random.key(1), 4)
    )
    assert_learns(
        np.asarray(returns),
        median_at_least,
        f"{type(config).__name__} q_n_step CartPole-v1 (measured {measured})",
    )
