"""Flax (linen) networks for deep policy-based methods: policy heads π_θ, critics V_φ and Q_φ.

Every module maps observations ``obs[..., obs_dim]`` (flatten image-like observations first, see
:func:`flatten_obs`) to distribution *parameters* or values; :mod:`proxrl.deep.distributions`
turns parameters into distributions. Initialisation follows the usual PPO details: orthogonal
weights with gain √2 in hidden layers, 0.01 for policy heads (so π_θ starts near uniform / near
the mean action), 1.0 for value heads; zero biases.

| module                          | output                          | used by                |
|---------------------------------|---------------------------------|------------------------|
| ``CategoricalPolicy``           | logits ``[..., A]``             | A2C, PPO (discrete)    |
| ``GaussianPolicy``              | (μ, log σ), σ a parameter       | A2C, PPO (continuous)  |
| ``ScheduledGaussianPolicy``     | (μ, log σ_k), σ_k scheduled     | on-policy, ``--sigma`` |
| ``StateDependentGaussianPolicy``| (μ(s), log σ(s))                | SAC (tanh-squashed)    |
| ``DeterministicPolicy``         | μ_θ(s) in [low, high]           | DPG, DDPG, TD3         |
| ``ValueNetwork``                | V_φ(s) ``[...]``                | A2C, PPO               |
| ``QNetwork``                    | Q_φ(s, a) ``[...]``             | DDPG, TD3, SAC         |
| ``DiscreteQNetwork``            | Q_φ(s, ·) ``[..., A]``          | actor-critic with Q_φ  |
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from proxrl.deep.distributions import scale_to_bounds
from proxrl.types import Array

Activation = Callable[[Array], Array]
HIDDEN_GAIN = math.sqrt(2.0)
POLICY_GAIN = 0.01
VALUE_GAIN = 1.0


def flatten_obs(obs: Array, obs_ndim: int) -> Array:
    """Merge the last ``obs_ndim`` axes (one observation) into one: ``[..., *obs_shape] -> [..., D]``."""
    return obs.reshape(*obs.shape[: obs.ndim - obs_ndim], -1)


def orthonormal_columns(a: Array) -> Array:
    """The Q of ``a = QR`` with ``diag(R) > 0`` for a tall ``a`` ``[m, n]`` (m ≥ n, full column rank).

    Classical Gram–Schmidt, each column orthogonalised twice ("twice is enough": ``‖QᵀQ − I‖`` stays at
    rounding level), in plain JAX operations. Why not ``jnp.linalg.qr``: on CPU, jaxlib 0.10's LAPACK
    kernels split a *batched* factorisation (a QR under ``vmap`` over seeds) across XLA's intra-op thread
    pool and block a pool thread until the pieces finish; two such calls running at once on a 2-core
    machine hold both pool threads and wait for each other for ever (stack: ``QrFactorization`` →
    ``ParallelBatchMap`` → ``BlockingCounter::Wait``): a training run stalls with no error.
    """
    m, n = a.shape
    if m < n:
        raise ValueError(f"orthonormal_columns needs a tall matrix (rows >= columns), got shape {a.shape}")

    def column(j: Array, q: Array) -> Array:
        v = jax.lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False)
        for _ in range(2):  # columns ≥ j of q are still zero, so this projects onto span(q_1 … q_{j−1})
            v = v - q @ (q.T @ v)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def orthogonal(gain: float = 1.0) -> Callable[..., Array]:
    """Orthogonal initialisation (Saxe et al. 2014) of a kernel ``[..., fan_out]``: ``gain·Q`` with Q uniform
    (Haar) among matrices with orthonormal columns (or rows, when fan_out exceeds the other axes' size).

    The same law — and, given the key, the same numbers up to rounding — as ``flax.linen.initializers.
    orthogonal``: a standard normal matrix is drawn with the same shape and Q is its QR factor with a
    positive diagonal in R; only the factorisation differs (:func:`orthonormal_columns`, no LAPACK call).
    """

    def init(key: jax.Array, shape: Sequence[int], dtype: jnp.dtype = jnp.float32) -> Array:
        if len(shape) < 2:
            raise ValueError(
                f"orthogonal initialisation needs at least 2 dimensions, got shape {tuple(shape)}"
            )
        n_cols = int(shape[-1])
        n_rows = math.prod(shape) // n_cols
        wide = n_rows < n_cols
        a = jax.random.normal(key, (n_cols, n_rows) if wide else (n_rows, n_cols), dtype)
        q = orthonormal_columns(a)
        q = q.T if wide else q
        return gain * q.reshape(tuple(shape))

    return init


def dense(features: int, gain: float, name: str | None = None) -> nn.Dense:
    """A dense layer with orthogonal weights of the given gain (:func:`orthogonal`) and zero bias."""
    return nn.Dense(features, kernel_init=orthogonal(gain), bias_init=nn.initializers.zeros, name=name)


class MLP(nn.Module):
    """Torso: ``x ↦ act(W_L ⋯ act(W_1 x + b_1) ⋯ + b_L)`` with orthogonal(√2) hidden layers."""

    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for i, width in enumerate(self.hidden):
            x = self.activation(dense(width, HIDDEN_GAIN, name=f"hidden_{i}")(x))
        return x


class CategoricalPolicy(nn.Module):
    """Logits of π_θ(·|s) = softmax(f_θ(s)) over ``num_actions`` actions: ``[..., A]``."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        return dense(self.num_actions, POLICY_GAIN, name="logits")(MLP(self.hidden, self.activation)(obs))


class GaussianPolicy(nn.Module):
    """π_θ(·|s) = N(μ_θ(s), diag σ²) with log σ a learned, state-independent parameter (PPO's choice).

    Returns ``(mean[..., d], log_std[..., d])``; ``log_std`` starts at ``log_std_init``.
    """

    action_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, obs: Array) -> tuple[Array, Array]:
        mean = dense(self.action_dim, POLICY_GAIN, name="mean")(MLP(self.hidden, self.activation)(obs))
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class ScheduledGaussianPolicy(nn.Module):
    """π_θ(·|s) = N(μ_θ(s), σ_k² I) with σ_k a hyperparameter (the lecture's option 2), not learned.

    ``σ_k`` is passed at call time, or, when the call gives none, read from the variable ``sigma`` of the
    collection ``"schedule"`` (initially ``sigma_init``), which the learner overwrites with σ_k before each
    update's rollout (:meth:`proxrl.deep.on_policy.common.Agent.scheduled`). Either way σ_k enters through
    ``stop_gradient``: no step moves it. σ_k usually comes from
    :func:`~proxrl.deep.distributions.sigma_schedule`. Returns ``(mean[..., d], log σ_k broadcast to [..., d])``.
    """

    action_dim: int
    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh
    sigma_init: float = 1.0

    @nn.compact
    def __call__(self, obs: Array, sigma: Array | float | None = None) -> tuple[Array, Array]:
        mean = dense(self.action_dim, POLICY_GAIN, name="mean")(MLP(self.hidden, self.activation)(obs))
        if sigma is None:
            sigma = self.variable(
                "schedule", "sigma", lambda: jnp.asarray(self.sigma_init, jnp.float32)
            ).value
        log_sigma = jnp.log(jax.lax.stop_gradient(jnp.asarray(sigma, mean.dtype)))
        return mean, jnp.broadcast_to(log_sigma, mean.shape)


class StateDependentGaussianPolicy(nn.Module):
    """π_θ(·|s) = N(μ_θ(s), diag σ_θ(s)²): a second head gives log σ(s), kept in [min, max] smoothly,

        log σ(s) = log_std_min + (log_std_max − log_std_min)·(tanh(h(s)) + 1)/2.

    Returns ``(mean[..., d], log_std[..., d])``; squash with
    :func:`~proxrl.deep.distributions.tanh_gaussian_sample` for bounded actions (SAC).
    """

    action_dim: int
    hidden: Sequence[int] = (256, 256)
    activation: Activation = nn.relu
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, obs: Array) -> tuple[Array, Array]:
        h = MLP(self.hidden, self.activation)(obs)
        mean = dense(self.action_dim, POLICY_GAIN, name="mean")(h)
        raw = dense(self.action_dim, POLICY_GAIN, name="log_std")(h)
        return mean, scale_to_bounds(jnp.tanh(raw), self.log_std_min, self.log_std_max)


class DeterministicPolicy(nn.Module):
    """μ_θ(s) = low + (tanh(f_θ(s)) + 1)·(high − low)/2, inside the action bounds: ``[..., d]``.

    ``action_low`` / ``action_high``: one bound per action dimension (tuples, so the module hashes).
    """

    action_low: tuple[float, ...]
    action_high: tuple[float, ...]
    hidden: Sequence[int] = (256, 256)
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        d = len(self.action_low)
        raw = dense(d, POLICY_GAIN, name="action")(MLP(self.hidden, self.activation)(obs))
        return scale_to_bounds(jnp.tanh(raw), jnp.asarray(self.action_low), jnp.asarray(self.action_high))


class ValueNetwork(nn.Module):
    """State value V_φ(s): ``obs[..., obs_dim] -> [...]``."""

    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        return dense(1, VALUE_GAIN, name="value")(MLP(self.hidden, self.activation)(obs))[..., 0]


class QNetwork(nn.Module):
    """Action value for continuous actions, Q_φ(s, a) = f_φ(concat(s, a)): ``[...]``."""

    hidden: Sequence[int] = (256, 256)
    activation: Activation = nn.relu

    @nn.compact
    def __call__(self, obs: Array, action: Array) -> Array:
        x = jnp.concatenate([obs, action], axis=-1)
        return dense(1, VALUE_GAIN, name="q")(MLP(self.hidden, self.activation)(x))[..., 0]


class DiscreteQNetwork(nn.Module):
    """Action values for a finite action set, Q_φ(s, ·): ``obs[..., obs_dim] -> [..., A]``."""

    num_actions: int
    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh

    @nn.compact
    def __call__(self, obs: Array) -> Array:
        return dense(self.num_actions, VALUE_GAIN, name="q")(MLP(self.hidden, self.activation)(obs))
