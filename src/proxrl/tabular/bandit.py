"""Bandit feedback: draw ``a_1..a_n ∼ π_k``, see only ``r_t(a_i)``, estimate ``R̂_k``, take a proximal step.

The lecture's algorithms ("Policy Learning with Bandit Feedback") are one estimator, the
importance-weighted ``R̂_k`` of :mod:`proxrl.estimators.importance`, plugged into the proximal
steps of the expert setting::

    EXP3         θ_{k+1} = θ_k + η R̂_k                       (EW on R̂; n = 1)
    PG           θ_{k+1} = θ_k + η (1/n) Σ_i (r_i − b) ∇log π_θk(a_i)  =  θ_k + η ∇_θ⟨π_θ, R̂_k⟩|_θk
    NPG          θ_{k+1} = θ_k + η F_θk⁺ g_k                  (exact Fisher, sampled gradient)
    NPG-reg      m inner steps of size α on ⟨π_θ − π_θk, R̂_k⟩ − (1/η) KL(π_θ, π_θk)

The identity in the PG line (score-function gradient = gradient of the IPW surrogate) is why one
estimator serves all four; ``tests/test_bandit.py`` checks it.

Rounds: each draw is one round ``t`` (reward vector ``r_t``), so an iteration with ``n`` draws
consumes rounds ``kn, …, kn + n − 1``. Pseudo-regret after ``t`` rounds is
``max_a Σ_{s≤t} E r_s(a) − Σ_{s≤t} ⟨π_{k(s)}, E r_s⟩``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from proxrl.errors import ConfigError, check_int_at_least, check_policy, check_positive
from proxrl.estimators.importance import ipw_rewards
from proxrl.prox import ProxStep
from proxrl.tabular import softmax
from proxrl.tabular import steps as softmax_table
from proxrl.tabular.rewards import RewardModel
from proxrl.types import Array, PRNGKey, TableBatch


@dataclass(frozen=True)
class BanditAlgo:
    """A bandit learner: a proximal step rule plus the estimator's draws, baseline and shift."""

    name: str
    make_step: Callable[[float], ProxStep] = field(repr=False)
    eta: float
    n: int = 1
    """Draws per iteration."""
    baseline: float = 0.0
    """``b`` in ``R̂(a) = (1/n)Σ(r_i − b − c(a))1{a_i=a}/π(a) + c(a)``."""
    shift: float | tuple[float, ...] = 0.0
    """``c(a)``: a scalar for every arm or one value per arm (``1`` with rewards in [0,1]: loss-based)."""

    def validate(self, num_actions: int) -> None:
        check_positive(f"{self.name}: eta", self.eta)
        check_int_at_least(f"{self.name}: n", self.n, 1)
        c = np.asarray(self.shift, dtype=float)
        if c.ndim > 1 or (c.ndim == 1 and c.shape[0] != num_actions) or not np.all(np.isfinite(c)):
            raise ConfigError(
                f"{self.name}: shift must be a finite scalar or {num_actions} values, got {self.shift}"
            )
        if not np.isfinite(self.baseline):
            raise ConfigError(f"{self.name}: baseline must be finite, got {self.baseline}")


def exp3(eta: float, estimator: str = "loss", n: int = 1) -> BanditAlgo:
    """EXP3: EW on the importance-weighted estimate. ``estimator``: ``"loss"`` (``c = 1``) or ``"reward"``."""
    if estimator not in ("loss", "reward"):
        raise ConfigError(f"exp3 estimator must be one of loss, reward; got {estimator!r}")
    return BanditAlgo(
        f"EXP3 ({estimator})",
        softmax_table.exponential_weights,
        eta,
        n,
        0.0,
        1.0 if estimator == "loss" else 0.0,
    )


def pg(eta: float, n: int = 1, baseline: float = 0.0) -> BanditAlgo:
    """Softmax PG from samples, ``g = (1/n) Σ_i (r_i − b) ∇log π_θ(a_i)``."""
    return BanditAlgo("PG", softmax_table.policy_gradient, eta, n, baseline)


def npg(eta: float, n: int = 1, baseline: float = 0.0) -> BanditAlgo:
    """NPG in gradient form, ``θ += η F⁺ g`` with the exact Fisher ``F = diag π − ππᵀ``."""
    return BanditAlgo("NPG", softmax_table.natural_policy_gradient, eta, n, baseline)


def npg_reg(eta: float, n: int, m: int, alpha: float, baseline: float = 0.0) -> BanditAlgo:
    """NPG in regularisation form: ``m`` inner steps of size ``α`` on the KL-regularised IPW surrogate."""
    check_int_at_least("npg_reg: m", m, 1)
    check_positive("npg_reg: alpha", alpha)
    return BanditAlgo(
        f"NPG-reg (m={m})", lambda e: softmax_table.npg_regularised(e, alpha, m), eta, n, baseline
    )


def optimal_exp3_eta(num_actions: int, rounds: int) -> float:
    """``η = √(2 ln K / (K T))``, the tuning behind EXP3's bound ``√(2 T K ln K)``."""
    return float(np.sqrt(2.0 * np.log(num_actions) / (num_actions * rounds)))


def exp3_regret_bound(num_actions: int, eta: float, t: np.ndarray) -> np.ndarray:
    """``ln K / η + η K t / 2``: EXP3's (loss-based, rewards in [0,1]) expected-regret bound after t rounds.

    With ``η = √(2 ln K/(K T))`` it equals ``√(2 T K ln K)`` at ``t = T``.
    """
    return np.log(num_actions) / eta + eta * num_actions * np.asarray(t, dtype=float) / 2.0


class BanditResult(NamedTuple):
    regret: Array  # [T] cumulative pseudo-regret after each round
    final_pi: Array  # [A]
    kl: Array  # [K] KL(π_{k+1}, π_k) per iteration


def run(algo: BanditAlgo, rewards: RewardModel, theta0: Array, rounds: int, key: PRNGKey) -> BanditResult:
    """One run of ``rounds`` pulls (``rounds / n`` iterations)."""
    iters = rounds // algo.n
    step = algo.make_step(algo.eta)
    shift = jnp.asarray(algo.shift, jnp.float32)

    def iteration(carry, inputs):
        theta, state = carry
        k, key_k = inputs
        k_draw, k_rew, k_step = jax.random.split(key_k, 3)
        pi_k = softmax.pi(theta)
        t = k * algo.n + jnp.arange(algo.n)
        r_t = jax.vmap(rewards.sample)(jax.random.split(k_rew, algo.n), t)  # [n, A], only r_t(a_i) is seen
        a = jax.random.categorical(k_draw, theta, shape=(algo.n,))
        observed = r_t[jnp.arange(algo.n), a]
        r_hat = ipw_rewards(a, observed, pi_k, algo.baseline, shift)
        theta, state, metrics = step.update(theta, state, TableBatch(q=r_hat), k_step)
        mu_t = jax.vmap(rewards.expected)(t)  # [n, A]
        return (theta, state), (mu_t @ pi_k, mu_t, metrics["kl"])

    keys = jax.random.split(key, iters)
    (theta, _), (gain, mu, kl) = jax.lax.scan(
        iteration, (theta0, step.init(theta0)), (jnp.arange(iters), keys)
    )
    gain, mu = gain.reshape(-1), mu.reshape(-1, mu.shape[-1])  # [T], [T, A]
    regret = jnp.max(jnp.cumsum(mu, axis=0), axis=1) - jnp.cumsum(gain)
    return BanditResult(regret, softmax.pi(theta), kl)


def make_runner(
    algo: BanditAlgo, rewards: RewardModel, init_pi: Array | None, rounds: int
) -> Callable[[Array], BanditResult]:
    """A jitted ``f(keys[N]) -> BanditResult`` with a leading seed axis (one compiled call)."""
    num_actions = rewards.num_actions
    algo.validate(num_actions)
    check_int_at_least("rounds", rounds)
    rewards.check_horizon(rounds)
    if rounds % algo.n:
        raise ConfigError(
            f"rounds ({rounds}) must be a multiple of {algo.name}'s draws per iteration n = {algo.n}"
        )
    p0 = np.full(num_actions, 1.0 / num_actions) if init_pi is None else init_pi
    theta0 = softmax.from_probs(jnp.asarray(check_policy("initial policy", p0, num_actions), jnp.float32))
    return jax.jit(jax.vmap(lambda key: run(algo, rewards, theta0, rounds, key)))
