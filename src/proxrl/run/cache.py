"""JAX's persistent compilation cache: a configuration compiled before starts without recompiling."""

from __future__ import annotations

import os
from pathlib import Path

import jax


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/proxrl/jax`` (``~/.cache/proxrl/jax`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "proxrl" / "jax"


def enable_compilation_cache(path: str | Path | None = None, min_compile_secs: float = 0.5) -> Path:
    """Turn the cache on at ``path`` (default :func:`default_cache_dir`); returns the directory used."""
    directory = Path(path) if path is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_secs)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
