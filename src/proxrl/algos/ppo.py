"""Proximal Policy Optimization (PPO = NPG + V_φ) on JAX-native (gymnax) environments.

Each update k is the lecture's loop::

    data_k  = collect(π_θk)                   # num_envs × num_steps steps, JaxEnv.rollout (lax.scan)
    Â_k     = GAE(λ) with V_φk                # estimators.gae, vmapped over environments
    θ_{k+1} ≈ argmax_θ  L_k(θ; Â_k) + c·H     # update_epochs × num_minibatches Adam steps on
                                              # objectives.ppo (clip / ratio / KL, fixed or adaptive β)
    φ_{k+1} ≈ argmin_φ ½·(V_φ(s) − R̂)²        # in the same steps, weighted by vf_coef

and the whole run — every update — is one function ``train(key)`` (a ``lax.scan`` over updates),
so it jits once and ``jax.vmap(train)(keys)`` trains many seeds in one compiled call::

    config = PPOConfig(total_timesteps=100_000)
    train = make_train(config, "CartPole-v1")
    state, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    returns = evaluate(state.params, "CartPole-v1", key, num_episodes=10)   # (vmap it over seeds)

Config fields are split as in Rejax: *static* ones fix shapes and code paths (budgets, network
sizes, surrogate kind, on/off details), *traced* ones are numbers (:class:`PPOHyper`) that
``train(key, hyper)`` may receive as arrays, so hyperparameters can be vmapped like seeds.

The usual implementation details (CleanRL's list) are options with their usual defaults:
orthogonal initialisation (in the networks), separate actor and critic MLPs, Adam with ε = 1e-5,
linear learning-rate annealing, GAE with truncation bootstrapped from V(true next obs),
per-minibatch advantage normalisation, clipped value loss, global gradient-norm clipping, entropy
bonus, approx_kl and clip_frac diagnostics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import tyro

from proxrl.errors import (
    ConfigError,
    check_choice,
    check_in_range,
    check_int_at_least,
    check_positive,
)
from proxrl.estimators import gae, normalize_advantages
from proxrl.objectives import ppo as objectives
from proxrl.policies.distributions import categorical, diag_gaussian
from proxrl.policies.networks import CategoricalPolicy, GaussianPolicy, ValueNetwork, flatten_obs
from proxrl.settings.jax_envs import BoxSpace, DiscreteSpace, EnvState, JaxEnv, make_jax_env
from proxrl.types import Array, Metrics, Params, PRNGKey, Trainer, Transition

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {"tanh": nn.tanh, "relu": nn.relu}


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; defaults follow CleanRL's ``ppo.py`` (Atari/classic-control settings)."""

    # ---- static: shapes, budgets and code paths (changing one recompiles) ----
    total_timesteps: Annotated[int, tyro.conf.Suppress] = 500_000
    """Environment steps in the whole run (over all parallel environments); rounded down to whole updates.
    The CLI sets it from ``--total-steps``."""
    num_envs: int = 4
    """Parallel environments B stepped in lockstep (vmapped)."""
    num_steps: int = 128
    """Steps T per environment per rollout; one update consumes a batch of T·B transitions."""
    update_epochs: int = 4
    """Passes (epochs) over each batch: the m inner steps of the proximal update."""
    num_minibatches: int = 4
    """Minibatches per epoch; the batch T·B must be divisible by it."""
    surrogate: str = "clip"
    """Policy objective: "none" (ratio·A), "clip" (min(ratio·A, clip(ratio)·A)), "kl_fixed" or "kl_adaptive"."""
    anneal_lr: bool = True
    """Decay the learning rate linearly from ``lr`` to 0 over the updates."""
    norm_adv: bool = True
    """Standardise the advantages within each minibatch."""
    clip_vloss: bool = True
    """Clip the value prediction to within ``clip_eps`` of the old one in the value loss."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and (separate) critic MLPs."""
    activation: str = "tanh"
    """Hidden activation: "tanh" or "relu"."""
    log_std_init: float = 0.0
    """Initial log σ of the Gaussian policy (continuous actions; σ is a learned, state-independent parameter)."""

    # ---- traced: numbers, may be vmapped (see PPOHyper) ----
    lr: float = 2.5e-4
    """Adam learning rate (initial value when annealed)."""
    gamma: float = 0.99
    """Discount γ ∈ [0, 1]."""
    gae_lambda: float = 0.95
    """GAE λ ∈ [0, 1]: 0 gives the TD error, 1 the Monte Carlo return minus V."""
    clip_eps: float = 0.2
    """Clip range ε > 0 of the ratio (and of the value prediction with ``clip_vloss``)."""
    beta: float = 1.0
    """KL coefficient β = 1/η for the "kl_fixed" surrogate, and its initial value for "kl_adaptive"."""
    kl_target: float = 0.01
    """Target KL d_targ of the adaptive rule (β halves below d_targ/1.5, doubles above 1.5·d_targ)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient c."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this value."""

    @property
    def batch_size(self) -> int:
        """Transitions per update, T·B."""
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        """Transitions per Adam step."""
        return self.batch_size // self.num_minibatches

    @property
    def num_updates(self) -> int:
        """Updates (rollout + inner steps) in the run."""
        return self.total_timesteps // self.batch_size

    def hyper(self) -> PPOHyper:
        """The traced fields, as a :class:`PPOHyper` of floats."""
        return PPOHyper(**{f: float(getattr(self, f)) for f in PPOHyper._fields})

    def validate(self) -> PPOConfig:
        """Raise :class:`~proxrl.errors.ConfigError` (one line) on a bad value; return ``self``."""
        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches"):
            check_int_at_least(name, getattr(self, name), 1)
        check_choice("surrogate", self.surrogate, objectives.SURROGATES)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        if len(self.hidden) == 0:
            raise ConfigError("hidden must list at least one layer width, got ()")
        for width in self.hidden:
            check_int_at_least("hidden layer width", width, 1)
        if self.batch_size % self.num_minibatches:
            raise ConfigError(
                f"num_minibatches must divide num_envs·num_steps = {self.batch_size}, got {self.num_minibatches}"
            )
        if self.num_updates < 1:
            raise ConfigError(
                f"total_timesteps must be >= num_envs·num_steps = {self.batch_size} (one update), "
                f"got {self.total_timesteps}"
            )
        check_positive("lr", self.lr)
        check_in_range("gamma", self.gamma, 0.0, 1.0)
        check_in_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_positive("clip_eps", self.clip_eps)
        check_in_range("beta", self.beta, 0.0, float("inf"), high_open=True)
        check_positive("kl_target", self.kl_target)
        check_in_range("ent_coef", self.ent_coef, 0.0, float("inf"), high_open=True)
        check_in_range("vf_coef", self.vf_coef, 0.0, float("inf"), high_open=True)
        check_positive("max_grad_norm", self.max_grad_norm)
        return self


class PPOHyper(NamedTuple):
    """The traced hyperparameters (scalars, or arrays with a leading axis under ``jax.vmap``)."""

    lr: Any
    gamma: Any
    gae_lambda: Any
    clip_eps: Any
    beta: Any
    kl_target: Any
    ent_coef: Any
    vf_coef: Any
    max_grad_norm: Any


class TrainState(NamedTuple):
    """Everything carried from one update to the next.

    ``params = {"actor": θ, "critic": φ}``; ``episode_return``: the running undiscounted return of
    each environment's current episode ``[B]``; ``beta``: the current KL coefficient.
    """

    params: Params
    opt_state: optax.OptState
    env_state: EnvState
    obs: Array
    episode_return: Array
    beta: Array
    key: PRNGKey
    update: Array
    """Updates done so far (drives learning-rate annealing)."""
    hyper: PPOHyper
    """The traced hyperparameters of this run."""


class Batch(NamedTuple):
    """One update's flat training data ``[N = T·B, ...]`` under θ_k, φ_k."""

    obs: Array
    action: Array
    logp_old: Array
    dist_old: Any
    value_old: Array
    adv: Array
    returns: Array


# --------------------------------------------------------------------------------------------------
# Policy heads: network output → distrax distribution, for discrete and continuous actions.
# --------------------------------------------------------------------------------------------------


class Agent(NamedTuple):
    """The actor and critic modules for an environment, and how to read the actor's output."""

    actor: nn.Module
    critic: nn.Module
    distribution: Callable[[Any], Any]
    """actor output → distrax distribution over actions."""
    mode: Callable[[Any], Array]
    """actor output → the deterministic action (argmax / mean)."""
    obs_ndim: int


def make_agent(env: JaxEnv, hidden: tuple[int, ...], activation: str, log_std_init: float = 0.0) -> Agent:
    """Categorical MLP for a discrete action space, Gaussian (learned log σ) for a box; MLP critic."""
    act = ACTIVATIONS[activation]
    critic = ValueNetwork(hidden=hidden, activation=act)
    obs_ndim = len(env.observation_space.shape)
    space = env.action_space
    if isinstance(space, DiscreteSpace):
        actor = CategoricalPolicy(num_actions=space.n, hidden=hidden, activation=act)
        return Agent(actor, critic, categorical, lambda logits: jnp.argmax(logits, axis=-1), obs_ndim)
    if isinstance(space, BoxSpace):
        if len(space.shape) != 1:
            raise ConfigError(f"PPO needs a flat (1-D) box action space, got shape {space.shape}")
        actor = GaussianPolicy(
            action_dim=space.shape[0], hidden=hidden, activation=act, log_std_init=log_std_init
        )
        return Agent(actor, critic, lambda out: diag_gaussian(*out), lambda out: out[0], obs_ndim)
    raise ConfigError(f"PPO handles discrete or box action spaces, got {type(space).__name__}")


def _as_env(env_id: str | JaxEnv) -> JaxEnv:
    """The environment for an id; safe inside a trace (gymnax builds its spaces with jnp)."""
    if isinstance(env_id, JaxEnv):
        return env_id
    with jax.ensure_compile_time_eval():
        return make_jax_env(env_id)


def _features(agent: Agent, obs: Array) -> Array:
    return flatten_obs(jnp.asarray(obs, jnp.float32), agent.obs_ndim)


def explained_variance(pred: Array, target: Array) -> Array:
    """``1 − Var[target − pred] / Var[target]``: 1 is perfect, 0 no better than a constant (NaN if Var = 0)."""
    var = jnp.var(target)
    return jnp.where(var > 0, 1.0 - jnp.var(target - pred) / jnp.where(var > 0, var, 1.0), jnp.nan)


def episode_stats(traj: Transition, episode_return: Array) -> tuple[Array, Array, Array]:
    """Undiscounted returns of the episodes completed in a rollout.

    Args:
      traj: time-major ``[T, B]`` transitions.
      episode_return: running return of each environment's current episode at the rollout start ``[B]``.

    Returns:
      ``(mean return of completed episodes (NaN if none), number completed, running returns [B])``.
    """

    def step(running: Array, xs: tuple[Array, Array]) -> tuple[Array, tuple[Array, Array]]:
        reward, done = xs
        total = running + reward
        return jnp.where(done, 0.0, total), (total, done)

    done = traj.terminated | traj.truncated
    running, (totals, dones) = jax.lax.scan(step, episode_return, (traj.reward, done))
    count = jnp.sum(dones)
    mean = jnp.where(count > 0, jnp.sum(jnp.where(dones, totals, 0.0)) / jnp.maximum(count, 1), jnp.nan)
    return mean, count, running


# --------------------------------------------------------------------------------------------------
# make_train
# --------------------------------------------------------------------------------------------------


def make_ppo(config: PPOConfig, env_id: str | JaxEnv, eval_episodes: int = 10) -> Trainer:
    """PPO as a :class:`~proxrl.types.Trainer`: ``init(key, hyper=None)``, ``update(state)`` (one
    collect → GAE → proximal step iteration) and ``evaluate(state, key)`` (mean deterministic return).

    Per-update metrics: ``episodic_return`` (mean undiscounted return of the episodes completed during
    the rollout; NaN when none completed), ``episodes``, ``approx_kl``, ``kl`` (exact mean
    KL(π_θ_{k+1}, π_θk) over the batch), ``clip_frac``, ``explained_variance``, ``entropy``,
    ``value_loss``, ``policy_loss`` (the first five loss terms averaged over the inner steps), ``beta``
    (in force during the update) and ``learning_rate``.

    ``hyper``: a :class:`PPOHyper` overriding the traced fields (default ``config.hyper()``); it is
    carried in the state, so ``jax.vmap(init)(keys, hypers)`` sweeps hyperparameters like seeds.
    """
    config.validate()
    check_int_at_least("eval_episodes", eval_episodes, 1)
    env = _as_env(env_id)
    agent = make_agent(env, tuple(config.hidden), config.activation, config.log_std_init)
    num_updates = config.num_updates
    kind = config.surrogate

    def policy_fn(params: Params, obs: Array, key: PRNGKey) -> Array:
        return agent.distribution(agent.actor.apply(params["actor"], _features(agent, obs))).sample(seed=key)

    def learning_rate(hp: PPOHyper, update: Array) -> Array:
        """``lr``, or ``lr·(1 − k/K)`` at update k of K with annealing."""
        if not config.anneal_lr:
            return jnp.asarray(hp.lr, jnp.float32)
        return hp.lr * jnp.maximum(1.0 - update / num_updates, 0.0)  # 0 past the planned budget

    def optimiser(hp: PPOHyper, lr: Array) -> optax.GradientTransformation:
        return optax.chain(
            optax.clip_by_global_norm(hp.max_grad_norm),
            optax.scale_by_adam(eps=1e-5),
            optax.scale(-lr),
        )

    def loss_fn(params: Params, mb: Batch, hp: PPOHyper, beta: Array) -> tuple[Array, Metrics]:
        out = agent.actor.apply(params["actor"], mb.obs)
        dist = agent.distribution(out)
        logp = dist.log_prob(mb.action)
        entropy = dist.entropy()
        adv = normalize_advantages(mb.adv) if config.norm_adv else mb.adv
        kl = dist.kl_divergence(agent.distribution(mb.dist_old)) if kind.startswith("kl") else None
        pg_loss, terms = objectives.policy_loss(
            kind, logp, mb.logp_old, adv, clip_eps=hp.clip_eps, kl=kl, beta=beta
        )
        v = agent.critic.apply(params["critic"], mb.obs)
        v_loss = objectives.value_loss(
            v, mb.value_old, mb.returns, hp.clip_eps if config.clip_vloss else None
        )
        loss = pg_loss - objectives.entropy_bonus(entropy, hp.ent_coef) + hp.vf_coef * v_loss
        metrics = {
            "policy_loss": pg_loss,
            "value_loss": v_loss,
            "entropy": jnp.mean(entropy),
            "approx_kl": terms.approx_kl,
            "clip_frac": terms.clip_frac,
        }
        return loss, metrics

    def make_batch(params: Params, traj: Transition, hp: PPOHyper) -> Batch:
        """One forward pass under θ_k, φ_k over the rollout, then GAE per environment."""
        obs_t = _features(agent, traj.obs)
        dist_old = agent.actor.apply(params["actor"], obs_t)
        logp_old = agent.distribution(dist_old).log_prob(traj.action)
        v_t = agent.critic.apply(params["critic"], obs_t)
        v_next = agent.critic.apply(params["critic"], _features(agent, traj.next_obs))
        discount_t = hp.gamma * (1.0 - traj.terminated.astype(jnp.float32))
        reset_t = traj.terminated | traj.truncated
        adv, returns = jax.vmap(gae, in_axes=(1, 1, 1, 1, None, 1), out_axes=1)(
            traj.reward, discount_t, v_t, v_next, hp.gae_lambda, reset_t
        )
        batch = Batch(obs_t, traj.action, logp_old, dist_old, v_t, adv, returns)
        return jax.tree.map(lambda a: a.reshape(config.batch_size, *a.shape[2:]), batch)

    def init(key: PRNGKey, hyper: PPOHyper | None = None) -> TrainState:
        hp = config.hyper() if hyper is None else hyper
        hp = PPOHyper(*(jnp.asarray(h, jnp.float32) for h in hp))
        key, k_actor, k_critic, k_env = jax.random.split(key, 4)
        obs, env_state = env.reset_batch(k_env, config.num_envs)
        x = _features(agent, obs)
        params = {"actor": agent.actor.init(k_actor, x), "critic": agent.critic.init(k_critic, x)}
        return TrainState(
            params=params,
            opt_state=optimiser(hp, hp.lr).init(params),
            env_state=env_state,
            obs=obs,
            episode_return=jnp.zeros(config.num_envs, jnp.float32),
            beta=hp.beta,
            key=key,
            update=jnp.zeros((), jnp.int32),
            hyper=hp,
        )

    def update(state: TrainState) -> tuple[TrainState, Metrics]:
        hp = state.hyper
        key, k_roll, k_perm = jax.random.split(state.key, 3)
        lr_now = learning_rate(hp, state.update)
        tx = optimiser(hp, lr_now)
        # data_k = collect(π_θk)
        traj, env_state, obs = env.rollout(
            k_roll, state.env_state, state.obs, policy_fn, state.params, config.num_steps
        )
        ep_mean, ep_count, ep_running = episode_stats(traj, state.episode_return)
        # Â_k = GAE(λ) under V_φk
        batch = make_batch(state.params, traj, hp)

        # θ_{k+1}: update_epochs × num_minibatches Adam steps on the surrogate
        def one_epoch(carry: tuple[Params, optax.OptState], k: PRNGKey) -> tuple[Any, Metrics]:
            perm = jax.random.permutation(k, config.batch_size)
            shuffled = jax.tree.map(
                lambda a: a[perm].reshape(config.num_minibatches, config.minibatch_size, *a.shape[1:]), batch
            )

            def one_step(carry: tuple[Params, optax.OptState], mb: Batch) -> tuple[Any, Metrics]:
                params, opt_state = carry
                grads, metrics = jax.grad(loss_fn, has_aux=True)(params, mb, hp, state.beta)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), metrics

            return jax.lax.scan(one_step, carry, shuffled)

        (params, opt_state), inner = jax.lax.scan(
            one_epoch, (state.params, state.opt_state), jax.random.split(k_perm, config.update_epochs)
        )
        # KL actually moved, exact, over the whole batch: KL(π_θ_{k+1}, π_θk)
        dist_new = agent.distribution(agent.actor.apply(params["actor"], batch.obs))
        kl = jnp.mean(dist_new.kl_divergence(agent.distribution(batch.dist_old)))
        beta = objectives.adapt_beta(state.beta, kl, hp.kl_target) if kind == "kl_adaptive" else state.beta

        metrics = {name: jnp.mean(value) for name, value in inner.items()}
        metrics.update(
            episodic_return=ep_mean,
            episodes=ep_count,
            kl=kl,
            explained_variance=explained_variance(batch.value_old, batch.returns),
            beta=state.beta,
            learning_rate=lr_now,
        )
        new_state = TrainState(params, opt_state, env_state, obs, ep_running, beta, key, state.update + 1, hp)
        return new_state, metrics

    def evaluate_state(state: TrainState, key: PRNGKey) -> Array:
        return jnp.mean(evaluate(state.params, env, key, eval_episodes, activation=config.activation))

    return Trainer("ppo", init, update, evaluate_state, config.batch_size)


def make_train(config: PPOConfig, env_id: str | JaxEnv) -> Callable[..., tuple[TrainState, Metrics]]:
    """``train(key, hyper=None) -> (final_state, metrics)``: the whole run as one pure function.

    A ``lax.scan`` of :func:`make_ppo`'s ``update`` over ``config.num_updates`` updates, so it jits once
    and ``jax.vmap(train)(keys)`` trains many seeds in one compiled call. ``metrics[name]`` has shape
    ``[num_updates]``, plus ``env_steps``.
    """
    trainer = make_ppo(config, env_id)

    def train(key: PRNGKey, hyper: PPOHyper | None = None) -> tuple[TrainState, Metrics]:
        state = trainer.init(key, hyper)
        state, metrics = jax.lax.scan(lambda s, _: trainer.update(s), state, None, length=config.num_updates)
        metrics["env_steps"] = (jnp.arange(config.num_updates) + 1) * config.batch_size
        return state, metrics

    return train


# --------------------------------------------------------------------------------------------------
# Deterministic evaluation
# --------------------------------------------------------------------------------------------------


def _hidden_from_params(actor_params: Params) -> tuple[int, ...]:
    torso = actor_params["params"]["MLP_0"]
    return tuple(int(torso[f"hidden_{i}"]["kernel"].shape[-1]) for i in range(len(torso)))


def evaluate(
    params: Params,
    env_id: str | JaxEnv,
    key: PRNGKey,
    num_episodes: int = 10,
    *,
    activation: str = "tanh",
    max_steps: int | None = None,
) -> Array:
    """Undiscounted returns ``[num_episodes]`` of the deterministic policy (argmax / Gaussian mean).

    ``params`` is ``TrainState.params`` of one run (vmap this function over seeds). The episodes run
    in parallel for ``max_steps`` steps (default: the environment's ``max_steps_in_episode``); rewards
    after each episode's first end are masked out. Pure and jittable (``env_id`` is static).
    """
    check_int_at_least("num_episodes", num_episodes, 1)
    env = _as_env(env_id)
    agent = make_agent(env, _hidden_from_params(params["actor"]), activation)
    horizon = max_steps or int(getattr(env.env_params, "max_steps_in_episode", 1000))
    k_reset, k_run = jax.random.split(key)
    obs, env_state = env.reset_batch(k_reset, num_episodes)

    def step(carry: tuple[Any, Array, Array, Array], k: PRNGKey) -> tuple[Any, None]:
        env_state, obs, total, alive = carry
        action = agent.mode(agent.actor.apply(params["actor"], _features(agent, obs)))
        out, env_state = env.step_batch(k, env_state, action)
        total = total + jnp.where(alive, out.reward, 0.0)
        alive = alive & ~(out.terminated | out.truncated)
        return (env_state, out.obs, total, alive), None

    init = (env_state, obs, jnp.zeros(num_episodes), jnp.ones(num_episodes, bool))
    (_, _, total, _), _ = jax.lax.scan(step, init, jax.random.split(k_run, horizon))
    return total
