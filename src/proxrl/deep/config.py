"""The config pieces deep algorithms share, named after the parts of the lecture's loop.

Each piece declares its options once and checks them once (``validate``); an algorithm's config
(a :class:`proxrl.config.Config`) is a handful of pieces, built with that algorithm's defaults::

    @dataclass(frozen=True)
    class PPOConfig(Config):
        rollout: Rollout = field(default_factory=lambda: Rollout(num_envs=4))
        network: PolicyNetwork = field(default_factory=PolicyNetwork)
        step: PPOStep = ...

| piece              | options                                          | the lecture's part                      |
|--------------------|--------------------------------------------------|-----------------------------------------|
| :class:`Rollout`   | num_envs, num_steps, gamma                        | data_k = collect(π_θk), discounted by γ |
| :class:`Network`   | hidden, activation (+ log_std_init, sigma, sigma_start, sigma_end, sigma_horizon: :class:`PolicyNetwork`) | the parameterisation π_θ, V_φ, Q_φ |
| :class:`Step`      | lr (+ max_grad_norm, anneal_lr, optimiser, rms_decay: :class:`PolicyStep`) | the policy step's size η and solver |
| :class:`Advantage` | norm_adv (+ gae_lambda: :class:`GAE`; + estimator, n_steps: :class:`AdvantageEstimator`) | the estimate Â_k |
| :class:`Entropy`   | ent_coef                                          | the surrogate's entropy bonus c·H(π_θ)  |

Critic, replay and algorithm-specific pieces live beside the algorithms that use them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn

from proxrl.errors import (
    ConfigError,
    check_choice,
    check_in_range,
    check_int_at_least,
    check_not_above,
    check_positive,
)
from proxrl.prox.solvers import PRECONDITIONERS
from proxrl.types import Array

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": nn.tanh, "relu": nn.relu}


@dataclasses.dataclass(frozen=True)
class Rollout:
    """What one update collects: T steps in each of B environments stepped in lockstep, discounted by γ."""

    num_envs: int = 8
    """Parallel environments B stepped in lockstep (vmapped)."""
    num_steps: int = 128
    """Steps T per environment between two updates; each update collects T·B transitions."""
    gamma: float = 0.99
    """Discount γ ∈ [0, 1]."""

    @property
    def size(self) -> int:
        """Transitions per update, N = T·B."""
        return self.num_envs * self.num_steps

    def validate(self) -> None:
        """``num_envs``, ``num_steps`` integers ≥ 1; γ ∈ [0, 1]."""
        check_int_at_least("num_envs", self.num_envs, 1)
        check_int_at_least("num_steps", self.num_steps, 1)
        check_in_range("gamma", self.gamma, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Network:
    """The multilayer perceptrons of the actor and of the critic(s), each separate."""

    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and critic MLPs."""
    activation: str = "tanh"
    """Hidden activation: "tanh" or "relu"."""

    def validate(self) -> None:
        """At least one hidden layer, each of width ≥ 1; a known activation."""
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        if len(self.hidden) == 0:
            raise ConfigError("hidden must list at least one layer width, got ()")
        for width in self.hidden:
            check_int_at_least("hidden layer width", width, 1)


SIGMAS = ("learned", "linear", "exponential")
"""How a Gaussian policy's σ is set: a parameter (learned), or a hyperparameter decreasing linearly or
geometrically over the run (the lecture's options 1 and 2)."""


@dataclasses.dataclass(frozen=True)
class PolicyNetwork(Network):
    """The actor and critic MLPs; the policy head is categorical on a discrete action set, diagonal Gaussian
    on a box, with σ a learned, state-independent parameter or (sigma "linear"/"exponential") a hyperparameter
    σ_k decreasing from sigma_start to sigma_end: σ_k = σ_0 + (σ_end − σ_0)·f or σ_0·(σ_end/σ_0)^f,
    f = min(k·T·B / sigma_horizon, 1) at update k."""

    log_std_init: float = 0.0
    """Initial log σ of the Gaussian policy when σ is learned (continuous actions)."""
    sigma: str = "learned"
    """Gaussian policy's σ: "learned" (a parameter) or a decreasing hyperparameter, "linear" or "exponential" (continuous actions)."""
    sigma_start: float = 1.0
    """Scheduled σ: its value σ_0 at the first update."""
    sigma_end: float = 0.5
    """Scheduled σ: its final value (≤ sigma_start), reached after sigma_horizon environment steps and kept."""
    sigma_horizon: int = 0
    """Scheduled σ: environment steps over which σ decays (0: the run's whole budget, --total-steps); update k uses σ at the k·T·B steps collected before it."""

    def validate(self) -> None:
        """The MLPs' checks; a known sigma; σ_start, σ_end > 0 with σ_end ≤ σ_start; horizon an integer ≥ 0."""
        super().validate()
        check_choice("sigma", self.sigma, SIGMAS)
        check_positive("sigma_start", self.sigma_start)
        check_positive("sigma_end", self.sigma_end)
        check_not_above("sigma_end", self.sigma_end, "sigma_start", self.sigma_start)
        check_int_at_least("sigma_horizon", self.sigma_horizon, 0)


@dataclasses.dataclass(frozen=True)
class Step:
    """The size η of the policy's proximal step (the learning rate of the optimiser that solves it)."""

    lr: float = 3e-4
    """Learning rate η of the policy step (its initial value when annealed)."""

    def validate(self) -> None:
        """lr > 0."""
        check_positive("lr", self.lr)


@dataclasses.dataclass(frozen=True)
class PolicyStep(Step):
    """The policy step's size η, solved by a clipped, preconditioned optimiser whose learning rate may be
    annealed."""

    max_grad_norm: float = 0.5
    """Clip the global gradient norm of each optimiser step (the policy's, and a critic fitted with it) to this value."""
    anneal_lr: bool = False
    """Decay the learning rate linearly from lr to 0 over the run's updates."""
    optimiser: str = "adam"
    """Preconditioner: "adam" (ε = 1e-5) or "rmsprop" (PyTorch-style, decay rms_decay, ε = 1e-5 outside the square root, as SB3's A2C)."""
    rms_decay: float = 0.99
    """RMSprop's decay α of the squared-gradient average (PyTorch's alpha)."""

    def validate(self) -> None:
        """lr > 0, max_grad_norm > 0, a known optimiser, rms_decay ∈ [0, 1)."""
        super().validate()
        check_positive("max_grad_norm", self.max_grad_norm)
        check_choice("optimiser", self.optimiser, PRECONDITIONERS)
        check_in_range("rms_decay", self.rms_decay, 0.0, 1.0, high_open=True)


@dataclasses.dataclass(frozen=True)
class Advantage:
    """How the advantage estimate Â_k is post-processed."""

    norm_adv: bool = False
    """Standardise the advantages (over each batch, or each minibatch where the step uses minibatches)."""

    def validate(self) -> None:
        """Nothing to check (a flag)."""


@dataclasses.dataclass(frozen=True)
class GAE(Advantage):
    """Â_k = GAE(λ) with V_φk: Σ_l (γλ)^l δ_{t+l}, δ_t = r_t + γV(s_{t+1}) − V(s_t)."""

    gae_lambda: float = 0.95
    """GAE λ ∈ [0, 1]: 0 gives the TD error, 1 the Monte Carlo (n-step) return minus V."""

    def validate(self) -> None:
        """λ ∈ [0, 1]."""
        check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)


ESTIMATORS = ("gae", "td", "n_step", "mc", "q", "q_n_step")
"""The advantage estimators of the lecture's "possible estimators" slide an actor-critic can select."""
Q_ESTIMATORS = ("q", "q_n_step")
"""The estimators that need an action-value critic Q_φ(s, a) instead of V_φ(s)."""


@dataclasses.dataclass(frozen=True)
class AdvantageEstimator(GAE):
    """Â_k from the lecture's "possible estimators" slide, with V_φk or (the Q forms) Q_φk as the critic. td:
    r_1 + γV(s_2) − V(s_1); n_step: r_1 + γr_2 + … + γ^{n−1}r_n + γ^n V(s_{n+1}) − V(s_1); gae: Σ_l (γλ)^l δ_{t+l}
    (λ = 0: td, λ = 1: the return over the rest of the rollout); mc: the discounted return-to-go − V(s_1), its tail
    beyond the rollout bootstrapped by V; q: Q(s_1, a_1) − E_{a∼π_k} Q(s_1, a); q_n_step: r_1 + … + γ^{n−1}r_n +
    γ^n Q(s_{n+1}, a_{n+1}) − E_{a∼π_k} Q(s_1, a). Each window stops at an episode's end and at the end of the
    rollout (bootstrapping there). The critic regresses on the matching target: the λ-, n-step, TD or Monte Carlo
    return for V_φ; for Q_φ the SARSA target r + γQ_φk(s', a') (q) or the n-step SARSA return (q_n_step)."""

    estimator: str = "gae"
    """Advantage estimator: "gae", "td", "n_step", "mc" (critic V_φ), or "q", "q_n_step" (critic Q_φ(s, a))."""
    n_steps: int = 5
    """Rewards n summed before bootstrapping, for "n_step" and "q_n_step" (n ≥ 1; n = 1 is the TD form)."""
    num_action_samples: int = 8
    """Q forms with continuous actions: samples a ∼ π_θk(·|s) in the Monte Carlo estimate of E_π Q_φk(s, a)."""

    @property
    def q_critic(self) -> bool:
        """The estimator needs an action-value critic Q_φ(s, a)."""
        return self.estimator in Q_ESTIMATORS

    def validate(self) -> None:
        """λ ∈ [0, 1], a known estimator, n_steps and num_action_samples integers ≥ 1."""
        super().validate()
        check_choice("estimator", self.estimator, ESTIMATORS)
        check_int_at_least("n_steps", self.n_steps, 1)
        check_int_at_least("num_action_samples", self.num_action_samples, 1)


def check_unused(config: Any) -> None:
    """A one-line ConfigError for an option set to a value the configuration cannot use: ``n_steps`` (the name
    Stable-Baselines3 gives the rollout length) with an advantage estimator that has no n. For configurations
    built now (the CLI, agents, sweep cells); a run recorded before this check loads and resumes as it ran."""
    advantage = getattr(config, "advantage", None)
    if not isinstance(advantage, AdvantageEstimator):
        return
    if advantage.n_steps != AdvantageEstimator.n_steps and advantage.estimator not in ("n_step", "q_n_step"):
        raise ConfigError(
            f"n_steps needs estimator 'n_step' or 'q_n_step' (it is their n; estimator {advantage.estimator!r} "
            "does not use it); the rollout length per environment, which Stable-Baselines3 calls by this name, "
            "is num_steps"
        )


@dataclasses.dataclass(frozen=True)
class Entropy:
    """The entropy bonus c·H(π_θ) added to the surrogate."""

    ent_coef: float = 0.0
    """Entropy bonus coefficient c ≥ 0 (0: no bonus)."""

    def validate(self) -> None:
        """c ≥ 0."""
        check_in_range("ent_coef", self.ent_coef, 0.0, float("inf"), high_open=True)


@dataclasses.dataclass(frozen=True)
class ValueLoss:
    """The critic's regression ½(V_φ(s) − R̂)², weighted into an actor-critic's combined objective."""

    vf_coef: float = 0.5
    """Value loss coefficient c_v ≥ 0."""

    def validate(self) -> None:
        """c_v ≥ 0."""
        check_in_range("vf_coef", self.vf_coef, 0.0, float("inf"), high_open=True)
