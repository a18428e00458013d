"""Env-runner actors on Ray and asynchronous PPO: V-trace reduces to GAE on-policy, the fixed-lag schedule
repeats itself exactly whatever the timing, the async schedule logs its policy lag, and synchronous actors feed
an ordinary learner.

Runs are tiny (an 8-unit network, 16-step rollouts, a few updates) on a local 2-CPU Ray started once for the
module. The learning check (CartPole-v1 ≥ 475) is bench/bench_actors.py, too slow for the test budget."""

from __future__ import annotations

import csv
import dataclasses
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.config import override
from proxrl.deep.appo import APPOConfig, make_learner
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace
from proxrl.deep.on_policy.ppo import PPOConfig
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.estimators import gae
from proxrl.estimators.vtrace import vtrace
from proxrl.run import faults
from proxrl.run.actors import ActorRunner
from proxrl.run.checkpoints import read_checkpoint
from proxrl.run.train import CHECKPOINT, RunConfig, make_runner, train
from proxrl.types import Transition

TINY = {"hidden": (8,), "num_envs": 2, "num_steps": 16, "num_minibatches": 1, "update_epochs": 2}


def test_vtrace_on_policy_is_gae_and_truncates_off_policy():
    rng = np.random.default_rng(0)
    t = 12
    r, v, vn = (jnp.asarray(rng.normal(size=t), jnp.float32) for _ in range(3))
    disc = jnp.asarray(0.99 * (rng.random(t) > 0.1), jnp.float32)
    reset = (disc == 0) | jnp.asarray(rng.random(t) > 0.85)
    out = vtrace(r, disc, v, vn, jnp.zeros(t), lam=0.9, reset_t=reset)
    _, returns = gae(r, disc, v, vn, 0.9, reset)
    np.testing.assert_allclose(out.vs, returns, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.rho, 1.0)
    # Â_t = r_t + discount_t·v_{t+1} − V(s_t), v_{t+1} = V(true next obs) at an episode end and at T
    vs_next = np.where(
        np.asarray(reset), np.asarray(vn), np.append(np.asarray(out.vs)[1:], np.asarray(vn)[-1])
    )
    np.testing.assert_allclose(out.pg_adv, r + disc * vs_next - v, rtol=1e-5, atol=1e-5)
    # far off-policy: weights truncated at ρ̄, the trace cut at c̄
    off = vtrace(r, disc, v, vn, jnp.full(t, 3.0), lam=1.0, rho_bar=1.0, c_bar=0.5, reset_t=reset)
    np.testing.assert_allclose(off.rho, 1.0)
    assert not np.allclose(off.vs, vtrace(r, disc, v, vn, jnp.zeros(t), lam=1.0, reset_t=reset).vs)
    # off-policy, ratios on both sides of 1 and of the clips, against Espeholt et al.'s sum written out
    log_rho = jnp.asarray(rng.normal(scale=1.0, size=t), jnp.float32)
    lam, rho_bar, c_bar = 0.9, 1.2, 0.8
    got = vtrace(r, disc, v, vn, log_rho, lam=lam, rho_bar=rho_bar, c_bar=c_bar, reset_t=reset)
    rho = np.exp(np.asarray(log_rho, np.float64))
    rr, dd, vv, vvn, rs = (np.asarray(x, np.float64) for x in (r, disc, v, vn, reset))
    delta = np.minimum(rho_bar, rho) * (rr + dd * vvn - vv)
    c = lam * np.minimum(c_bar, rho)
    vs = np.empty(t)
    for s_ in range(t):  # v_s = V(x_s) + Σ_{u ≥ s} (Π_{s ≤ i < u} γ_i c_i) δ_u, within the episode
        total, weight = 0.0, 1.0
        for u in range(s_, t):
            total += weight * delta[u]
            if rs[u]:
                break
            weight *= dd[u] * c[u]
        vs[s_] = vv[s_] + total
    following = np.where(rs, vvn, np.append(vs[1:], vvn[-1]))
    pg = np.minimum(rho_bar, rho) * (rr + dd * following - vv)
    assert np.any(rho > rho_bar) and np.any(rho < c_bar) and np.any((rho > c_bar) & (rho < rho_bar))
    np.testing.assert_allclose(got.vs, vs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.pg_adv, pg, rtol=1e-5, atol=1e-5)


def test_appo_learning_from_its_own_rollout_is_on_policy():
    """Data without log μ (collected in-process by θ_k itself, as on gymnax) has every importance weight 1."""
    config = override(APPOConfig(), **TINY, anneal_lr=False)
    learner = make_learner(config, BoxSpace(-np.ones(3), np.ones(3), (3,)), DiscreteSpace(2))
    state = learner.init(jax.random.key(0), jnp.zeros((2, 3)))
    k = jax.random.split(jax.random.key(1), 3)
    traj = Transition(
        jax.random.normal(k[0], (16, 2, 3)),
        jax.random.bernoulli(k[1], shape=(16, 2)).astype(jnp.int32),
        jax.random.normal(k[2], (16, 2)),
        jnp.zeros((16, 2), bool),
        jnp.zeros((16, 2), bool),
        jax.random.normal(k[0], (16, 2, 3)),
    )
    _, metrics = jax.jit(learner.learn)(state, traj)
    np.testing.assert_allclose(metrics["rho_mean"], 1.0, rtol=1e-6)
    assert float(metrics["rho_truncated"]) == 0


def read(path: Path, drop: tuple[str, ...] = ("chunk_seconds",)) -> list[dict[str, str]]:
    with path.open() as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def run(config, out: Path, jitter: float = 0.0, keep: list | None = None, **run_options) -> tuple[list, list]:
    """A short training run; ``jitter`` > 0 makes the learner sleep a random time before each rollout it takes
    (actors then run ahead by varying amounts); ``keep`` collects every update's rollouts."""
    run_cfg = RunConfig(
        num_seeds=2,
        total_steps=256,
        eval_every=128,
        log_every=1,
        eval_episodes=1,
        progress=False,
        out=out,
        **run_options,
    )
    runner = make_runner(config, "CartPole-v1", run_cfg)
    assert isinstance(runner, ActorRunner)
    if jitter:
        fetch, rng = runner._next_rollouts, np.random.default_rng()
        runner._next_rollouts = lambda carry: (time.sleep(rng.uniform(0, jitter)), fetch(carry))[1]
    if keep is not None:
        collect = runner._next_rollouts
        runner._next_rollouts = lambda carry: (keep.append(outs := collect(carry)), outs)[1]
    train(runner, run_cfg, config, "CartPole-v1")
    return read(out / "metrics.csv"), read(out / "eval.csv")


def test_fixed_lag_gives_the_same_numbers_whatever_the_timing(local_ray, tmp_path):
    config = override(APPOConfig(), **TINY, lag_mode="fixed", lag=1)
    first = run(config, tmp_path / "a", num_actors=2)
    second = run(config, tmp_path / "b", jitter=0.3, num_actors=2)
    assert first == second
    lags = [float(r["policy_lag"]) for r in first[0]]
    assert lags == [0.0] + [1.0] * (len(lags) - 1)  # the first update's rollout was sent with θ_0
    assert [int(r["step"]) for r in first[1]] == [128, 256]  # both evaluation rounds written


def test_async_logs_its_lag_and_sync_actors_feed_an_ordinary_learner(local_ray, tmp_path):
    metrics, evals = run(override(APPOConfig(), **TINY), tmp_path / "async", jitter=0.2, num_actors=2)
    lags = np.array([float(r["policy_lag"]) for r in metrics])
    # how stale each rollout is depends on timing (an actor that starts late contributes late): only its range
    assert len(lags) == 8 and np.all(lags == np.round(lags)) and lags.min() >= 0 and lags.max() < 8
    assert np.allclose([float(r["rho_mean"]) for r in metrics], 1.0, atol=0.2)
    ppo = override(PPOConfig(), **{**TINY, "num_envs": 4})
    rollouts: list = []
    metrics, evals = run(ppo, tmp_path / "sync", num_actors=2, keep=rollouts)
    assert len(metrics) == 4 and all(float(r["policy_lag"]) == 0 for r in metrics)
    assert sum(float(r["episodes"]) for r in metrics) > 0
    assert len(evals) == 2
    # The two actors sample with their own keys. The initial policy is nearly uniform (logits ≈ 0), so actors
    # drawing the same Gumbel noise would take the same action at almost every step; with independent draws
    # they agree with probability ≈ 1/2 at each of the 2·16·2 = 64 (seed, step, env) places, and ≥ 52 agreements
    # has probability < 1e-6.
    first, second = (np.asarray(r["traj"][1]) for r in rollouts[0])
    assert first.shape == (2, 16, 2) and np.mean(first == second) < 0.8


def test_normalize_reward_keeps_each_actors_running_returns(local_ray, tmp_path):
    """--normalize-reward with 2 actors (fixed lag 1: update k learns actor k mod 2's rollout): each actor's
    environments keep their own running discounted return, ret ← γ·ret + r then 0 at an episode's end, folded
    over that actor's rollouts only; the return statistics are shared."""
    config = override(APPOConfig(), **TINY, lag_mode="fixed", lag=1)
    run_cfg = RunConfig(
        num_seeds=2,
        total_steps=256,
        eval_every=256,
        log_every=1,
        eval_episodes=1,
        progress=False,
        out=tmp_path / "run",
        num_actors=2,
        normalize_reward=True,
    )
    runner = make_runner(config, "CartPole-v1", run_cfg)
    seen: list[tuple[int, list]] = []
    fetch = runner._next_rollouts

    def capture(carry):
        outs = fetch(carry)
        seen.append((runner.version % 2, outs[0]["traj"]))
        return outs

    runner._next_rollouts = capture
    train(runner, run_cfg, config, "CartPole-v1")
    assert [a for a, _ in seen] == [0, 1] * 4
    for actor in (0, 1):
        ret = np.zeros((2, TINY["num_envs"]))  # [seeds, environments]
        for a, traj in seen:
            if a == actor:
                reward, ended = traj[2], traj[3] | traj[4]  # [seeds, T, b]
                for t in range(reward.shape[1]):
                    ret = config.rollout.gamma * ret + reward[:, t]
                    ret = np.where(ended[:, t], 0.0, ret)
        np.testing.assert_allclose(np.asarray(runner._returns[actor]), ret, rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(runner._returns[0]), np.asarray(runner._returns[1]))
    runner.close()


def test_actor_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="divisible by num_actors"):
        make_runner(override(PPOConfig(), **{**TINY, "num_envs": 3}), "CartPole-v1", RunConfig(num_actors=2))
    with pytest.raises(ConfigError, match="Gymnasium environments"):
        make_runner(override(APPOConfig(), **TINY), "CartPole-v1", RunConfig(backend="gymnax"))
    with pytest.raises(ConfigError, match="num_actors"):
        RunConfig(num_actors=-1).validate()
    with pytest.raises(ConfigError, match="replay learner"):
        make_runner(TRAINERS["sac"].config(), "Pendulum-v1", RunConfig(num_actors=1))
    with pytest.raises(ConfigError, match="lag must be"):
        override(APPOConfig(), lag=-1).validate()


RESUME_CASES = {
    # update k learns actor k mod 2's rollout, sent with θ_{k-1}: a rollout is in flight at every checkpoint, and
    # each actor keeps its own running discounted returns for --normalize-reward
    "fixed": (override(APPOConfig(), **TINY, lag_mode="fixed", lag=1), {"normalize_reward": True}),
    "sync": (override(PPOConfig(), **{**TINY, "num_envs": 4}), {}),
}


RESUMED = RunConfig(
    num_seeds=2, total_steps=384, eval_every=128, log_every=1, eval_episodes=1, progress=False, num_actors=2
)
"""Three chunks of 128 steps with 2 actors; the runs below stop after the second checkpoint."""


def _resume_run(config, run_cfg: RunConfig) -> tuple[list, list]:
    train(make_runner(config, "CartPole-v1", run_cfg), run_cfg, config, "CartPole-v1")
    out = Path(run_cfg.resume or run_cfg.out)
    return read(out / "metrics.csv"), read(out / "eval.csv")


def _stopped_after_second_checkpoint(config, run_cfg: RunConfig, monkeypatch) -> None:
    """Run until Ctrl-C (a fault) right after the second checkpoint is written."""
    monkeypatch.setattr(faults, "_counts", {})
    monkeypatch.setenv("PROXRL_FAULT", "checkpoint#2:interrupt")
    with pytest.raises(KeyboardInterrupt):
        _resume_run(config, run_cfg)
    monkeypatch.delenv("PROXRL_FAULT")


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_an_actor_run_stopped_after_a_checkpoint_resumes_on_the_same_episodes(
    case, local_ray, tmp_path, monkeypatch, capsys
):
    """Stopped (Ctrl-C) right after its second checkpoint, in the middle of the actors' episodes and with a
    rollout in flight (fixed lag), and resumed: the records equal an uninterrupted run's, row for row. Resumed
    without the actors' record (the rollouts in flight dropped, the episodes restarted), they differ, and one line
    says so."""
    config, options = RESUME_CASES[case]
    run_cfg = dataclasses.replace(RESUMED, **options)
    reference = _resume_run(config, dataclasses.replace(run_cfg, out=tmp_path / "reference"))
    _stopped_after_second_checkpoint(config, dataclasses.replace(run_cfg, out=tmp_path / "run"), monkeypatch)
    shutil.copytree(tmp_path / "run", tmp_path / "without")
    capsys.readouterr()
    assert _resume_run(config, dataclasses.replace(run_cfg, resume=tmp_path / "run")) == reference
    assert "fresh resets" not in capsys.readouterr().err
    monkeypatch.setattr(ActorRunner, "_replay", lambda self, host: "(the record left out)")
    metrics, _ = _resume_run(config, dataclasses.replace(run_cfg, resume=tmp_path / "without"))
    assert "(the record left out); its episodes restart from fresh resets" in capsys.readouterr().err
    cut = sum(int(row["step"]) <= 256 for row in metrics)  # the rows before the second checkpoint
    assert metrics[:cut] == reference[0][:cut] and metrics[cut:] != reference[0][cut:]


def test_an_async_actor_run_resumes_with_its_rollouts_in_flight(local_ray, tmp_path, monkeypatch, capsys):
    """The async schedule depends on timing, so its records cannot be compared; its resume keeps every actor's
    request in flight and the actors' episodes (no restart line), and the run completes."""
    config = override(APPOConfig(), **TINY)
    _stopped_after_second_checkpoint(config, dataclasses.replace(RESUMED, out=tmp_path / "run"), monkeypatch)
    meta = read_checkpoint(tmp_path / "run" / CHECKPOINT).metadata["host"]
    assert meta["schedule"] == "async" and len(meta["inflight"]) == 2 and len(meta["actors"]) == 2
    capsys.readouterr()
    metrics, evals = _resume_run(config, dataclasses.replace(RESUMED, resume=tmp_path / "run"))
    assert "fresh resets" not in capsys.readouterr().err
    assert len(metrics) == 12 and len(evals) == 3
