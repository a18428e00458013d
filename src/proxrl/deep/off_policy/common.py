"""Pieces every replay-based (off-policy) actor-critic shares, written once: DPG, DDPG, TD3, SAC, discrete AC.

The lecture's actor-critic with a replay buffer::

    for k = 1, 2, ...:
        collect samples with π_θk (plus exploration) into the replay buffer     ← replay_learner: act, learn
        sample a batch {(s_i, a_i, r_i, s'_i)}_{i=1}^n from the buffer            ← replay_learner: learn
        φ ← φ − λ∇_φ (1/n) Σ_i (Q_φ(s_i, a_i) − y_i)²,                           ← the algorithm's update
            y_i = r_i + γ(1 − terminated_i)·(value of s'_i under π_θ and the target critic)   ← prox.critic.td_target
        θ ← θ + η·g  (the algorithm's actor gradient: DPG's ∇_θ Q_φ(s, μ_θ(s)), SAC's soft one, …)
        φ_tar ← τφ + (1 − τ)φ_tar                                                 ← prox.critic.polyak

An algorithm supplies four pure functions of its own *agent state* (parameters, target parameters,
optimiser states): ``init_agent``, ``act_agent`` (exploration), ``mode_agent`` (evaluation) and
``update_agent`` (one gradient step on a minibatch); :func:`replay_learner` adds what they all share —
the buffer, random warm-up actions, ``gradient_steps`` updates per rollout on fresh uniform minibatches —
and returns a :class:`~proxrl.types.Learner` for :func:`proxrl.deep.loops.loop_update` (gymnax) or the
host-side Gymnasium driver.

Also here: the config pieces replay methods share (:class:`ReplaySchedule`, :class:`Critic`,
:class:`TargetCritic`, :class:`Exploration`), :func:`require_box` /
:func:`require_discrete` (one-line errors for the wrong kind of action space), action scaling between
[−1, 1] and [low, high], Gaussian exploration noise, :func:`twin_q` (an ensemble of critics on one vmapped
axis), and the two steps every algorithm takes: :func:`actor_step` (a proximal step of the actor) and
:func:`critic_step` (one optimiser step of a critic on its TD loss).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from proxrl.deep.config import ACTIVATIONS, Network, Rollout
from proxrl.deep.distributions import scale_to_bounds
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, Space
from proxrl.deep.loops import lockstep
from proxrl.deep.networks import DeterministicPolicy, QNetwork, flatten_obs
from proxrl.deep.replay import (
    Replay,
    check_replay,
    flatten_rollout,
    replay_add,
    replay_init,
    replay_sample_after_add,
)
from proxrl.errors import ConfigError, check_in_range, check_int_at_least, check_positive
from proxrl.prox import Problem, ProxStep, Term, prox_step
from proxrl.prox.solvers import fit, gradient_steps, optimiser
from proxrl.prox.surrogates import deterministic
from proxrl.types import Array, Learner, Metrics, Params, PRNGKey, State, Transition

# ------------------------------------------------------------------------------------------------ config


@dataclasses.dataclass(frozen=True)
class ReplaySchedule:
    """The replay buffer and how often it is sampled: gradient_steps minibatches of batch_size after each
    rollout, once learning_starts environment steps are stored."""

    buffer_size: int = 1_000_000
    """Replay buffer capacity (transitions); the oldest are overwritten once full."""
    batch_size: int = 256
    """Minibatch size n, drawn uniformly with replacement from the buffer for each gradient step."""
    learning_starts: int = 1_000
    """Environment steps of uniform random actions before the first update (and before π_θ acts)."""
    gradient_steps: int = 1
    """Gradient steps per update, i.e. per T·B environment steps (with T·B = 1: one per environment step)."""

    def validate(self) -> None:
        """``buffer_size ≥ batch_size ≥ 1``; ``learning_starts ≥ 0``; ``gradient_steps ≥ 1`` (integers)."""
        check_replay(self.buffer_size, self.batch_size)
        check_int_at_least("learning_starts", self.learning_starts, 0)
        check_int_at_least("gradient_steps", self.gradient_steps, 1)


@dataclasses.dataclass(frozen=True)
class Critic:
    """The critic(s) Q_φ, each fitted by one Adam step per minibatch on its TD loss."""

    q_lr: float = 3e-4
    """Adam learning rate λ of the critic(s)."""

    def validate(self) -> None:
        """q_lr > 0."""
        check_positive("q_lr", self.q_lr)


@dataclasses.dataclass(frozen=True)
class TargetCritic(Critic):
    """The critic(s) Q_φ, each fitted by one Adam step per minibatch on its TD loss toward target networks
    φ_tar that follow φ by Polyak averaging."""

    tau: float = 0.005
    """Polyak rate τ ∈ (0, 1] of the target networks: φ_tar ← τφ + (1 − τ)φ_tar (1 copies φ)."""

    def validate(self) -> None:
        """q_lr > 0, τ ∈ (0, 1]."""
        super().validate()
        check_in_range("tau", self.tau, 0.0, 1.0, low_open=True)


@dataclasses.dataclass(frozen=True)
class Exploration:
    """The behaviour policy of a deterministic actor: clip(μ_θ(s) + σ·half_range·ε, low, high), ε ∼ N(0, I)."""

    exploration_noise: float = 0.1
    """σ ≥ 0 of the Gaussian behaviour noise, in units of the action half range."""

    def validate(self) -> None:
        """σ ≥ 0."""
        check_in_range("exploration_noise", self.exploration_noise, 0.0, float("inf"), high_open=True)


def replay_rollout() -> Rollout:
    """The rollout of a replay method: one environment, one step between updates (SB3's train_freq = 1)."""
    return Rollout(num_envs=1, num_steps=1)


def replay_network() -> Network:
    """The networks of a replay method: 256×256 ReLU MLPs (CleanRL's DDPG/TD3/SAC on MuJoCo)."""
    return Network(hidden=(256, 256), activation="relu")


def describe_space(space: Space) -> str:
    """``Discrete(2)`` / ``Box(-2.0, 2.0, (1,))`` for messages."""
    if isinstance(space, DiscreteSpace):
        return f"Discrete({space.n})"
    if isinstance(space, BoxSpace):
        low, high = np.asarray(space.low), np.asarray(space.high)
        lo = f"{low.flat[0]:g}" if low.size and np.all(low == low.flat[0]) else "low"
        hi = f"{high.flat[0]:g}" if high.size and np.all(high == high.flat[0]) else "high"
        return f"Box({lo}, {hi}, {tuple(space.shape)})"
    return type(space).__name__


def require_box(action_space: Space, algo: str, env_id: str | None = None) -> BoxSpace:
    """``action_space`` as a flat box with finite bounds ``low < high``, else a one-line ConfigError, e.g.
    "TD3 needs a continuous (Box) action space, got Discrete(2) (CartPole-v1)"."""
    where = f" ({env_id})" if env_id else ""
    if not isinstance(action_space, BoxSpace):
        raise ConfigError(
            f"{algo} needs a continuous (Box) action space, got {describe_space(action_space)}{where}"
        )
    if len(action_space.shape) != 1:
        raise ConfigError(
            f"{algo} needs a flat (1-D) Box action space, got shape {tuple(action_space.shape)}{where}"
        )
    low, high = np.asarray(action_space.low, float), np.asarray(action_space.high, float)
    if low.shape != tuple(action_space.shape) or high.shape != tuple(action_space.shape):
        raise ConfigError(
            f"{algo} needs action bounds of shape {tuple(action_space.shape)}, got {low.shape}{where}"
        )
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ConfigError(
            f"{algo} needs finite action bounds (it scales actions into [low, high]), got "
            f"{describe_space(action_space)} with low={low.tolist()}, high={high.tolist()}{where}"
        )
    if np.any(low >= high):
        raise ConfigError(
            f"{algo} needs low < high in every action dimension, got low={low.tolist()}, high={high.tolist()}{where}"
        )
    return action_space


def require_discrete(action_space: Space, algo: str, env_id: str | None = None) -> DiscreteSpace:
    """``action_space`` as a finite action set with n ≥ 1, else a one-line ConfigError, e.g.
    "Discrete SAC needs a discrete action space, got Box(-2, 2, (1,)) (Pendulum-v1)"."""
    where = f" ({env_id})" if env_id else ""
    if not isinstance(action_space, DiscreteSpace):
        raise ConfigError(f"{algo} needs a discrete action space, got {describe_space(action_space)}{where}")
    if action_space.n < 1:
        raise ConfigError(f"{algo} needs at least one action, got Discrete({action_space.n}){where}")
    return action_space


# ------------------------------------------------------------------------------------------ small pieces


def action_scale(space: BoxSpace) -> tuple[Array, Array]:
    """``(centre, half_range)`` of a box: a = centre + half_range·u maps u ∈ [−1, 1] onto [low, high]."""
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    return 0.5 * (high + low), 0.5 * (high - low)


def to_bounds(u: Array, space: BoxSpace) -> Array:
    """u ∈ [−1, 1] ↦ a = low + (u + 1)·(high − low)/2 ∈ [low, high]."""
    return scale_to_bounds(u, jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32))


def to_unit(a: Array, space: BoxSpace) -> Array:
    """a ∈ [low, high] ↦ u = (a − centre)/half_range ∈ [−1, 1] (inverse of :func:`to_bounds`)."""
    centre, half = action_scale(space)
    return (a - centre) / half


def gaussian_explore(key: PRNGKey, action: Array, sigma: Array | float, space: BoxSpace) -> Array:
    """DDPG/TD3 exploration: ``clip(a + σ·half_range·ε, low, high)``, ε ∼ N(0, I) (σ in units of the
    half range, as CleanRL's ``exploration_noise``; σ = 0.1 on Pendulum adds N(0, 0.2²))."""
    _, half = action_scale(space)
    noisy = action + sigma * half * jax.random.normal(key, jnp.shape(action))
    return jnp.clip(noisy, jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32))


def random_action(key: PRNGKey, space: Space, num: int) -> Array:
    """``num`` actions uniform over the space: ``U[low, high]`` per dimension (float32) for a box (bounds
    must be finite), uniform over {0, …, n − 1} (int32) for a discrete space."""
    if isinstance(space, DiscreteSpace):
        return jax.random.randint(key, (num,), 0, space.n, dtype=jnp.int32)
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    return jax.random.uniform(key, (num, *space.shape), jnp.float32, low, high)


def action_example(space: Space) -> Array:
    """One zero action with the buffer's dtype: int32 ``()`` (discrete) or float32 ``[d]`` (box)."""
    if isinstance(space, DiscreteSpace):
        return jnp.zeros((), jnp.int32)
    return jnp.zeros(tuple(space.shape), jnp.float32)


def obs_features(obs: Array, observation_space: Space) -> Array:
    """Observations ``[..., *obs_shape]`` as float32 ``[..., D]`` (what the MLPs take)."""
    return flatten_obs(jnp.asarray(obs, jnp.float32), len(observation_space.shape))


def twin_q(critic: type[nn.Module] = QNetwork, num: int = 2, **critic_kwargs: Any) -> nn.Module:
    """``num`` independent critics with their parameters stacked on a leading axis (one ``nn.vmap``).

    ``twin_q(QNetwork, hidden=(256, 256))`` maps ``(obs[..., D], action[..., d]) -> Q[num, ...]``;
    ``twin_q(DiscreteQNetwork, num_actions=A)`` maps ``obs -> Q[num, ..., A]``. Each member gets its own
    initialisation; every input is shared (broadcast). TD3 and SAC take ``min`` over axis 0 for the
    clipped double-Q target ``min_j Q_φ_tar,j`` and sum the members' losses.
    """
    check_int_at_least("num critics", num, 1)
    ensemble = nn.vmap(
        critic,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=num,
    )
    return ensemble(**critic_kwargs)


def deterministic_actor(action_space: BoxSpace, hidden: tuple[int, ...], activation: str) -> nn.Module:
    """μ_θ(s) ∈ [low, high] (tanh-scaled MLP, :class:`~proxrl.deep.networks.DeterministicPolicy`)."""
    low = tuple(float(x) for x in np.asarray(action_space.low).reshape(-1))
    high = tuple(float(x) for x in np.asarray(action_space.high).reshape(-1))
    return DeterministicPolicy(low, high, hidden=tuple(hidden), activation=ACTIVATIONS[activation])


class CriticBatch(NamedTuple):
    """What an off-policy actor step conditions on: the minibatch's observation features ``obs[n, D]``, the
    critic's parameters φ (held fixed during the step) and, for SAC, the temperature α."""

    obs: Array
    critic: Params
    alpha: Array | float = 0.0


def actor_step(
    surrogate: Term, policy: Callable[[Params, Any, PRNGKey], Any], lr: Array | float, *extras: Term
) -> ProxStep:
    """The actor update every replay method shares, ``θ ← θ + η·∇_θ L(θ)``: the Euclidean proximal step of the
    linearised surrogate, preconditioned by Adam (one step of :func:`~proxrl.prox.solvers.gradient_steps`).
    ``policy(θ, batch, key)`` evaluates the actor on ``batch.obs``."""
    problem = Problem(surrogate, extras=extras, policy=policy)
    return prox_step(problem, gradient_steps(optimiser(lr)))


class DeterministicAgent(NamedTuple):
    """The networks and steps DPG, DDPG and TD3 share: μ_θ(s) ∈ [low, high], the critic(s) Q_φ (one, or a twin
    ensemble ``[2, n]``), the actor's proximal step (:func:`actor_step` with the surrogate
    :func:`~proxrl.prox.surrogates.deterministic` on the first critic) and the critics' optimiser."""

    space: BoxSpace
    actor: nn.Module
    critic: nn.Module
    step: ProxStep
    critic_tx: optax.GradientTransformation

    def init(self, key: PRNGKey, obs: Array) -> tuple[Params, State, optax.OptState]:
        """``({"actor": θ, "critic": φ}, the actor step's state, the critic's optimiser state)`` on features ``obs``."""
        k_actor, k_critic = jax.random.split(key)
        theta = self.actor.init(k_actor, obs)
        phi = self.critic.init(k_critic, obs, self.actor.apply(theta, obs))
        return {"actor": theta, "critic": phi}, self.step.init(theta), self.critic_tx.init(phi)

    def explore(self, params: Params, obs: Array, key: PRNGKey, sigma: Array | float) -> Array:
        """The behaviour policy ``clip(μ_θ(s) + σ·half_range·ε, low, high)``."""
        return gaussian_explore(key, self.actor.apply(params["actor"], obs), sigma, self.space)

    def mode(self, params: Params, obs: Array) -> Array:
        """The deterministic policy μ_θ(s)."""
        return self.actor.apply(params["actor"], obs)


def deterministic_agent(cfg: Any, action_space: Space, algo: str, num_critics: int = 1) -> DeterministicAgent:
    """:class:`DeterministicAgent` for a flat bounded box (a one-line ConfigError naming ``algo`` otherwise);
    ``num_critics = 2`` gives TD3's twin critics (the actor ascends the first). ``cfg``: the algorithm's
    config (its ``network``, ``step.lr`` and ``critic.q_lr``)."""
    space = require_box(action_space, algo)
    hidden, activation = tuple(cfg.network.hidden), cfg.network.activation
    actor = deterministic_actor(space, hidden, activation)
    act = ACTIVATIONS[activation]
    if num_critics == 1:
        critic = QNetwork(hidden=hidden, activation=act)
        first = lambda q: q
    else:
        critic = twin_q(QNetwork, num_critics, hidden=hidden, activation=act)
        first = lambda q: q[0]
    step = actor_step(
        deterministic(lambda b, a: first(critic.apply(b.critic, b.obs, a))),
        lambda theta, b, key: actor.apply(theta, b.obs),
        cfg.step.lr,
    )
    return DeterministicAgent(space, actor, critic, step, optax.adam(cfg.critic.q_lr))


def critic_step(
    loss: Callable[[Params, Transition], tuple[Array, Metrics]],
    tx: optax.GradientTransformation,
    phi: Params,
    opt_state: optax.OptState,
    batch: Transition,
) -> tuple[Params, optax.OptState, Metrics]:
    """One optimiser step of a critic on its TD loss ``loss(φ, batch) -> (value, metrics)`` over the whole
    minibatch (:func:`~proxrl.prox.solvers.fit`); metrics are the loss's, with ``critic_loss``."""
    phi, opt_state, fitted = fit(loss, tx, phi, opt_state, batch, None)
    metrics = {k: v[0, 0] for k, v in fitted.items() if k != "grad_norm"}
    metrics["critic_loss"] = metrics.pop("loss")
    return phi, opt_state, metrics


# ---------------------------------------------------------------------------------------- the learner


class ReplayState(NamedTuple):
    """The learner state of every replay-based method."""

    agent: State
    """The algorithm's own state (parameters, target parameters, optimiser states, counters)."""
    buffer: Replay
    """The replay buffer (:mod:`proxrl.deep.replay`)."""
    env_steps: Array
    """Environment steps stored so far (int32, over all parallel environments)."""
    key: PRNGKey


InitAgent = Callable[[PRNGKey, Array], State]
"""``init_agent(key, obs[B, D]) -> agent_state`` (obs already float32 features)."""
ActAgent = Callable[[State, Array, PRNGKey], Array]
"""``act_agent(agent_state, obs[B, D], key) -> action[B, ...]``: the exploration policy."""
ModeAgent = Callable[[State, Array], Array]
"""``mode_agent(agent_state, obs[B, D]) -> action[B, ...]``: the deterministic policy."""
UpdateAgent = Callable[[State, Transition, PRNGKey], tuple[State, Metrics]]
"""``update_agent(agent_state, batch[n], key) -> (agent_state, metrics of scalars)``: one gradient step."""


def replay_learner(
    name: str,
    init_agent: InitAgent,
    act_agent: ActAgent,
    mode_agent: ModeAgent,
    update_agent: UpdateAgent,
    cfg: Any,
    observation_space: Space,
    action_space: Space,
) -> Learner:
    """An off-policy algorithm as a :class:`~proxrl.types.Learner`: the buffer and schedule every replay
    method shares around the algorithm's four functions.

    ``cfg`` is the algorithm's config (validated here); this function reads its ``rollout`` (``num_envs``,
    ``num_steps``) and ``replay`` (:class:`ReplaySchedule`). The learner state is a
    :class:`ReplayState` (agent state, buffer, env-step counter, key).

    - ``act(state, obs, key)``: uniform random actions in the bounds (or over the discrete actions) while
      fewer than ``learning_starts`` environment steps are stored, else ``act_agent``;
    - ``mode(state, obs)``: ``mode_agent`` (the deterministic policy for evaluation);
    - ``learn(state, traj)``: the ``[T, B]`` rollout is flattened to ``[T·B]`` and added to the buffer; then,
      once at least ``learning_starts`` steps are stored (counting this rollout), ``gradient_steps`` calls of
      ``update_agent`` (a ``lax.scan``), each on a fresh minibatch of ``batch_size`` transitions drawn
      uniformly with replacement. Before that the update is skipped (``lax.cond``; under a vmap over seeds
      with ``axis_name=loops.SEED_AXIS`` it stays skipped, see :func:`~proxrl.deep.loops.lockstep`) and
      every algorithm metric is NaN ("not measured", like ``episodic_return`` without a finished episode).

    Metrics: the algorithm's, averaged over the gradient steps that report them (``nanmean``: a step may
    report NaN for a quantity it did not compute, e.g. TD3's actor loss between delayed updates), plus
    ``buffer_size`` (entries stored) and ``gradient_updates`` (this call's count: 0 or ``gradient_steps``).

    With observation or reward normalisation on (``loops.Normalization``) the buffer keeps the raw transitions
    and every minibatch is normalised when it is drawn, with the statistics of that time (``learn_raw``, as
    Stable-Baselines3's VecNormalize does with a replay buffer), so old and new transitions share one scale in
    the Bellman targets. An observation space that is not a box keeps each transition normalised by the
    statistics of its own time. No off-policy preset turns normalisation on.

    Observations are cast to float32 and flattened to ``[..., D]`` before they reach the agent; stored
    observations are float32 ``[D]``, actions float32 ``[d]`` (box) or int32 ``()`` (discrete), rewards
    float32, ``terminated``/``truncated`` bool.
    """
    cfg.validate()
    obs_dim = int(np.prod(observation_space.shape)) if observation_space.shape else 1
    gradient_steps = int(cfg.replay.gradient_steps)
    batch_size = int(cfg.replay.batch_size)
    learning_starts = int(cfg.replay.learning_starts)
    act_dtype = action_example(action_space).dtype

    def feats(obs: Array) -> Array:
        return obs_features(obs, observation_space)

    def init(key: PRNGKey, obs: Array) -> ReplayState:
        k_agent, key = jax.random.split(key)
        example = Transition(
            obs=jnp.zeros((obs_dim,), jnp.float32),
            action=action_example(action_space),
            reward=jnp.zeros((), jnp.float32),
            terminated=jnp.zeros((), bool),
            truncated=jnp.zeros((), bool),
            next_obs=jnp.zeros((obs_dim,), jnp.float32),
        )
        buffer = replay_init(example, int(cfg.replay.buffer_size))
        return ReplayState(init_agent(k_agent, feats(obs)), buffer, jnp.zeros((), jnp.int32), key)

    def act(state: ReplayState, obs: Array, key: PRNGKey) -> Array:
        k_rand, k_agent = jax.random.split(key)
        x = feats(obs)
        policy = jnp.asarray(act_agent(state.agent, x, k_agent), act_dtype)
        uniform = random_action(k_rand, action_space, x.shape[0])
        warm = state.env_steps < learning_starts
        return jnp.where(warm, uniform, policy)

    def mode(state: ReplayState, obs: Array) -> Array:
        return jnp.asarray(mode_agent(state.agent, feats(obs)), act_dtype)

    def learn(
        state: ReplayState, traj: Transition, view: Callable[[Transition], Transition] | None = None
    ) -> tuple[ReplayState, Metrics]:
        flat = flatten_rollout(traj)
        flat = Transition(
            obs=feats(flat.obs),
            action=jnp.asarray(flat.action, act_dtype),
            reward=jnp.asarray(flat.reward, jnp.float32),
            terminated=jnp.asarray(flat.terminated, bool),
            truncated=jnp.asarray(flat.truncated, bool),
            next_obs=feats(flat.next_obs),
        )
        env_steps = state.env_steps + flat.reward.shape[0]
        key, k_sample, k_updates = jax.random.split(state.key, 3)
        # every minibatch is drawn from the buffer with this rollout added but read from the buffer as it
        # was, and the buffer is updated after those reads: in place (otherwise XLA copies the buffer)
        batches = jax.vmap(lambda k: replay_sample_after_add(state.buffer, flat, k, batch_size))(
            jax.random.split(k_sample, gradient_steps)
        )
        buffer = replay_add(state.buffer, flat, after=batches)
        if view is not None:  # raw transitions in the buffer, normalised as they are drawn
            batches = viewed(batches, view)
        keys = jax.random.split(k_updates, gradient_steps)

        def train(agent: State, batches: Transition) -> tuple[State, Metrics]:
            agent, metrics = jax.lax.scan(lambda a, xs: update_agent(a, *xs), agent, (batches, keys))
            return agent, {k: jnp.nanmean(jnp.asarray(v, jnp.float32)) for k, v in metrics.items()}

        def skip(agent: State, batches: Transition) -> tuple[State, Metrics]:
            shapes = jax.eval_shape(train, agent, batches)[1]
            return agent, {k: jnp.full(v.shape, jnp.nan, v.dtype) for k, v in shapes.items()}

        started = lockstep(env_steps >= learning_starts)  # a branch, not a select, under vmap over seeds
        agent, metrics = jax.lax.cond(started, train, skip, state.agent, batches)
        metrics = dict(
            metrics, buffer_size=buffer.size, gradient_updates=jnp.where(started, gradient_steps, 0)
        )
        return ReplayState(agent, buffer, env_steps, key), metrics

    def viewed(batches: Transition, view: Callable[[Transition], Transition]) -> Transition:
        """``view`` on stored transitions ``[..., D]``: observations in the space's shape, then features again."""
        shape = tuple(observation_space.shape)
        lead = batches.obs.shape[:-1]
        raw = batches._replace(
            obs=batches.obs.reshape(*lead, *shape), next_obs=batches.next_obs.reshape(*lead, *shape)
        )
        seen = view(raw)
        return seen._replace(obs=feats(seen.obs), next_obs=feats(seen.next_obs))

    # raw storage needs observations that can be reshaped back into the space (a box)
    learn_raw = learn if isinstance(observation_space, BoxSpace) else None
    return Learner(
        name,
        init,
        act,
        mode,
        learn,
        int(cfg.rollout.num_envs),
        int(cfg.rollout.num_steps),
        learn_raw=learn_raw,
    )
