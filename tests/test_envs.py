"""Both environment back ends emit the same Transition, with the true next observation; running stats."""

from __future__ import annotations

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.deep.gym_envs import make_gym_env
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, make_jax_env
from proxrl.deep.normalize import (
    normalize,
    reward_norm_init,
    reward_norm_update,
    running_stats_init,
    running_stats_merge,
    running_stats_update,
    scale_reward,
)
from proxrl.errors import ConfigError
from proxrl.types import Transition

T, B, MAX_STEPS = 24, 3, 5
LIMIT = 15  # the JAX rollout's time limit: env 0 falls over before it, envs 1 and 2 are truncated
THETA_LIMIT = 12 * 2 * np.pi / 360  # CartPole terminates past this pole angle (or |x| > 2.4)


def push_right(params, obs, key):
    """Always action 1: CartPole's pole falls over within about ten steps."""
    return jnp.ones(obs.shape[:-1], jnp.int32)


def fall_or_balance(params, obs, key):
    """Env 0 pushes right (falls within ~10 steps); the others push towards the pole's motion."""
    balance = (obs[:, 3] > 0).astype(jnp.int32)
    return jnp.where(jnp.arange(obs.shape[0]) == 0, 1, balance)


def push_right_np(params, obs, key):
    return np.ones(obs.shape[:-1], np.int64)


def cartpole_failed(obs):
    return (np.abs(obs[..., 2]) > THETA_LIMIT) | (np.abs(obs[..., 0]) > 2.4)


# --- gymnax ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole():
    return make_jax_env("CartPole-v1", max_steps_in_episode=LIMIT)


@pytest.fixture(scope="module")
def jax_rollout(cartpole):
    def run(key):
        obs, state = cartpole.reset_batch(key, B)
        return cartpole.rollout(jax.random.fold_in(key, 1), state, obs, fall_or_balance, None, T)

    return jax.jit(run)


def test_spaces():
    assert make_jax_env("CartPole-v1").action_space == DiscreteSpace(2)
    pendulum = make_jax_env("Pendulum-v1")
    assert isinstance(pendulum.action_space, BoxSpace)
    np.testing.assert_allclose([pendulum.action_space.low, pendulum.action_space.high], [[-2.0], [2.0]])
    assert pendulum.observation_space.shape == (3,)


def test_unknown_ids_suggest_close_matches():
    with pytest.raises(ConfigError, match=r"'Cartpole-v1' is not a registered gymnax .*CartPole-v1"):
        make_jax_env("Cartpole-v1")
    with pytest.raises(ConfigError, match=r"no parameter 'max_steps'.*max_steps_in_episode"):
        make_jax_env("CartPole-v1", max_steps=3)
    with pytest.raises(ConfigError, match=r"not a registered Gymnasium .*HalfCheetah-v5"):
        make_gym_env("HalfCheeta-v5")


def test_jax_rollout_shapes_and_true_next_obs(jax_rollout):
    traj, _, last_obs = jax_rollout(jax.random.key(0))
    assert traj.obs.shape == traj.next_obs.shape == (T, B, 4)
    assert traj.action.shape == traj.reward.shape == traj.terminated.shape == (T, B)
    assert traj.terminated.dtype == traj.truncated.dtype == jnp.bool_
    ended = np.asarray(traj.terminated | traj.truncated)
    obs, next_obs = np.asarray(traj.obs), np.asarray(traj.next_obs)
    # inside an episode the next step starts where this one ended
    np.testing.assert_array_equal(next_obs[:-1][~ended[:-1]], obs[1:][~ended[:-1]])
    # after an episode end it starts from a reset state (|x_i| ≤ 0.05), while next_obs is the true s_{t+1}
    assert np.all(np.abs(obs[1:][ended[:-1]]) <= 0.05)
    assert not np.allclose(next_obs[:-1][ended[:-1]], obs[1:][ended[:-1]])
    # env 0 terminates in a failed state; envs 1 and 2 are truncated exactly at the time limit
    terminated, truncated = np.asarray(traj.terminated), np.asarray(traj.truncated)
    assert terminated[:, 0].any() and not terminated[:, 1:].any()
    assert np.all(cartpole_failed(next_obs[terminated]))
    assert not np.any(cartpole_failed(next_obs[truncated]))
    np.testing.assert_array_equal(np.flatnonzero(truncated[:, 1]), [LIMIT - 1])
    assert last_obs.shape == (B, 4)


def test_jax_step_matches_raw_dynamics():
    """At the time limit, next_obs equals gymnax's own step_env output (not the reset observation)."""
    env = make_jax_env("CartPole-v1", max_steps_in_episode=MAX_STEPS)
    _, state = env.reset(jax.random.key(3))
    for i in range(MAX_STEPS):
        key = jax.random.key(10 + i)
        raw_obs = env.env.step_env(jax.random.split(key)[0], state, 0, env.env_params)[0]
        out, state = env.step(key, state, jnp.int32(0))
        np.testing.assert_allclose(out.next_obs, raw_obs, rtol=1e-6, atol=1e-7)
    assert bool(out.truncated) and not bool(out.terminated)
    assert int(state.time) == 0 and not np.allclose(out.obs, out.next_obs)


def test_jax_rollout_vmaps_over_seeds(jax_rollout):
    keys = jax.random.split(jax.random.key(4), 2)
    batched, _, _ = jax.vmap(jax_rollout)(keys)
    single, _, _ = jax_rollout(keys[1])
    assert batched.obs.shape == (2, T, B, 4)
    for got, want in zip(batched, single, strict=True):
        np.testing.assert_allclose(got[1], want, rtol=1e-6)


def test_jax_continuous_actions_are_clipped_but_recorded_raw():
    env = make_jax_env("Pendulum-v1")
    obs, state = env.reset_batch(jax.random.key(5), 2)
    policy = lambda params, o, key: jnp.full((o.shape[0], 1), 7.0)
    traj, _, _ = jax.jit(lambda k, s, o: env.rollout(k, s, o, policy, None, 3))(jax.random.key(6), state, obs)
    np.testing.assert_allclose(traj.action, 7.0)  # the policy's own sample is stored
    assert traj.reward.shape == (3, 2)
    _, state = env.step_batch(jax.random.key(7), state, jnp.full((2, 1), 7.0))
    np.testing.assert_allclose(state.last_u, 2.0)  # the simulator received the torque clipped to 2


# --- Gymnasium -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gym_traj():
    env = make_gym_env("CartPole-v1", num_envs=2, max_episode_steps=MAX_STEPS)
    obs = env.reset(seed=0)
    traj, last = env.rollout(obs, lambda o, t: np.zeros(2, np.int64), 7)
    env.close()
    return traj, last


def test_gym_same_step_truncation_keeps_true_final_obs(gym_traj):
    traj, last = gym_traj
    assert isinstance(traj, Transition) and traj.obs.shape == traj.next_obs.shape == (7, 2, 4)
    assert traj.obs.dtype == traj.reward.dtype == np.float32
    np.testing.assert_array_equal(traj.truncated[:, 0], [0, 0, 0, 0, 1, 0, 0])
    # replay env 0 alone (same seed, same actions): its 5th observation is next_obs at the truncation
    single = gym.make("CartPole-v1", max_episode_steps=MAX_STEPS)
    single.reset(seed=0)
    for _ in range(MAX_STEPS):
        final, *_ = single.step(0)
    np.testing.assert_allclose(traj.next_obs[4, 0], final, rtol=1e-6)
    assert np.all(np.abs(traj.obs[5]) <= 0.05) and not np.allclose(traj.obs[5, 0], final)
    np.testing.assert_array_equal(traj.next_obs[:4], traj.obs[1:5])
    assert last.shape == (2, 4)


def test_gym_termination_and_parity_with_jax_backend(cartpole):
    env = make_gym_env("CartPole-v1", num_envs=B, max_episode_steps=LIMIT)
    traj, _ = env.rollout(env.reset(seed=1), lambda o, t: push_right_np(None, o, None), T)
    env.close()
    assert traj.terminated.any()
    assert np.all(cartpole_failed(traj.next_obs[traj.terminated]))
    obs, state = cartpole.reset_batch(jax.random.key(1), B)
    jtraj, _, _ = cartpole.rollout(jax.random.key(2), state, obs, push_right, None, T)
    for name, g, j in zip(Transition._fields, traj, jtraj, strict=True):
        assert g.shape == j.shape, name
        assert np.asarray(g).dtype.kind == np.asarray(j).dtype.kind, name


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_gymnax_and_gymnasium_are_the_same_dynamics(env_id):
    """From the same state, gymnax and Gymnasium step to the same observations and rewards (float32 against
    float64) under the same actions, so the two back ends train on one MDP."""
    jenv = make_jax_env(env_id)
    _, state = jenv.reset(jax.random.key(3))
    genv = gym.make(env_id)
    genv.reset(seed=0)
    if env_id == "CartPole-v1":
        genv.unwrapped.state = np.array([state.x, state.x_dot, state.theta, state.theta_dot], np.float64)
        actions = [np.int64(t % 3 == 0) for t in range(20)]
    else:
        genv.unwrapped.state = np.array([state.theta, state.theta_dot], np.float64)
        actions = list(np.random.default_rng(0).uniform(-2, 2, size=(20, 1)).astype(np.float32))
    step = jax.jit(jenv.step)
    for t, action in enumerate(actions):
        out, state = step(jax.random.key(t), state, jnp.asarray(action))
        obs, reward, terminated, _, _ = genv.step(action)
        np.testing.assert_allclose(out.next_obs, obs, rtol=1e-4, atol=1e-4, err_msg=f"step {t}")
        np.testing.assert_allclose(float(out.reward), reward, rtol=1e-4, atol=1e-4)
        assert bool(out.terminated) == terminated
        if terminated:  # gymnax resets here; Gymnasium waits for reset()
            break
    genv.close()
    assert t >= 10


# --- running statistics ---------------------------------------------------------------------------------


def test_merged_stats_equal_numpy_over_concatenation():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)).astype(np.float32) for n in (1, 7, 50, 4)]
    stats = running_stats_init((3,))
    update = jax.jit(running_stats_update)
    for x in batches:
        stats = update(stats, x)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(stats.mean, everything.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.var, everything.var(0), rtol=1e-5)
    assert float(stats.count) == 62.0
    # merging is symmetric and associative: two halves merged equal the stream
    a = running_stats_update(running_stats_init((3,)), np.concatenate(batches[:2]))
    b = running_stats_update(running_stats_init((3,)), np.concatenate(batches[2:]))
    for merged in (running_stats_merge(a, b), running_stats_merge(b, a)):
        np.testing.assert_allclose(merged.mean, stats.mean, rtol=1e-5)
        np.testing.assert_allclose(merged.var, stats.var, rtol=1e-5)
    z = normalize(stats, everything, clip=None)
    np.testing.assert_allclose([z.mean(0), z.std(0)], [np.zeros(3), np.ones(3)], atol=1e-4)


def test_masked_stats_update_equals_the_update_on_the_selected_samples():
    rng = np.random.default_rng(1)
    x = rng.normal(1.0, 3.0, size=(6, 4, 2)).astype(np.float32)  # [T, B, obs_dim]
    mask = np.arange(6)[:, None] < np.array([1, 6, 3, 2])[None, :]  # each column's first steps
    start = running_stats_update(running_stats_init((2,)), rng.normal(size=(5, 2)).astype(np.float32))
    masked = jax.jit(running_stats_update)(start, x, mask)
    plain = running_stats_update(start, x[mask])
    np.testing.assert_allclose(masked.mean, plain.mean, rtol=1e-5)
    np.testing.assert_allclose(masked.var, plain.var, rtol=1e-5)
    assert float(masked.count) == 5 + 12


def test_stats_update_with_time_and_batch_axes_and_empty_state():
    x = np.arange(24, dtype=np.float32).reshape(4, 3, 2)  # [T, B, obs_dim]
    stats = running_stats_update(running_stats_init((2,)), x)
    np.testing.assert_allclose(stats.mean, x.reshape(-1, 2).mean(0))
    np.testing.assert_allclose(stats.var, x.reshape(-1, 2).var(0))
    empty = running_stats_init((2,))
    np.testing.assert_allclose(normalize(empty, x[0]), x[0])  # identity before any data
    np.testing.assert_allclose(running_stats_merge(empty, empty).var, 1.0)


def test_reward_normalisation_matches_numpy_loop():
    rng = np.random.default_rng(1)
    rewards = rng.normal(size=(20, 2)).astype(np.float32)
    resets = rng.random((20, 2)) < 0.2
    gamma = 0.99
    state = reward_norm_init(2)
    update = jax.jit(reward_norm_update)
    ret, seen = np.zeros(2), []
    for r, d in zip(rewards, resets, strict=True):
        state = update(state, r, d, gamma)
        ret = gamma * ret + r
        seen.append(ret.copy())
        ret[d] = 0.0
    seen = np.concatenate(seen)
    np.testing.assert_allclose(state.ret, ret, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.stats.var, seen.var(), rtol=1e-4)
    np.testing.assert_allclose(
        scale_reward(state, rewards[0], clip=None), rewards[0] / np.sqrt(seen.var()), rtol=1e-4
    )


def test_gym_episodes_count_each_copy_to_its_first_end():
    """The host evaluation loop: always pushing right ends CartPole within a few dozen steps; a copy's return is
    its episode length (reward 1 per step), counted to its first end only, and the same seed repeats it."""
    env = make_gym_env("CartPole-v1", num_envs=3)
    right = lambda obs: np.ones(obs.shape[0], np.int64)
    frames = []
    returns = env.episodes(right, seed=5, max_steps=500, on_step=lambda: frames.append(1))
    again = env.episodes(right, seed=5, max_steps=500)
    env.close()
    assert returns.shape == (3,) and np.all((returns >= 8) & (returns < 60)), returns
    np.testing.assert_array_equal(returns, again)
    # each copy i is the plain Gymnasium episode seeded 5 + i under the same policy, to its first end
    for i, got in enumerate(returns):
        single = gym.make("CartPole-v1")
        single.reset(seed=5 + i)
        length, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = single.step(1)
            length, done = length + 1, terminated or truncated
        single.close()
        assert got == length, (i, got, length)
    assert (
        len(frames) == int(returns.max()) - 1
    )  # called after every step but the one that ends the last copy
