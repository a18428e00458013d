"""Estimators against Python-loop oracles, closed forms, and jit/vmap agreement."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.estimators import (
    discounted_returns,
    gae,
    n_step_returns,
    normalize_advantages,
    q_advantages,
    td_errors,
)

GAMMA = 0.9
T = 12


def random_stream(seed: int, t: int = T) -> dict[str, np.ndarray]:
    """A stream with terminations and truncations mixed in (never both at one step)."""
    rng = np.random.default_rng(seed)
    terminated = rng.random(t) < 0.2
    truncated = ~terminated & (rng.random(t) < 0.2)
    return {
        "r": rng.normal(size=t).astype(np.float32),
        "v_t": rng.normal(size=t).astype(np.float32),
        "v_next": rng.normal(size=t).astype(np.float32),
        "terminated": terminated,
        "truncated": truncated,
        "discount": (GAMMA * (1.0 - terminated)).astype(np.float32),
        "reset": terminated | truncated,
    }


# --- Python-loop oracles, written straight from the definitions -------------------------------------


def loop_returns(r, terminated, truncated, v_next, bootstrap):
    g, out = bootstrap, np.zeros(len(r))
    for t in reversed(range(len(r))):
        if terminated[t]:
            g = r[t]
        elif truncated[t]:
            g = r[t] + GAMMA * v_next[t]
        else:
            g = r[t] + GAMMA * g
        out[t] = g
    return out


def loop_n_step(r, terminated, truncated, v_next, n):
    t_len, out = len(r), np.zeros(len(r))
    for t in range(t_len):
        g, scale = 0.0, 1.0
        for i in range(n):
            k = t + i
            g += scale * r[k]
            if terminated[k]:
                break
            scale *= GAMMA
            if truncated[k] or i == n - 1 or k == t_len - 1:
                g += scale * v_next[k]
                break
        out[t] = g
    return out


def loop_gae(r, terminated, truncated, v_t, v_next, lam):
    adv, a = np.zeros(len(r)), 0.0
    for t in reversed(range(len(r))):
        not_term = 1.0 - terminated[t]
        delta = r[t] + GAMMA * not_term * v_next[t] - v_t[t]
        a = delta + GAMMA * lam * not_term * (1.0 - truncated[t]) * a
        adv[t] = a
    return adv


# --- oracles --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discounted_returns_matches_loop(seed):
    s = random_stream(seed)
    got = discounted_returns(s["r"], s["discount"], 0.7, reset_t=s["reset"], v_next=s["v_next"])
    want = loop_returns(s["r"], s["terminated"], s["truncated"], s["v_next"], 0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("seed", "n"), [(0, 1), (1, 3), (2, 5), (3, 40)])
def test_n_step_returns_matches_loop(seed, n):
    s = random_stream(seed)
    got = n_step_returns(s["r"], s["discount"], s["v_next"], n, reset_t=s["reset"])
    want = loop_n_step(s["r"], s["terminated"], s["truncated"], s["v_next"], n)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("seed", "lam"), [(0, 0.0), (1, 0.5), (2, 0.95), (3, 1.0)])
def test_gae_matches_loop(seed, lam):
    s = random_stream(seed)
    adv, ret = gae(s["r"], s["discount"], s["v_t"], s["v_next"], lam, s["reset"])
    want = loop_gae(s["r"], s["terminated"], s["truncated"], s["v_t"], s["v_next"], lam)
    np.testing.assert_allclose(adv, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, want + s["v_t"], rtol=1e-5, atol=1e-5)


# --- known answers --------------------------------------------------------------------------------------


def test_constant_reward_return_is_geometric_sum():
    r, d = jnp.ones(T), jnp.full(T, GAMMA)
    t = np.arange(T)
    want = (1 - GAMMA ** (T - t)) / (1 - GAMMA)
    np.testing.assert_allclose(discounted_returns(r, d), want, rtol=1e-6)
    # and the n-step target with V ≡ 1/(1−γ) (the true value of the infinite stream) is exact
    v = jnp.full(T, 1 / (1 - GAMMA))
    np.testing.assert_allclose(n_step_returns(r, d, v, 4), v, rtol=1e-5)


def consistent_values(s: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """V(s_{t+1}) equals the next step's V(s_t) inside an episode (what a rollout produces)."""
    v_next = np.where(s["reset"][:-1], s["v_next"][:-1], s["v_t"][1:])
    return {**s, "v_next": np.append(v_next, s["v_next"][-1]).astype(np.float32)}


def test_gae_lambda_one_is_mc_return_minus_v():
    # the λ = 1 sum telescopes, Σ γ^l (r + γV' − V) = Σ γ^l r − V(s_t), only if V(s_{t+1}) is the same
    # number in δ_t and δ_{t+1}
    s = consistent_values(random_stream(5))
    adv, ret = gae(s["r"], s["discount"], s["v_t"], s["v_next"], 1.0, s["reset"])
    mc = discounted_returns(s["r"], s["discount"], s["v_next"][-1], reset_t=s["reset"], v_next=s["v_next"])
    np.testing.assert_allclose(adv, mc - s["v_t"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ret, mc, rtol=1e-5, atol=1e-5)


def test_gae_lambda_zero_is_td_error_and_n1_is_td_target():
    s = random_stream(6)
    adv, _ = gae(s["r"], s["discount"], s["v_t"], s["v_next"], 0.0, s["reset"])
    delta = td_errors(s["r"], s["discount"], s["v_t"], s["v_next"])
    np.testing.assert_allclose(adv, delta, rtol=1e-6)
    n1 = n_step_returns(s["r"], s["discount"], s["v_next"], 1)
    np.testing.assert_allclose(n1 - s["v_t"], delta, rtol=1e-5, atol=1e-6)


def test_n_step_with_long_window_is_bootstrapped_mc_return():
    s = random_stream(7)
    no_end = np.zeros(T, bool)
    d = np.full(T, GAMMA, np.float32)
    long = n_step_returns(s["r"], d, s["v_next"], T + 3, reset_t=no_end)
    mc = discounted_returns(s["r"], d, s["v_next"][-1])
    np.testing.assert_allclose(long, mc, rtol=1e-5, atol=1e-5)


def test_two_step_hand_computed():
    # the lecture's r_1 + γ r_2 + γ² V(s_3) − V(s_1)
    r = jnp.array([1.0, 2.0, 3.0])
    d = jnp.array([GAMMA, GAMMA, GAMMA])
    v_next = jnp.array([10.0, 20.0, 30.0])
    got = n_step_returns(r, d, v_next, 2)
    want = [1 + GAMMA * 2 + GAMMA**2 * 20, 2 + GAMMA * 3 + GAMMA**2 * 30, 3 + GAMMA * 30]
    np.testing.assert_allclose(got, want, rtol=1e-6)


# --- the truncation rule --------------------------------------------------------------------------------


def test_truncation_bootstraps_and_termination_does_not():
    # one step, reward 1, V(next_obs) = 5
    r, v_t, v_next = jnp.array([1.0]), jnp.array([0.0]), jnp.array([5.0])
    truncated_d, terminated_d = jnp.array([GAMMA]), jnp.array([0.0])
    ended = jnp.array([True])
    adv_trunc, _ = gae(r, truncated_d, v_t, v_next, 0.95, ended)
    adv_term, _ = gae(r, terminated_d, v_t, v_next, 0.95, ended)
    np.testing.assert_allclose(adv_trunc, [1 + GAMMA * 5], rtol=1e-6)
    np.testing.assert_allclose(adv_term, [1.0], rtol=1e-6)
    ret_trunc = discounted_returns(r, truncated_d, 0.0, reset_t=ended, v_next=v_next)
    ret_term = discounted_returns(r, terminated_d, 0.0, reset_t=ended, v_next=v_next)
    np.testing.assert_allclose(ret_trunc, [1 + GAMMA * 5], rtol=1e-6)
    np.testing.assert_allclose(ret_term, [1.0], rtol=1e-6)


def test_reset_stops_recursion_across_episodes():
    # episode A truncated at t=1 (V(true final obs) = 4), episode B starts at t=2 with reward 100
    r = jnp.array([1.0, 1.0, 100.0])
    d = jnp.full(3, GAMMA)
    v_t, v_next = jnp.zeros(3), jnp.array([0.0, 4.0, 0.0])
    ended = jnp.array([False, True, False])
    adv, _ = gae(r, d, v_t, v_next, 1.0, ended)
    np.testing.assert_allclose(adv[:2], [1 + GAMMA * (1 + GAMMA * 4), 1 + GAMMA * 4], rtol=1e-6)
    n3 = n_step_returns(r, d, v_next, 3, reset_t=ended)
    np.testing.assert_allclose(n3[:2], adv[:2], rtol=1e-6)


# --- Q-based advantage and normalisation ----------------------------------------------------------------


def test_q_advantages():
    q = jnp.array([[1.0, 2.0, 4.0], [0.0, -1.0, 3.0]])
    pi = jnp.array([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5]])
    a = jnp.array([2, 1])
    np.testing.assert_allclose(q_advantages(q, pi, a), [4.0 - 2.0, -1.0 - 1.0], rtol=1e-6)
    # mean zero under π
    all_a = jnp.broadcast_to(jnp.arange(3), (2, 3))
    per_action = jax.vmap(q_advantages, in_axes=(None, None, 1), out_axes=1)(q, pi, all_a)
    np.testing.assert_allclose(jnp.sum(pi * per_action, axis=-1), [0.0, 0.0], atol=1e-6)


def test_normalize_advantages():
    x = jnp.array([1.0, 2.0, 3.0, 6.0])
    z = normalize_advantages(x)
    np.testing.assert_allclose([z.mean(), z.std()], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(z, (np.array(x) - 3.0) / np.sqrt(3.5), rtol=1e-6)


def test_bad_n_raises_config_error():
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        n_step_returns(jnp.ones(3), jnp.ones(3), jnp.ones(3), 0)


# --- jit and vmap ---------------------------------------------------------------------------------------


def test_jit_and_vmap_agree_with_single_streams():
    streams = [random_stream(s) for s in range(4)]
    batch = {k: np.stack([s[k] for s in streams]) for k in streams[0]}
    lams = jnp.array([0.0, 0.5, 0.9, 1.0])  # λ is traced, so it vmaps too

    def all_estimators(r, d, v_t, v_next, reset, lam):
        adv, ret = gae(r, d, v_t, v_next, lam, reset)
        return {
            "mc": discounted_returns(r, d, v_next[-1], reset_t=reset, v_next=v_next),
            "nstep": n_step_returns(r, d, v_next, 3, reset_t=reset),
            "td": td_errors(r, d, v_t, v_next),
            "adv": adv,
            "ret": ret,
        }

    args = [batch[k] for k in ("r", "discount", "v_t", "v_next", "reset")]
    batched = jax.jit(jax.vmap(all_estimators))(*args, lams)
    for i, s in enumerate(streams):
        single = all_estimators(s["r"], s["discount"], s["v_t"], s["v_next"], s["reset"], lams[i])
        for key, value in single.items():
            np.testing.assert_allclose(batched[key][i], value, rtol=1e-5, atol=1e-5, err_msg=key)
