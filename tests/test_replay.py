"""Replay buffer: wrap-around, uniform sampling, checks (capacity vs batch, dtypes, shapes), jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.config import override
from proxrl.deep.replay import (
    check_replay,
    flatten_rollout,
    replay_add,
    replay_init,
    replay_sample,
    replay_sample_after_add,
)
from proxrl.errors import ConfigError
from proxrl.types import Transition

EXAMPLE = Transition(
    obs=jnp.zeros(3, jnp.float32),
    action=jnp.zeros(2, jnp.float32),
    reward=jnp.zeros((), jnp.float32),
    terminated=jnp.zeros((), bool),
    truncated=jnp.zeros((), bool),
    next_obs=jnp.zeros(3, jnp.float32),
)


def steps(rewards, terminated=None, truncated=None) -> Transition:
    """n transitions labelled by their reward (obs = reward in every coordinate, next_obs = reward + 0.5)."""
    r = jnp.asarray(rewards, jnp.float32)
    n = r.shape[0]
    return Transition(
        obs=jnp.repeat(r[:, None], 3, axis=1),
        action=jnp.repeat(-r[:, None], 2, axis=1),
        reward=r,
        terminated=jnp.zeros(n, bool) if terminated is None else jnp.asarray(terminated, bool),
        truncated=jnp.zeros(n, bool) if truncated is None else jnp.asarray(truncated, bool),
        next_obs=jnp.repeat(r[:, None] + 0.5, 3, axis=1),
    )


def test_init_is_empty_and_typed():
    buf = replay_init(EXAMPLE, 7)
    assert buf.capacity == 7 and int(buf.pos) == 0 and int(buf.size) == 0
    assert buf.data.obs.shape == (7, 3) and buf.data.terminated.dtype == jnp.bool_
    assert buf.data.reward.shape == (7,)


def test_wrap_around_overwrites_the_oldest():
    buf = replay_add(replay_init(EXAMPLE, 5), steps([1, 2, 3]))
    np.testing.assert_array_equal(buf.data.reward, [1, 2, 3, 0, 0])
    assert (int(buf.pos), int(buf.size)) == (3, 3)
    buf = replay_add(buf, steps([4, 5, 6, 7]))
    np.testing.assert_array_equal(buf.data.reward, [6, 7, 3, 4, 5])
    assert (int(buf.pos), int(buf.size)) == (2, 5)
    # every field moves together
    np.testing.assert_array_equal(buf.data.obs[:, 0], buf.data.reward)
    np.testing.assert_array_equal(buf.data.action[:, 1], -buf.data.reward)
    np.testing.assert_array_equal(buf.data.next_obs[:, 2], buf.data.reward + 0.5)


def test_batch_larger_than_capacity_keeps_the_newest():
    buf = replay_add(replay_add(replay_init(EXAMPLE, 4), steps([1])), steps(range(10, 20)))
    assert sorted(np.asarray(buf.data.reward).tolist()) == [16, 17, 18, 19]
    assert int(buf.size) == 4
    # the next write still overwrites the oldest (16)
    buf = replay_add(buf, steps([99]))
    assert sorted(np.asarray(buf.data.reward).tolist()) == [17, 18, 19, 99]


def test_terminated_and_truncated_are_stored_separately():
    buf = replay_add(replay_init(EXAMPLE, 4), steps([1, 2, 3], terminated=[1, 0, 0], truncated=[0, 1, 0]))
    np.testing.assert_array_equal(buf.data.terminated[:3], [True, False, False])
    np.testing.assert_array_equal(buf.data.truncated[:3], [False, True, False])


def test_sampling_is_uniform_over_stored_entries():
    """Only the `size` stored entries are drawn, each with frequency 1/size within 5 binomial σ."""
    buf = replay_add(replay_init(EXAMPLE, 16), steps(np.arange(1, 11)))  # size 10 of 16
    n = 40_000
    batch = jax.jit(replay_sample, static_argnums=2)(buf, jax.random.key(0), n)
    labels = np.asarray(batch.reward).astype(int)
    assert labels.min() >= 1 and labels.max() <= 10  # never an empty slot (reward 0)
    counts = np.bincount(labels, minlength=11)[1:]
    p = 1 / 10
    sigma = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) < 5 * sigma), counts
    # fields of one sampled transition stay together
    np.testing.assert_array_equal(batch.obs[:, 0], batch.reward)
    np.testing.assert_array_equal(batch.next_obs[:, 0], batch.reward + 0.5)


def test_sampling_after_wrap_covers_the_whole_buffer():
    buf = replay_add(replay_init(EXAMPLE, 8), steps(np.arange(1, 12)))
    labels = np.asarray(replay_sample(buf, jax.random.key(1), 4000).reward).astype(int)
    assert set(labels.tolist()) == set(range(4, 12))


def test_capacity_smaller_than_batch_is_a_config_error():
    with pytest.raises(ConfigError, match="buffer_size must be >= batch_size = 256, got 100"):
        check_replay(100, 256)
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1"):
        check_replay(100, 0)
    assert check_replay(256, 256) == (256, 256)


def test_dtype_mismatch_names_the_field():
    buf = replay_init(EXAMPLE, 4)
    bad = steps([1, 2])._replace(terminated=jnp.zeros(2, jnp.float32))
    with pytest.raises(ConfigError, match="field 'terminated' must have dtype bool, got float32"):
        replay_add(buf, bad)
    bad = steps([1, 2])._replace(action=jnp.zeros((2, 2), jnp.int32))
    with pytest.raises(ConfigError, match="field 'action' must have dtype float32, got int32"):
        jax.jit(replay_add)(buf, bad)  # at trace time


def test_shape_mismatch_names_the_field():
    buf = replay_init(EXAMPLE, 4)
    with pytest.raises(
        ConfigError, match=r"field 'obs' must have shape \(n, 3\) \(n transitions\), got \(2, 4\)"
    ):
        replay_add(buf, steps([1, 2])._replace(obs=jnp.zeros((2, 4))))
    with pytest.raises(ConfigError, match=r"field 'reward' must have shape \(n,\) .*got \(2, 1\)"):
        replay_add(buf, steps([1, 2])._replace(reward=jnp.zeros((2, 1))))
    with pytest.raises(ConfigError, match="same number of transitions"):
        replay_add(buf, steps([1, 2])._replace(reward=jnp.zeros(3)))


def test_flatten_rollout_is_time_major():
    traj = jax.tree.map(lambda x: x.reshape(3, 2, *x.shape[1:]), steps(np.arange(6)))  # [T=3, B=2]
    flat = flatten_rollout(traj)
    np.testing.assert_array_equal(flat.reward, np.arange(6))
    assert flat.obs.shape == (6, 3)


def test_jit_matches_eager_and_vmap_over_buffers():
    buf = replay_init(EXAMPLE, 6)
    batch = steps([1, 2, 3, 4])
    eager = replay_add(replay_add(buf, batch), batch)
    jitted = jax.jit(lambda b, x: replay_add(replay_add(b, x), x))(buf, batch)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_array_equal(a, b)

    # three independent buffers (e.g. seeds) on a leading axis
    bufs = jax.vmap(lambda _: replay_init(EXAMPLE, 6))(jnp.arange(3))
    batches = jax.vmap(lambda k: steps([1, 2, 3])._replace(reward=jnp.arange(3.0) + 10 * k))(jnp.arange(3))
    bufs = jax.jit(jax.vmap(replay_add))(bufs, batches)
    np.testing.assert_array_equal(bufs.size, [3, 3, 3])
    np.testing.assert_array_equal(bufs.data.reward[:, :3], [[0, 1, 2], [10, 11, 12], [20, 21, 22]])
    sample = jax.vmap(lambda b, k: replay_sample(b, k, 50))(bufs, jax.random.split(jax.random.key(2), 3))
    assert sample.reward.shape == (3, 50)
    assert np.all(np.asarray(sample.reward) // 10 == np.arange(3)[:, None])  # each seed its own buffer


@pytest.mark.parametrize(
    ("capacity", "before", "recent"),
    [
        (8, [1, 2, 3], [4, 5]),
        (5, [1, 2, 3, 4], [5, 6, 7]),
        (4, [1, 2, 3, 4, 5, 6], [7]),
        (3, [1], [10, 11, 12, 13]),
    ],
)
def test_sample_after_add_equals_sampling_the_updated_buffer(capacity, before, recent):
    """The same draws and values as replay_sample(replay_add(buf, recent)): no wrap, wrap, full, n > C."""
    buf = replay_add(replay_init(EXAMPLE, capacity), steps(before))
    new = steps(recent)
    for seed in range(5):
        key = jax.random.key(seed)
        want = replay_sample(replay_add(buf, new), key, 64)
        got = jax.jit(replay_sample_after_add, static_argnums=3)(buf, new, key, 64)
        for name in Transition._fields:
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)


def test_add_after_reads_writes_the_same_values():
    buf = replay_add(replay_init(EXAMPLE, 6), steps([1, 2, 3, 4, 5]))
    new = steps([6, 7], terminated=[True, False], truncated=[False, True])
    reads = replay_sample(buf, jax.random.key(0), 4)
    for name in Transition._fields:
        np.testing.assert_array_equal(
            getattr(replay_add(buf, new, after=reads).data, name), getattr(replay_add(buf, new).data, name)
        )
    poisoned = reads._replace(reward=reads.reward.at[0].set(jnp.nan))  # a NaN read must not reach the buffer
    assert not np.isnan(np.asarray(replay_add(buf, new, after=poisoned).data.reward)).any()


def test_learning_step_updates_the_buffer_in_place():
    """The compiled, donated, seed-vmapped TD3 learning step (one seed, HalfCheetah sizes, as on the host) holds no copy of the replay buffer (before the
    read-then-write ordering, XLA copied the buffer on every step: 4.8 → 31 ms at 10⁶ entries)."""
    from proxrl.deep import loops
    from proxrl.deep.jax_envs import BoxSpace
    from proxrl.deep.off_policy import td3

    cap = 12_347  # a size no other array has
    cfg = override(
        td3.TD3Config(), buffer_size=cap, learning_starts=10
    )  # HalfCheetah's sizes: the fusion depends on them
    box = BoxSpace(np.full(17, -np.inf, np.float32), np.full(17, np.inf, np.float32), (17,))
    act = BoxSpace(np.full(6, -1.0, np.float32), np.full(6, 1.0, np.float32), (6,))
    learner = td3.make_learner(cfg, box, act)
    norm = loops.Normalization()
    carry = jax.eval_shape(
        jax.vmap(lambda k, o: loops.carry_init(learner, k, o, norm)),
        jax.random.split(jax.random.key(0), 1),
        jnp.zeros((1, 1, 17)),
    )
    traj = Transition(
        obs=jnp.zeros((1, 1, 1, 17)),
        action=jnp.zeros((1, 1, 1, 6)),
        reward=jnp.zeros((1, 1, 1)),
        terminated=jnp.zeros((1, 1, 1), bool),
        truncated=jnp.zeros((1, 1, 1), bool),
        next_obs=jnp.zeros((1, 1, 1, 17)),
    )
    step = jax.vmap(lambda c, tr: loops.absorb(learner, norm, c, tr), axis_name=loops.SEED_AXIS)

    def buffer_copies(donate: int | tuple) -> list[str]:
        hlo = jax.jit(step, donate_argnums=donate).lower(carry, traj).compile().as_text()
        assert any(str(cap) in line for line in hlo.splitlines())  # the buffer's arrays are there to be seen
        return [line.strip()[:120] for line in hlo.splitlines() if " copy(" in line and str(cap) in line]

    assert not buffer_copies(0), buffer_copies(0)
    assert buffer_copies(())  # positive control: not donated, the buffer is copied, and the search finds it


def test_with_normalisation_the_buffer_keeps_raw_data_and_batches_are_normalised_when_drawn():
    """Observation and reward normalisation with a replay buffer (Stable-Baselines3's VecNormalize): the buffer
    holds the raw transitions, and a minibatch drawn after the second rollout is normalised with the statistics
    of that time, old transitions as well as new. Two rollouts of constant observations c₁ then c₂ and rewards
    5 then −3: every drawn observation is (c_i − μ)/σ and every reward r_i/√Var[ret] by the statistics after
    both (kept each with its own time's statistics, c₁'s entries would read min(c₁/1, 10) = 10 here)."""
    from proxrl.deep import loops
    from proxrl.deep.jax_envs import BoxSpace
    from proxrl.deep.normalize import normalize, scale_reward
    from proxrl.deep.off_policy import common, td3

    cfg = override(
        td3.TD3Config(), num_envs=16, buffer_size=100, batch_size=64, learning_starts=1, gradient_steps=1
    )
    box = BoxSpace(np.full(3, -np.inf, np.float32), np.full(3, np.inf, np.float32), (3,))
    act = BoxSpace(np.full(1, -1.0, np.float32), np.full(1, 1.0, np.float32), (1,))

    def update(agent, batch, key):
        seen = {"obs_lo": batch.obs.min(), "obs_hi": batch.obs.max(), "next_hi": batch.next_obs.max()}
        return agent, seen | {"r_lo": batch.reward.min(), "r_hi": batch.reward.max()}

    zeros = lambda state, obs, key=None: jnp.zeros((obs.shape[0], 1))
    learner = common.replay_learner("spy", lambda k, o: jnp.zeros(()), zeros, zeros, update, cfg, box, act)
    norm = loops.Normalization(obs=True, reward=True, gamma=0.99)
    c1, c2 = np.array([10.0, 20.0, 30.0], np.float32), np.array([-4.0, 0.0, 2.0], np.float32)

    def rollout(c, r):
        return Transition(
            obs=jnp.broadcast_to(c, (1, 1, 16, 3)),
            action=jnp.zeros((1, 1, 16, 1)),
            reward=jnp.full((1, 1, 16), r),
            terminated=jnp.zeros((1, 1, 16), bool),
            truncated=jnp.zeros((1, 1, 16), bool),
            next_obs=jnp.broadcast_to(c, (1, 1, 16, 3)),
        )

    carry = jax.vmap(lambda k, o: loops.carry_init(learner, k, o, norm))(
        jax.random.split(jax.random.key(0), 1), jnp.broadcast_to(c1, (1, 16, 3))
    )
    step = jax.jit(jax.vmap(lambda c, tr: loops.absorb(learner, norm, c, tr), axis_name=loops.SEED_AXIS))
    carry, _ = step(carry, rollout(c1, 5.0))
    carry, metrics = step(carry, rollout(c2, -3.0))
    stored = np.asarray(carry.learner.buffer.data.obs[0, :32])
    np.testing.assert_array_equal(
        stored, np.concatenate([np.broadcast_to(c1, (16, 3)), np.broadcast_to(c2, (16, 3))])
    )
    np.testing.assert_array_equal(
        np.asarray(carry.learner.buffer.data.reward[0, :32]), [5.0] * 16 + [-3.0] * 16
    )
    stats = jax.tree.map(lambda x: x[0], carry.obs_stats)
    z = np.stack([normalize(stats, c1, clip=norm.clip), normalize(stats, c2, clip=norm.clip)])
    np.testing.assert_allclose(float(metrics["obs_lo"][0]), z.min(), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["obs_hi"][0]), z.max(), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["next_hi"][0]), z.max(), rtol=1e-6)
    assert z.max() < 5.0  # c₁ standardised among c₁ and c₂, not by the empty statistics of its own time
    reward_norm = jax.tree.map(lambda x: x[0], carry.reward_norm)
    r = [float(scale_reward(reward_norm, jnp.float32(v), clip=norm.clip)) for v in (-3.0, 5.0)]
    np.testing.assert_allclose([float(metrics["r_lo"][0]), float(metrics["r_hi"][0])], r, rtol=1e-6)


def test_a_checkpoint_of_normalised_replay_data_is_not_resumed_as_raw(tmp_path, capsys):
    """A checkpoint says its replay buffer holds raw transitions (metadata ``replay_storage``); one without it
    (written when normalised transitions were stored) is refused for a replay learner with normalisation, in
    one line, rather than normalised a second time. With the field the same run resumes."""
    import shutil

    from proxrl.cli import main
    from proxrl.run.checkpoints import encode, read_checkpoint

    args = [
        "train",
        "td3",
        "--env",
        "Pendulum-v1",
        "--normalize-obs",
        "--hidden",
        "8",
        "--learning-starts",
        "64",
    ]
    args += ["--buffer-size", "400", "--batch-size", "16", "--eval-every", "128", "--eval-episodes", "1"]
    args += ["--no-progress"]
    run = tmp_path / "run"
    assert main([*args, "--total-steps", "128", "--out", str(run)]) == 0
    old = tmp_path / "old"
    shutil.copytree(run, old)
    checkpoint = read_checkpoint(old / "checkpoint.safetensors")
    assert checkpoint.metadata["replay_storage"] == "raw"
    metadata = {k: v for k, v in checkpoint.metadata.items() if k != "replay_storage"}
    (old / "checkpoint.safetensors").write_bytes(encode(checkpoint.arrays, metadata))
    capsys.readouterr()
    assert main(["train", "td3", "--resume", str(old), "--total-steps", "256"]) == 2
    err = capsys.readouterr().err
    assert "holds a replay buffer of normalised transitions" in err and err.count("\n") == 1, err
    assert main(["train", "td3", "--resume", str(run), "--total-steps", "256", "--no-progress"]) == 0
