"""Off-policy actor-critic with a replay buffer, for finite action sets (the lecture's version).

The lecture's "Actor-Critic + Replay Buffer": for k = 1, 2, …, collect samples with π_θk into the replay
buffer, sample a batch {(s_i, a_i, r_i, s'_i)}_{i=1}^n from it, and update::

    g       = (1/n) Σ_i Σ_a ∇_θ π_θ(a|s_i) |_{θ=θ_k} · Q_φk(s_i, a)          (not using a_i)
    θ_{k+1} = θ_k + η·g
    φ_{k+1} = φ_k − λ·∇_φ (1/n) Σ_i (Q_φ(s_i, a_i) − r_i − γ·E_{a'∼π_θk(·|s'_i)}[Q_φ̄(s'_i, a')])²

Because the actor's gradient sums over *all* actions under the critic (the full-information policy
update of the lecture, with Q_φk ≈ Q^{π_θk}), it needs no importance weight for the behaviour policy
π̂ that filled the buffer: only the states s_i come from π̂, which changes the state weighting
d^{π_θk}(s) → d^{π̂}(s), as the lecture notes. The critic is off-policy evaluation of π_θk by expected
SARSA: its target averages the next action over the *current* policy, so a_i's policy does not matter.

Details (all options):

- ``discount_t = γ(1 − terminated)``: a truncated step bootstraps at the true next observation;
- Q_φ̄ is a Polyak-averaged target network, φ̄ ← τφ + (1 − τ)φ̄ after every gradient step; ``tau = 1``
  gives the lecture's target exactly (the current φ_k, held fixed in the gradient);
- ``ent_coef`` = c adds c·∇_θ (1/n) Σ_i H(π_θ(·|s_i)) to g, as in the lecture's A2C with entropy (it keeps
  π_θ from collapsing onto one action before Q_φ is accurate); c = 0 is the bare lecture update;
- η·g is taken with Adam (the step is preconditioned), as are the critic steps;
- uniform random actions for the first ``learning_starts`` steps, then actions sampled from π_θk;
  evaluation is greedy (argmax of the logits).

The pure pieces — :func:`expected_target`, :func:`critic_loss`, :func:`ac_actor_step` — carry the
equations; the buffer and the collect → add → gradient-steps loop are the shared off-policy pieces
(:func:`proxrl.deep.off_policy.common.replay_learner`)::

    from proxrl.run.train import make_train

    config = OffPolicyACConfig()
    train = make_train(config, "CartPole-v1", total_steps=100_000)
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 5))
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from proxrl.config import Config
from proxrl.deep.config import ACTIVATIONS, Entropy, Network, Rollout, Step
from proxrl.deep.distributions import categorical
from proxrl.deep.jax_envs import Space
from proxrl.deep.networks import CategoricalPolicy, DiscreteQNetwork
from proxrl.deep.off_policy import common as off_policy
from proxrl.prox import ProxStep, StepState
from proxrl.prox.critic import polyak, td_target
from proxrl.prox.surrogates import all_actions, entropy_bonus
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, Transition

# --------------------------------------------------------------------------------------- pure pieces


def expected_target(
    reward: Array, terminated: Array, gamma: Array | float, pi_next: Array, q_next: Array
) -> Array:
    """``y_i = r_i + γ(1 − terminated_i)·Σ_{a'} π_θk(a'|s'_i)·Q_φ̄(s'_i, a')`` (expected SARSA under π_θk).

    Shapes: ``reward``, ``terminated``: ``[N]``; ``pi_next``, ``q_next``: ``[N, A]`` at the true next
    observation. A truncation is not a termination, so it bootstraps. Returns ``[N]``, with gradients stopped.
    """
    return td_target(reward, terminated, jnp.sum(pi_next * q_next, axis=-1), gamma)


def critic_loss(q: Array, action: Array, y: Array) -> Array:
    """``(1/n) Σ_i ½·(Q_φ(s_i, a_i) − y_i)²`` for ``q[N, A]``, integer ``action[N]``, targets ``y[N]`` (held fixed)."""
    q_sa = jnp.take_along_axis(q, action[:, None].astype(jnp.int32), axis=-1)[:, 0]
    return jnp.mean(0.5 * jnp.square(q_sa - jax.lax.stop_gradient(y)))


# --------------------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class OffPolicyACConfig(Config):
    """The discrete off-policy actor-critic. The defaults (4 environments, one gradient step per environment
    step, Adam 1e-3 for actor and critic, batch 128, τ = 0.005, entropy bonus 0.03, 64×64 ReLU) are tuned for
    CartPole-v1 at 100k steps (docs/methods/off-policy-ac.md)."""

    rollout: Rollout = dataclasses.field(default_factory=lambda: Rollout(num_envs=4, num_steps=1))
    network: Network = dataclasses.field(default_factory=lambda: Network(hidden=(64, 64), activation="relu"))
    step: Step = dataclasses.field(default_factory=lambda: Step(lr=1e-3))
    replay: off_policy.ReplaySchedule = dataclasses.field(
        default_factory=lambda: off_policy.ReplaySchedule(
            buffer_size=100_000, batch_size=128, gradient_steps=4
        )
    )
    critic: off_policy.TargetCritic = dataclasses.field(
        default_factory=lambda: off_policy.TargetCritic(q_lr=1e-3)
    )
    surrogate: Entropy = dataclasses.field(default_factory=lambda: Entropy(ent_coef=0.03))


# --------------------------------------------------------------------------------------- one gradient step


class ACParams(NamedTuple):
    """``actor``: θ; ``critic``: φ; ``target``: φ̄."""

    actor: Params
    critic: Params
    target: Params


class ACState(NamedTuple):
    """The algorithm's part of the learner state (the replay buffer lives with the shared learner)."""

    params: ACParams
    actor_step: StepState
    critic_opt: optax.OptState


class ACNets(NamedTuple):
    """Categorical actor π_θ and critic Q_φ(s, ·) for a finite action set; both take observation
    features ``obs[N, D]`` (float32, flattened: what the replay learner passes)."""

    actor: CategoricalPolicy
    critic: DiscreteQNetwork

    def logits(self, theta: Params, obs: Array) -> Array:
        """Logits of π_θ(·|s): ``[N, A]``."""
        return self.actor.apply(theta, obs)

    def q(self, phi: Params, obs: Array) -> Array:
        """Q_φ(s, ·): ``[N, A]``."""
        return self.critic.apply(phi, obs)


def make_nets(config: OffPolicyACConfig, action_space: Space) -> ACNets:
    """Categorical MLP actor and Q_φ(s, ·) MLP critic for a discrete action space (a
    :class:`~proxrl.errors.ConfigError` for anything else, e.g. a box)."""
    space = off_policy.require_discrete(action_space, "the discrete off-policy actor-critic")
    act = ACTIVATIONS[config.network.activation]
    actor = CategoricalPolicy(num_actions=space.n, hidden=tuple(config.network.hidden), activation=act)
    critic = DiscreteQNetwork(num_actions=space.n, hidden=tuple(config.network.hidden), activation=act)
    return ACNets(actor, critic)


class ActorBatch(NamedTuple):
    """The actor step's minibatch: observation features ``obs[n, D]`` and ``Q_φk(s_i, ·)`` ``[n, A]`` (fixed)."""

    obs: Array
    q: Array


def ac_actor_step(config: OffPolicyACConfig, nets: ACNets) -> ProxStep:
    """The lecture's actor update with replay, ``θ ← θ + η·g``,
    ``g = (1/n) Σ_i Σ_a ∇π_θ(a|s_i)·Q_φk(s_i, a) + c·∇H(π_θ)``: :func:`~proxrl.deep.off_policy.common.actor_step` with
    the surrogate :func:`~proxrl.prox.surrogates.all_actions` and the entropy bonus."""
    return off_policy.actor_step(
        all_actions(lambda batch: batch.q),
        lambda theta, batch, key: nets.logits(theta, batch.obs),
        config.step.lr,
        entropy_bonus(config.surrogate.ent_coef, dist=categorical),
    )


def ac_init(config: OffPolicyACConfig, nets: ACNets, key: PRNGKey, obs: Array) -> ACState:
    """On features ``obs[B, D]``: θ, φ (φ̄ = φ), the actor step's state and the critic's Adam state."""
    k_actor, k_critic = jax.random.split(key)
    theta, phi = nets.actor.init(k_actor, obs), nets.critic.init(k_critic, obs)
    return ACState(
        ACParams(theta, phi, phi),
        ac_actor_step(config, nets).init(theta),
        optax.adam(config.critic.q_lr).init(phi),
    )


def ac_update(
    config: OffPolicyACConfig, nets: ACNets, state: ACState, batch: Transition, key: PRNGKey
) -> tuple[ACState, Metrics]:
    """One step of the lecture's update on a flat minibatch ``batch`` ``[n, ...]`` from the replay buffer.

    Both steps are taken at (θ_k, φ_k): the critic toward the expected-SARSA target under π_θk and φ̄, the
    actor (:func:`ac_actor_step`) along g (+ entropy) under Q_φk; then φ̄ ← τφ_{k+1} + (1 − τ)φ̄. ``key`` is
    unused (the update is deterministic given the batch). Metrics: ``critic_loss``, ``policy_loss`` (−Σ_a π Q,
    without the entropy term), ``entropy``, ``q_mean``, ``target_mean``, and the actor step's
    ``surrogate_gain``, ``step_norm``, ``grad_norm``.
    """
    del key
    p = state.params
    # y_i = r_i + γ(1 − terminated_i) Σ_a' π_θk(a'|s'_i) Q_φ̄(s'_i, a')
    pi_next = jax.nn.softmax(nets.logits(p.actor, batch.next_obs), axis=-1)
    y = expected_target(
        batch.reward, batch.terminated, config.rollout.gamma, pi_next, nets.q(p.target, batch.next_obs)
    )

    def critic_objective(phi: Params, b: Transition) -> tuple[Array, Metrics]:
        q = nets.q(phi, b.obs)
        return critic_loss(q, b.action, y), {"q_mean": jnp.mean(q)}

    phi, critic_opt, metrics = off_policy.critic_step(
        critic_objective, optax.adam(config.critic.q_lr), p.critic, state.critic_opt, batch
    )
    # g = (1/n) Σ_i Σ_a ∇π_θ(a|s_i) Q_φk(s_i, a)  (+ c ∇H)
    actor_batch = ActorBatch(batch.obs, nets.q(p.critic, batch.obs))
    theta, actor_state, actor_metrics = ac_actor_step(config, nets).update(
        p.actor, state.actor_step, actor_batch, None
    )
    target = polyak(p.target, phi, config.critic.tau)
    metrics.update(actor_metrics, target_mean=jnp.mean(y))
    return ACState(ACParams(theta, phi, target), actor_state, critic_opt), metrics


# --------------------------------------------------------------------------------------- the learner


def make_learner(
    config: OffPolicyACConfig, observation_space: Space, action_space: Space, total_steps: int | None = None
) -> Learner:
    """The discrete off-policy actor-critic as a :class:`~proxrl.types.Learner`
    (:func:`~proxrl.deep.off_policy.common.replay_learner` around :func:`ac_init`, sampling from π_θ, the argmax
    policy and :func:`ac_update`).

    Per-update metrics (NaN before ``learning_starts``): those of :func:`ac_update` averaged over the
    gradient steps, ``buffer_size`` and ``gradient_updates``; the collection loop adds ``episodic_return``
    and ``episodes``. Raises :class:`~proxrl.errors.ConfigError` for a bad config or a non-discrete action
    space.
    """
    config.validate()
    nets = make_nets(config, action_space)
    return off_policy.replay_learner(
        "offpolicy_ac",
        lambda key, obs: ac_init(config, nets, key, obs),
        lambda state, obs, key: jax.random.categorical(key, nets.logits(state.params.actor, obs), axis=-1),
        lambda state, obs: jnp.argmax(nets.logits(state.params.actor, obs), axis=-1),
        lambda state, batch, key: ac_update(config, nets, state, batch, key),
        config,
        observation_space,
        action_space,
    )
