"""Expert setting: reward models, the run loop, and the lecture's claims on a small budget."""

import jax
import numpy as np
import pytest

from proxrl.errors import ConfigError
from proxrl.tabular import expert
from proxrl.tabular import rewards as R

KEYS = jax.random.split(jax.random.key(0), 200)


@pytest.fixture(scope="module")
def lecture_results():
    """EW and PG on Ber(0.6)/Ber(0.4) from [1e-4, 0.9999], 1000 rounds, 200 seeds, 3 step sizes."""
    etas = np.array([0.01, 1.0, 1000.0])
    model = R.bernoulli([0.6, 0.4])
    return {a: expert.sweep(a, model, [1e-4, 0.9999], 1000)(etas, KEYS) for a in ("ew", "pg")}


def test_lecture_claims_small_budget(lecture_results):
    ew, pg = lecture_results["ew"], lecture_results["pg"]
    ew_tot, pg_tot = np.asarray(ew.total_reward), np.asarray(pg.total_reward)
    pg_p1 = np.asarray(pg.final_pi[..., 0])
    # small η: PG never leaves action 2 (gains ~0.4/round: E total = 400, within 5 standard errors of the mean
    # over seeds, each seed's total having sd ≈ √(1000·0.24) ≈ 15.5); EW at η = 1 reaches ~590 of 600.
    assert pg_tot[0].mean() < 400 + 5 * pg_tot[0].std() / np.sqrt(pg_tot.shape[1])
    assert np.all(pg_p1[0] < 1e-3)
    assert ew_tot[1].mean() > 585
    # η = 1000: a share of PG seeds locks on action 2 (binomial: 200 seeds, ~1/3 each way).
    locked = np.mean(pg_p1[2] < 1e-3)
    assert 0.15 < locked < 0.55
    # EW ≥ PG seed by seed in mean at every η (common random numbers).
    assert np.all((ew_tot - pg_tot).mean(axis=1) >= 0)


def test_fixed_rewards_ew_matches_closed_form():
    """With fixed R, EW after k rounds is π_k ∝ π_1 exp(η k R) exactly."""
    model = R.fixed([0.6, 0.4, 0.1])
    res = expert.sweep("ew", model, [0.2, 0.5, 0.3], 7, record_pi=True)(np.array([0.9]), KEYS[:1])
    logits = np.log([0.2, 0.5, 0.3]) + 0.9 * 7 * np.array([0.6, 0.4, 0.1])
    want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(np.asarray(res.final_pi[0, 0]), want, rtol=1e-5)
    assert res.trace.pi.shape == (1, 1, 7, 3)


def test_sequence_and_gaussian_models():
    seq = R.sequence([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert seq.best_total(3) == 2.0
    np.testing.assert_array_equal(np.asarray(seq.sample(KEYS[0], 1)), [0.0, 1.0])
    g = R.gaussian([0.5, 0.2], 0.1)
    draws = np.asarray(jax.vmap(lambda k: g.sample(k, 0))(KEYS))
    assert np.all(np.abs(draws.mean(axis=0) - [0.5, 0.2]) < 5 * 0.1 / np.sqrt(len(KEYS)))


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [0.5, 0.5], 10)(np.array([0.0]), KEYS), "eta"),
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [0.5, 0.5], 10)(np.array([-1.0]), KEYS), "eta"),
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [-0.5, 1.5], 10), "initial policy"),
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [0.0, 0.0], 10), "sum to 1"),
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [0.2, 0.3, 0.5], 10), "length 2"),
        (lambda: expert.sweep("ew", R.bernoulli([0.6, 0.4]), [0.0, 1.0], 10), "probability > 0"),
        (lambda: expert.sweep("sgd", R.bernoulli([0.6, 0.4]), [0.5, 0.5], 10), "algorithm"),
        (lambda: expert.sweep("ew", R.sequence([[0.0, 1.0]] * 3), [0.5, 0.5], 10), "rounds"),
        (lambda: R.bernoulli([0.6, 1.4]), "[0, 1]"),
        (lambda: R.fixed([0.6, -2.0]), "[0, 1]"),
        (lambda: R.sequence([[0.2, 0.3], [0.1, 2.0]]), "reward sequence"),
        (lambda: R.sequence([0.2, 0.3]), "shape"),
        (lambda: R.gaussian([0.5, 0.2], [0.1, -1.0]), "std"),
    ],
)
def test_bad_input_one_line(call, fragment):
    with pytest.raises(ConfigError) as e:
        call()
    msg = str(e.value)
    assert fragment in msg and "\n" not in msg
