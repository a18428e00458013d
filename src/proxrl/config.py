"""Configs built from small frozen pieces, each option addressed by its own name.

An algorithm's config is a frozen dataclass whose fields are *pieces* (frozen dataclasses named after the
lecture's parts: the rollout, the network, the policy step, the advantage estimator, the surrogate, the
critic, the replay buffer) or plain values. Every option name occurs once in a config, whatever piece holds it,
so an option is addressed by its name alone: the command line is flat (``--lr``, ``--num-envs``), and so are
:func:`override` (``override(PPOConfig(), lr=3e-4, num_envs=1)``), the presets and the ``hyper`` dict of
``train(key, hyper)``. An algorithm changes a default by building its piece with other values
(``field(default_factory=lambda: Rollout(num_envs=4))``), never by declaring the option again.

:func:`to_record` and :func:`from_record` turn a config into nested JSON values and back (what config.json
and a checkpoint's metadata hold); :func:`check_finite` refuses NaN and infinite options up front.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np

from proxrl.errors import ConfigError

C = TypeVar("C")


def is_piece(value: Any) -> bool:
    """A config piece: a dataclass instance (not a class)."""
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def options(config: Any) -> dict[str, tuple[str, ...]]:
    """Each option name of ``config`` → the path of field names leading to it (``{"lr": ("step", "lr")}``).

    Raises ConfigError if a name occurs twice (a config must give every option one meaning)."""
    out: dict[str, tuple[str, ...]] = {}

    def walk(obj: Any, path: tuple[str, ...]) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if is_piece(value):
                walk(value, (*path, f.name))
            elif f.name in out:
                raise ConfigError(
                    f"{type(config).__name__} declares option {f.name!r} twice "
                    f"({'.'.join(out[f.name])} and {'.'.join((*path, f.name))})"
                )
            else:
                out[f.name] = (*path, f.name)

    walk(config, ())
    return out


def get(config: Any, name: str) -> Any:
    """The value of option ``name`` in ``config``, wherever its piece is."""
    paths = options(config)
    if name not in paths:
        raise ConfigError(_unknown(config, name, paths))
    return functools.reduce(getattr, paths[name], config)


def override(config: C, **values: Any) -> C:
    """``config`` with the named options replaced, e.g. ``override(PPOConfig(), lr=3e-4, num_envs=1)``.

    Values may be traced arrays (``train(key, hyper)`` vmaps over them); a list becomes a tuple; nothing is
    validated here (:meth:`Config.validate` checks types and values)."""
    if not values:
        return config
    paths = options(config)
    for name in values:
        if name not in paths:
            raise ConfigError(_unknown(config, name, paths))

    def rebuild(obj: Any, prefix: tuple[str, ...]) -> Any:
        changes = {}
        for f in dataclasses.fields(obj):
            path = (*prefix, f.name)
            value = getattr(obj, f.name)
            if is_piece(value):
                if any(paths[n][: len(path)] == path for n in values):
                    changes[f.name] = rebuild(value, path)
            elif f.name in values:
                value = values[f.name]
                changes[f.name] = tuple(value) if isinstance(value, list) else value
        return dataclasses.replace(obj, **changes)

    return rebuild(config, ())


def _unknown(config: Any, name: str, paths: dict[str, tuple[str, ...]]) -> str:
    return f"{type(config).__name__} has no option {name!r}; its options: {', '.join(sorted(paths))}"


def to_record(obj: Any) -> Any:
    """Nested JSON values of a config (pieces → dicts, tuples → lists, paths → strings)."""
    if is_piece(obj):
        return {f.name: to_record(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_record(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


def from_record(cls: type[C], record: Any, where: str = "config") -> C:
    """The config of type ``cls`` that :func:`to_record` wrote as ``record``: pieces rebuilt by their declared
    types, lists back to tuples. A missing or unknown key is a one-line ConfigError naming it (``where``
    says which record)."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a table of options, got {type(record).__name__}")
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(record) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r} for {cls.__name__}")
    kwargs = {}
    for name in fields:
        if name not in record:
            raise ConfigError(f"{where}: option {name!r} of {cls.__name__} is missing")
        value, kind = record[name], hints[name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[name] = from_record(kind, value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        elif typing.get_origin(kind) is None and kind is Path and value is not None:
            kwargs[name] = Path(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


INT_LIMIT = 2**31
"""Integer options must lie in (−2³¹, 2³¹): sizes and counts become int32 array dimensions and loop bounds."""


def _is_array(value: Any) -> bool:
    """A NumPy or JAX array (a traced hyperparameter of ``train(key, hyper)`` included)."""
    return hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type)


def _matches(value: Any, kind: Any) -> bool:
    """Whether ``value`` is of the declared type ``kind`` (the forms configs use: bool, int, float, str, Path,
    ``X | None``, ``tuple[X, ...]``, ``Literal``). An int is a float; a bool is neither; arrays pass as numbers
    (traced hyperparameters)."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, k) for k in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(kind)
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in value)
        return len(args) == len(value) and all(_matches(v, k) for v, k in zip(value, args, strict=True))
    if kind is bool:
        return isinstance(value, bool | np.bool_) or (_is_array(value) and value.dtype == bool)
    if kind is int:
        if _is_array(value):
            return np.issubdtype(value.dtype, np.integer)
        return isinstance(value, int | np.integer) and not isinstance(value, bool)
    if kind is float:
        if _is_array(value):
            return np.issubdtype(value.dtype, np.number) and value.dtype != bool
        return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if kind is Path:
        return isinstance(value, str | Path)
    if isinstance(kind, type):
        return isinstance(value, kind)
    return True  # an annotation form configs do not use: not checked


def _describe(kind: Any) -> str:
    """A declared type in words, for a bad-input line."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(k) for k in typing.get_args(kind))
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a tuple of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
        return f"a tuple of {len(args)} values"
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    return words.get(kind, "None" if kind is type(None) else getattr(kind, "__name__", str(kind)))


def check_types(config: Any, numbers: bool = True) -> None:
    """Every option of ``config`` of its declared type (a one-line ConfigError naming the option, the type and
    the value otherwise): ``"False"`` for a bool or ``"0.001"`` for a float is refused here rather than taken
    as true or failing inside a trace. ``numbers=False`` leaves a number given for a numeric option (``1.5``
    for an integer) to the option's own check, whose message says what range is allowed."""
    for name, path in options(config).items():
        parent = functools.reduce(getattr, path[:-1], config)
        kind = _hints(type(parent)).get(path[-1], Any)
        value = getattr(parent, path[-1])
        if not numbers and _matches(value, float) and (_matches(0.5, kind) or _matches(1, kind)):
            continue
        if not _matches(value, kind):
            raise ConfigError(f"{name} must be {_describe(kind)}, got {value!r}")


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_numbers(config: Any) -> None:
    """:func:`check_types`, :func:`check_finite`, and every integer option within ±2³¹ (a one-line ConfigError
    naming it): the checks every config needs whatever its options mean (lecture configs included)."""
    check_types(config)
    check_finite(config)
    for name, path in options(config).items():
        value = functools.reduce(getattr, path, config)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, int) and not isinstance(v, bool) and not -INT_LIMIT < v < INT_LIMIT:
                raise ConfigError(f"{name} must lie within ±2^31 (it sizes arrays and loops), got {v}")


def check_finite(config: Any) -> None:
    """Every float option of ``config`` (pieces included) finite: NaN or ±inf is a one-line ConfigError
    naming the option (no option of proxrl means anything at NaN or infinity)."""
    for name, path in options(config).items():
        value = functools.reduce(getattr, path, config)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")


class Config:
    """Base of an algorithm's config (a frozen dataclass of pieces): :meth:`validate` checks every option once,
    in the piece that declares it, then :meth:`check` what ties pieces together."""

    def validate(self) -> Self:
        """Raise :class:`~proxrl.errors.ConfigError` (one line, naming the option) on a bad value; return
        ``self``. Every option must be of its declared type (:func:`check_types`; a number for a numeric option
        is left to its piece), then each piece's ``validate()`` runs, then :func:`check_numbers` (the types
        again, an integer option holding an int; every float finite and every integer within ±2³¹, whatever its
        piece checks), then :meth:`check`."""

        def walk(obj: Any) -> None:
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)
                if is_piece(value):
                    if hasattr(value, "validate"):
                        value.validate()
                    walk(value)

        check_types(self, numbers=False)
        walk(self)
        check_numbers(self)
        self.check()
        return self

    def check(self) -> None:
        """Checks across pieces (e.g. a minibatch count dividing the rollout size); none by default."""
