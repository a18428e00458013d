"""Estimators of returns and advantages for one time-major stream ``[T]`` (vmap over the batch).

Termination is carried by ``discount_t = γ·(1 − terminated_t)``; truncation bootstraps from
V(next_obs) and is marked, together with termination, by ``reset_t``. See docs/methods/estimators.md.
"""

from proxrl.estimators.advantages import gae, normalize_advantages, q_advantages, td_errors
from proxrl.estimators.returns import discounted_returns, n_step_returns, td_targets

__all__ = [
    "discounted_returns",
    "gae",
    "n_step_returns",
    "normalize_advantages",
    "q_advantages",
    "td_errors",
    "td_targets",
]
