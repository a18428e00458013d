"""Starting Ray quietly, for sweeps (:mod:`proxrl.run.sweep`) and env-runner actors (:mod:`proxrl.run.actors`)."""

from __future__ import annotations

import logging
import warnings
from typing import Any

_TOKEN_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DropTokenNotice(logging.Filter):
    """Ray's notice that the instance it starts uses token authentication, its secure default (said on every
    start; the instance serves this process only)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_TOKEN_NOTICE)


def init_ray(**kwargs: Any) -> None:
    """``ray.init(**kwargs)`` without the driver's logs or the lines that misread it: Ray's warnings and errors
    only, no fork warning from JAX (Ray starts its services with fork + exec) and no notice of token
    authentication."""
    import ray

    log = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice = _DropTokenNotice()
    log.addFilter(notice)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")
            ray.init(log_to_driver=False, logging_level=logging.WARNING, **kwargs)
    finally:
        log.removeFilter(notice)


__all__ = ["init_ray"]
