"""Implicit policies a = g_θ(s, ξ): evolution strategies (returns only) and the implicit actor-critic (through Q).

The ES learning checks run on gymnax CartPole-v1 (5 seeds in two vmapped calls, 20 generations of 32 members ×
1000 steps = 640k environment steps per seed) and Pendulum-v1 (``--preset pendulum``: 3 seeds in one vmapped call,
300 generations of 64 × 1000 steps = 19.2M steps per seed).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from helpers import assert_learns, assert_seeds_differ_and_repeat, rounded, train_seeds
from proxrl.cli import main
from proxrl.config import override
from proxrl.deep.implicit import ac, es
from proxrl.deep.implicit.policy import ImplicitNetwork, ImplicitPolicy, implicit_policy
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, make_jax_env
from proxrl.deep.loops import SEED_AXIS, Normalization, loop_init
from proxrl.deep.off_policy import sac, td3
from proxrl.deep.off_policy.common import CriticBatch
from proxrl.deep.on_policy import ppo
from proxrl.errors import ConfigError
from proxrl.prox.solvers import linear_anneal
from proxrl.prox.zeroth_order import zeroth_order_step
from proxrl.run.presets import PRESETS
from proxrl.run.train import make_evaluate, make_train
from proxrl.types import Transition

OBS = BoxSpace(np.full(3, -np.inf, np.float32), np.full(3, np.inf, np.float32), (3,))
ACT = BoxSpace(np.array([-1.0], np.float32), np.array([1.0], np.float32), (1,))


# ------------------------------------------------------------------------------------------ ES: the estimate


def test_episode_fitness_scores_only_episodes_inside_the_rollout():
    reward = jnp.ones((6, 3))
    done = jnp.array(
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], bool
    )  # env 0: ends at 1 and 4; env 1: ends at 2; env 2: ends at 5
    fresh = jnp.array([True, False, False])
    fitness, count, steps, fresh_next = es.episode_fitness(reward, done, fresh)
    # env 0: episodes of 2 (fresh start) and 3 steps; env 1: its first episode started before the rollout,
    # the next one (3 steps) does not end; env 2: no episode both starts and ends inside
    np.testing.assert_allclose(fitness, [2.5, 0.0, 0.0])
    np.testing.assert_array_equal(count, [2, 0, 0])
    np.testing.assert_array_equal(steps, [5, 0, 0])
    np.testing.assert_array_equal(fresh_next, [False, False, True])
    # first_only (after a reset, every environment fresh): each environment's first episode only
    first = es.episode_fitness(
        reward * jnp.arange(1.0, 7.0)[:, None], done, jnp.ones(3, bool), first_only=True
    )
    np.testing.assert_allclose(first.fitness, [1 + 2, 1 + 2 + 3, 1 + 2 + 3 + 4 + 5 + 6])
    np.testing.assert_array_equal(first.episodes, [1, 1, 1])
    np.testing.assert_array_equal(first.steps, [2, 3, 6])


def _first_obs_recorder(learner):
    """The learner, with metric ``first_obs`` = the largest |observation| at each rollout's first step."""

    def learn(state, traj):
        state, metrics = learner.learn(state, traj)
        return state, dict(metrics, first_obs=jnp.max(jnp.abs(traj.obs[0])))

    return learner._replace(learn=learn)


@pytest.mark.parametrize("backend", ["gymnax", "gymnasium"])
def test_score_first_episodes_resets_every_generation_and_scores_each_member_once(backend):
    """score_episodes "first" (ARS): every rollout starts from reset states (CartPole's initial states lie in
    [−0.05, 0.05]⁴, where a random policy's states leave after a few steps), each of the 8 members is scored on
    exactly one episode, steps_scored counts that episode's steps, and the observation statistics take in the
    states of those episodes only."""
    from proxrl.deep.gym_envs import make_gym_env
    from proxrl.deep.loops import Normalization, env_for, run_updates
    from proxrl.run.host import HostRunner

    config = override(
        es.ESConfig(), num_envs=8, num_steps=500, hidden=(4,), score_episodes="first", sigma=0.5
    )
    if backend == "gymnax":
        env = env_for("CartPole-v1")
        learner = _first_obs_recorder(es.make_learner(config, env.observation_space, env.action_space))
        assert learner.episodic
        state, metrics = jax.jit(lambda k: run_updates(learner, env, Normalization(), k, 3))(
            jax.random.key(0)
        )
        stats = state.carry.learner.obs_stats
    else:
        spaces = make_gym_env("CartPole-v1", num_envs=1)
        learner = es.make_learner(config, spaces.observation_space, spaces.action_space)
        runner = HostRunner(_first_obs_recorder(learner), "CartPole-v1", 1, Normalization(), 1, 0)
        carry = runner.init(jax.random.split(jax.random.key(0), 1))
        carry, metrics = runner.chunk(carry, 3)
        metrics = {k: np.asarray(v)[0] for k, v in metrics.items()}
        stats = jax.tree.map(lambda a: np.asarray(a)[0], carry.learner.obs_stats)
    assert np.all(np.asarray(metrics["first_obs"]) <= 0.05), metrics["first_obs"]
    np.testing.assert_array_equal(metrics["episodes_scored"], 8)  # one per member: CartPole truncates at 500
    steps = np.asarray(metrics["steps_scored"])
    assert np.all((steps >= 8 * 8) & (steps <= 8 * 500)), steps  # CartPole's episodes last 8 steps or more
    assert float(stats.count) == float(
        np.sum(steps)
    )  # the observation statistics saw the scored episodes only


def test_score_first_episodes_refuses_env_runner_actors():
    from proxrl.run.train import RunConfig, make_runner

    config = override(es.ESConfig(), num_envs=8, num_steps=60, score_episodes="first")
    with pytest.raises(ConfigError, match="leave out --num-actors"):
        make_runner(config, "CartPole-v1", RunConfig(num_actors=1, backend="gymnasium"))


@pytest.fixture(scope="module")
def one_step_es():
    """ES on a deterministic one-step problem: a linear policy a = g_θ(s₀) (no noise input) in [−1, 1], reward
    −(a − 0.5)², every member scored on one episode of one step; shaping none and the step θ_k + 1·ĝ, so the step
    is the estimate itself."""
    pairs, sigma = 2000, 0.1
    cfg = override(
        es.ESConfig(),
        num_envs=2 * pairs,
        num_steps=1,
        linear=True,
        noise_dim=0,
        obs_norm=False,
        shaping="none",
        solver="sgd",
        lr=1.0,
        sigma=sigma,
    )
    learner = es.make_learner(cfg, OBS, ACT)
    s0 = jnp.array([0.5, -1.0, 2.0])
    obs = jnp.tile(s0, (2 * pairs, 1))
    state = learner.init(jax.random.key(0), obs)
    state = state._replace(theta=jax.tree.map(lambda x: x + 0.3, state.theta))  # away from the optimum
    state = state._replace(
        members=ravel_pytree(state.theta)[0] + sigma * jnp.concatenate([state.eps, -state.eps])
    )
    action = learner.act(state, obs, jax.random.key(1))
    reward = -((action[:, 0] - 0.5) ** 2)
    ones = jnp.ones((1, 2 * pairs), bool)
    traj = Transition(obs[None], action[None], reward[None], ones, ~ones, obs[None])
    new, metrics = learner.learn(state, traj)
    policy = implicit_policy(cfg.network, ACT, "ES")
    flat, unravel = ravel_pytree(state.theta)

    def J(p):  # the return of the policy with flat parameters p
        return -((policy.apply(unravel(p), s0[None], jnp.zeros((1, 0)))[0, 0] - 0.5) ** 2)

    return dict(
        state=state, new=new, metrics=metrics, reward=reward, J=J, flat=flat, pairs=pairs, sigma=sigma
    )


def test_es_step_is_the_mean_of_the_two_point_estimates(one_step_es):
    c = one_step_es
    p = c["pairs"]
    per_pair = ((c["reward"][:p] - c["reward"][p:]) / (2 * c["sigma"]))[:, None] * c["state"].eps
    step = ravel_pytree(c["new"].theta)[0] - c["flat"]
    np.testing.assert_allclose(step, per_pair.mean(axis=0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(c["metrics"]["scored"], 1.0)


def test_es_gradient_matches_finite_differences_of_the_smoothed_return(one_step_es):
    """ĝ against central differences of J_σ(θ) = E J(θ + σε), J_σ estimated by Monte Carlo with common random
    numbers (the same 200k directions on both sides); tolerance 5 standard errors of ĝ (from its per-pair
    spread) plus the finite-difference estimate's own error."""
    c = one_step_es
    p, sigma, J, flat = c["pairs"], c["sigma"], c["J"], c["flat"]
    per_pair = ((c["reward"][:p] - c["reward"][p:]) / (2 * sigma))[:, None] * c["state"].eps
    g_es, se = per_pair.mean(axis=0), per_pair.std(axis=0) / np.sqrt(p)
    eps = jax.random.normal(jax.random.key(9), (200_000, flat.size))
    j_sigma = jax.jit(lambda th: jnp.mean(jax.vmap(lambda e: J(th + sigma * e))(eps)))
    h = 1e-2
    fd = np.array(
        [(j_sigma(flat.at[i].add(h)) - j_sigma(flat.at[i].add(-h))) / (2 * h) for i in range(flat.size)]
    )
    grad_j = np.asarray(jax.grad(J)(flat))
    print(
        "ES",
        np.round(g_es, 4),
        "± ",
        np.round(se, 4),
        " FD of J_σ",
        np.round(fd, 4),
        " ∇J",
        np.round(grad_j, 4),
    )
    assert np.all(np.abs(g_es - fd) <= 5 * se + 2e-3), (g_es, fd, se)
    assert np.linalg.norm(fd) > 20 * np.max(se)  # a real gradient, not noise


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_es_annealed_step(solver):
    """With anneal_lr the step of generation k of K is the unannealed one with η_k = lr·(1 − k/K): exactly
    θ_k + η_k ĝ_k for "sgd", an Adam step scaled by (1 − k/K) for "adam"; it needs the run's budget."""
    cfg = override(es.ESConfig(), num_envs=4, num_steps=10, lr=0.1, solver=solver)
    theta = {"w": jnp.ones(3)}
    batch = es.EstimateBatch({"w": jnp.array([1.0, -2.0, 3.0])})
    annealed = es.make_learner(
        override(cfg, anneal_lr=True), OBS, ACT, total_steps=4 * 40
    )  # K = 4 generations
    assert annealed.name == "es"
    plain, decayed = zeroth_order_step(0.1, solver), zeroth_order_step(linear_anneal(0.1, 4), solver)
    s_plain, s_decayed = plain.init(theta), decayed.init(theta)
    for k in range(4):
        t_plain, s_plain, _ = plain.update(theta, s_plain, batch, jax.random.key(0))
        t_decayed, s_decayed, metrics = decayed.update(theta, s_decayed, batch, jax.random.key(0))
        np.testing.assert_allclose(t_decayed["w"] - 1, (1 - k / 4) * (t_plain["w"] - 1), rtol=1e-4, atol=1e-6)
        assert float(metrics["beta"]) == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="anneal_lr needs the run's step budget"):
        es.make_learner(override(cfg, anneal_lr=True), OBS, ACT)
    # the learner itself: four generations on one rollout, K = total_steps // (num_envs·num_steps) = 4; the
    # gradient estimates depend on the keys and the fitness only, so both runs see the same ĝ_k
    k_obs, k_rew = jax.random.split(jax.random.key(3))
    traj = Transition(
        obs=jax.random.normal(k_obs, (10, 4, 3)),
        action=jnp.zeros((10, 4, 1)),
        reward=jax.random.normal(k_rew, (10, 4)),
        terminated=jnp.zeros((10, 4), bool).at[9].set(True),  # every member's episode scored
        truncated=jnp.zeros((10, 4), bool),
        next_obs=jax.random.normal(k_obs, (10, 4, 3)),
    )
    steps = {}
    for anneal in (False, True):
        learner = es.make_learner(override(cfg, anneal_lr=anneal), OBS, ACT, total_steps=4 * 40)
        state, learn, moves = learner.init(jax.random.key(0), traj.obs[0]), jax.jit(learner.learn), []
        for _ in range(4):
            new, _ = learn(state, traj)
            moves.append(ravel_pytree(new.theta)[0] - ravel_pytree(state.theta)[0])
            state = new
        steps[anneal] = moves
    for k in range(4):
        assert float(jnp.linalg.norm(steps[False][k])) > 1e-3
        np.testing.assert_allclose(steps[True][k], (1 - k / 4) * steps[False][k], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("crn", ["pairs", "population"])
def test_es_common_random_numbers(crn):
    """With crn "pairs" the members θ ± σε_i start from the same states, get the same noise inputs ξ and (with
    equal parameters) take the same actions throughout a rollout; "population" shares them across every member;
    "none" draws each environment's own."""
    cfg = override(es.ESConfig(), num_envs=8, num_steps=250, crn=crn, obs_norm=False)
    learner = es.make_learner(
        cfg, make_jax_env("Pendulum-v1").observation_space, make_jax_env("Pendulum-v1").action_space
    )
    env = make_jax_env("Pendulum-v1")
    state = loop_init(learner, env, Normalization(), jax.random.key(0))
    equal_members = state.carry.learner.members.at[4:].set(state.carry.learner.members[:4])
    carry = state.carry._replace(learner=state.carry.learner._replace(members=equal_members))
    traj, _, _ = env.rollout(
        jax.random.key(1),
        state.env_state,
        state.obs,
        lambda c, o, k: learner.act(c.learner, o, k),
        carry,
        250,
        learner.env_groups,
    )  # 250 steps: one episode ends (at 200) and the next starts from shared reset keys
    obs, action = np.asarray(traj.obs), np.asarray(traj.action)
    np.testing.assert_array_equal(obs[:, :4], obs[:, 4:])
    np.testing.assert_array_equal(action[:, :4], action[:, 4:])
    assert not np.allclose(obs[:, 0], obs[:, 1])  # different pairs, different episodes
    if crn == "population":
        np.testing.assert_array_equal(state.obs, np.broadcast_to(state.obs[:1], state.obs.shape))
    plain = loop_init(
        es.make_learner(override(cfg, crn="none"), env.observation_space, env.action_space),
        env,
        Normalization(),
        jax.random.key(0),
    )
    assert not np.allclose(plain.obs[:4], plain.obs[4:])


# ------------------------------------------------------------------------------------------ ES: learning


@pytest.fixture(scope="module")
def cartpole_runs():
    cfg = override(es.ESConfig(), num_envs=32, num_steps=1000)
    train = jax.jit(jax.vmap(make_train(cfg, "CartPole-v1", 640_000), axis_name=SEED_AXIS))
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, "CartPole-v1", episodes=10)))
    return train_seeds(train, evaluate, lanes=3)


def test_es_learns_cartpole(cartpole_runs):
    fitness = np.nanmean(cartpole_runs.metrics[0]["fitness_mean"][:, :2], axis=1)
    print(f"ES CartPole-v1: population fitness in the first two generations per seed {rounded(fitness)}")
    assert np.all(fitness < 100), fitness
    # measured here (2 cores), per seed: 500.0 × 5
    # the floor sits well under the ceiling of 500, so three seeds need not all be perfect on another host
    assert_learns(cartpole_runs.returns, 400.0, "ES CartPole-v1, 20 generations of 32 × 1000 steps")
    assert_seeds_differ_and_repeat(cartpole_runs, "fitness_mean")
    assert np.all(cartpole_runs.metrics[0]["scored"] == 1.0)  # 1000 ≥ 2 × 500 steps: every member scored


PENDULUM_SEEDS = 3
"""Seeds of the Pendulum check, in one vmapped call: 3 × 19.2M steps cost ≈ 50 s CPU (4 took 74 s wall at load 6)."""


@pytest.fixture(scope="module")
def pendulum_runs():
    """``--preset pendulum`` on ``PENDULUM_SEEDS`` seeds in one vmapped call: metrics, the deterministic evaluation
    (20 episodes, ξ = 0) of each, and the wall time. The seeds are the first of ``split(key(4), 12)`` (evaluated on
    ``split(key(1), 12)``), fresh seeds of bench/RESULTS.md's check (the search tuned on ``split(key(0))``)."""
    preset = PRESETS["es"]["pendulum"]
    cfg = override(es.ESConfig(), **preset.algo)
    train = jax.jit(jax.vmap(make_train(cfg, "Pendulum-v1", preset.run["total_steps"]), axis_name=SEED_AXIS))
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, "Pendulum-v1", episodes=20)))
    start = time.perf_counter()
    seeds = jax.random.split(jax.random.key(4), 12)[:PENDULUM_SEEDS]
    state, metrics = jax.block_until_ready(train(seeds))
    returns = np.asarray(evaluate(state, jax.random.split(jax.random.key(1), 12)[:PENDULUM_SEEDS]))
    return metrics, returns, time.perf_counter() - start


def test_es_learns_pendulum(pendulum_runs):
    """Pendulum-v1 ≥ −300 with the preset (common random numbers within pairs, raw observations, Adam 0.05).

    Criterion: at least 2 of the 3 seeds reach −300, and the median reaches −250. Measured with this setting
    (bench/RESULTS.md, "Evolution strategies against evosax and the ARS paper"): 46 of 48 seeds reach −300 (12
    tuning seeds, 12 of split(key(3)), 22 of 24 fresh ones), the successes at −233 or above, the failures near −840;
    these three gave −152, −142, −209 in that check. One failing seed is allowed because failures do happen (about 1 seed in
    24), and the runs are chaotic (another host's rounding is another seed): with a per-seed success probability p,
    2 of 3 fail with probability 3p(1 − p)² + (1 − p)³, 0.5 % at p = 46/48 and 4.3 % at p = 0.875 (the lower
    95 % bound that 46 of 48 leave); the median bound adds nothing to that risk, since no success ended below −250.
    Demanding all 3 seeds would fail with probability 1 − p³, 12 % at p = 46/48."""
    metrics, returns, seconds = pendulum_runs
    print(f"ES Pendulum-v1, --preset pendulum, {PENDULUM_SEEDS} seeds: {seconds:.0f} s wall with compilation")
    report = f"ES Pendulum-v1 (--preset pendulum): per seed {rounded(returns)}"
    print(report)
    assert np.all(np.isfinite(returns)), report
    assert np.sum(returns >= -300.0) >= 2 and np.median(returns) >= -250.0, report
    assert np.all(metrics["scored"] == 1.0)  # 1000 steps = 5 whole episodes of 200 per member
    first = np.asarray(metrics["fitness_mean"][:, 0])
    assert np.all(first < -900), first  # it starts far below the threshold (a random policy: ≈ −1200)


# ------------------------------------------------------------------------------------------ implicit AC


def test_implicit_ac_actor_gradient_is_the_reparameterised_one():
    """The actor step's gradient is ∇_θ (1/n) Σ_i Q_φ(s_i, g_θ(s_i, ξ_i)) with ξ drawn from the step's key."""
    cfg = override(
        ac.ImplicitACConfig(), hidden=(8,), noise_dim=2, learning_starts=1, batch_size=4, buffer_size=16
    )
    learner = ac.make_learner(cfg, OBS, ACT)
    obs = jax.random.normal(jax.random.key(0), (5, 3))
    agent = learner.init(jax.random.key(1), obs).agent
    actor = implicit_policy(cfg.network, ACT, "x")
    from proxrl.deep.networks import QNetwork

    critic = QNetwork(hidden=(8,), activation=jax.nn.relu)
    key = jax.random.key(2)
    step = ac.actor_step(
        ac.deterministic(lambda b, a: critic.apply(b.critic, b.obs, a)),
        lambda th, b, k: actor.apply(th, b.obs, jax.random.normal(k, (b.obs.shape[0], 2))),
        cfg.step.lr,
    )
    theta = agent.params["actor"]
    new, _, metrics = step.update(theta, step.init(theta), CriticBatch(obs, agent.params["critic"]), key)
    xi = jax.random.normal(key, (5, 2))
    manual = jax.grad(
        lambda th: jnp.mean(critic.apply(agent.params["critic"], obs, actor.apply(th, obs, xi)))
    )(theta)
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(manual)))
    np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-5)
    # Adam's first step ascends Q along that gradient, leaf by leaf: Δθ = η·g/(|g| + ε) (ε = 1e-8)
    lr = cfg.step.lr
    for moved, before, g in zip(
        jax.tree.leaves(new), jax.tree.leaves(theta), jax.tree.leaves(manual), strict=True
    ):
        np.testing.assert_allclose(moved - before, lr * g / (jnp.abs(g) + 1e-8), rtol=1e-3, atol=1e-3 * lr)
    assert float(metrics["surrogate_gain"]) > 0
    # the noise input moves the action: the policy is stochastic at initialisation
    a0 = actor.apply(agent.params["actor"], obs, jnp.zeros((5, 2)))
    a1 = actor.apply(agent.params["actor"], obs, xi)
    assert float(jnp.max(jnp.abs(a1 - a0))) > 1e-4


def test_implicit_ac_trains_and_repeats():
    cfg = override(ac.ImplicitACConfig(), hidden=(8,), learning_starts=100, buffer_size=200, batch_size=16)
    train = jax.jit(jax.vmap(make_train(cfg, "Pendulum-v1", 200), axis_name=SEED_AXIS))
    evaluate = jax.jit(jax.vmap(make_evaluate(cfg, "Pendulum-v1", episodes=2)))
    runs = train_seeds(train, evaluate, lanes=2)
    m = runs.metrics[0]
    assert np.all(np.isnan(m["critic_loss"][:, :99])) and np.all(np.isfinite(m["critic_loss"][:, 100:]))
    assert np.all(np.isfinite(m["noise_sensitivity"][:, 100:]))
    assert_seeds_differ_and_repeat(runs, "critic_loss")


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(num_envs=5), "must be even with antithetic pairs"),
        (dict(num_envs=1), "num_envs (the population) must be >= 2"),
        (dict(num_envs=1, antithetic=False), "num_envs (the population) must be >= 2"),
        (dict(sigma=0.0), "sigma must be a finite number > 0"),
        (dict(sigma=-0.1), "sigma must be a finite number > 0"),
        (dict(shift=float("nan")), "shift must be a finite number"),
        (dict(top_b=40), "top_b must be <= the number of pairs (32)"),
        (dict(shaping="fancy"), "shaping must be one of"),
        (dict(noise_dim=-1), "noise_dim must be an integer >= 0"),
        (dict(crn="always"), "crn must be one of"),
        (dict(crn="pairs", antithetic=False), "crn 'pairs' needs antithetic pairs"),
    ],
)
def test_es_bad_config_is_one_line(options, message):
    with pytest.raises(ConfigError) as err:
        override(es.ESConfig(), **options).validate()
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_cli_bad_input_exits_2(capsys):
    assert main(["train", "es", "--num-envs", "7"]) == 2
    assert "even with antithetic pairs" in capsys.readouterr().err
    for bad, message in [
        (["--sigma", "0"], "sigma must be a finite number > 0"),
        (["--sigma", "-0.5"], "sigma must be a finite number > 0"),
        (["--num-envs", "1", "--no-antithetic"], "must be >= 2"),
    ]:
        assert main(["train", "es", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert main(["train", "implicit_ac", "--env", "CartPole-v1"]) == 2
    assert "needs a continuous (Box) action space" in capsys.readouterr().err
    assert main(["train", "es", "--env", "Pendulum-v1", "--backend", "gymnasium", "--crn", "pairs"]) == 2
    err = capsys.readouterr().err.strip()
    assert "common random numbers (crn) need a gymnax environment" in err and "\n" not in err, err


@pytest.mark.parametrize(
    "config, message",
    [
        (ppo.PPOConfig(), "ppo cannot train an implicit policy: it needs log π_θ(a|s)"),
        (sac.SACConfig(), "sac cannot train an implicit policy: it needs log π_θ(a|s)"),
        (td3.TD3Config(), "td3 cannot train an implicit policy: its actor is a deterministic μ_θ(s)"),
    ],
)
def test_implicit_policy_with_an_explicit_algorithm_is_one_line(config, message):
    """An implicit policy (no density) handed to an algorithm that needs log π_θ, or whose actor has no noise
    input, fails before anything is built instead of being read as that algorithm's own network."""
    config = dataclasses.replace(config, network=ImplicitNetwork(hidden=tuple(config.network.hidden)))
    with pytest.raises(ConfigError) as err:
        make_train(config, "Pendulum-v1", 1000)
    assert message in str(err.value) and "use es or implicit_ac" in str(err.value)
    assert "\n" not in str(err.value)


def test_policy_shapes():
    net = ImplicitNetwork(linear=True, noise_dim=2)
    pol = implicit_policy(net, DiscreteSpace(3), "ES")
    assert isinstance(pol, ImplicitPolicy) and pol.discrete
    theta = pol.init(jax.random.key(0), jnp.zeros((4, 3)), jnp.zeros((4, 2)))
    a = pol.apply(theta, jnp.ones((4, 3)), jax.random.normal(jax.random.key(1), (4, 2)))
    assert a.shape == (4,) and a.dtype == jnp.int32
    with pytest.raises(ConfigError, match="finite action bounds"):
        implicit_policy(net, BoxSpace(np.array([-np.inf]), np.array([1.0]), (1,)), "ES")
