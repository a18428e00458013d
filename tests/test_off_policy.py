"""Off-policy pieces and DPG / DDPG / TD3: Polyak, warm-up actions, TD targets (terminated vs truncated),
TD3's clipped double-Q target, the DPG chain rule, delayed actor updates, bad input, learning on Pendulum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.config import override
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, make_jax_env
from proxrl.deep.loops import SEED_AXIS
from proxrl.deep.networks import QNetwork
from proxrl.deep.off_policy import ddpg, dpg, sac, td3
from proxrl.deep.off_policy.common import (
    CriticBatch,
    ReplayState,
    deterministic_actor,
    random_action,
    require_box,
    require_discrete,
    to_bounds,
    to_unit,
    twin_q,
)
from proxrl.errors import ConfigError
from proxrl.prox.critic import polyak, td_target
from proxrl.prox.surrogates import deterministic
from proxrl.run.train import make_train
from proxrl.types import Transition

PENDULUM = make_jax_env("Pendulum-v1")
OBS_SPACE, ACT_SPACE = PENDULUM.observation_space, PENDULUM.action_space  # Box(3), Box(-2, 2, (1,))
TINY = dict(hidden=(16, 16), batch_size=8, buffer_size=64)


def hand_batch(key, n=6, terminated=None, truncated=None) -> Transition:
    k1, k2, k3, k4 = jax.random.split(key, 4)
    return Transition(
        obs=jax.random.normal(k1, (n, 3)),
        action=jax.random.uniform(k2, (n, 1), minval=-2.0, maxval=2.0),
        reward=jax.random.normal(k3, (n,)),
        terminated=jnp.zeros(n, bool) if terminated is None else jnp.asarray(terminated, bool),
        truncated=jnp.zeros(n, bool) if truncated is None else jnp.asarray(truncated, bool),
        next_obs=jax.random.normal(k4, (n, 3)),
    )


def rollout(batch: Transition) -> Transition:
    """A flat batch as a [T = n, B = 1] rollout, what ``learn`` receives."""
    return jax.tree.map(lambda x: x[:, None], batch)


# --------------------------------------------------------------------------------------- small pieces


def test_polyak():
    target = {"w": jnp.array([0.0, 2.0]), "b": jnp.array(4.0)}
    online = {"w": jnp.array([1.0, 1.0]), "b": jnp.array(0.0)}
    mixed = polyak(target, online, 0.25)
    np.testing.assert_allclose(mixed["w"], [0.25, 1.75])
    np.testing.assert_allclose(mixed["b"], 3.0)
    copied = polyak(target, online, 1.0)
    for a, b in zip(jax.tree.leaves(copied), jax.tree.leaves(online), strict=True):
        np.testing.assert_array_equal(a, b)


def test_td_target_stops_only_at_termination():
    """y = r + γ(1 − terminated)·v': a termination cuts the bootstrap, a truncation keeps it."""
    reward = jnp.array([1.0, 1.0, 1.0, 1.0])
    terminated = jnp.array([False, True, False, True])
    v_next = jnp.array([10.0, 10.0, 10.0, 10.0])
    np.testing.assert_allclose(td_target(reward, terminated, v_next, 0.9), [10.0, 1.0, 10.0, 1.0])


def test_action_scaling_round_trip():
    space = BoxSpace(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32), (2,))
    u = jnp.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0]])
    a = to_bounds(u, space)
    np.testing.assert_allclose(a, [[-2.0, 0.0], [0.0, 0.5], [2.0, 1.0]])
    np.testing.assert_allclose(to_unit(a, space), u, atol=1e-6)


def test_random_actions_cover_the_space():
    a = random_action(jax.random.key(0), ACT_SPACE, 5000)
    assert a.shape == (5000, 1) and a.dtype == jnp.float32
    assert float(a.min()) >= -2.0 and float(a.max()) <= 2.0
    assert abs(float(a.std()) - 4.0 / np.sqrt(12.0)) < 0.05  # U[−2, 2]
    d = random_action(jax.random.key(1), DiscreteSpace(3), 3000)
    assert d.dtype == jnp.int32 and set(np.asarray(d).tolist()) == {0, 1, 2}


def test_twin_q_members_are_independent():
    q = twin_q(QNetwork, 2, hidden=(8,))
    phi = jax.jit(q.init)(jax.random.key(0), jnp.zeros((4, 3)), jnp.zeros((4, 1)))
    out = jax.jit(q.apply)(phi, jnp.ones((4, 3)), jnp.ones((4, 1)))
    assert out.shape == (2, 4)
    assert not np.allclose(out[0], out[1])


def test_dpg_gradient_is_the_chain_rule():
    """∇_θ (1/n) Σ Q(s, μ_θ(s)) = (1/n) Σ ∇_θ μ_θ(s)ᵀ ∇_a Q(s, a)|_{a=μ_θ(s)}."""
    k_a, k_q, k_s = jax.random.split(jax.random.key(0), 3)
    actor = deterministic_actor(ACT_SPACE, (16,), "tanh")
    critic = QNetwork(hidden=(16,))
    obs = jax.random.normal(k_s, (5, 3))
    theta = jax.jit(actor.init)(k_a, obs)
    phi = jax.jit(critic.init)(k_q, obs, jax.jit(actor.apply)(theta, obs))

    def q_fn(s, a):
        return critic.apply(phi, s, a)

    surrogate = deterministic(lambda b, a: q_fn(b.obs, a))  # L(θ) = (1/n) Σ Q(s, μ_θ(s))
    batch = CriticBatch(obs, phi)

    @jax.jit
    def both(theta):
        g = jax.grad(lambda t: surrogate(t, actor.apply(t, obs), theta, batch)[0])(theta)
        mu, vjp = jax.vjp(lambda t: actor.apply(t, obs), theta)
        dq_da = jax.vmap(jax.grad(lambda s, a: q_fn(s[None], a[None])[0], argnums=1))(obs, mu)  # [n, d]
        (chain,) = vjp(dq_da / obs.shape[0])
        return g, chain

    g, chain = both(theta)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(chain), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves(g)) > 1e-5


# ------------------------------------------------------------------------------------------ learners


def learner_and_state(module, config, key=0):
    learner = module.make_learner(config, OBS_SPACE, ACT_SPACE)
    return learner, jax.jit(learner.init)(jax.random.key(key), jnp.zeros((1, 3)))


def test_warm_up_actions_are_uniform_then_the_policy():
    config = override(td3.TD3Config(), **TINY, learning_starts=10, exploration_noise=0.1)
    learner, state = learner_and_state(td3, config)
    obs = jnp.zeros((2000, 3))
    act, mode = jax.jit(learner.act), jax.jit(learner.mode)
    warm = act(state, obs, jax.random.key(1))
    assert float(warm.min()) >= -2.0 and float(warm.max()) <= 2.0
    assert float(warm.std()) > 1.0  # U[−2, 2] has σ ≈ 1.15; the policy's noise has σ = 0.2
    trained = state._replace(env_steps=jnp.array(10, jnp.int32))
    acting = act(trained, obs, jax.random.key(1))
    assert float(acting.min()) >= -2.0 and float(acting.max()) <= 2.0
    np.testing.assert_allclose(float(jnp.std(acting - mode(trained, obs))), 0.2, rtol=0.1)


def test_learn_skips_before_learning_starts_and_counts_steps_under_vmap():
    """Two seeds vmapped (lax.cond becomes a select): NaN metrics and no update before learning_starts."""
    config = override(ddpg.DDPGConfig(), **TINY, learning_starts=8)
    learner = ddpg.make_learner(config, OBS_SPACE, ACT_SPACE)
    state = jax.jit(jax.vmap(learner.init))(jax.random.split(jax.random.key(0), 2), jnp.zeros((2, 1, 3)))
    learn = jax.jit(jax.vmap(learner.learn))

    def batches(i):
        return jax.tree.map(
            lambda *x: jnp.stack(x), *(rollout(hand_batch(jax.random.key(10 * i + j), n=5)) for j in range(2))
        )

    state, m = learn(state, batches(0))
    np.testing.assert_array_equal(state.env_steps, [5, 5])
    np.testing.assert_array_equal(state.buffer.size, [5, 5])
    assert np.all(np.isnan(m["critic_loss"])) and np.all(m["gradient_updates"] == 0)
    before = state.agent.params["actor"]["params"]["action"]["kernel"]
    state, m = learn(state, batches(1))
    np.testing.assert_array_equal(state.env_steps, [10, 10])
    assert np.all(np.isfinite(m["critic_loss"])) and np.all(m["gradient_updates"] == 1)
    after = state.agent.params["actor"]["params"]["action"]["kernel"]
    assert not np.allclose(before[0], after[0]) and not np.allclose(before[1], after[1])
    assert not np.allclose(after[0], after[1])  # the seeds are independent


def td3_target_by_hand(config, agent, batch, key):
    """y_i = r_i + γ(1 − terminated_i)·min_j Q_tar,j(s'_i, clip(μ_tar(s'_i) + clip(σ̃ε_i, −c, c)·2, −2, 2))."""
    actor = deterministic_actor(ACT_SPACE, config.network.hidden, config.network.activation)
    critic = twin_q(QNetwork, 2, hidden=config.network.hidden, activation=jax.nn.relu)
    eps = jax.random.normal(key, (batch.reward.shape[0], 1))
    noise = (
        np.clip(
            config.smoothing.policy_noise * np.asarray(eps),
            -config.smoothing.noise_clip,
            config.smoothing.noise_clip,
        )
        * 2.0
    )
    a_next = np.clip(
        np.asarray(jax.jit(actor.apply)(agent.target["actor"], batch.next_obs)) + noise, -2.0, 2.0
    )
    q1, q2 = np.asarray(jax.jit(critic.apply)(agent.target["critic"], batch.next_obs, jnp.asarray(a_next)))
    not_done = 1.0 - np.asarray(batch.terminated, np.float32)
    return np.asarray(batch.reward) + config.rollout.gamma * not_done * np.minimum(q1, q2)


# one TD3 learner (one compile) for the target and delay tests; σ̃ large so the clip at ±c binds
TD3_SMALL = override(td3.TD3Config(), hidden=(16, 16), batch_size=6, buffer_size=6, learning_starts=0,
    policy_noise=0.6, noise_clip=0.5, policy_delay=3,)  # fmt: skip
TD3_LEARNER = td3.make_learner(TD3_SMALL, OBS_SPACE, ACT_SPACE)
TD3_LEARN = jax.jit(TD3_LEARNER.learn)


def test_td3_target_is_min_of_twin_targets_at_smoothed_actions():
    """One learn call on a hand-built batch that fills the buffer: the reported mean target equals the hand
    computation; terminated steps do not bootstrap, truncated ones do."""
    n = 6
    terminated = [True, False, True, False, True, False]
    truncated = [False, True, False, True, False, True]  # every episode ends: inside (3) or outside (3)
    batch = hand_batch(jax.random.key(3), n, terminated=terminated, truncated=truncated)
    state = jax.jit(TD3_LEARNER.init)(jax.random.key(4), jnp.zeros((1, 3)))
    # Reproduce the learner's keys: learn splits state.key → (next, samples, updates), each split once per
    # gradient step; the sample indices pick the minibatch from the buffer (= batch, in order).
    _, k_samples, k_updates = jax.random.split(state.key, 3)
    (k_sample,) = jax.random.split(k_samples, 1)
    (k_update,) = jax.random.split(k_updates, 1)
    idx = np.asarray(jax.random.randint(k_sample, (n,), 0, n))
    sampled = jax.tree.map(lambda x: x[idx], batch)
    y = td3_target_by_hand(TD3_SMALL, state.agent, sampled, k_update)
    _, m = TD3_LEARN(state, rollout(batch))
    np.testing.assert_allclose(float(m["target_q"]), y.mean(), rtol=1e-5, atol=1e-6)
    # per sample: the loss Σ_j mean_i (Q_φj(s_i, a_i) − y_i)² at the critics before the step uses these y_i
    critic = twin_q(QNetwork, 2, hidden=TD3_SMALL.network.hidden, activation=jax.nn.relu)
    q = np.asarray(critic.apply(state.agent.params["critic"], sampled.obs, sampled.action))  # [2, n]
    np.testing.assert_allclose(float(m["critic_loss"]), np.sum(np.mean((q - y) ** 2, axis=-1)), rtol=1e-5)
    assert abs(float(m["critic_loss"]) - np.sum(np.mean((q - y[::-1]) ** 2, axis=-1))) > 1e-3  # rows matter
    term, trunc, r = np.asarray(sampled.terminated), np.asarray(sampled.truncated), np.asarray(sampled.reward)
    assert term.any() and trunc.any()
    np.testing.assert_allclose(y[term], r[term])  # no bootstrap through a termination
    assert np.all(np.abs(y[trunc] - r[trunc]) > 1e-6)  # a truncation bootstraps


@pytest.mark.parametrize("module", [ddpg, dpg], ids=["ddpg", "dpg"])
def test_ddpg_and_dpg_targets_critics_and_actor_steps(module):
    """Two learn calls on hand-built batches that fill the buffer (one gradient step each), against the hand
    computation: DDPG bootstraps y = r + γ(1 − terminated)·Q_φ̄(s', μ_θ̄(s')) from its target networks, which
    follow θ̄ ← τθ + (1 − τ)θ̄ after every step, and its actor ascends the *updated* critic; DPG bootstraps from
    the current (θ_k, φ_k), which its actor ascends too. Before the first step the targets equal the online
    networks, so the second call is the one that tells them apart (checked)."""
    config = override(module.DDPGConfig() if module is ddpg else module.DPGConfig(), hidden=(16, 16),
                      batch_size=6, buffer_size=6, learning_starts=0)  # fmt: skip
    learner = module.make_learner(config, OBS_SPACE, ACT_SPACE)
    learn, gamma, tau = jax.jit(learner.learn), config.rollout.gamma, getattr(config.critic, "tau", None)
    actor = deterministic_actor(ACT_SPACE, config.network.hidden, config.network.activation)
    critic = QNetwork(hidden=config.network.hidden, activation=jax.nn.relu)
    state = jax.jit(learner.init)(jax.random.key(4), jnp.zeros((1, 3)))
    terminated = [True, False, False, True, False, False]
    for call in range(2):
        batch = hand_batch(jax.random.key(20 + call), 6, terminated=terminated)
        _, k_samples, _ = jax.random.split(state.key, 3)
        (k_sample,) = jax.random.split(k_samples, 1)
        idx = np.asarray(jax.random.randint(k_sample, (6,), 0, 6))
        sampled = jax.tree.map(lambda x, idx=idx: x[idx], batch)
        before = state.agent
        state, m = learn(state, rollout(batch))
        online = before.params
        boot = before.target if module is ddpg else online
        q_next = critic.apply(boot["critic"], sampled.next_obs, actor.apply(boot["actor"], sampled.next_obs))
        y = sampled.reward + gamma * (1.0 - sampled.terminated) * q_next
        np.testing.assert_allclose(float(m["target_q"]), float(jnp.mean(y)), rtol=1e-5, atol=1e-6)
        q = critic.apply(online["critic"], sampled.obs, sampled.action)
        np.testing.assert_allclose(float(m["critic_loss"]), float(jnp.mean((q - y) ** 2)), rtol=1e-5)
        # the actor's objective −(1/n) Σ Q_φ(s, μ_θk(s)) under φ_{k+1} (DDPG) or φ_k (DPG)
        phi = state.agent.params["critic"] if module is ddpg else online["critic"]
        actor_loss = -jnp.mean(critic.apply(phi, sampled.obs, actor.apply(online["actor"], sampled.obs)))
        np.testing.assert_allclose(float(m["actor_loss"]), float(actor_loss), rtol=1e-5, atol=1e-6)
        other = online["critic"] if module is ddpg else state.agent.params["critic"]
        wrong = -jnp.mean(critic.apply(other, sampled.obs, actor.apply(online["actor"], sampled.obs)))
        assert abs(float(wrong) - float(actor_loss)) > 1e-4  # the two critics differ: the check has power
        if module is ddpg:
            want = jax.tree.map(lambda t, o: tau * o + (1 - tau) * t, before.target, state.agent.params)
            for a, b in zip(jax.tree.leaves(state.agent.target), jax.tree.leaves(want), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
            if call == 1:  # the target networks now differ from the online ones, and y used the targets
                q_online = critic.apply(
                    online["critic"], sampled.next_obs, actor.apply(online["actor"], sampled.next_obs)
                )
                y_online = sampled.reward + gamma * (1.0 - sampled.terminated) * q_online
                assert abs(float(jnp.mean(y_online)) - float(m["target_q"])) > 1e-4
        else:
            assert not hasattr(state.agent, "target")


def test_target_action_smoothing_is_clipped():
    mu = jnp.array([[1.9], [0.0], [-1.9]])
    a = td3.target_action(jax.random.key(0), jnp.repeat(mu, 1000, axis=0), ACT_SPACE, 10.0, 0.5)
    assert float(a.min()) >= -2.0 and float(a.max()) <= 2.0
    mid = np.asarray(a[1000:2000])  # μ = 0: noise clipped to ±c·h = ±1
    assert np.all(np.abs(mid) <= 1.0 + 1e-6) and np.isclose(np.abs(mid).max(), 1.0)


def test_td3_actor_and_targets_move_every_policy_delay_steps():
    state = jax.jit(TD3_LEARNER.init)(jax.random.key(0), jnp.zeros((1, 3)))
    learn = TD3_LEARN
    updated = []
    for i in range(7):
        theta, target = state.agent.params["actor"], state.agent.target
        state, m = learn(state, rollout(hand_batch(jax.random.key(i), n=6)))
        moved = not np.allclose(jax.tree.leaves(theta)[0], jax.tree.leaves(state.agent.params["actor"])[0])
        target_moved = not np.allclose(jax.tree.leaves(target)[0], jax.tree.leaves(state.agent.target)[0])
        assert moved == target_moved == bool(m["actor_updated"])
        assert np.isnan(float(m["actor_loss"])) != moved
        updated.append(moved)
    assert updated == [False, False, True, False, False, True, False]
    assert int(state.agent.step) == 7


def test_schedule_branches_are_skipped_not_masked_under_a_named_seed_vmap():
    """Vmapped over seeds with ``axis_name=SEED_AXIS`` (as the runners do), the warm-up skip and TD3's delayed
    actor step stay ``lax.cond`` branches (run only when due); a plain ``jax.vmap`` turns them into selects
    that compute both sides. Same schedule and same numbers (to rounding) either way."""
    config = override(TD3_SMALL, learning_starts=12)
    learner = td3.make_learner(config, OBS_SPACE, ACT_SPACE)
    init = jax.jit(jax.vmap(learner.init))
    named = jax.vmap(learner.learn, axis_name=SEED_AXIS)
    plain = jax.vmap(learner.learn)
    state = init(jax.random.split(jax.random.key(0), 2), jnp.zeros((2, 1, 3)))

    def batches(i):
        return jax.tree.map(
            lambda *x: jnp.stack(x), *(rollout(hand_batch(jax.random.key(10 * i + j), n=6)) for j in range(2))
        )

    def conds(f):
        return str(jax.make_jaxpr(f)(state, batches(0))).count("cond[")

    assert conds(named) == 2 and conds(plain) == 0  # warm-up skip and policy delay
    s_named, s_plain = state, state
    updates, actor_updated = [], []
    for i in range(5):
        s_named, m = jax.jit(named)(s_named, batches(i))
        s_plain, m_plain = jax.jit(plain)(s_plain, batches(i))
        updates.append(m["gradient_updates"].tolist())
        actor_updated.append(np.nan_to_num(m["actor_updated"]).tolist())
        np.testing.assert_array_equal(m["gradient_updates"], m_plain["gradient_updates"])
    assert updates == [[0, 0], [1, 1], [1, 1], [1, 1], [1, 1]]  # 6 < 12 stored, then 12, 18, ...
    assert actor_updated == [[0, 0], [0, 0], [0, 0], [1, 1], [0, 0]]  # critic steps 1, 2, 3 (due), 4
    for a, b in zip(jax.tree.leaves(s_named.agent), jax.tree.leaves(s_plain.agent), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("module", "name"), [(td3, "TD3"), (ddpg, "DDPG"), (dpg, "DPG")])
def test_discrete_env_is_rejected(module, name):
    config_cls = {td3: td3.TD3Config, ddpg: ddpg.DDPGConfig, dpg: dpg.DPGConfig}[module]
    with pytest.raises(
        ConfigError,
        match=rf"^{name} needs a continuous \(Box\) action space, got Discrete\(2\)",
    ):
        make_train(config_cls(), "CartPole-v1", 1000)


def test_unbounded_or_discrete_spaces():
    inf = BoxSpace(np.array([-np.inf], np.float32), np.array([np.inf], np.float32), (1,))
    with pytest.raises(ConfigError, match="TD3 needs finite action bounds"):
        require_box(inf, "TD3")
    with pytest.raises(
        ConfigError,
        match=r"Discrete SAC needs a discrete action space, got Box\(-2, 2, \(1,\)\) \(Pendulum-v1\)",
    ):
        require_discrete(ACT_SPACE, "Discrete SAC", "Pendulum-v1")
    assert require_discrete(DiscreteSpace(2), "x").n == 2


def test_td3_specific_bad_values():
    """TD3's own fields; the checks every algorithm shares are in test_configs.py."""
    with pytest.raises(ConfigError, match="policy_delay must be an integer >= 1"):
        override(td3.TD3Config(), policy_delay=0).validate()
    with pytest.raises(ConfigError, match="noise_clip must lie in"):
        override(td3.TD3Config(), noise_clip=-1.0).validate()


def test_state_is_a_replay_state():
    _, state = learner_and_state(dpg, override(dpg.DPGConfig(), **TINY))
    assert isinstance(state, ReplayState)
    assert state.buffer.capacity == 64 and state.buffer.data.action.shape == (64, 1)


@pytest.mark.parametrize(
    ("module", "config_cls"), [(td3, td3.TD3Config), (sac, sac.SACConfig)], ids=["td3", "sac"]
)
def test_mountain_car_continuous_trains_with_vmapped_seeds(module, config_cls):
    """gymnax MountainCarContinuous-v0 (Box(−1, 1, (1,)), 999-step episodes), three seeds in one compiled call:
    actions stay in the bounds, every seed trains (finite losses after warm-up) and the seeds differ."""
    config = override(config_cls(), hidden=(16, 16), batch_size=32, buffer_size=1000, learning_starts=200)
    env = make_jax_env("MountainCarContinuous-v0")
    assert (env.action_space.low.tolist(), env.action_space.high.tolist()) == ([-1.0], [1.0])
    learner = module.make_learner(config, env.observation_space, env.action_space)
    train = jax.jit(jax.vmap(make_train(config, env, 1200)))
    state, metrics = jax.block_until_ready(train(jax.random.split(jax.random.key(0), 3)))
    actions = np.asarray(state.carry.learner.buffer.data.action)  # [3, 1000, 1]: every stored action
    assert actions.min() >= -1.0 and actions.max() <= 1.0 and actions.std() > 0.1
    np.testing.assert_array_equal(state.carry.learner.env_steps, [1200] * 3)
    loss = np.asarray(metrics["critic_loss"])  # [3, 1200]
    assert np.all(np.isnan(loss[:, :199])) and np.all(np.isfinite(loss[:, 199:]))
    assert not np.allclose(actions[0], actions[1])
    mode = jax.jit(jax.vmap(learner.mode))(state.carry.learner, jnp.zeros((3, 4, 2)))
    assert np.all(np.abs(np.asarray(mode)) <= 1.0)
