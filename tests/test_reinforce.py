"""REINFORCE: returns-to-go known answers, the gradient of the step against a hand-computed
(1/N)Σ∇log π·(R − b), learning on CartPole with both baselines, seeds, continuous actions, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import (
    assert_learns,
    assert_one_line_config_error,
    assert_seeds_differ_and_repeat,
    gymnax_loop,
    rounded,
    train_seeds,
)
from proxrl.config import override
from proxrl.deep.networks import CategoricalPolicy, ValueNetwork
from proxrl.deep.on_policy.common import as_env
from proxrl.deep.on_policy.reinforce import REINFORCEConfig, make_learner, returns_to_go
from proxrl.run.train import make_evaluate, make_train
from proxrl.types import Transition

# 100k steps, 7 seeds each (two calls of 4 vmapped seeds, helpers.train_seeds), deterministic evaluation over
# 10 episodes: value baseline 8 × 128, lr 1e-3, standardised advantages, 10 critic steps; no baseline 4 × 500,
# lr 3e-3, standardised returns. See docs/methods/reinforce.md.
CARTPOLE_VALUE = override(REINFORCEConfig(), num_envs=8, num_steps=128, lr=1e-3, norm_adv=True)
CARTPOLE_VALUE_STEPS = 100_000
CARTPOLE_NONE = override(
    REINFORCEConfig(), num_envs=4, num_steps=500, lr=3e-3, baseline="none", norm_adv=True
)
GAMMA = 0.5


def _traj(seed: int = 0):
    """T = 5, B = 2. Column 0: termination at t = 1, truncation at t = 3, unfinished tail at t = 4.
    Column 1: one unfinished episode throughout."""
    k_obs, k_next, k_act = jax.random.split(jax.random.key(seed), 3)
    terminated = jnp.zeros((5, 2), bool).at[1, 0].set(True)
    truncated = jnp.zeros((5, 2), bool).at[3, 0].set(True)
    reward = jnp.stack([jnp.array([1.0, 2.0, 3.0, 4.0, 5.0]), jnp.ones(5)], axis=1)
    return Transition(
        obs=jax.random.normal(k_obs, (5, 2, 4)),
        action=jax.random.randint(k_act, (5, 2), 0, 2),
        reward=reward,
        terminated=terminated,
        truncated=truncated,
        next_obs=jax.random.normal(k_next, (5, 2, 4)),
    )


def _returns_by_hand(traj, gamma, v_next=None):
    """A plain Python loop over each column, backwards."""
    r, term = np.asarray(traj.reward), np.asarray(traj.terminated)
    end = term | np.asarray(traj.truncated)
    T, B = r.shape
    g, mask = np.zeros((T, B)), np.zeros((T, B))
    for b in range(B):
        running, seen_end = None, False
        for t in reversed(range(T)):
            if end[t, b]:
                seen_end = True
                boot = 0.0 if (term[t, b] or v_next is None) else float(v_next[t, b])
                running = r[t, b] + gamma * boot
            elif running is None:  # the unfinished tail
                running = r[t, b] + gamma * (0.0 if v_next is None else float(v_next[T - 1, b]))
            else:
                running = r[t, b] + gamma * running
            keep = seen_end or v_next is not None
            g[t, b], mask[t, b] = (running if keep else 0.0), float(keep)
    return g, mask


def test_returns_to_go_known_answers():
    traj = _traj()
    g, mask = returns_to_go(traj, GAMMA)
    # column 0 by hand: G4 masked; G3 = 4 (truncated, no bootstrap); G2 = 3 + ½·4; G1 = 2 (terminated); G0 = 1 + ½·2
    np.testing.assert_allclose(g[:, 0], [2.0, 2.0, 5.0, 4.0, 0.0])
    np.testing.assert_array_equal(mask, [[1, 0], [1, 0], [1, 0], [1, 0], [0, 0]])
    v_next = jnp.arange(10.0).reshape(5, 2) + 1.0
    g_v, mask_v = jax.jit(returns_to_go)(traj, GAMMA, v_next)
    # bootstrapped: G4 = 5 + ½V(s'_4) = 5 + 4.5; G3 = 4 + ½V(s'_3) = 4 + 3.5 (truncation)
    np.testing.assert_allclose(g_v[:, 0], [2.0, 2.0, 3.0 + 0.5 * 7.5, 7.5, 9.5])
    np.testing.assert_array_equal(mask_v, np.ones((5, 2)))
    for v in (None, v_next):
        want_g, want_mask = _returns_by_hand(traj, GAMMA, v)
        got_g, got_mask = returns_to_go(traj, GAMMA, v)
        np.testing.assert_allclose(got_g, want_g, rtol=1e-6)
        np.testing.assert_array_equal(got_mask, want_mask)


@pytest.mark.parametrize(("baseline", "scale"), [("none", 1.0), ("value", 1.0), ("none", 1e-6)])
def test_first_step_follows_the_hand_computed_policy_gradient(baseline, scale):
    """The learner's g = (1/N) Σ mask·∇log π(a|s)·(R − b(s)) (N = T·B), per-sample gradients by hand; the
    first Adam step from it is exactly θ₁ − θ₀ = lr·g/(|g| + ε) elementwise (m̂ = g, v̂ = g²). With rewards
    scaled by 1e-6, |g| < ε = 1e-5 and the step depends on each |g| (about lr·g/ε), not only on the signs."""
    env = as_env("CartPole-v1")
    config = override(
        REINFORCEConfig(),
        num_envs=2,
        num_steps=5,
        hidden=(8,),
        baseline=baseline,
        gamma=GAMMA,
        max_grad_norm=1e6,
    )
    learner = make_learner(config, env.observation_space, env.action_space)
    traj = _traj(1)
    traj = traj._replace(reward=scale * traj.reward)
    state = learner.init(jax.random.key(2), traj.obs[0])
    new_state, metrics = jax.jit(learner.learn)(state, traj)

    theta = state.params["actor"]
    policy = CategoricalPolicy(num_actions=2, hidden=(8,))
    if baseline == "value":
        critic = ValueNetwork(hidden=(8,))
        b = critic.apply(state.params["critic"], traj.obs)
        r_minus_b, mask = _returns_by_hand(traj, GAMMA, critic.apply(state.params["critic"], traj.next_obs))
        r_minus_b = r_minus_b - np.asarray(b)
    else:
        r_minus_b, mask = _returns_by_hand(traj, GAMMA)

    def logp_one(th, s, a):
        return jax.nn.log_softmax(policy.apply(th, s))[a]

    scores = jax.vmap(jax.grad(logp_one), in_axes=(None, 0, 0))(
        theta, traj.obs.reshape(10, 4), traj.action.reshape(10)
    )
    weight = jnp.asarray((mask * r_minus_b).reshape(10), jnp.float32)
    g = jax.tree.map(lambda s: jnp.tensordot(weight, s, axes=1) / 10.0, scores)

    g_flat = jnp.concatenate([x.ravel() for x in jax.tree.leaves(g)])
    np.testing.assert_allclose(metrics["grad_norm"], jnp.linalg.norm(g_flat), rtol=1e-5)
    step = jax.tree.map(jnp.subtract, new_state.params["actor"], theta)
    expected = jax.tree.map(lambda x: config.step.lr * x / (jnp.abs(x) + 1e-5), g)
    for got, want, before in zip(*map(jax.tree.leaves, (step, expected, theta)), strict=True):
        ulp = np.spacing(np.abs(np.asarray(before)))  # θ₁ − θ₀ is rounded to θ's float32 spacing
        np.testing.assert_array_less(
            np.abs(np.asarray(got) - np.asarray(want)), 1e-3 * np.abs(want) + 2 * ulp + 1e-12
        )
    assert float(jnp.linalg.norm(g_flat)) > 1e-3 * scale  # not trivially zero
    if scale < 1:  # every |g| below ε: the step's size follows |g|, not only its sign
        assert float(jnp.max(jnp.abs(g_flat))) < 1e-5
        want = np.concatenate([np.abs(np.asarray(x)).ravel() for x in jax.tree.leaves(expected)])
        ulp = np.concatenate([np.spacing(np.abs(np.asarray(x))).ravel() for x in jax.tree.leaves(theta)])
        # the biases start at 0, so their steps carry no rounding: 10 entries checked to 1e-3 of lr·g/ε
        assert np.sum(want > 1e4 * ulp) >= 10
    np.testing.assert_allclose(metrics["kept_frac"], mask.mean())


# ---------------------------------------------------------------------------------------------- learning


def _runs(config):
    train = jax.jit(jax.vmap(make_train(config, "CartPole-v1", 100_000)))
    evaluate = jax.jit(jax.vmap(make_evaluate(config, "CartPole-v1", episodes=10)))
    return train_seeds(train, evaluate, lanes=4)


@pytest.fixture(scope="module")
def value_runs():
    return _runs(CARTPOLE_VALUE)


def test_value_baseline_learns_cartpole(value_runs):
    metrics = value_runs.metrics[0]
    start = np.nanmean(metrics["episodic_return"][:, :5], axis=1)
    ev = np.nanmean(metrics["explained_variance"][:, -20:], axis=1)
    print(f"REINFORCE value per seed: first 5 updates {rounded(start)}; explained variance {rounded(ev, 2)}")
    assert np.all(start < 40.0), start  # starts near random (~20); measured 23.9, 21.9, 25.3, 23.7
    # measured here (AMD EPYC, 2 cores), per seed: 500, 496.2, 495.4, 500, 500, 471.2, 445.2 (median 496.2)
    assert_learns(value_runs.returns, 250.0, "REINFORCE value baseline CartPole-v1, 100k steps")
    assert np.median(ev) > 0.1, ev  # the baseline fits the returns; measured 0.40, 0.39, 0.12, 0.30
    for name in ("policy_loss", "value_loss", "entropy", "kl", "surrogate_gain", "step_norm", "grad_norm"):
        assert metrics[name].shape == (4, (CARTPOLE_VALUE_STEPS // CARTPOLE_VALUE.rollout.size)), name
        assert np.all(np.isfinite(metrics[name])), name
    np.testing.assert_array_equal(metrics["kept_frac"], 1.0)


def test_seeds_differ_and_same_seed_is_identical(value_runs):
    assert_seeds_differ_and_repeat(value_runs, "policy_loss")


def test_no_baseline_learns_cartpole():
    runs = _runs(CARTPOLE_NONE)
    metrics = runs.metrics[0]
    start = np.nanmean(metrics["episodic_return"][:, :2], axis=1)
    print("REINFORCE no baseline, first 2 updates:", rounded(start))
    assert np.all(start < 40.0), start  # measured 21.7, 22.5, 23.2, 22.2
    # measured here (AMD EPYC, 2 cores), per seed: 500, 399.4, 500, 377.2, 500, 482.7, 155.3 (median 482.7)
    assert_learns(runs.returns, 200.0, "REINFORCE no baseline CartPole-v1, 100k steps")
    assert_seeds_differ_and_repeat(runs, "policy_loss")
    kept = metrics["kept_frac"]
    print(f"REINFORCE no baseline, kept fraction: mean {kept.mean():.3f}, min {kept.min():.3f}")
    # 500-step rollouts: most steps belong to an episode that ends inside the rollout (measured: mean 0.783 over
    # 4 seeds, min 0.387); the fraction falls as episodes approach the 500-step limit
    assert np.all((kept > 0.0) & (kept <= 1.0)) and kept.mean() > 0.6 and kept.min() < 1.0
    assert "value_loss" not in metrics


def test_continuous_actions_step():
    config = override(REINFORCEConfig(), num_envs=2, num_steps=32, hidden=(16,))
    trainer = gymnax_loop(config, "Pendulum-v1", 1)
    state, metrics = jax.jit(trainer.update)(trainer.init(jax.random.key(0)))
    for name in ("kl", "policy_loss", "value_loss", "entropy", "step_norm"):
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["step_norm"]) > 0
    assert state.carry.learner.params["actor"]["params"]["log_std"].shape == (1,)


@pytest.mark.parametrize(
    "change",
    [
        {"baseline": "mean"},
        {"vf_lr": -1.0},
        {"vf_steps": 0},
    ],
)
def test_bad_config_raises(change):
    """REINFORCE's own fields; the checks every algorithm shares are in test_configs.py."""
    config = override(REINFORCEConfig(), **change)
    assert_one_line_config_error(config, make_train, "CartPole-v1")
