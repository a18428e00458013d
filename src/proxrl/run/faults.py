"""Fault injection at named points of a training run, for reliability tests (off unless asked for).

``PROXRL_FAULT=POINT#N:ACTION`` makes the N-th time this process reaches ``POINT`` (counted from 1) do
``ACTION``:

- ``kill``: SIGKILL this process (a crash, a power cut: nothing after it runs, no clean-up);
- ``stop``: SIGSTOP this process (it waits, holding what it holds, until SIGCONT or SIGKILL);
- ``enospc``: raise ``OSError(ENOSPC)`` ("No space left on device"), as a full disk would;
- ``interrupt``: raise ``KeyboardInterrupt``, as Ctrl-C would.

Points: ``config`` (config.json of a new run written, nothing trained yet), ``eval-row`` (a chunk's rows
appended to metrics.csv and eval.csv, its checkpoint not yet written), ``checkpoint-write`` (the new checkpoint
written to its temporary file and synced, not yet renamed over the old one), ``checkpoint`` (a chunk's
checkpoint in place). Several faults may be given, separated by commas.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "PROXRL_FAULT"
POINTS = ("config", "eval-row", "checkpoint-write", "checkpoint")
_counts: dict[tuple[str, str], int] = {}


def inject(point: str) -> None:
    """Count one arrival at ``point`` and do the action ``PROXRL_FAULT`` asks for there, if any."""
    spec = os.environ.get(ENV, "")
    if not spec:
        return
    n = _counts[spec, point] = _counts.get((spec, point), 0) + 1
    for fault in spec.split(","):
        where, _, action = fault.strip().partition(":")
        name, _, count = where.partition("#")
        if name != point or int(count or 1) != n:
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif action == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        elif action == "interrupt":
            raise KeyboardInterrupt
        else:
            raise ValueError(f"{ENV}: unknown action {action!r} (kill, stop, enospc or interrupt)")
