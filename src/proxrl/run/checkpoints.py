"""Checkpoints in a safe format: safetensors (no pickle), written atomically.

A checkpoint is one ``.safetensors`` file: every array leaf of a pytree under its key path
(``jax.tree_util.keystr``), plus JSON metadata (algorithm, configuration, step, …) in the file's
string metadata. Loading needs a template pytree of the same structure (built by the algorithm's
``init``); keys, shapes and dtypes must match exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import safetensors.numpy
from safetensors import safe_open

from proxrl.errors import ConfigError
from proxrl.run.records import atomic_write_bytes


def _flatten(tree: Any) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    out = {}
    for path, leaf in leaves:
        arr = np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        out[jax.tree_util.keystr(path)] = arr.copy(order="C")  # (ascontiguousarray would make 0-d 1-d)
    return out


def _is_key(leaf: Any) -> bool:
    """A typed PRNG key array (stored as its raw key data)."""
    return hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def save_checkpoint(path: str | Path, tree: Any, metadata: dict[str, Any]) -> Path:
    """Write ``tree`` and ``metadata`` to ``path`` atomically (readers see the old file or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = safetensors.numpy.save(_flatten(tree), metadata={"proxrl": json.dumps(metadata, sort_keys=True)})
    atomic_write_bytes(path, data)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint (one-line ConfigError if missing or not a proxrl checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several error types for corrupt files
        raise ConfigError(
            f"checkpoint {str(path)!r} is not a safetensors file ({type(e).__name__})"
        ) from None
    if "proxrl" not in meta:
        raise ConfigError(f"checkpoint {str(path)!r} has no proxrl metadata")
    return json.loads(meta["proxrl"])


def load_checkpoint(path: str | Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """Load a checkpoint into the structure of ``template``; returns ``(tree, metadata)``."""
    meta = read_metadata(path)
    arrays = safetensors.numpy.load_file(str(path))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    new = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        if key not in arrays:
            raise ConfigError(
                f"checkpoint {str(path)!r} lacks {key}: it was written for another configuration"
            )
        arr = arrays[key]
        want = np.shape(jax.random.key_data(leaf)) if _is_key(leaf) else np.shape(leaf)
        if arr.shape != want:
            raise ConfigError(f"checkpoint entry {key} has shape {arr.shape}, expected {want}")
        new.append(
            jax.random.wrap_key_data(np.array(arr))
            if _is_key(leaf)
            else jax.numpy.array(arr, dtype=leaf.dtype, copy=True)
        )
    extra = set(arrays) - {jax.tree_util.keystr(p) for p, _ in leaves}
    if extra:
        raise ConfigError(f"checkpoint {str(path)!r} has unexpected entries such as {sorted(extra)[0]}")
    # Materialise now, as copies that own their memory (never views of the file's buffer).
    return jax.block_until_ready(jax.tree_util.tree_unflatten(treedef, new)), meta
