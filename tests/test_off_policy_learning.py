"""DDPG and TD3 learn gymnax Pendulum-v1 (fixed seeds, small networks so the file stays fast on CPU).

The issue's full acceptance check (TD3, default 256×256 networks, 5 seeds, 20k steps, ≥ −200 for ≥ 4 of 5)
is ``python bench/bench_off_policy.py td3 --seeds 5 --steps 20000``; its recorded result is in
docs/methods/td3.md. A random policy scores about −1200 on Pendulum-v1.
"""

from __future__ import annotations

import jax
import numpy as np

from proxrl.algos import ddpg, td3

STEPS = 10_000
SMALL = dict(total_timesteps=STEPS, buffer_size=STEPS, hidden=(64, 64), learning_starts=1_000)


def train_and_evaluate(module, make_trainer, config, seed):
    state, metrics = jax.jit(module.make_train(config, "Pendulum-v1"))(jax.random.key(seed))
    trainer = make_trainer(config, "Pendulum-v1", eval_episodes=10)
    final = float(jax.jit(trainer.evaluate)(state, jax.random.key(1_000 + seed)))
    episodic = np.asarray(metrics["episodic_return"])
    return final, float(np.nanmean(episodic[:1_000])), metrics


def test_td3_learns_pendulum():
    final, first, metrics = train_and_evaluate(td3, td3.make_td3, td3.TD3Config(**SMALL), seed=0)
    assert first < -900  # random warm-up actions
    assert final > -300, final
    # delayed actor updates: half the critic steps move the actor (policy_delay = 2)
    np.testing.assert_allclose(np.nanmean(np.asarray(metrics["actor_updated"])), 0.5, atol=1e-3)


def test_ddpg_improves_on_pendulum():
    final, first, _ = train_and_evaluate(ddpg, ddpg.make_ddpg, ddpg.DDPGConfig(**SMALL), seed=0)
    assert first < -900
    assert final > -600, final
