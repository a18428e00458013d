"""Finite MDPs and full-information policy learning: the lecture's theory as tests.

Identities that should hold to rounding run in float64 (``jax.enable_x64(True)`` inside the test);
everything else runs in the default float32.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.tabular import exact as alg
from proxrl.tabular import mdp as tb
from proxrl.tabular import mdps, softmax
from proxrl.tabular import steps as st


def random_theta(seed: int, S: int, A: int, scale: float = 1.0) -> jax.Array:
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=(S, A)))


# --- exact evaluation ------------------------------------------------------------------------------


def test_evaluation_solves_bellman_and_d_sums_to_horizon():
    with jax.enable_x64(True):
        m = mdps.random_mdp(0, 7, 3, 3, gamma=0.9)
        assert m.P.dtype == jnp.float64
        pi = softmax.pi(random_theta(1, 7, 3))
        ev = tb.evaluate(m, pi)
        P_pi = tb.transition_matrix(m, pi)
        np.testing.assert_allclose(ev.v, tb.policy_reward(m, pi) + 0.9 * P_pi @ ev.v, atol=1e-12)
        np.testing.assert_allclose(ev.d, m.rho + 0.9 * P_pi.T @ ev.d, atol=1e-12)
        assert float(ev.d.sum()) == pytest.approx(1 / (1 - 0.9), abs=1e-10)
        np.testing.assert_allclose(jnp.sum(pi * ev.adv, axis=1), 0.0, atol=1e-12)
        # d by its definition Σ_h γ^{h−1} Pr(s_h = s), truncated at 400 steps (γ^400 ≈ 5e-19)
        p, d = m.rho, jnp.zeros(7)
        for h in range(400):
            d, p = d + 0.9**h * p, p @ P_pi
        np.testing.assert_allclose(ev.d, d, atol=1e-12)
        assert float(ev.value) == pytest.approx(float(m.rho @ ev.v), abs=1e-14)


def test_value_iteration_and_policy_iteration_agree():
    with jax.enable_x64(True):
        m = mdps.random_mdp(3, 12, 4, 4, gamma=0.95)
        vi = tb.value_iteration(m, tol=1e-10)
        pi = tb.policy_iteration(m)
        assert float(vi.bound) <= 1e-10
        np.testing.assert_allclose(vi.v, pi.v, atol=1e-10)
        np.testing.assert_allclose(tb.bellman_optimality(m, pi.v), pi.v, atol=1e-12)
        np.testing.assert_array_equal(vi.pi, pi.pi)
        # no deterministic policy beats π*
        for seed in range(5):
            other = tb.greedy(random_theta(seed, 12, 4))
            assert np.all(np.asarray(tb.v_pi(m, other)) <= np.asarray(pi.v) + 1e-12)


# --- theory ---------------------------------------------------------------------------------------


def test_policy_gradient_theorem_equals_autodiff():
    with jax.enable_x64(True):
        for seed in range(3):
            m = mdps.random_mdp(seed, 6, 3, 2, gamma=0.8)
            theta = random_theta(seed + 10, 6, 3)
            auto = jax.grad(lambda th, mm=m: tb.value(mm, softmax.pi(th)))(theta)
            pg = alg.exact_gradient(m, theta)  # Σ_{s,a} d(s) ∇π(a|s) Q(s,a) = d π A
            assert float(jnp.abs(auto).max()) > 1e-3
            np.testing.assert_allclose(pg, auto, atol=1e-12)


def test_performance_difference_lemma_vmapped_over_mdps():
    with jax.enable_x64(True):
        stack = tb.stack([mdps.random_mdp(s, 8, 3, 3, gamma=0.9) for s in range(6)])
        key = jax.random.key(0)
        th1 = jax.random.normal(key, (6, 8, 3), jnp.float64) * 2
        th2 = jax.random.normal(jax.random.fold_in(key, 1), (6, 8, 3), jnp.float64) * 2

        def both(m, a, b):
            p1, p2 = softmax.pi(a), softmax.pi(b)
            return tb.value(m, p1) - tb.value(m, p2), alg.performance_difference(m, p1, p2)

        lhs, rhs = jax.jit(jax.vmap(both))(stack, th1, th2)
        assert float(jnp.abs(lhs).min()) > 1e-3
        np.testing.assert_allclose(lhs, rhs, atol=1e-8, rtol=0)


def test_npg_with_exact_fisher_equals_ew():
    """θ + η F⁺∇V with the dense (S·A)×(S·A) Fisher ``Σ_s d(s) E_a[∇log π ∇log πᵀ]`` moves π exactly as
    EW's θ + η Q does, and so does the library's block-wise NPG step, iteration after iteration."""
    with jax.enable_x64(True):
        S, A, eta = 5, 3, 0.7
        m = mdps.random_mdp(4, S, A, 3, gamma=0.85)
        theta = random_theta(5, S, A)
        ev = tb.evaluate(m, softmax.pi(theta))
        grad = jax.grad(lambda th: tb.value(m, softmax.pi(th)))(theta).reshape(-1)
        scores = jax.jacobian(lambda th: softmax.log_pi(th.reshape(S, A)))(theta.reshape(-1))  # [S, A, S·A]
        w = ev.d[:, None] * softmax.pi(theta)
        F = jnp.einsum("sa,sai,saj->ij", w, scores, scores)
        step = jnp.linalg.pinv(F, rtol=1e-10) @ grad
        np.testing.assert_allclose(
            softmax.pi(theta + eta * step.reshape(S, A)), softmax.pi(theta + eta * ev.q), atol=1e-10
        )
        npg, ew, closed = jax.jit(
            lambda mm, th: [alg.run(a, mm, th, 8, eta) for a in ("npg", "ew", "npg_closed")]
        )(m, theta)
        np.testing.assert_allclose(npg.trace.value, ew.trace.value, atol=1e-10)
        np.testing.assert_allclose(closed.trace.value, ew.trace.value, atol=1e-10)
        np.testing.assert_allclose(softmax.pi(npg.params), softmax.pi(ew.params), atol=1e-9)


def test_npg_regularised_runs_reach_the_ew_iterates_and_its_default_step_is_stable():
    """npg_reg's m inner gradient steps solve argmax Σ_s d(s)[⟨π_θ, Q⟩ − KL(π_θ, π_k)/η], whose maximiser is the
    EW step: with m = 1000 at the default α = η(1−γ), five iterations follow EW's to float32 rounding, and
    with only m = 100 they do not (so the check has power). On the chain (max_s d(s) ≈ 5.7 for γ = 0.9) the
    default α keeps the iteration stable where α = 1 breaks the rule α·max d/η ≲ 1 and drives |θ| up."""
    m = mdps.random_mdp(3, 6, 3, 3, gamma=0.8)
    theta0 = jnp.asarray(random_theta(0, 6, 3), jnp.float32)
    ew = alg.run("ew", m, theta0, 5, 0.5)
    errors = []
    for inner in (100, 1000):
        reg = jax.jit(lambda k=inner: alg.run("npg_reg", m, theta0, 5, 0.5, m=k))()
        errors.append(float(jnp.max(jnp.abs(softmax.pi(reg.params) - softmax.pi(ew.params)))))
    np.testing.assert_allclose(reg.trace.value, ew.trace.value, atol=5e-5)  # m = 1000
    assert errors[0] > 1e-2 and errors[1] < 1e-4
    chain = mdps.chain(length=8, gamma=0.9)
    gap = np.asarray(alg.run("npg_reg", chain, jnp.zeros((8, 2)), 30, 0.1, m=10).trace.gap)
    assert np.all(np.diff(gap) <= 1e-6)
    wild = alg.run("npg_reg", chain, jnp.zeros((8, 2)), 30, 0.1, 1.0, m=10)
    assert float(jnp.max(jnp.abs(wild.params))) > 5.0
    with pytest.raises(ConfigError, match="alpha"):
        alg.make_step("npg_reg", 0.1)


def test_ew_cumulative_regret_under_bound():
    """Σ_{k=1}^K (V*(ρ) − V^{π_k}(ρ)) ≤ (1/(1−γ))(ln A/η + ηK/(2(1−γ)²)) for rewards in [0, 1]."""
    S, A, K, gamma = 10, 4, 100, 0.9
    etas = np.array([0.05, 0.3, 2.0])
    stack = tb.stack([mdps.random_mdp(s, S, A, 3, gamma) for s in range(4)])
    runs = jax.vmap(jax.vmap(lambda mm, e: alg.run("ew", mm, jnp.zeros((S, A)), K, e), (None, 0)), (0, None))
    gap = np.asarray(jax.jit(runs)(stack, jnp.asarray(etas, jnp.float32)).trace.gap)  # [mdp, η, K]
    regret = gap.sum(axis=-1)
    bound = np.array([alg.regret_bound(gamma, A, e, K) for e in etas])
    assert np.all(gap >= -1e-4)
    assert np.all(regret > 0.05)
    assert np.all(regret <= bound[None, :]), (regret, bound)
    # the bound's best η gives the lecture's √K rate
    best = min(alg.regret_bound(gamma, A, e, K) for e in np.logspace(-3, 1, 200))
    assert best == pytest.approx(math.sqrt(2 * math.log(A) * K) / (1 - gamma) ** 2, rel=1e-2)


# --- NPG = EW at every accepted η, and the bounds ------------------------------------------------------------

#: The η grid of the NPG = EW tests: from small steps to the largest the lecture's command accepts.
ETA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, alg.MAX_ETA)
EXACT_NPG = ("npg", "npg_lstsq", "npg_closed")
GRID_MDPS, GRID_S, GRID_A, GRID_K, GRID_GAMMA = 100, 8, 4, 40, 0.9


def plain_npg_run(m: tb.FiniteMDP, theta0: jax.Array, num_iters: int, eta: jax.Array) -> jax.Array:
    """Gaps after 0..K updates of NPG with the *plain* block solve ``pinv(d(diag π − ππᵀ)) d π⊙A`` (cutoff about
    √ε·σ_max), the library's step before the log-space form: a reference the bound test must catch. The
    pseudo-inverse is Newton-Schulz's (a vmapped LAPACK SVD can deadlock XLA's CPU pool, see steps.py)."""
    iters = math.ceil(math.log2(37 * GRID_A / float(jnp.finfo(theta0.dtype).eps)))

    def direction(t, q, d):
        p = softmax.pi(t)
        fisher = d * (jnp.diag(p) - jnp.outer(p, p))
        return st.newton_schulz_pinv(fisher, iters) @ (d * p * (q - p @ q))

    def body(th, _):
        ev = tb.evaluate(m, softmax.pi(th))
        return th + eta * jax.vmap(direction)(th, ev.q, ev.d), ev.value

    th, values = jax.lax.scan(body, theta0, None, length=num_iters)
    return jnp.append(values, tb.value(m, softmax.pi(th)))


@pytest.fixture(scope="module")
def eta_grid_runs():
    """EW, the three exact NPG forms and the plain solve, from uniform π on 100 random MDPs (vmapped) at every η
    of :data:`ETA_GRID`, float64: gaps after T = 0..K updates ``[mdp, η, K + 1]`` and final policies."""
    with jax.enable_x64(True):
        keys = jax.random.split(jax.random.key(7), GRID_MDPS)
        stack = jax.vmap(lambda k: mdps.garnet(k, GRID_S, GRID_A, 3, GRID_GAMMA))(keys)
        v_star = jax.jit(jax.vmap(tb.optimal_value))(stack)
        etas = jnp.asarray(ETA_GRID)
        theta0 = jnp.zeros((GRID_S, GRID_A))
        gaps, pis = {}, {}
        for algo in ("ew", *EXACT_NPG):
            one = lambda mm, v, e, a=algo: alg.run(a, mm, theta0, GRID_K, e, v_star=v)
            res = jax.jit(jax.vmap(jax.vmap(one, (None, None, 0)), (0, 0, None)))(stack, v_star, etas)
            gaps[algo] = np.concatenate([np.asarray(res.trace.gap), np.asarray(res.final_gap)[..., None]], -1)
            pis[algo] = np.asarray(softmax.pi(res.params))
        plain = jax.vmap(jax.vmap(lambda mm, e: plain_npg_run(mm, theta0, GRID_K, e), (None, 0)), (0, None))
        gaps["plain"] = np.asarray(v_star)[:, None, None] - np.asarray(jax.jit(plain)(stack, etas))
    return gaps, pis


def test_npg_equals_ew_at_every_accepted_eta(eta_grid_runs):
    """On 100 random MDPs and every η up to the largest the lecture's command accepts, the pseudo-inverse and
    least-squares Fisher solves (log-space, :func:`proxrl.tabular.steps.fisher_direction`) and the closed form
    follow EW's gaps to 1e-9 and end at EW's policy, through iterates where most π(a|s) are 0 in float64; the
    plain block solve departs (by up to 5.2 in gap, measured), so the iterates do exercise the underflow."""
    gaps, pis = eta_grid_runs
    assert ETA_GRID[-1] == alg.MAX_ETA
    for algo in EXACT_NPG:
        diff = np.abs(gaps[algo] - gaps["ew"]).max(axis=(0, 2))
        print(algo, "max |gap − gap_EW| per η:", np.array2string(diff, precision=2))
        assert np.all(diff <= 1e-9), (algo, diff)
        np.testing.assert_allclose(pis[algo], pis["ew"], atol=1e-9, rtol=0)
    underflow = (pis["ew"] == 0).mean(axis=(0, 2, 3))  # fraction of π(a|s) that is exactly 0, per η
    print("fraction of final π(a|s) = 0.0 per η:", np.round(underflow, 3))
    assert underflow[0] == 0 and np.all(underflow[ETA_GRID.index(100.0) :] > 0.5)
    assert np.abs(gaps["plain"] - gaps["ew"]).max() > 0.5  # the plain solve is not EW there


def test_agarwal_npg_bound_holds_for_ew_and_every_exact_npg_solve(eta_grid_runs):
    """Agarwal et al. (2021, Thm 16) in the library's step size (:func:`proxrl.tabular.exact.npg_last_iterate_bound`,
    η_A = (1−γ)η): V*(ρ) − V^{π_{T+1}}(ρ) ≤ ln A/((1−γ)ηT) + 1/((1−γ)²T) for T = 1..K, every MDP and η. The plain
    block solve breaks it (measured: 21 of 36 000 (MDP, η, T) cases, up to 1.24× the bound), so the check bites."""
    gaps, _ = eta_grid_runs
    T = np.arange(1, GRID_K + 1)
    bound = np.array(
        [[alg.npg_last_iterate_bound(GRID_GAMMA, GRID_A, e, int(t)) for t in T] for e in ETA_GRID]
    )
    for algo in ("ew", *EXACT_NPG, "plain"):
        ratio = gaps[algo][:, :, 1:] / bound[None]
        print(f"{algo}: max gap/bound {ratio.max():.3f}, violations {(ratio > 1).sum()}")
        if algo == "plain":
            assert np.any(ratio > 1)
        else:
            assert np.all(ratio <= 1), (algo, ratio.max())
            assert ratio.max() > 0.1  # the bound is not vacuous here (0.23 measured)


def test_ew_regret_under_the_lectures_bound_with_its_constants(eta_grid_runs):
    """The lecture's theorem Σ_{k=1}^K (V*(ρ) − V^{π_k}(ρ)) ≤ (1/(1−γ)²)(ln A/η' + η'AK), rewards in [0, 1], with
    its step η' = η·r_max/(1−γ) (:func:`proxrl.tabular.exact.lecture_regret_bound`), for EW and every exact NPG
    form, at every η of the grid; and the library's tighter bound (:func:`proxrl.tabular.exact.regret_bound`),
    which never exceeds the lecture's."""
    gaps, _ = eta_grid_runs
    for algo in ("ew", *EXACT_NPG):
        regret = gaps[algo][:, :, :GRID_K].sum(-1)  # π_1 .. π_K
        for j, e in enumerate(ETA_GRID):
            lecture = alg.lecture_regret_bound(GRID_GAMMA, GRID_A, e, GRID_K)
            ours = alg.regret_bound(GRID_GAMMA, GRID_A, e, GRID_K)
            assert ours <= lecture
            assert np.all(regret[:, j] <= ours), (algo, e, regret[:, j].max(), ours)
    # the mapping's direction: at the lecture's best η' = √(ln A/(AK)), our η = η'(1−γ)/r_max
    best_lecture = math.sqrt(math.log(GRID_A) / (GRID_A * GRID_K))
    eta = best_lecture * (1 - GRID_GAMMA)
    assert alg.lecture_step(GRID_GAMMA, eta) == pytest.approx(best_lecture)
    want = 2 / (1 - GRID_GAMMA) ** 2 * math.sqrt(GRID_A * GRID_K * math.log(GRID_A))
    assert alg.lecture_regret_bound(GRID_GAMMA, GRID_A, eta, GRID_K) == pytest.approx(want)
    # with r_max = 2 (rewards in [0, 2]), the library's bound at η equals (r_max/(1−γ)²)(ln A/η' + η'K/2)
    g, r, e, K, A = 0.8, 2.0, 0.37, 50, 3
    ep = e * r / (1 - g)
    assert alg.regret_bound(g, A, e, K, r) == pytest.approx(
        r / (1 - g) ** 2 * (math.log(A) / ep + ep * K / 2)
    )


def test_api_ew_npg_reach_v_star_on_frozen_lake():
    """From uniform π, exact dynamics, γ = 0.99, slippery and not: API, EW and NPG (pseudo-inverse and
    least-squares Fisher solves, and the tabular closed form) end within 1e-6 of V*(ρ). The pseudo-inverse
    keeps singular values above √ε·σ_max: with the default cutoff, rounding-level singular values were
    inverted once π was nearly deterministic and the slippery run jumped to a gap of 0.54 at iteration 46
    on one host (docs/methods/tabular.md)."""
    with jax.enable_x64(True):
        both = tb.stack([mdps.frozen_lake(slippery=s, gamma=0.99) for s in (True, False)])
        v_star = jax.vmap(tb.optimal_value)(both)
        theta0 = jnp.zeros((2, 16, 4))
        runs = [("api", 1.0, 20, 1e-6), ("ew", 10.0, 200, 1e-6), ("npg_lstsq", 10.0, 200, 1e-6),
                ("npg_closed", 10.0, 200, 1e-6), ("npg", 10.0, 200, 1e-6)]  # fmt: skip
        for algo, eta, iters, tol in runs:
            f = jax.vmap(lambda mm, th, v, a=algo, e=eta, k=iters: alg.run(a, mm, th, k, e, v_star=v))
            res = jax.jit(f)(both, theta0, v_star)
            assert np.all(np.asarray(res.trace.gap[:, 0]) > 0.1), algo
            assert np.all(np.abs(np.asarray(res.final_gap)) <= tol), (algo, res.final_gap)


def test_softmax_pg_is_slow_on_the_chain_from_a_poor_start():
    """From π(right) = 0.05 in every state, softmax PG barely moves in 200 iterations; EW/NPG solve it."""
    m = mdps.chain(length=8, gamma=0.9)
    theta0 = softmax.from_probs(jnp.tile(jnp.array([0.05, 0.95]), (8, 1)))
    pg = alg.run("pg", m, theta0, 200, 1.0)
    ew = alg.run("ew", m, theta0, 200, 1.0)
    npg = alg.run("npg", m, theta0, 200, 1.0)
    assert float(pg.final_gap) > 0.5 * float(pg.trace.gap[0])
    assert float(ew.final_gap) < 1e-3 and float(npg.final_gap) < 1e-3


def test_sweep_vmaps_over_garnet_mdps_and_matches_single_runs():
    stack = tb.stack([mdps.random_mdp(s, 9, 3, 2, 0.9) for s in range(4)])
    theta0 = jnp.zeros((4, 9, 3))
    etas = jnp.array([0.1, 0.5, 1.0, 2.0])
    res = alg.sweep("pg", 30)(stack, theta0, etas)
    assert res.trace.gap.shape == (4, 30)
    one = alg.run("pg", mdps.random_mdp(2, 9, 3, 2, 0.9), theta0[2], 30, 1.0)
    np.testing.assert_allclose(res.trace.gap[2], one.trace.gap, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(np.asarray(res.trace.value), axis=1) >= -1e-5)  # small-step PG ascends


# --- builders --------------------------------------------------------------------------------------


def test_builders_known_values():
    with jax.enable_x64(True):
        fl = mdps.frozen_lake(slippery=False, gamma=0.9)
        assert fl.P.shape == (16, 4, 16)
        np.testing.assert_array_equal(np.nonzero(np.asarray(fl.terminal))[0], [5, 7, 11, 12, 15])
        assert float(tb.optimal_value(fl)) == pytest.approx(0.9**5, abs=1e-12)  # 6 moves, reward on the 6th
        cliff = mdps.toy_text("CliffWalking-v1", gamma=0.9)
        assert float(tb.optimal_value(cliff)) == pytest.approx(-(1 - 0.9**13) / 0.1, abs=1e-10)
        taxi = mdps.toy_text("Taxi-v4", gamma=0.9)
        assert taxi.P.shape == (501, 6, 501) and bool(taxi.terminal[500]) and int(taxi.terminal.sum()) == 1
        ch = mdps.chain(length=10, gamma=0.9)
        assert float(tb.optimal_value(ch)) == pytest.approx(0.9**9 / 0.1, abs=1e-10)
        gw = mdps.gridworld(gamma=0.9)
        term = np.asarray(gw.terminal)
        assert term.sum() == 3 and np.all(np.asarray(gw.P)[term][:, :, term].sum(-1) == 1)
        np.testing.assert_allclose(np.asarray(gw.P).sum(-1), 1.0)
        for m in (fl, cliff, taxi, gw):  # terminal states: absorbing, zero reward
            t = np.asarray(m.terminal)
            assert np.all(np.asarray(m.R)[t] == 0)
            assert np.all(np.asarray(m.P)[t, :, :][:, :, t].sum(-1) == 1)


# --- bad input -------------------------------------------------------------------------------------


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg and msg
    return msg


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"P": np.full((2, 2, 2), 0.6)}, "distribution"),
        ({"P": -np.eye(2)[None].repeat(2, 0).transpose(1, 0, 2)}, ">= 0"),
        ({"gamma": 1.0}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"P": np.zeros((0, 2, 0)), "R": np.zeros((0, 2))}, "at least one state"),
        ({"P": np.zeros((2, 0, 2)), "R": np.zeros((2, 0))}, "at least one action"),
        ({"R": np.zeros((3, 2))}, "R must have shape"),
        ({"rho": [0.5, 0.6]}, "rho"),
        ({"terminal": [True, False], "R": np.ones((2, 2))}, "terminal state 0"),
    ],
)
def test_bad_mdp_raises_one_line(kwargs, needle):
    args = {"P": np.eye(2)[:, None, :].repeat(2, 1), "R": np.zeros((2, 2)), "gamma": 0.9}
    args.update(kwargs)
    with pytest.raises(ConfigError) as e:
        tb.finite_mdp(**args)
    assert needle in _one_line(e)


def test_wrong_policy_shape_and_unknown_id_raise():
    m = mdps.chain(length=4)
    with pytest.raises(ConfigError) as e:
        tb.v_pi(m, jnp.full((4, 3), 1 / 3))
    assert "(4, 2)" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        alg.run("ew", m, jnp.zeros((3, 2)), 5)
    assert "theta0" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        mdps.toy_text("FrozenLake-v9")
    assert "FrozenLake-v1" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        alg.run("sgd", m, jnp.zeros((4, 2)), 5)
    _one_line(e)


# --- state aliasing: the short corridor -------------------------------------------------------------------------


def _corridor_optimum(gamma_m: tb.FiniteMDP) -> tuple[float, float]:
    """The best aliased π(right) and its value, by golden-section search on the exact value (float64)."""
    value = jax.jit(lambda p: tb.value(gamma_m, jnp.tile(jnp.stack([1 - p, p]), (4, 1))))
    lo, hi, r = 0.3, 0.9, (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - r * (hi - lo), lo + r * (hi - lo)
        lo, hi = (a, hi) if float(value(a)) < float(value(b)) else (lo, b)
    p = (lo + hi) / 2
    return p, float(value(p))


def test_short_corridor_exact_pg_converges_to_two_minus_root_two():
    """Sutton & Barto's Example 13.1 through the public API: one θ row for every state (obs = 0). The closed
    form v_0(p) = (2p − 4)/(p(1 − p)) peaks at p* = 2 − √2 with −(6 + 4√2) ≈ −11.657 (γ = 1); at the builder's
    γ = 0.99999 the best aliased p is p* + 1.2e-6 and its value 1.06e-3 higher (measured here by golden
    section). Exact PG from p = 1/2 reaches it (value to 1e-12); without aliasing the optimum is −3 (right, left, right)."""
    with jax.enable_x64(True):
        m, obs = mdps.short_corridor(), mdps.short_corridor_observations()
        p_star = mdps.SHORT_CORRIDOR_P_STAR
        assert p_star == pytest.approx(0.585786437627, abs=1e-12)
        assert mdps.short_corridor_value(p_star) == pytest.approx(-11.656854249492, abs=1e-9)
        assert mdps.short_corridor_value(p_star + 1e-4) < mdps.short_corridor_value(p_star)
        assert mdps.short_corridor_value(p_star - 1e-4) < mdps.short_corridor_value(p_star)
        p_gamma, v_gamma = _corridor_optimum(m)
        assert abs(p_gamma - p_star) < 2e-6 and 0 < v_gamma - mdps.SHORT_CORRIDOR_V_STAR < 1.1e-3
        # the exact evaluator at γ = 0.99999 agrees with the γ = 1 closed form to O(1 − γ)
        v_half = float(tb.value(m, jnp.full((4, 2), 0.5)))
        assert v_half == pytest.approx(mdps.short_corridor_value(0.5), abs=2e-3)  # −12
        assert float(tb.optimal_value(m)) == pytest.approx(-3.0, abs=1e-4)
        res = alg.run("pg", m, jnp.zeros((1, 2)), 300, 0.05, v_star=jnp.asarray(v_gamma), obs=obs)
        p = float(softmax.pi(res.params)[0, 1])
        print(
            f"exact PG: p = {p:.10f}, p*_γ = {p_gamma:.10f}, 2 − √2 = {p_star:.10f}; V = {float(res.trace.value[-1]):.6f}"
        )
        # the golden section locates p only to ~√(ε·|V|/V″) ≈ 1e-8 (V is flat at its peak); the value to rounding
        assert abs(p - p_gamma) < 5e-8 and abs(float(res.final_gap)) < 1e-12
        assert float(res.trace.gap[0]) > 0.3  # from v(1/2) ≈ −12


def test_short_corridor_ew_and_npg_on_the_aliased_table():
    """EW and NPG on the class table (tabular.aliasing.observe): still one identity (NPG = EW, the shared
    Fisher is Σ_o D(o)F(o)); both converge to the best aliased p for η < 2/|g′(x*)| ≈ 1.0001, the local
    stability limit of x ← x + η(q̄_R − q̄_L)(x) (measured: η ≤ 0.98 converges, 0.99 does not), and collapse
    to a deterministic policy that never terminates (V = −1/(1−γ) = −1e5) beyond it. The lecture's regret
    bound promises nothing here (its per-state Hedge argument needs a θ row per state)."""
    with jax.enable_x64(True):
        m, obs = mdps.short_corridor(), mdps.short_corridor_observations()
        p_gamma, v_gamma = _corridor_optimum(m)
        for eta, converges in ((0.3, True), (1.5, False)):
            ew, npg = (
                alg.run(a, m, jnp.zeros((1, 2)), 400, eta, v_star=jnp.asarray(v_gamma), obs=obs)
                for a in ("ew", "npg")
            )
            np.testing.assert_allclose(npg.trace.value, ew.trace.value, rtol=1e-9)
            p = float(softmax.pi(ew.params)[0, 1])
            if converges:
                assert abs(p - p_gamma) < 5e-8, p
            else:
                assert min(p, 1 - p) < 1e-6 and float(ew.trace.value[-1]) < -1e4, (p, ew.trace.value[-1])


def test_step_size_beyond_the_tested_range_and_bad_observation_maps_raise_one_line():
    from proxrl.lecture.mdp import MDPConfig

    MDPConfig(eta_ew=alg.MAX_ETA).validate()
    with pytest.raises(ConfigError) as e:
        MDPConfig(eta_ew=2 * alg.MAX_ETA).validate()
    assert "1e+06" in _one_line(e) and "MAX_ETA" in str(e.value)
    with pytest.raises(ConfigError) as e:
        MDPConfig(npg_ls_damping=-0.1).validate()
    assert "npg_ls_damping" in _one_line(e)
    m = mdps.short_corridor()
    with pytest.raises(ConfigError) as e:
        alg.run("pg", m, jnp.zeros((1, 2)), 3, obs=np.zeros(3, int))
    assert "4 states" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        alg.run("pg", m, jnp.zeros((1, 2)), 3, obs=np.array([0, 1, 0, 0]))
    assert "[0, 1)" in _one_line(e)
