"""Checkpoints in a safe format: safetensors (no pickle), hashed, written atomically and verified.

A checkpoint is one ``.safetensors`` file: every array leaf of a pytree under its key path
(``jax.tree_util.keystr``), any extra tensors under ``host/…`` (state kept outside the pytree, such as a host
runner's episode record), plus string metadata:

- ``proxrl``: JSON metadata (algorithm, configuration, step, …);
- ``proxrl_tensors``: JSON ``{key: sha256}``, the SHA-256 of each tensor's dtype, shape and bytes;
- ``proxrl_sha256``: the SHA-256 of the two entries above (so the metadata and the tensor list are covered).

Every read checks all of it: a flipped bit anywhere, in a tensor or in the header, an entry added, removed or
renamed, is a one-line :class:`~proxrl.errors.ConfigError` naming what does not match, before any value is
used. Checkpoints without ``proxrl_sha256`` (written by a proxrl that did not hash them) are refused with a
one-line message, not accepted with a warning: nothing could show that such a file still holds what was
written, and a wrong checkpoint evaluates or resumes silently wrong (train again to get a verified one).

A write goes to a temporary file in the same directory, is synced, read back and verified, and only then
renamed over the old checkpoint: a crash or a full disk at any moment leaves the old checkpoint or the new one,
never a mixture. Loading needs a template pytree of the same structure (built by the algorithm's ``init``);
keys, shapes and dtypes must match exactly.
"""

from __future__ import annotations

import errno
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import safetensors.numpy

from proxrl.errors import ConfigError
from proxrl.run import faults
from proxrl.run.records import atomic_write_bytes

_HASH_VERSION = "proxrl-checkpoint-sha256-v1"


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint: its tensors by key and its JSON metadata."""

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any]


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


def tensor_digest(arr: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-order bytes."""
    h = hashlib.sha256(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _metadata_digest(meta_json: str, tensors_json: str) -> str:
    return hashlib.sha256(f"{_HASH_VERSION}\n{meta_json}\n{tensors_json}".encode()).hexdigest()


EXTRA_PREFIX = "host/"
"""Tensors under this prefix are stored beside the pytree (``extra``) and skipped by :func:`restore`."""


def checkpoint_bytes(
    tree: Any, metadata: dict[str, Any], extra: dict[str, np.ndarray] | None = None
) -> bytes:
    """The bytes of the checkpoint of ``tree``, ``metadata`` and the ``extra`` tensors (keys starting with
    :data:`EXTRA_PREFIX`), see the module docstring."""
    arrays = _flatten(tree)
    for key, value in (extra or {}).items():
        if not key.startswith(EXTRA_PREFIX):
            raise ValueError(f"extra checkpoint tensors are named {EXTRA_PREFIX}…, got {key!r}")
        arrays[key] = np.array(value, copy=True, order="C")
    return encode(arrays, metadata)


def encode(arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> bytes:
    """The checkpoint bytes of tensors already named (C-ordered arrays by key) and ``metadata``, hashed."""
    meta_json = json.dumps(metadata, sort_keys=True, allow_nan=False)
    tensors_json = json.dumps({k: tensor_digest(v) for k, v in arrays.items()}, sort_keys=True)
    header = {
        "proxrl": meta_json,
        "proxrl_tensors": tensors_json,
        "proxrl_sha256": _metadata_digest(meta_json, tensors_json),
    }
    return safetensors.numpy.save(arrays, metadata=header)


def save_checkpoint(
    path: str | Path, tree: Any, metadata: dict[str, Any], extra: dict[str, np.ndarray] | None = None
) -> Path:
    """Write ``tree``, ``metadata`` and the ``extra`` tensors to ``path`` atomically (readers see the old file or
    the new one) after reading the new file back and verifying it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = checkpoint_bytes(tree, metadata, extra)
    atomic_write_bytes(path, data, verify=lambda tmp: _verify_copy(tmp, data), fault="checkpoint-write")
    faults.inject("checkpoint")
    return path


def _verify_copy(tmp: Path, data: bytes) -> None:
    """The file just written reads back as ``data`` and verifies (an OSError otherwise)."""
    back = tmp.read_bytes()
    if back != data:
        raise OSError(errno.EIO, "the checkpoint read back differs from what was written")
    try:
        verify_bytes(back, str(tmp))
    except ConfigError as e:
        raise OSError(errno.EIO, f"the checkpoint written does not verify ({e})") from None


def verify_bytes(data: bytes, name: str) -> Checkpoint:
    """The verified :class:`Checkpoint` held in ``data`` (``name`` names it in errors)."""
    where = f"checkpoint {name!r}"
    if len(data) < 8 or struct.unpack("<Q", data[:8])[0] > len(data) - 8:
        raise ConfigError(f"{where} is not a safetensors file (its header length does not fit the file)")
    try:
        header = json.loads(data[8 : 8 + struct.unpack("<Q", data[:8])[0]])
        arrays = safetensors.numpy.load(data)
    except Exception as e:  # safetensors and json raise several error types for corrupt files
        raise ConfigError(f"{where} is not a safetensors file ({type(e).__name__})") from None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(meta, dict) or "proxrl" not in meta:
        raise ConfigError(f"{where} has no proxrl metadata")
    if "proxrl_sha256" not in meta or "proxrl_tensors" not in meta:
        raise ConfigError(
            f"{where} has no content hash (written by an older proxrl); it cannot be verified and is refused: "
            "train again"
        )
    meta_json, tensors_json = meta["proxrl"], meta["proxrl_tensors"]
    if not all(isinstance(v, str) for v in (meta_json, tensors_json, meta["proxrl_sha256"])):
        raise ConfigError(f"{where} is corrupt: its metadata entries are not strings")
    if _metadata_digest(meta_json, tensors_json) != meta["proxrl_sha256"]:
        raise ConfigError(f"{where} is corrupt: its metadata does not match its hash")
    try:
        digests = json.loads(tensors_json)
        metadata = json.loads(meta_json)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where} is corrupt: its metadata does not parse ({e.msg})") from None
    if not isinstance(digests, dict) or not isinstance(metadata, dict):
        raise ConfigError(f"{where} is corrupt: its metadata is not a table")
    for key in sorted(set(digests) | set(arrays)):
        if key not in arrays:
            raise ConfigError(f"{where} is corrupt: tensor {key} is missing")
        if key not in digests:
            raise ConfigError(f"{where} is corrupt: tensor {key} has no hash")
        if tensor_digest(arrays[key]) != digests[key]:
            raise ConfigError(f"{where} is corrupt: tensor {key} does not match its hash")
    return Checkpoint(arrays, metadata)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The verified contents of the checkpoint at ``path`` (one-line ConfigError if it is missing, not a proxrl
    checkpoint, unhashed or corrupt)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"checkpoint {str(path)!r} is a directory, not a checkpoint file")
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"checkpoint {str(path)!r} cannot be read: {e.strerror}") from None
    return verify_bytes(data, str(path))


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of a checkpoint, after verifying the whole file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path).metadata


def restore(checkpoint: Checkpoint, template: Any, name: str = "checkpoint") -> Any:
    """The pytree of ``template``'s structure holding ``checkpoint``'s tensors (keys and shapes must match; the
    extra tensors, under :data:`EXTRA_PREFIX`, are not part of it)."""
    arrays = {k: v for k, v in checkpoint.arrays.items() if not k.startswith(EXTRA_PREFIX)}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    new = []
    for key_path, leaf in leaves:
        key = jax.tree_util.keystr(key_path)
        if key not in arrays:
            algo = checkpoint.metadata.get("algo")
            whose = f" (it holds a {algo!r} run)" if isinstance(algo, str) else ""
            raise ConfigError(f"{name} lacks {key}: it was written for another configuration{whose}")
        arr = arrays[key]
        want = np.shape(jax.random.key_data(leaf)) if _is_key(leaf) else np.shape(leaf)
        if arr.shape != want:
            raise ConfigError(f"{name} entry {key} has shape {arr.shape}, expected {want}")
        new.append(
            jax.random.wrap_key_data(np.array(arr))
            if _is_key(leaf)
            else jax.numpy.array(arr, dtype=leaf.dtype, copy=True)
        )
    extra = set(arrays) - {jax.tree_util.keystr(p) for p, _ in leaves}
    if extra:
        raise ConfigError(f"{name} has unexpected entries such as {sorted(extra)[0]}")
    # Materialise now, as copies that own their memory (never views of the file's buffer).
    return jax.block_until_ready(jax.tree_util.tree_unflatten(treedef, new))


def load_checkpoint(path: str | Path, template: Any) -> tuple[Any, dict[str, Any]]:
    """Load and verify a checkpoint into the structure of ``template``; returns ``(tree, metadata)``."""
    checkpoint = read_checkpoint(path)
    return restore(checkpoint, template, f"checkpoint {str(path)!r}"), checkpoint.metadata
