"""What the training driver needs from an environment back end (all batched over seeds ``N``).

:class:`proxrl.run.train.JaxRunner` (gymnax: a chunk of updates of every seed compiled into one call) and
:class:`proxrl.run.host.HostRunner` (Gymnasium environments stepped on the host) implement it around the same
:class:`~proxrl.types.Learner`.
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import numpy as np

from proxrl.types import PRNGKey


class HostState(NamedTuple):
    """What a runner keeps outside the training state to continue exactly (its host environments): arrays,
    saved as checkpoint tensors under ``host/``, and JSON metadata, saved as the checkpoint's ``host`` entry."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]


class Runner(abc.ABC):
    """A learner on an environment back end, for :func:`proxrl.run.train.train`."""

    name: str
    steps_per_update: int

    @abc.abstractmethod
    def init(self, keys: PRNGKey) -> Any:
        """States of all seeds from keys ``[N]``."""

    def resumed(self, state: Any, host: HostState | None = None) -> Any:
        """A restored state, ready to continue; ``host`` is what :meth:`host_state` gave when the checkpoint was
        written (None if the checkpoint holds none)."""
        return state

    def host_state(self) -> HostState | None:
        """State outside ``state`` that a checkpoint must hold for the run to continue exactly (None: none)."""
        return None

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
