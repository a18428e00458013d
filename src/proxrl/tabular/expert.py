"""The expert (full-information) setting: collect ``r_k``, estimate ``R̂_k = r_k``, take a proximal step.

Each round ``k`` the learner plays ``π_k = π_θk``, earns ``⟨π_k, r_k⟩``, then sees the whole vector
``r_k``. The algorithms (lecture, "Policy Learning in the Expert Setting")::

    EW :  θ_{k+1}(a) = θ_k(a) + η A_θk(a)                 (≡ π_{k+1} ∝ π_k exp(η r_k))
    PG :  θ_{k+1}(a) = θ_k(a) + η π_θk(a) A_θk(a)
    NPG:  θ_{k+1}    = θ_k + η F_θk⁺ ∇_θ V^{π_θk}         (= EW up to a constant shift of θ)

where ``A_θ(a) = r(a) − Σ_b π_θ(b) r(b)``. Everything here is pure: :func:`run` is one ``lax.scan``
and :func:`sweep` vmaps it over step sizes and seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from proxrl.errors import check_choice, check_int_at_least, check_policy, check_positive_all
from proxrl.prox import ProxStep
from proxrl.tabular import softmax
from proxrl.tabular import steps as softmax_table
from proxrl.tabular.rewards import RewardModel
from proxrl.types import Array, PRNGKey, TableBatch

#: Expert-setting algorithms, by name: each maps a (possibly traced) η to a ProxStep.
ALGORITHMS: dict[str, Callable[[Array | float], ProxStep]] = {
    "ew": softmax_table.exponential_weights,
    "pg": softmax_table.policy_gradient,
    "npg": softmax_table.natural_policy_gradient,
}


class ExpertTrace(NamedTuple):
    """Per-round record of one run (leading axis: rounds ``[T]``; plus any vmapped axes in front)."""

    reward: Array  # ⟨π_k, r_k⟩: the learner's expected reward on the realised vector
    expected: Array  # ⟨π_k, E r_k⟩
    pi: Array | None  # π_k, [T, A] (only when recorded)
    kl: Array  # KL(π_{k+1}, π_k)


class ExpertResult(NamedTuple):
    total_reward: Array  # Σ_k ⟨π_k, r_k⟩
    final_pi: Array  # π_T, [A]
    trace: ExpertTrace


def run(
    step: ProxStep,
    rewards: RewardModel,
    theta0: Array,
    num_rounds: int,
    key: PRNGKey,
    record_pi: bool = False,
) -> ExpertResult:
    """Play ``num_rounds`` rounds of the expert problem with one proximal step rule."""

    def round_(carry, inputs):
        theta, state = carry
        t, k_t = inputs
        k_r, k_step = jax.random.split(k_t)
        pi_t = softmax.pi(theta)
        r_t = rewards.sample(k_r, t)
        theta, state, metrics = step.update(theta, state, TableBatch(q=r_t), k_step)
        out = ExpertTrace(
            reward=pi_t @ r_t,
            expected=pi_t @ rewards.expected(t),
            pi=pi_t if record_pi else None,
            kl=metrics["kl"],
        )
        return (theta, state), out

    keys = jax.random.split(key, num_rounds)
    (theta, _), trace = jax.lax.scan(round_, (theta0, step.init(theta0)), (jnp.arange(num_rounds), keys))
    return ExpertResult(trace.reward.sum(), softmax.pi(theta), trace)


def sweep(
    algo: str,
    rewards: RewardModel,
    init_pi: Array,
    num_rounds: int,
    record_pi: bool = False,
) -> Callable[[Array, Array], ExpertResult]:
    """A jitted ``f(etas[E], keys[N]) -> ExpertResult`` with leading axes ``[E, N]``.

    One compiled call runs every (η, seed) pair; η is traced, so a new grid does not recompile.
    """
    check_choice("algorithm", algo, tuple(ALGORITHMS))
    check_int_at_least("rounds", num_rounds, 1)
    rewards.check_horizon(num_rounds)
    theta0 = softmax.from_probs(jnp.asarray(check_policy("initial policy", init_pi, rewards.num_actions)))

    def one(eta: Array, key: PRNGKey) -> ExpertResult:
        return run(ALGORITHMS[algo](eta), rewards, theta0, num_rounds, key, record_pi)

    compiled = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))

    def call(etas: Array, keys: Array) -> ExpertResult:
        check_positive_all("eta", etas)
        return compiled(jnp.asarray(etas, jnp.float32), keys)

    return call
