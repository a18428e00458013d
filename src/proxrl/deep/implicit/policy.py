"""The implicit policy a = g_θ(s, ξ), ξ ∼ N(0, I), and its config piece.

g_θ is an MLP on the concatenation [s, ξ]; on a box the output is squashed into the bounds,
a = low + (tanh(·) + 1)(high − low)/2; on a finite action set the action is the argmax of the outputs. The
distribution of a given s is whatever pushing N(0, I) through g_θ(s, ·) gives: it can be sampled, its density is
not available. With ``noise_dim = 0`` the policy is deterministic; with ``linear`` it is linear in [s, ξ] (before the
squashing), the policy class of ARS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from proxrl.deep.config import ACTIVATIONS, Network
from proxrl.deep.distributions import scale_to_bounds
from proxrl.deep.jax_envs import BoxSpace, DiscreteSpace, Space
from proxrl.deep.networks import MLP, POLICY_GAIN, Activation, dense
from proxrl.errors import ConfigError, check_int_at_least
from proxrl.types import Array, PRNGKey


@dataclasses.dataclass(frozen=True)
class ImplicitNetwork(Network):
    """The generator a = g_θ(s, ξ): an MLP on the state and a noise input ξ ∼ N(0, I), or a linear map of them."""

    noise_dim: int = 1
    """Dimension of the noise input ξ ∼ N(0, I) of the implicit policy (0: a deterministic policy)."""
    linear: bool = False
    """Use a linear generator W[s; ξ] + b before the squashing (the policy class of ARS), ignoring hidden."""

    @property
    def layers(self) -> tuple[int, ...]:
        """The hidden widths the generator uses: none when linear."""
        return () if self.linear else tuple(self.hidden)

    def validate(self) -> None:
        """:meth:`Network.validate`; noise_dim ≥ 0."""
        super().validate()
        check_int_at_least("noise_dim", self.noise_dim, 0)


class ImplicitPolicy(nn.Module):
    """``a = g_θ(s, ξ)``: ``(obs[..., D], noise[..., noise_dim]) -> action``; float ``[..., d]`` in the bounds
    (``discrete`` False) or int32 ``[...]`` (argmax over ``num_outputs``)."""

    num_outputs: int
    discrete: bool
    low: tuple[float, ...] = ()
    high: tuple[float, ...] = ()
    hidden: Sequence[int] = (64, 64)
    activation: Activation = nn.tanh

    @nn.compact
    def __call__(self, obs: Array, noise: Array) -> Array:
        x = jnp.concatenate([obs, noise], axis=-1)
        raw = dense(self.num_outputs, POLICY_GAIN, name="action")(MLP(self.hidden, self.activation)(x))
        if self.discrete:
            return jnp.argmax(raw, axis=-1).astype(jnp.int32)
        return scale_to_bounds(jnp.tanh(raw), jnp.asarray(self.low), jnp.asarray(self.high))


def implicit_policy(net: ImplicitNetwork, action_space: Space, algo: str) -> ImplicitPolicy:
    """The :class:`ImplicitPolicy` for an action space: a finite set, or a flat box with finite bounds (a
    one-line ConfigError naming ``algo`` otherwise)."""
    act = ACTIVATIONS[net.activation]
    if isinstance(action_space, DiscreteSpace):
        return ImplicitPolicy(action_space.n, True, hidden=net.layers, activation=act)
    if not isinstance(action_space, BoxSpace) or len(action_space.shape) != 1:
        raise ConfigError(f"{algo} needs a discrete or a flat (1-D) Box action space, got {action_space!r}")
    low = np.asarray(action_space.low, float).reshape(-1)
    high = np.asarray(action_space.high, float).reshape(-1)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low < high)):
        raise ConfigError(
            f"{algo} needs finite action bounds with low < high, got low={low.tolist()}, high={high.tolist()}"
        )
    return ImplicitPolicy(low.size, False, tuple(low.tolist()), tuple(high.tolist()), net.layers, act)


def noise(key: PRNGKey, batch_shape: tuple[int, ...], noise_dim: int) -> Array:
    """ξ ∼ N(0, I) of shape ``[*batch_shape, noise_dim]`` (empty when ``noise_dim = 0``)."""
    return jax.random.normal(key, (*batch_shape, noise_dim))
