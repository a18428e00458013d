"""Q actor-critic: a policy-gradient step with an action-value critic Q_φ(s, a) trained by TD.

The lecture's "Actor-Critic with Q_ϕ": use π_θk to collect trajectories, then::

    g       = (1/N) Σ_{i,h} ∇_θ log π_θ(a_h|s_h)|_{θ_k} · Q_φk(s_h, a_h)                 (sampled action)
         or (1/N) Σ_{i,h} Σ_a ∇_θ π_θ(a|s_h)|_{θ_k} · Q_φk(s_h, a)                       (all actions)
    θ_{k+1} = θ_k + η·g
    φ_{k+1} = φ_k − λ∇_φ (1/N) Σ_{i,h} ½(Q_φ(s_h, a_h) − r_h − γ·Q_φk(s_{h+1}, a_{h+1}))²|_{φ=φ_k}

``gradient="sampled"`` subtracts the critic's own state value, the lecture's advantage estimate
``Â = Q_φk(s, a) − E_{a'∼π_θk(·|s)} Q_φk(s, a')`` (:func:`proxrl.estimators.q_advantages` for discrete
actions): a baseline, so the expectation of g is unchanged. For continuous actions the expectation is
a Monte Carlo average over ``num_action_samples`` actions a'_m ∼ π_θk(·|s) (unbiased for E_π Q; the
baseline only needs to be independent of the sampled a). ``gradient="all_actions"`` sums over the
finite action set (discrete actions only): ``g = ∇_θ (1/N) Σ_h Σ_a π_θ(a|s_h)·Q_φk(s_h, a)`` at θ_k, which
needs no sampled action and has no variance from a (the lecture's "not using a_i here").

The critic's target (``td_target``):

- ``"sarsa"``: ``y_h = r_h + γ(1 − terminated_h)·Q_φk(s_{h+1}, a_{h+1})`` with a_{h+1} the next action of the
  rollout — the lecture's target. Where the rollout does not hold the next action (the rollout's last
  step, or a truncation, whose true next observation s' is not followed in the data) the target uses
  ``E_{a'∼π_θk(·|s')} Q_φk(s', a')`` instead (exact over a finite action set, the Monte Carlo average above
  for continuous actions).
- ``"expected"``: ``y_h = r_h + γ(1 − terminated_h)·E_{a'∼π_θk(·|s_{h+1})} Q_φk(s_{h+1}, a')`` everywhere
  (expected SARSA; the replay-buffer form of the lecture's off-policy slide).

A termination never bootstraps; a truncation bootstraps from the true next observation. The targets are
fixed at φ_k (a target network refreshed every rollout) and fitted by ``q_epochs`` × ``q_minibatches``
Adam steps; one is the lecture's single step. The actor step uses Q_φk, as the lecture's simultaneous update.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import ACTIVATIONS, Advantage, Entropy, PolicyNetwork, PolicyStep, Rollout
from proxrl.deep.jax_envs import DiscreteSpace, Space
from proxrl.deep.networks import DiscreteQNetwork, QNetwork
from proxrl.deep.on_policy.common import (
    Agent,
    explained_variance,
    features,
    make_agent,
    num_updates,
    policy_optimiser,
    policy_sigma,
)
from proxrl.errors import ConfigError, check_choice, check_int_at_least, check_positive
from proxrl.estimators import q_advantages
from proxrl.prox import Problem, ProxStep, StepState, prox_step
from proxrl.prox.critic import td_target, value_loss
from proxrl.prox.geometry import head_kl
from proxrl.prox.solvers import fit, gradient_steps, optimiser
from proxrl.prox.surrogates import all_actions, entropy_bonus, score_function
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

GRADIENTS = ("sampled", "all_actions")
"""Actor gradient estimators: ∇log π(a|s)·(Q − E_πQ) at the sampled action, or Σ_a ∇π(a|s)·Q(s, a)."""
TD_TARGETS = ("sarsa", "expected")
"""Critic targets: Q_φk at the rollout's next action, or E_{a'∼π_θk} Q_φk at the next state."""


@dataclasses.dataclass(frozen=True)
class QGradient(Entropy):
    """Which estimate of the policy gradient the actor's step ascends (with the entropy bonus)."""

    gradient: str = "all_actions"
    """Actor gradient: "sampled" (∇log π(a|s)·(Q − E_πQ)) or "all_actions" (Σ_a ∇π(a|s)·Q; discrete only)."""

    def validate(self) -> None:
        """c ≥ 0 and a known gradient."""
        super().validate()
        check_choice("gradient", self.gradient, GRADIENTS)


@dataclasses.dataclass(frozen=True)
class QFit:
    """The critic Q_φ: its TD target and its regression toward the fixed targets after each rollout."""

    td_target: str = "sarsa"
    """Critic target: "sarsa" (Q_φk(s', a') at the rollout's next action) or "expected" (E_{a'∼π_θk} Q_φk(s', a'))."""
    num_action_samples: int = 8
    """Continuous actions: samples a' ∼ π_θk(·|s) in the Monte Carlo estimate of E_{a'} Q_φk(s, a')."""
    q_lr: float = 3e-3
    """Adam step size λ of the critic."""
    q_epochs: int = 8
    """Passes over each batch fitting Q_φ toward the fixed targets (1 = the lecture's single step; CartPole needs a well-fitted critic, see docs/methods/q-actor-critic.md)."""
    q_minibatches: int = 4
    """Minibatches per critic pass; must divide num_envs·num_steps."""

    def validate(self) -> None:
        """A known target; samples, epochs and minibatches integers ≥ 1; q_lr > 0."""
        check_choice("td_target", self.td_target, TD_TARGETS)
        check_int_at_least("num_action_samples", self.num_action_samples, 1)
        check_positive("q_lr", self.q_lr)
        check_int_at_least("q_epochs", self.q_epochs, 1)
        check_int_at_least("q_minibatches", self.q_minibatches, 1)


@dataclasses.dataclass(frozen=True)
class QACConfig(Config):
    """Q actor-critic: the rollout, the networks, one clipped Adam step of the actor per rollout (its gradient
    clip also bounds the critic's steps), the advantage's normalisation ("sampled" only), the actor's gradient
    and the critic's fit (q_epochs passes per rollout)."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=16, num_steps=32))
    network: PolicyNetwork = dataclasses.field(default_factory=PolicyNetwork)
    step: PolicyStep = dataclasses.field(default_factory=lambda: PolicyStep(lr=1e-3, max_grad_norm=10.0))
    advantage: Advantage = dataclasses.field(default_factory=Advantage)
    surrogate: QGradient = dataclasses.field(default_factory=QGradient)
    critic: QFit = dataclasses.field(default_factory=QFit)

    def check(self) -> None:
        """The critic's minibatch count divides the rollout size T·B."""
        if self.rollout.size % self.critic.q_minibatches:
            raise ConfigError(
                f"q_minibatches must divide num_envs·num_steps = {self.rollout.size}, got {self.critic.q_minibatches}"
            )


class QACState(NamedTuple):
    """What Q actor-critic carries between updates: ``params = {"actor": θ, "critic": φ}``, the policy step's
    state, the critic's optimiser state and a key."""

    params: Params
    step: StepState
    critic_opt: optax.OptState
    key: PRNGKey
    update: Array
    """Updates done so far (the scheduled σ's clock)."""


class QBatch(NamedTuple):
    """The actor step's flat data ``[N, ...]``: observation features, actions, ``q`` (Q_φk(s, ·) ``[N, A]``,
    all-actions form) or ``adv`` (Q_φk(s, a) − E_{a'∼π_θk} Q_φk(s, a'), sampled form; the other is 0), and
    π_θk's head outputs."""

    obs: Array
    action: Array
    q: Array
    adv: Array
    dist_old: Any


class Critic(NamedTuple):
    """Q_φ for an action space: ``q(φ, s, a) -> [...]`` and ``expected(φ, π, s, key) -> E_{a∼π}Q_φ(s, a)``."""

    module: nn.Module
    q: Callable[[Params, Array, Array], Array]
    expected: Callable[[Params, Any, Array, PRNGKey], Array]
    init: Callable[[PRNGKey, Array, Array], Params]


def make_critic(
    action_space: Space, hidden: tuple[int, ...], activation: str, num_action_samples: int
) -> Critic:
    """Discrete actions: Q_φ(s, ·) over all actions at once (:class:`DiscreteQNetwork`), E_π Q = Σ_a π(a|s)Q(s, a)
    exactly. Continuous: Q_φ(s, a) on the concatenation (:class:`QNetwork`), E_π Q ≈ (1/M) Σ_m Q_φ(s, a_m),
    a_m ∼ π(·|s), M = ``num_action_samples``."""
    act = ACTIVATIONS[activation]
    if isinstance(action_space, DiscreteSpace):
        module = DiscreteQNetwork(num_actions=action_space.n, hidden=hidden, activation=act)

        def q(phi: Params, obs: Array, action: Array) -> Array:
            q_all = module.apply(phi, obs)
            return jnp.take_along_axis(q_all, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

        def expected(phi: Params, pi: Any, obs: Array, key: PRNGKey) -> Array:
            return jnp.sum(pi.probs * module.apply(phi, obs), axis=-1)

        return Critic(module, q, expected, lambda k, obs, action: module.init(k, obs))

    module = QNetwork(hidden=hidden, activation=act)

    def q_cont(phi: Params, obs: Array, action: Array) -> Array:
        return module.apply(phi, obs, action)

    def expected_cont(phi: Params, pi: Any, obs: Array, key: PRNGKey) -> Array:
        samples = pi.sample(seed=key, sample_shape=(num_action_samples,))  # [M, ..., d]
        return jnp.mean(jax.vmap(lambda a: module.apply(phi, obs, a))(samples), axis=0)

    return Critic(module, q_cont, expected_cont, lambda k, obs, action: module.init(k, obs, action))


def td_targets(
    critic: Critic,
    agent: Agent,
    theta: Params,
    phi: Params,
    traj: Transition,
    gamma: Array | float,
    kind: str,
    key: PRNGKey,
) -> Array:
    """The critic's targets ``y = r + γ(1 − terminated)·Q_φ(s', a')`` over a ``[T, B]`` rollout (see the module).

    ``kind="sarsa"``: a' the rollout's next action where the rollout continues the episode, otherwise (last
    step, truncation) E_{a'∼π_θ(·|s')} Q_φ(s', a') at the true next observation; ``"expected"``: the latter
    everywhere. Returns ``[T, B]``.
    """
    next_obs = features(agent, traj.next_obs)
    pi_next = agent.distribution(agent.actor.apply(theta, next_obs))
    q_next = critic.expected(phi, pi_next, next_obs, key)
    if kind == "sarsa":
        obs = features(agent, traj.obs)
        q_follow = critic.q(phi, obs[1:], traj.action[1:])  # Q_φ(s_{h+1}, a_{h+1}), h < T − 1
        follows = ~(traj.terminated | traj.truncated)[:-1]  # the next row continues this episode
        q_next = q_next.at[:-1].set(jnp.where(follows, q_follow, q_next[:-1]))
    return td_target(traj.reward, traj.terminated, q_next, gamma)


def qac_step(config: QACConfig, agent: Agent, updates: int | None = None) -> ProxStep:
    """The Q actor-critic's proximal step on θ and a :class:`QBatch`::

        θ_{k+1} = θ_k + η·g,   g = (1/N) Σ_h Σ_a ∇π_θ(a|s_h)·Q_φk(s_h, a)            (all actions)
                                 or (1/N) Σ_h ∇log π_θ(a_h|s_h)·(Q_φk(s_h, a_h) − E_π Q_φk(s_h, ·))   (sampled)

    plus c·∇H: surrogate :func:`~proxrl.prox.surrogates.all_actions` or
    :func:`~proxrl.prox.surrogates.score_function` and the entropy bonus, geometry Euclidean, solver one
    clipped Adam step.
    """
    if config.surrogate.gradient == "all_actions":
        surrogate = all_actions(lambda batch: batch.q)
    else:
        surrogate = score_function(config.advantage.norm_adv, dist=agent.distribution)
    problem = Problem(
        surrogate,
        extras=(entropy_bonus(config.surrogate.ent_coef, dist=agent.distribution),),
        policy=lambda theta, batch, key: agent.actor.apply(theta, batch.obs),
    )
    old = lambda batch: agent.distribution(batch.dist_old)
    tx = policy_optimiser(config.step, updates)
    return prox_step(problem, gradient_steps(tx), moved=head_kl(old, dist=agent.distribution))


def make_learner(
    config: QACConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """Q actor-critic as a :class:`~proxrl.types.Learner`: ``learn`` is TD targets → :func:`qac_step` → critic fit.

    Per-update metrics: the step's (``policy_loss`` at θ_k, ``entropy`` at θ_k, ``kl`` the
    exact mean KL(π_θ_{k+1}, π_θk), ``surrogate_gain`` with Q_φk fixed, ``step_norm``, ``grad_norm`` before
    clipping), ``value_loss`` (the critic's TD loss, mean over its steps), ``explained_variance`` (Q_φk(s, a)
    against the targets y), ``q_mean`` (mean Q_φk(s, a)).
    """
    config.validate()
    discrete = isinstance(action_space, DiscreteSpace)
    if config.surrogate.gradient == "all_actions" and not discrete:
        raise ConfigError(
            "gradient='all_actions' needs a discrete action space; use gradient='sampled' for Box actions"
        )
    sigma_at = policy_sigma(config.network, config.rollout, total_steps)
    agent = make_agent(observation_space, action_space, config.network, sigma_at=sigma_at)
    critic = make_critic(
        action_space,
        tuple(config.network.hidden),
        config.network.activation,
        config.critic.num_action_samples,
    )
    updates = None if total_steps is None else num_updates(total_steps, config.rollout.size)
    step = qac_step(config, agent, updates)
    tx_critic = optimiser(config.critic.q_lr, config.step.max_grad_norm, eps=1e-5)

    def init(key: PRNGKey, obs: Array) -> QACState:
        key, k_actor, k_critic, k_act = jax.random.split(key, 4)
        x = features(agent, obs)
        theta = agent.scheduled(agent.actor.init(k_actor, x), jnp.zeros((), jnp.int32))  # σ_0, if scheduled
        action = agent.distribution(agent.actor.apply(theta, x)).sample(seed=k_act)
        phi = critic.init(k_critic, x, action)
        zero = jnp.zeros((), jnp.int32)
        return QACState({"actor": theta, "critic": phi}, step.init(theta), tx_critic.init(phi), key, zero)

    def critic_loss(phi: Params, data: tuple[Array, Array, Array]) -> tuple[Array, Metrics]:
        obs, action, y = data
        return value_loss(critic.q(phi, obs, action), None, y), {}

    def learn(state: QACState, traj: Transition) -> tuple[QACState, Metrics]:
        key, k_target, k_base, k_fit = jax.random.split(state.key, 4)
        theta_k, phi_k = state.params["actor"], state.params["critic"]
        # targets y = r + γ(1 − terminated)·Q_φk(s', a'), fixed at φ_k
        y = td_targets(
            critic, agent, theta_k, phi_k, traj, config.rollout.gamma, config.critic.td_target, k_target
        )
        n = config.rollout.size
        obs = features(agent, traj.obs).reshape(n, -1)
        action = traj.action.reshape(n, *traj.action.shape[2:])
        y = y.reshape(n)
        # the estimate under (θ_k, φ_k): Q_φk(s, ·) for the all-actions form, Q − E_πQ for the sampled form
        out_k = agent.actor.apply(theta_k, obs)
        zero = jnp.zeros((), jnp.float32)
        if config.surrogate.gradient == "all_actions":
            batch = QBatch(obs, action, critic.module.apply(phi_k, obs), zero, out_k)
        else:
            pi_k = agent.distribution(out_k)
            if discrete:
                adv = q_advantages(critic.module.apply(phi_k, obs), pi_k.probs, action)
            else:
                adv = critic.q(phi_k, obs, action) - critic.expected(phi_k, pi_k, obs, k_base)
            batch = QBatch(obs, action, zero, adv, out_k)
        # θ_{k+1} = θ_k + η·g (one Adam step)
        theta, step_state, metrics = step.update(theta_k, state.step, batch, None)
        # φ_{k+1}: TD regression toward y
        phi, critic_opt, fitted = fit(
            critic_loss,
            tx_critic,
            phi_k,
            state.critic_opt,
            (obs, action, y),
            k_fit,
            config.critic.q_epochs,
            config.critic.q_minibatches,
        )
        q_sa = critic.q(phi_k, obs, action)
        metrics.update(
            value_loss=jnp.mean(fitted["loss"]),
            explained_variance=explained_variance(q_sa, y),
            q_mean=jnp.mean(q_sa),
        )
        metrics.update(agent.sigma_metrics(state.update))
        params = {"actor": agent.scheduled(theta, state.update + 1), "critic": phi}  # σ_{k+1}, if scheduled
        return QACState(params, step_state, critic_opt, key, state.update + 1), metrics

    def act(state: QACState, obs: Array, key: PRNGKey) -> Array:
        return agent.distribution(agent.actor.apply(state.params["actor"], features(agent, obs))).sample(
            seed=key
        )

    def mode(state: QACState, obs: Array) -> Array:
        return agent.mode(agent.actor.apply(state.params["actor"], features(agent, obs)))

    return Learner("qac", init, act, mode, learn, config.rollout.num_envs, config.rollout.num_steps)
