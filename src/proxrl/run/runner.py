"""What the training driver needs from an environment back end (all batched over seeds ``N``).

:class:`proxrl.run.train.JaxRunner` (gymnax: a chunk of updates of every seed compiled into one call) and
:class:`proxrl.run.host.HostRunner` (Gymnasium environments stepped on the host) implement it around the same
:class:`~proxrl.types.Learner`.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np

from proxrl.types import PRNGKey


class Runner(abc.ABC):
    """A learner on an environment back end, for :func:`proxrl.run.train.train`."""

    name: str
    steps_per_update: int

    @abc.abstractmethod
    def init(self, keys: PRNGKey) -> Any:
        """States of all seeds from keys ``[N]``."""

    def resumed(self, state: Any) -> Any:
        """A restored state, ready to continue."""
        return state

    @abc.abstractmethod
    def chunk(self, state: Any, updates: int) -> tuple[Any, dict[str, np.ndarray]]:
        """``updates`` updates of every seed; metrics as ``[N, updates]`` arrays."""

    @abc.abstractmethod
    def evaluate(self, state: Any, keys: PRNGKey, round_index: int) -> np.ndarray:
        """Mean deterministic evaluation return per seed ``[N]`` (``keys [N]`` or ``round_index`` seed it)."""

    @abc.abstractmethod
    def mode(self, state: Any, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions ``[N, B, ...]`` for raw observations ``[N, B, ...]``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release environments."""
