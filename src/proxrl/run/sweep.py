"""Sweeps: a grid of training runs, each cell one Ray task running the ordinary training driver.

A *cell* is (setting, environment): a setting is an algorithm with option overrides by name (and optionally a
preset); each cell trains all its seeds in one vmapped call (:func:`proxrl.run.train.train` with
``num_seeds`` seeds), in its own run directory under the sweep directory::

    SWEEP_DIR/sweep.json          the resolved sweep (settings, environments, run options, score bounds)
    SWEEP_DIR/results.csv         one row per finished cell, rewritten atomically as each cell finishes
    SWEEP_DIR/cells/<cell>/       the cell's run directory (config.json, eval.csv, metrics.csv, checkpoint, …),
                                  plus attempts.log (one line per attempt) and notes.log (what its runs printed
                                  on stderr, such as a resume's notes: a Ray worker's own stderr is not shown)

The engine is Ray: ``ray.init()`` in-process with as many CPUs as the machine has (or ``workers``), or a
running cluster (``address="HOST:PORT"``, started with ``ray start --head``). A cell's identity is a hash of
what it computes (algorithm, preset, options, environment, run options), so rerunning a sweep skips the cells
that have a row; a worker process that dies mid-cell makes Ray run the cell again (``max_retries``), and the
rerun continues from the cell's last checkpoint. A cell that raises (an algorithm that does not fit the
environment, a run whose parameters become NaN or infinite) gets a row with status ``failed`` and its one-line
error, and the sweep goes on. Everything that can be checked without training (the sweep file's keys and
values, every cell's options, environment ids, the step budget, the cluster's address) is checked before any
cell starts.

The sweep file (TOML)::

    envs = ["CartPole-v1", "Acrobot-v1"]
    seeds = 3                 # per cell, trained together (vmapped)
    total_steps = 100_000
    eval_every = 10_000

    [[settings]]
    algo = "ppo"
    options = { lr = 3e-4 }
    grid = { ent_coef = [0.0, 0.01] }   # one setting per combination

    [[settings]]
    algo = "a2c"

    [scores]                  # normalisation bounds per task (random = 0, best = 1)
    "CartPole-v1" = [9.0, 500.0]
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import socket
import statistics
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from proxrl.config import get, options, override
from proxrl.deep.config import check_unused
from proxrl.deep.gym_envs import resolve_backend
from proxrl.deep.on_policy.common import num_updates
from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.cluster import init_ray
from proxrl.run.presets import PRESETS, apply_preset
from proxrl.run.records import RunDir, atomic_write_text
from proxrl.run.runner import HostState, Runner
from proxrl.run.train import (
    BACKENDS,
    CHECKPOINT,
    RunConfig,
    check_fit,
    latest_per_step,
    make_runner,
    train,
)

RESULTS = "results.csv"
SPEC = "sweep.json"
PID_FILE = "worker.pid"
ATTEMPTS = "attempts.log"
NOTES = "notes.log"

COLUMNS = (
    "key",
    "label",
    "algo",
    "env",
    "overrides",
    "seeds",
    "status",
    "final_return",
    "best_return",
    "auc_return",
    "final_per_seed",
    "steps",
    "wall_s",
    "host",
    "attempts",
    "error",
    "run_dir",
)
"""The columns of results.csv. ``final_return``: mean over seeds of the last evaluation; ``best_return``: mean
over seeds of each seed's best evaluation; ``auc_return``: mean over seeds and evaluations (the area under the
learning curve divided by its length); ``final_per_seed``: the last evaluation of each seed (JSON list)."""

RUN_KEYS: dict[str, type | tuple[type, ...]] = {
    "seeds": int,
    "seed": int,
    "total_steps": int,
    "eval_every": int,
    "eval_episodes": int,
    "backend": str,
    "normalize_obs": bool,
    "normalize_reward": bool,
}
"""Run options a sweep file may set for every cell (``seeds`` is the driver's ``num_seeds``)."""

SPEC_KEYS = (*RUN_KEYS, "envs", "settings", "scores", "name")
SETTING_KEYS = ("algo", "label", "preset", "options", "grid")


class SweepError(RuntimeError):
    """The sweep stopped (the cluster was lost): finished cells are kept, rerun to go on. One-line message."""


# ------------------------------------------------------------------------------------------------ the spec


@dataclasses.dataclass(frozen=True)
class Setting:
    """An algorithm with option overrides by name (and optionally a preset), shown as ``label``."""

    algo: str
    options: tuple[tuple[str, Any], ...] = ()
    preset: str | None = None
    label: str = ""

    @property
    def name(self) -> str:
        """The label, or ``algo[k=v,…]`` built from the preset and options."""
        if self.label:
            return self.label
        parts = ([f"preset={self.preset}"] if self.preset else []) + [
            f"{k}={_show(v)}" for k, v in self.options
        ]
        return f"{self.algo}[{','.join(parts)}]" if parts else self.algo


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """Settings × environments, the run options every cell shares, and per-task score bounds."""

    settings: tuple[Setting, ...]
    envs: tuple[str, ...]
    run: tuple[tuple[str, Any], ...] = ()
    """Run options (:data:`RUN_KEYS`) set for every cell; the rest keep :class:`RunConfig`'s defaults."""
    scores: tuple[tuple[str, float, float], ...] = ()
    """``(env, min, max)``: a return of ``min`` scores 0, one of ``max`` scores 1."""
    name: str = "sweep"

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "envs": list(self.envs),
            **dict(self.run),
            "settings": [
                {
                    "algo": s.algo,
                    **({"label": s.label} if s.label else {}),
                    **({"preset": s.preset} if s.preset else {}),
                    "options": {k: _jsonable(v) for k, v in s.options},
                }
                for s in self.settings
            ],
            "scores": {env: [lo, hi] for env, lo, hi in self.scores},
        }


@dataclasses.dataclass(frozen=True)
class Cell:
    """One Ray task: a setting on an environment, all seeds in one call."""

    setting: Setting
    env: str
    run: tuple[tuple[str, Any], ...]

    @property
    def key(self) -> str:
        """A hash of what the cell computes (the label is not part of it)."""
        record = {
            "algo": self.setting.algo,
            "preset": self.setting.preset,
            "options": {k: _jsonable(v) for k, v in self.setting.options},
            "env": self.env,
            "run": dict(self.run),
        }
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def dirname(self) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.=,-]+", "_", f"{self.setting.name}-{self.env}")
        return f"{safe[:80]}-{self.key}"

    def configs(self) -> tuple[Any, RunConfig]:
        """``(algorithm config, RunConfig)`` of the cell, validated (a one-line ConfigError naming the cell)."""
        try:
            return _configs(self.setting, self.env, dict(self.run))
        except ConfigError as e:
            raise ConfigError(f"cell {self.setting.name} on {self.env}: {e}") from None


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple | list) else str(value)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _configs(setting: Setting, env: str, run: dict[str, Any]) -> tuple[Any, RunConfig]:
    algo_cfg = TRAINERS[setting.algo].config()
    run_cfg = RunConfig(progress=False)
    if setting.preset is not None:
        algo_cfg, run_cfg = apply_preset(setting.algo, setting.preset, algo_cfg, run_cfg)
    values = {("num_seeds" if k == "seeds" else k): v for k, v in run.items()}
    run_cfg = dataclasses.replace(run_cfg, **values)
    algo_cfg = override(algo_cfg, **dict(setting.options))
    run_cfg.validate()
    algo_cfg.validate()
    check_unused(algo_cfg)
    resolve_backend(env, run_cfg.backend)  # a one-line ConfigError naming the closest ids
    num_updates(run_cfg.total_steps, algo_cfg.rollout.size)  # at least one update
    check_fit(algo_cfg, env, run_cfg)  # the algorithm on the environment's spaces (SAC needs a Box, …)
    return algo_cfg, run_cfg


def cells(spec: SweepSpec) -> list[Cell]:
    """Every (setting, environment) pair, settings first; two cells computing the same thing are an error."""
    out = [Cell(s, env, spec.run) for s in spec.settings for env in spec.envs]
    seen: dict[str, Cell] = {}
    for cell in out:
        if cell.key in seen:
            raise ConfigError(
                f"settings {seen[cell.key].setting.name!r} and {cell.setting.name!r} are the same "
                f"configuration on {cell.env}"
            )
        seen[cell.key] = cell
    return out


def check_cells(spec: SweepSpec) -> list[Cell]:
    """:func:`cells`, each validated (options, environment id, budget) without training."""
    out = cells(spec)
    if not out:
        raise ConfigError("the sweep has no cells: give at least one setting and one environment")
    for cell in out:
        cell.configs()
    return out


def _coerce(algo: str, config: Any, name: str, value: Any, where: str) -> Any:
    """``value`` for option ``name`` of ``config``, with the type of its default (ints for floats accepted,
    lists for tuples); a one-line ConfigError otherwise."""
    if name not in options(config):
        raise ConfigError(f"{where}: {algo} has no option {name!r}")
    default = get(config, name)
    bad = ConfigError(f"{where}: option {name!r} of {algo} expects {_kind(default)}, got {value!r}")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad
        value = float(value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise bad
    elif isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise bad
        value = tuple(value)
    return value


def _kind(default: Any) -> str:
    for t, word in ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string")):
        if isinstance(default, t):
            return word
    return "a list" if isinstance(default, tuple) else "a value"


def _check_keys(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = [k for k in table if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")


def parse_setting(record: Mapping[str, Any], where: str) -> list[Setting]:
    """The settings of one ``[[settings]]`` table: one, or one per combination of its ``grid``."""
    _check_keys(record, SETTING_KEYS, where)
    algo = record.get("algo")
    if algo not in TRAINERS:
        raise ConfigError(f"{where}: algo must be one of {', '.join(TRAINERS)}, got {algo!r}")
    preset = record.get("preset")
    if preset is not None and preset not in PRESETS.get(algo, {}):
        allowed = ", ".join(PRESETS.get(algo, {})) or "none exist for this algorithm"
        raise ConfigError(f"{where}: preset {preset!r} is not a preset of {algo}; choose one of: {allowed}")
    label = record.get("label", "")
    if not isinstance(label, str):
        raise ConfigError(f"{where}: label must be a string, got {label!r}")
    config = TRAINERS[algo].config()
    fixed = record.get("options", {})
    _check_keys(fixed, list(fixed) if isinstance(fixed, Mapping) else [], f"{where}.options")
    base = {k: _coerce(algo, config, k, v, f"{where}.options") for k, v in fixed.items()}
    grid = record.get("grid", {})
    _check_keys(grid, list(grid) if isinstance(grid, Mapping) else [], f"{where}.grid")
    axes = []
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.grid: {name!r} must be a non-empty list of values, got {values!r}")
        if name in base:
            raise ConfigError(f"{where}: option {name!r} is in both options and grid")
        axes.append([(name, _coerce(algo, config, name, v, f"{where}.grid")) for v in values])
    out = []
    for combo in itertools.product(*axes):
        opts = tuple(sorted({**base, **dict(combo)}.items()))
        suffix = ",".join(f"{k}={_show(v)}" for k, v in combo)
        name = f"{label}[{suffix}]" if label and combo else label
        out.append(Setting(algo, opts, preset, name))
    return out


def parse_spec(record: Mapping[str, Any], where: str = "sweep") -> SweepSpec:
    """A :class:`SweepSpec` from a sweep file's table (or sweep.json); one-line ConfigErrors naming the key."""
    _check_keys(record, SPEC_KEYS, where)
    run = {}
    for key, kind in RUN_KEYS.items():
        if key in record:
            value = record[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"{where}: {key} must be {_kind(kind())}, got {value!r}")
            run[key] = value
    if "backend" in run and run["backend"] not in BACKENDS:
        raise ConfigError(f"{where}: backend must be one of {', '.join(BACKENDS)}, got {run['backend']!r}")
    envs = record.get("envs", [])
    if isinstance(envs, str):
        envs = [envs]
    if not isinstance(envs, list) or not all(isinstance(e, str) for e in envs):
        raise ConfigError(f"{where}: envs must be a list of environment ids, got {envs!r}")
    settings_records = record.get("settings", [])
    if not isinstance(settings_records, list):
        raise ConfigError(f"{where}: settings must be a list of tables ([[settings]])")
    settings = [s for i, r in enumerate(settings_records) for s in parse_setting(r, f"{where}.settings[{i}]")]
    scores = []
    score_table = record.get("scores", {})
    _check_keys(score_table, list(score_table) if isinstance(score_table, Mapping) else [], f"{where}.scores")
    for env, bounds in score_table.items():
        if isinstance(bounds, Mapping):
            _check_keys(bounds, ("min", "max"), f"{where}.scores.{env}")
            bounds = [bounds.get("min"), bounds.get("max")]
        ok = isinstance(bounds, list) and len(bounds) == 2
        ok = ok and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        if not ok or not all(math.isfinite(b) for b in bounds) or not bounds[0] < bounds[1]:
            raise ConfigError(f"{where}.scores: {env!r} must be [min, max] with min < max, got {bounds!r}")
        scores.append((env, float(bounds[0]), float(bounds[1])))
    name = record.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: name must be a non-empty string, got {name!r}")
    return SweepSpec(tuple(settings), tuple(envs), tuple(sorted(run.items())), tuple(scores), name)


def load_spec(path: str | Path) -> SweepSpec:
    """A sweep file: TOML (``.toml``) or the JSON a sweep directory holds (``sweep.json``)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} does not exist")
    try:
        text = path.read_text()
        record = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {str(e).splitlines()[0]}") from None
    return parse_spec(record, path.name)


def parse_value(text: str) -> Any:
    """A command-line option value as TOML (``3e-4``, ``true``, ``[64, 64]``, ``"tanh"``), or the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ------------------------------------------------------------------------------------------ results table


def read_results(path: str | Path) -> list[dict[str, str]]:
    """The rows of a results.csv (empty if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_row(path: str | Path, row: Mapping[str, Any]) -> None:
    """Add ``row`` to the results table at ``path`` (replacing an earlier row of the same cell key) by
    rewriting the whole file atomically: a reader, or a sweep killed meanwhile, sees the old table or the new."""
    path = Path(path)
    rows = [r for r in read_results(path) if r["key"] != row["key"]]
    rows.append({c: _cell_text(row.get(c, "")) for c in COLUMNS})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _cell_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


# -------------------------------------------------------------------------------------------- one cell


class _FiniteRunner(Runner):
    """A runner that stops the run with a one-line error once the training state holds NaN or ±inf."""

    def __init__(self, inner: Runner) -> None:
        self.inner, self.name, self.steps_per_update = inner, inner.name, inner.steps_per_update
        self.updates = 0

    def init(self, keys: Any) -> Any:
        return self.inner.init(keys)

    def resumed(self, state: Any, host: HostState | None = None) -> Any:
        return self.inner.resumed(state, host)

    def host_state(self) -> HostState | None:
        return self.inner.host_state()

    def chunk(self, state: Any, updates: int) -> tuple[Any, dict[str, np.ndarray]]:
        import jax
        import jax.numpy as jnp

        state, metrics = self.inner.chunk(state, updates)
        self.updates += updates
        leaves = [
            x for x in jax.tree.leaves(state) if jnp.issubdtype(getattr(x, "dtype", None), jnp.floating)
        ]
        if leaves and not bool(
            jax.device_get(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves])))
        ):
            raise FloatingPointError(
                f"non-finite values in the training state after {self.updates} updates of this attempt"
            )
        return state, metrics

    def evaluate(self, state: Any, keys: Any, round_index: int) -> np.ndarray:
        returns = self.inner.evaluate(state, keys, round_index)
        if not np.all(np.isfinite(returns)):
            raise FloatingPointError(f"non-finite evaluation returns {np.asarray(returns).tolist()}")
        return returns

    def mode(self, state: Any, obs: np.ndarray) -> np.ndarray:
        return self.inner.mode(state, obs)

    def close(self) -> None:
        self.inner.close()


def one_line(error: BaseException) -> str:
    """``Type: first line of the message`` (ConfigError: the message alone)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return text if isinstance(error, ConfigError) else f"{type(error).__name__}: {text}".rstrip(": ")


class _Notes(io.TextIOBase):
    """A stderr that appends every line, time-stamped, to a cell's notes file and passes it on."""

    def __init__(self, path: Path, passthrough: Any) -> None:
        self.path, self.passthrough, self.pending = path, passthrough, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.passthrough.write(text)
        *lines, self.pending = (self.pending + text).split("\n")
        if lines:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            with self.path.open("a") as f:
                f.writelines(f"{stamp} {line}\n" for line in lines)
        return len(text)

    def flush(self) -> None:
        self.passthrough.flush()


def run_cell(cell: Cell, cell_dir: str | Path) -> dict[str, Any]:
    """Train one cell into ``cell_dir`` (the ordinary driver, all seeds in one call) and return its results row.

    Writes the process id to ``worker.pid`` and a line per attempt to ``attempts.log`` first; what the run
    prints on stderr is also appended to ``notes.log``, each line time-stamped. A directory left
    by an earlier attempt continues from its checkpoint (or starts over if it has none). An exception becomes
    a row with status ``failed`` and the error's first line."""
    start = time.perf_counter()
    cell_dir = Path(cell_dir)
    cell_dir.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    atomic_write_text(cell_dir / PID_FILE, f"{os.getpid()}\n")
    with (cell_dir / ATTEMPTS).open("a") as f:
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} host={host} pid={os.getpid()}\n")
    attempts = len((cell_dir / ATTEMPTS).read_text().splitlines())
    row: dict[str, Any] = {
        "key": cell.key,
        "label": cell.setting.name,
        "algo": cell.setting.algo,
        "env": cell.env,
        "overrides": {k: _jsonable(v) for k, v in cell.setting.options}
        | ({"preset": cell.setting.preset} if cell.setting.preset else {}),
        "host": host,
        "attempts": attempts,
        "run_dir": str(Path("cells") / cell_dir.name),
    }
    try:
        algo_cfg, run_cfg = cell.configs()
        row["seeds"] = run_cfg.num_seeds
        resume = (cell_dir / CHECKPOINT).exists()
        if not resume:  # an attempt killed before its first checkpoint: start afresh
            for p in cell_dir.iterdir():
                if p.name not in (PID_FILE, ATTEMPTS, NOTES):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
        run_cfg = dataclasses.replace(run_cfg, out=cell_dir, resume=cell_dir if resume else None)
        with contextlib.redirect_stderr(_Notes(cell_dir / NOTES, sys.stderr)):
            runner = _FiniteRunner(make_runner(algo_cfg, cell.env, run_cfg))
            train(runner, run_cfg, algo_cfg, cell.env)
        row.update(curve_summary(cell_dir / "eval.csv"), status="ok", error="")
    except Exception as e:  # a failed cell is a row, not the end of the sweep
        row.update(status="failed", error=one_line(e))
    row["wall_s"] = round(time.perf_counter() - start, 2)
    return row


def curve_summary(eval_csv: str | Path) -> dict[str, Any]:
    """``final_return``, ``best_return``, ``auc_return``, ``final_per_seed`` and ``steps`` of a run's eval.csv."""
    rows = latest_per_step(np.atleast_1d(np.genfromtxt(eval_csv, delimiter=",", names=True)))
    cols = [n for n in rows.dtype.names if n.startswith("eval_return_seed")]
    per_seed = np.stack([rows[n] for n in cols], axis=1)  # [evaluations, seeds]
    return {
        "final_return": float(per_seed[-1].mean()),
        "best_return": float(per_seed.max(axis=0).mean()),
        "auc_return": float(per_seed.mean()),
        "final_per_seed": [round(float(r), 4) for r in per_seed[-1]],
        "steps": int(rows["step"][-1]),
    }


# ------------------------------------------------------------------------------------------------- Ray


def connect_error(host: str, port: int, timeout: float) -> OSError | None:
    """Why a TCP connection to ``host:port`` fails within ``timeout`` seconds, or None if it succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return e


def check_address(address: str, timeout: float = 5.0) -> None:
    """A one-line ConfigError unless something listens at ``HOST:PORT`` (checked before Ray is asked)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(
            f"--address must be HOST:PORT (a cluster started with 'ray start --head'), got {address!r}"
        )
    e = connect_error(host, int(port), timeout)
    if e is not None:
        raise ConfigError(
            f"cannot reach a Ray cluster at {address} ({e.strerror or e}); start one with 'ray start --head' "
            "or leave out --address to run on this machine"
        ) from None


def connect(address: str | None = None, workers: int | None = None) -> bool:
    """Start Ray in this process (``workers`` CPUs, default all cores) or join the cluster at ``address``;
    returns whether this call started it (then :func:`disconnect` it). Reuses a Ray already initialised."""
    import ray

    _check_workers(workers)
    if address is not None:
        check_address(address)
    if ray.is_initialized():
        return False
    if address is not None:
        try:
            init_ray(address=address)
        except (ConnectionError, RuntimeError) as e:
            raise ConfigError(f"cannot join the Ray cluster at {address}: {one_line(e)}") from None
    else:
        # address="local": a new instance even where `ray start` left a (possibly dead) cluster behind
        init_ray(address="local", num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
    return True


def _check_workers(workers: int | None) -> None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"--workers must be an integer >= 1, got {workers!r}")


POLL_S = 2.0
"""Seconds :func:`run_sweep` waits for a cell before checking that the cluster still answers."""
LOST_AFTER_S = 15.0
"""A cluster whose control store (GCS) refuses connections this long is lost: the sweep stops with
:class:`SweepError` (well before Ray's own 60 s limit, after which it ends the process without a word)."""


class ClusterWatch:
    """Whether the Ray cluster's GCS at ``address`` (HOST:PORT) still accepts connections."""

    def __init__(self, address: str, results: Path) -> None:
        self.address, self.results = address, results
        self.down_since: float | None = None
        self.lost = False

    def message(self, why: str) -> str:
        return (
            f"lost the Ray cluster ({why}); finished cells are in {self.results}; rerun the same command to go on "
            "(a cell that was running resumes from its last checkpoint)"
        )

    def check(self) -> None:
        """Raise :class:`SweepError` once the GCS has refused connections for :data:`LOST_AFTER_S` seconds."""
        host, _, port = self.address.rpartition(":")
        e = connect_error(host, int(port), POLL_S)
        if e is None:
            self.down_since = None
            return
        now = time.monotonic()
        self.down_since = now if self.down_since is None else self.down_since
        if now - self.down_since >= LOST_AFTER_S:
            self.lost = True
            why = f"its control store at {self.address} refused connections for {LOST_AFTER_S:g} s"
            raise SweepError(self.message(f"{why}: {e.strerror or e}"))


def _cell_task(cell: Cell, cell_dir: str) -> dict[str, Any]:
    return run_cell(cell, cell_dir)


@dataclasses.dataclass
class SweepResult:
    """What :func:`run_sweep` did: the sweep directory, cells run now, cells skipped (already in the table),
    every row of the table (also rows of cells no longer in the sweep file), and ``keys``, the cell keys of the
    sweep file."""

    path: Path
    ran: int
    skipped: int
    rows: list[dict[str, str]]
    keys: frozenset[str]

    @property
    def failed(self) -> int:
        """Cells of the sweep file whose row says failed (rows of cells no longer in the file do not count)."""
        return sum(r["status"] != "ok" for r in self.rows if r["key"] in self.keys)

    @property
    def failed_elsewhere(self) -> int:
        """Failed rows of cells the sweep file no longer has (an earlier version of it wrote them)."""
        return sum(r["status"] != "ok" for r in self.rows if r["key"] not in self.keys)


def run_sweep(
    spec: SweepSpec,
    out: str | Path,
    workers: int | None = None,
    address: str | None = None,
    max_retries: int = 3,
    retry_failed: bool = False,
    progress: bool = True,
) -> SweepResult:
    """Run every cell of ``spec`` that has no row in ``out/results.csv`` yet, as Ray tasks (at most ``workers``
    at a time when given), writing each row as its cell finishes. ``max_retries``: reruns of a cell whose worker
    process died. ``retry_failed``: run cells with status ``failed`` again too."""
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigError(f"--max-retries must be an integer >= 0, got {max_retries!r}")
    todo_all = check_cells(spec)
    keys = frozenset(c.key for c in todo_all)
    _check_workers(workers)
    if address is not None:
        check_address(address)
    out = Path(out)
    results = out / RESULTS
    done = {r["key"]: r for r in read_results(results)}
    skip = {k for k, r in done.items() if r["status"] == "ok" or not retry_failed}
    todo = [c for c in todo_all if c.key not in skip]
    if not todo:  # every cell has its row: nothing to run, so Ray is neither started nor joined
        _write_spec(out, spec)
        return SweepResult(out, 0, len(todo_all), read_results(results), keys)
    started = connect(address, workers)
    try:
        (out / "cells").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if started:
            ray.shutdown()
        raise ConfigError(f"cannot create sweep directory {str(out)!r}: {e.strerror}") from None
    _write_spec(out, spec)
    # one process per cell (max_calls=1): a cell's memory (a replay buffer, compiled functions) goes with it, and
    # each cell imports the installed code afresh, so a cell never runs in a process that an earlier one shaped
    task = ray.remote(num_cpus=1, max_calls=1, max_retries=max_retries, retry_exceptions=False)(_cell_task)
    limit = workers or len(todo)
    watch = ClusterWatch(ray.get_runtime_context().gcs_address, results)
    pending = list(todo)
    running: dict[Any, Cell] = {}
    columns = [TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    try:
        with Progress(*columns, disable=not progress, transient=False) as bar:
            bar_task = bar.add_task(spec.name, total=len(todo_all), completed=len(todo_all) - len(todo))
            while pending or running:
                while pending and len(running) < limit:
                    cell = pending.pop(0)
                    running[task.remote(cell, str((out / "cells" / cell.dirname).resolve()))] = cell
                ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                if not ready:
                    watch.check()
                for ref in ready:
                    cell = running.pop(ref)
                    write_row(results, _result(ref, cell, out))
                    bar.advance(bar_task)
    except (ray.exceptions.RaySystemError, ConnectionError) as e:
        watch.lost = True
        raise SweepError(watch.message(one_line(e))) from None
    finally:
        if started and not watch.lost:  # with the cluster gone, shutting down would wait for it
            ray.shutdown()
    return SweepResult(out, len(todo), len(todo_all) - len(todo), read_results(results), keys)


def _result(ref: Any, cell: Cell, out: Path) -> dict[str, Any]:
    """The row a finished task returned, or a failed row if its worker died more often than allowed."""
    import ray

    try:
        return ray.get(ref)
    except (
        ray.exceptions.WorkerCrashedError,
        ray.exceptions.RayTaskError,
        ray.exceptions.NodeDiedError,
    ) as e:
        log = out / "cells" / cell.dirname / ATTEMPTS
        attempts = len(log.read_text().splitlines()) if log.exists() else 0
        return {
            "key": cell.key,
            "label": cell.setting.name,
            "algo": cell.setting.algo,
            "env": cell.env,
            "overrides": {k: _jsonable(v) for k, v in cell.setting.options},
            "attempts": attempts,
            "status": "failed",
            "error": one_line(e),
            "run_dir": str(Path("cells") / cell.dirname),
        }


class CellStatus(NamedTuple):
    """Where one cell of a sweep stands (:func:`sweep_status`)."""

    name: str
    env: str
    status: str
    """"finished" or "failed" (it has a row), "running" (a live process holds its run directory's lock),
    "stopped" (a run directory, no row, no live owner: the next run of the sweep continues it) or "not started"."""
    steps: int
    """Environment steps per seed at its last evaluation (0 before the first)."""
    total_steps: int
    last_return: float
    """Its last evaluation's mean return over seeds (NaN before the first)."""
    attempts: int
    pid: int | None
    error: str
    time_left_s: float = math.nan
    """For a running or stopped cell, the seconds its remaining chunks should take: the median time of its last
    (up to :data:`ETA_CHUNKS`) chunks times the chunks left (NaN without a timed chunk)."""


ETA_CHUNKS = 10
"""Chunks whose times :func:`sweep_status` takes the median of to estimate a cell's time left."""


def _time_left(cell_dir: Path, steps: int, total: int) -> float:
    """Median seconds of the last :data:`ETA_CHUNKS` chunks in ``cell_dir/timing.csv`` × the chunks left, a
    chunk being as many steps as the last one took (the evaluation interval in whole updates)."""
    path = cell_dir / "timing.csv"
    if not path.exists():
        return math.nan
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("chunk_seconds") and r.get("step")]
    if not rows:
        return math.nan
    seconds = [float(r["chunk_seconds"]) for r in rows]
    ends = [0] + [int(float(r["step"])) for r in rows]
    chunk = max(ends[-1] - ends[-2], 1)
    return statistics.median(seconds[-ETA_CHUNKS:]) * math.ceil(max(total - steps, 0) / chunk)


def sweep_status(sweep_dir: str | Path) -> list[CellStatus]:
    """Every cell of the sweep in ``sweep_dir`` (from its sweep.json), in sweep order, with its progress read from
    results.csv and the cell's run directory; nothing is written and no lock is taken."""
    out = Path(sweep_dir)
    if not (out / SPEC).is_file():
        raise ConfigError(f"{str(out)!r} is not a sweep directory (no {SPEC})")
    rows = {r["key"]: r for r in read_results(out / RESULTS)}
    found = []
    for cell in cells(load_spec(out / SPEC)):
        cell_dir = out / "cells" / cell.dirname
        run = dict(cell.run)  # updated by the run's own options where it has started (a preset's too)
        with contextlib.suppress(OSError, ValueError, AttributeError):
            run |= json.loads((cell_dir / "config.json").read_text()).get("run", {})
        total = int(run.get("total_steps", RunConfig().total_steps))
        attempts_log = cell_dir / ATTEMPTS
        attempts = len(attempts_log.read_text().splitlines()) if attempts_log.exists() else 0
        steps, last, pid, error = 0, math.nan, None, ""
        if (cell_dir / "eval.csv").exists():
            with (cell_dir / "eval.csv").open(newline="") as f:
                evals = list(csv.DictReader(f))
            if evals:
                steps, last = int(float(evals[-1]["step"])), float(evals[-1]["eval_return_mean"])
        row = rows.get(cell.key)
        if row is not None:
            status, error = ("finished" if row["status"] == "ok" else "failed"), row["error"]
        elif cell_dir.is_dir():
            pid = RunDir.holder(cell_dir)
            status = "stopped" if pid is None else "running"
        else:
            status = "not started"
        left = _time_left(cell_dir, steps, total) if status in ("running", "stopped") else math.nan
        found.append(
            CellStatus(cell.setting.name, cell.env, status, steps, total, last, attempts, pid, error, left)
        )
    return found


def _write_spec(out: Path, spec: SweepSpec) -> None:
    """sweep.json: the union of this sweep's settings and those of earlier runs into the same directory."""
    path = out / SPEC
    record = spec.to_record()
    if path.exists():
        old = json.loads(path.read_text())
        settings = old.get("settings", []) + [
            s for s in record["settings"] if s not in old.get("settings", [])
        ]
        envs = old.get("envs", []) + [e for e in record["envs"] if e not in old.get("envs", [])]
        record = {**old, **record, "settings": settings, "envs": envs,
                  "scores": {**old.get("scores", {}), **record["scores"]}}  # fmt: skip
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")


def spec_from_options(
    algos: Iterable[str], envs: Iterable[str], sets: Iterable[str], run: Mapping[str, Any]
) -> dict[str, Any]:
    """A sweep table from command-line options: one setting per algorithm, each with the ``KEY=VALUE`` options
    of ``sets`` (values parsed as TOML)."""
    opts = {}
    for item in sets:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
        opts[name.replace("-", "_")] = parse_value(text)
    return {
        "envs": list(envs),
        "settings": [{"algo": a, "options": dict(opts)} for a in algos],
        **{k: v for k, v in run.items() if v is not None},
    }
