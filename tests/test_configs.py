"""Configuration checks the trainable algorithms share, run on every algorithm in the registry
(``proxrl.deep.registry.TRAINERS``): each bad value is a one-line :class:`ConfigError` from ``validate()`` that
names the field and the value, and building the learner refuses it too. The checks of an algorithm's own fields
stay in its test file."""

from __future__ import annotations

import functools
import math

import pytest

from proxrl.config import from_record, get, options, override, to_record
from proxrl.deep.jax_envs import make_jax_env
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.train import make_train

nan, inf = math.nan, math.inf

# (field, bad value, the message): every algorithm's config has these fields
SHARED = [
    ("num_envs", 0, "num_envs must be an integer >= 1, got 0"),
    ("num_envs", -1, "num_envs must be an integer >= 1, got -1"),
    ("num_steps", 0, "num_steps must be an integer >= 1, got 0"),
    ("hidden", (), "hidden must list at least one layer width, got ()"),
    ("hidden", (64, 0), "hidden layer width must be an integer >= 1, got 0"),
    ("activation", "gelu", "activation must be one of tanh, relu; got 'gelu'"),
    ("lr", 0.0, "lr must be a finite number > 0, got 0.0"),
    ("lr", -1e-3, "lr must be a finite number > 0, got -0.001"),
    ("lr", nan, "lr must be a finite number > 0, got nan"),
    ("lr", inf, "lr must be a finite number > 0, got inf"),
    ("gamma", 1.5, "gamma must lie in [0, 1], got 1.5"),
    ("gamma", -0.1, "gamma must lie in [0, 1], got -0.1"),
    ("gamma", nan, "gamma must lie in [0, 1], got nan"),
]
# fields that several algorithms have: checked on every config that has the field
FAMILY = [
    ("max_grad_norm", 0.0, "max_grad_norm must be a finite number > 0, got 0.0"),
    ("max_grad_norm", nan, "max_grad_norm must be a finite number > 0, got nan"),
    ("ent_coef", -0.1, "ent_coef must lie in [0, inf), got -0.1"),
    ("ent_coef", nan, "ent_coef must lie in [0, inf), got nan"),
    ("gae_lambda", -0.1, "gae_lambda must lie in [0, 1], got -0.1"),
    ("gae_lambda", 1.5, "gae_lambda must lie in [0, 1], got 1.5"),
    ("q_lr", -1.0, "q_lr must be a finite number > 0, got -1.0"),
    ("tau", 0.0, "tau must lie in (0, 1], got 0.0"),
    ("tau", -0.1, "tau must lie in (0, 1], got -0.1"),
    ("tau", 1.5, "tau must lie in (0, 1], got 1.5"),
    ("tau", nan, "tau must lie in (0, 1], got nan"),
    ("batch_size", 0, "batch_size must be an integer >= 1, got 0"),
    ("batch_size", 1.5, "batch_size must be an integer >= 1, got 1.5"),
    ("learning_starts", -1, "learning_starts must be an integer >= 0, got -1"),
    ("gradient_steps", 0, "gradient_steps must be an integer >= 1, got 0"),
    ("exploration_noise", -0.1, "exploration_noise must lie in [0, inf), got -0.1"),
    ("exploration_noise", nan, "exploration_noise must lie in [0, inf), got nan"),
]
FAMILY_FIELDS = sorted({field for field, _, _ in FAMILY})


def _fields(algo: str) -> set[str]:
    return set(options(TRAINERS[algo].config()))


@functools.cache
def _spaces(algo: str):
    """The (observation, action) spaces of the first of CartPole-v1 (discrete actions) and Pendulum-v1
    (continuous) on which the algorithm's default config builds."""
    for env_id in ("CartPole-v1", "Pendulum-v1"):
        env = make_jax_env(env_id)
        try:
            TRAINERS[algo].make_learner(
                TRAINERS[algo].config(), env.observation_space, env.action_space, 10**5
            )
        except ConfigError:
            continue
        return env.observation_space, env.action_space
    raise AssertionError(f"{algo}'s default config builds on neither CartPole-v1 nor Pendulum-v1")


def _assert_refused(algo: str, config, message: str) -> None:
    """``validate()`` raises exactly ``message`` (one line), and building the learner raises it too."""
    with pytest.raises(ConfigError) as err:
        config.validate()
    assert str(err.value) == message
    assert "\n" not in message
    with pytest.raises(ConfigError) as err:
        TRAINERS[algo].make_learner(config, *_spaces(algo), 10**5)
    assert str(err.value) == message


CASES = [
    pytest.param(algo, field, value, message, id=f"{algo}-{field}={value!r}")
    for algo in TRAINERS
    for field, value, message in SHARED + FAMILY
    if field in _fields(algo)
]


def test_every_algorithm_has_the_shared_fields_and_valid_defaults():
    assert set(TRAINERS) >= {
        "reinforce",
        "npg",
        "qac",
        "a2c",
        "ppo",
        "dpg",
        "ddpg",
        "td3",
        "sac",
        "offpolicy_ac",
    }
    for algo, entry in TRAINERS.items():
        assert {field for field, _, _ in SHARED} <= _fields(algo), algo
        config = entry.config()
        assert config.validate() is config, algo
        _spaces(algo)  # builds on one of the two environments


def test_family_fields_are_checked_somewhere():
    """Every field in FAMILY belongs to at least two algorithms (else it belongs in that algorithm's tests)."""
    for field in FAMILY_FIELDS:
        owners = [algo for algo in TRAINERS if field in _fields(algo)]
        assert len(owners) >= 2, (field, owners)


@pytest.mark.parametrize(("algo", "field", "value", "message"), CASES)
def test_bad_value_is_a_one_line_config_error(algo, field, value, message):
    config = override(TRAINERS[algo].config(), **{field: value})
    _assert_refused(algo, config, message)


@pytest.mark.parametrize("algo", list(TRAINERS))
@pytest.mark.parametrize("budget", [-5, 0, 1.5, "below"])
def test_budget_below_one_update(algo, budget):
    """The run's step budget (never an algorithm's) must hold one update of num_envs·num_steps steps (4 envs ×
    1 step where one update is one step): make_train refuses anything less in one line."""
    config = TRAINERS[algo].config()
    if config.rollout.num_envs * config.rollout.num_steps == 1:
        config = override(config, num_envs=4)
    per_update = config.rollout.num_envs * config.rollout.num_steps
    env_id = "CartPole-v1" if _spaces(algo)[0].shape == (4,) else "Pendulum-v1"
    if budget == "below":
        budget, message = (
            per_update - 1,
            f"total_steps must be >= num_envs·num_steps = {per_update} (one update), got {per_update - 1}",
        )
    else:
        message = f"total_steps must be an integer >= 1, got {budget!r}"
    with pytest.raises(ConfigError) as err:
        make_train(config, env_id, budget)
    assert str(err.value) == message


@pytest.mark.parametrize("algo", [algo for algo in TRAINERS if "buffer_size" in _fields(algo)])
def test_buffer_smaller_than_a_batch(algo):
    config = TRAINERS[algo].config()
    config = override(config, buffer_size=config.replay.batch_size - 1)
    message = (
        f"buffer_size must be >= batch_size = {config.replay.batch_size}, got {config.replay.batch_size - 1}"
    )
    _assert_refused(algo, config, message)


FLOATS = [
    pytest.param(algo, name, value, id=f"{algo}-{name}={value}")
    for algo in TRAINERS
    for name in sorted(_fields(algo))
    if isinstance(get(TRAINERS[algo].config(), name), float)
    for value in (nan, inf, -inf)
]


@pytest.mark.parametrize(("algo", "name", "value"), FLOATS)
def test_every_float_option_refuses_nan_and_infinity(algo, name, value):
    """No option means anything at NaN or ±inf: each is refused in one line that names it."""
    with pytest.raises(ConfigError) as err:
        override(TRAINERS[algo].config(), **{name: value}).validate()
    assert str(err.value).startswith(f"{name} must ") and "\n" not in str(err.value), str(err.value)


def _another(value):
    """A different value of ``value``'s type (None where there is no obvious one: strings, None)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 + 0.25
    if isinstance(value, tuple) and value:
        return (*value, value[-1])
    return None


@pytest.mark.parametrize("algo", list(TRAINERS))
def test_options_are_flat_names_and_records_round_trip(algo):
    """Every option has one name in its config (the CLI flag), override reaches it wherever its piece is, and
    the JSON record of a config rebuilds the same config."""
    config = TRAINERS[algo].config()
    paths = options(config)
    assert (
        len(paths) == len(set(paths)) >= 10
    )  # the walk reaches every piece (the smallest config, dpg_onpolicy: 11)
    moved = 0
    for name in paths:  # each option set to another value of its type moves that option and no other
        new = _another(get(config, name))
        if new is None:
            continue
        changed = override(config, **{name: new})
        assert get(changed, name) == new and all(
            get(changed, o) == get(config, o) for o in paths if o != name
        )
        moved += 1
    assert moved >= len(paths) // 2, (moved, len(paths))
    changed = override(config, lr=0.123, num_envs=3)
    assert (get(changed, "lr"), get(changed, "num_envs")) == (0.123, 3)
    assert from_record(type(config), to_record(changed)) == changed
    with pytest.raises(ConfigError, match="has no option 'learning_rate'"):
        override(config, learning_rate=1.0)
    record = to_record(config)
    record["rollout"]["extra"] = 1
    with pytest.raises(ConfigError, match="unknown option 'extra'"):
        from_record(type(config), record)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"anneal_lr": "False"}, "anneal_lr must be true or false, got 'False'"),
        ({"anneal_lr": 1}, "anneal_lr must be true or false, got 1"),
        ({"lr": "0.001"}, "lr must be a number, got '0.001'"),
        ({"ent_coef": None}, "ent_coef must be a number, got None"),
        ({"hidden": 64}, "hidden must be a tuple of integers, got 64"),
        ({"hidden": (64, "a")}, "hidden must be a tuple of integers, got (64, 'a')"),
        ({"num_envs": 4.0}, "num_envs must be an integer, got 4.0"),
        ({"activation": 3}, "activation must be a string, got 3"),
    ],
)
def test_an_option_of_the_wrong_type_is_refused_by_name(options, message) -> None:
    """Python callers can pass any object: a string where a bool is declared would be true, a string where a
    number is declared would fail inside a trace; each is a one-line ConfigError naming the option."""
    with pytest.raises(ConfigError) as err:
        override(TRAINERS["ppo"].config(), **options).validate()
    assert str(err.value) == message


def test_lists_arrays_and_integral_numbers_where_they_fit_are_accepted() -> None:
    import jax.numpy as jnp

    cfg = override(TRAINERS["ppo"].config(), hidden=[32, 32], lr=jnp.float32(1e-3), gamma=1).validate()
    assert cfg.network.hidden == (32, 32) and cfg.rollout.gamma == 1


def test_python_entry_points_name_a_wrong_argument() -> None:
    ppo = TRAINERS["ppo"].config
    for args, message in [
        ((ppo, "CartPole-v1", 256), "PPOConfig is a class: give a config, PPOConfig()"),
        (({"lr": 1e-3}, "CartPole-v1", 256), "dict is not the config of a registered algorithm ("),
        ((ppo(), "CartPole-v1", None), "total_steps must be an integer >= 1, got None"),
        ((ppo(), "CartPole-v1", "100"), "total_steps must be an integer >= 1, got '100'"),
        (
            (ppo(), "CartPol-v1", 256),
            "env_id 'CartPol-v1' is not a registered gymnax environment; did you mean",
        ),
    ]:
        with pytest.raises(ConfigError) as err:
            make_train(*args)
        assert str(err.value).startswith(message)
