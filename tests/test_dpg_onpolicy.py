"""DPG in the lecture's on-policy form: the SARSA target on a hand-built rollout, one update from the learner,
bad input. (Learning on Pendulum: bench/bench_dpg_onpolicy.py, figures in docs/methods/dpg.md.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import assert_one_line_config_error, gymnax_loop
from proxrl.config import override
from proxrl.deep.jax_envs import BoxSpace
from proxrl.deep.networks import QNetwork
from proxrl.deep.off_policy.common import deterministic_actor
from proxrl.deep.on_policy.dpg import DPGOnPolicyConfig, make_learner, sarsa_targets
from proxrl.errors import ConfigError
from proxrl.run.train import make_train
from proxrl.types import Transition


def test_sarsa_target_on_a_hand_built_rollout():
    """T = 4 steps in 2 environments, γ = 0.5, Q(s, a) = s + 10a and μ(s) = −s (observations are scalars s).
    Environment 0 terminates at h = 1; environment 1 is truncated there. The target at h bootstraps from the
    rollout's next (s_{h+1}, a_{h+1}) where the episode continues in the rollout, from (s', μ(s')) at the
    true next observation after the last step or the truncation, and not at all after the termination."""
    obs = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    action = np.array([[0.5, 0.5], [-1.0, -1.0], [0.2, 0.2], [0.1, 0.1]])
    next_obs = np.array([[1.0, 1.0], [7.0, 7.0], [3.0, 3.0], [4.0, 4.0]])  # 7: the true final observation
    terminated = np.array([[False, False], [True, False], [False, False], [False, False]])
    traj = Transition(
        obs=jnp.asarray(obs)[..., None],
        action=jnp.asarray(action)[..., None],
        reward=jnp.ones((4, 2)),
        terminated=jnp.asarray(terminated),
        truncated=jnp.asarray(terminated[:, ::-1]),
        next_obs=jnp.asarray(next_obs)[..., None],
    )
    q = lambda s, a: s[..., 0] + 10.0 * a[..., 0]
    mu = lambda s: -s
    y = np.asarray(sarsa_targets(q, mu, traj, 0.5))
    # h = 0: Q(s_1, a_1) = 1 − 10 = −9 → 1 + 0.5·(−9) = −3.5 in both environments
    # h = 1: terminated → 1; truncated → 1 + 0.5·Q(7, μ(7)) = 1 + 0.5·(7 − 70) = −30.5
    # h = 2: Q(s_3, a_3) = 3 + 1 = 4 → 3; h = 3 (last): Q(4, μ(4)) = 4 − 40 = −36 → −17
    np.testing.assert_allclose(y[:, 0], [-3.5, 1.0, 3.0, -17.0])
    np.testing.assert_allclose(y[:, 1], [-3.5, -30.5, 3.0, -17.0])
    # the replay form's target would use μ(s_{h+1}) instead of the rollout's a_{h+1}: h = 0 gives 1 + 0.5·(1 − 10)
    # only because a_1 = μ(s_1) = −1 here; at h = 2, μ(3) = −3 ≠ a_3 = 0.1, and the SARSA target is 3, not −15
    assert y[2, 0] != 1 + 0.5 * q(np.array([3.0]), mu(np.array([3.0])))


SMALL = override(
    DPGOnPolicyConfig(), num_envs=2, num_steps=16, hidden=(16,), q_epochs=2, q_minibatches=2, actor_steps=2
)


def test_one_update_through_the_training_loop_reports_its_metrics():
    config = SMALL
    trainer = gymnax_loop(config, "Pendulum-v1", 1)
    state = trainer.init(jax.random.key(0))
    _, metrics = jax.jit(trainer.update)(state)
    for name in ("critic_loss", "q", "target_q", "actor_loss", "surrogate_gain", "step_norm"):
        assert np.isfinite(float(metrics[name])), name
    assert float(metrics["surrogate_gain"]) > 0  # the actor's step raised (1/N) Σ Q_φk(s, μ_θ(s))


def _learner_and_rollout(config, seed: int, terminated_at: int | None = None):
    """The learner on Box(3) observations and Box(−2, 2, (1,)) actions, and a random [16, 2] rollout of them
    (environment 0 terminated at step ``terminated_at``)."""
    space = BoxSpace(-2 * np.ones(1), 2 * np.ones(1), (1,))
    learner = make_learner(config, BoxSpace(-np.ones(3), np.ones(3), (3,)), space)
    k = jax.random.split(jax.random.key(seed), 4)
    terminated = jnp.zeros((16, 2), bool)
    if terminated_at is not None:
        terminated = terminated.at[terminated_at, 0].set(True)
    traj = Transition(
        obs=jax.random.normal(k[0], (16, 2, 3)),
        action=jax.random.uniform(k[1], (16, 2, 1), minval=-2.0, maxval=2.0),
        reward=jax.random.normal(k[2], (16, 2)),
        terminated=terminated,
        truncated=jnp.zeros((16, 2), bool),
        next_obs=jax.random.normal(k[3], (16, 2, 3)),
    )
    return learner, space, traj


def test_one_learn_call_raises_q_along_the_actor_and_fits_the_sarsa_targets():
    """On a fixed rollout: (1/N) Σ Q_φk(s_h, μ_θ(s_h)) is higher at θ_{k+1} than at θ_k, and the critic's squared
    error against the SARSA targets y (fixed at θ_k, φ_k) is lower at φ_{k+1} than at φ_k."""
    config = SMALL
    learner, space, traj = _learner_and_rollout(config, 5)
    state = learner.init(jax.random.key(0), traj.obs[0])
    new, _ = jax.jit(learner.learn)(state, traj)
    actor = deterministic_actor(space, (16,), "relu")
    critic = QNetwork(hidden=(16,), activation=jax.nn.relu)
    old, fresh = state.params, new.params
    y = sarsa_targets(
        lambda o, a: critic.apply(old["critic"], o, a),
        lambda o: actor.apply(old["actor"], o),
        traj,
        config.rollout.gamma,
    )

    def value_along(theta):
        return float(jnp.mean(critic.apply(old["critic"], traj.obs, actor.apply(theta, traj.obs))))

    def error(phi):
        return float(jnp.mean((critic.apply(phi, traj.obs, traj.action) - y) ** 2))

    assert value_along(fresh["actor"]) > value_along(old["actor"])
    assert error(fresh["critic"]) < error(old["critic"])


def test_the_slides_single_steps_are_one_adam_step_each_from_theta_k_phi_k():
    """With actor_steps = q_epochs = q_minibatches = 1 (the slide's algorithm step for step), θ_{k+1} − θ_k is
    Adam's first step lr·g/(|g| + ε) on g = ∇_θ (1/N) Σ Q_φk(s_h, μ_θ(s_h)) at θ_k (ascent), and φ_{k+1} − φ_k
    is −q_lr·∇ℓ/(|∇ℓ| + ε) on the squared error against the SARSA targets fixed at (θ_k, φ_k): per coordinate,
    so a wrong sign, a missing stop of the targets or the wrong critic shows."""
    config = override(SMALL, actor_steps=1, q_epochs=1, q_minibatches=1)
    learner, space, traj = _learner_and_rollout(config, 6, terminated_at=7)
    state = learner.init(jax.random.key(0), traj.obs[0])
    new, _ = jax.jit(learner.learn)(state, traj)
    actor = deterministic_actor(space, (16,), "relu")
    critic = QNetwork(hidden=(16,), activation=jax.nn.relu)
    old = state.params
    y = sarsa_targets(
        lambda o, a: critic.apply(old["critic"], o, a),
        lambda o: actor.apply(old["actor"], o),
        traj,
        config.rollout.gamma,
    )
    g = jax.grad(lambda th: jnp.mean(critic.apply(old["critic"], traj.obs, actor.apply(th, traj.obs))))(
        old["actor"]
    )
    h = jax.grad(lambda phi: jnp.mean((critic.apply(phi, traj.obs, traj.action) - y) ** 2))(old["critic"])
    for got, before, grad, lr, sign in (
        (new.params["actor"], old["actor"], g, config.step.lr, 1.0),
        (new.params["critic"], old["critic"], h, config.critic.q_lr, -1.0),
    ):
        for a, b, d in zip(*map(jax.tree.leaves, (got, before, grad)), strict=True):
            want = sign * lr * np.asarray(d) / (np.abs(np.asarray(d)) + 1e-8)
            ulp = np.spacing(np.abs(np.asarray(b)))
            np.testing.assert_array_less(
                np.abs(np.asarray(a - b) - want), 1e-3 * np.abs(want) + 2 * ulp + 1e-12
            )
        assert sum(int(np.sum(np.abs(np.asarray(d)) > 1e-6)) for d in jax.tree.leaves(grad)) > 20  # not all 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"q_epochs": 0}, "q_epochs must be an integer >= 1, got 0"),
        ({"q_minibatches": 3}, "q_minibatches must divide num_envs·num_steps = 256, got 3"),
        ({"exploration_noise": -0.1}, "exploration_noise must lie in [0, inf), got -0.1"),
    ],
)
def test_bad_config(change, message):
    config = override(DPGOnPolicyConfig(), **change)
    assert assert_one_line_config_error(config, make_train, "Pendulum-v1") == message


def test_needs_box_actions():
    with pytest.raises(ConfigError, match="On-policy DPG needs a continuous"):
        make_train(DPGOnPolicyConfig(), "CartPole-v1", 10_000)
