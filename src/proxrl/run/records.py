"""Run records: one directory per run, nothing lost.

RUN_DIR/config.json   the resolved configuration (written atomically)
RUN_DIR/metrics.csv   metrics, appended row by row and flushed as the run goes
RUN_DIR/*.png         plots
RUN_DIR/summary.md    the headline numbers (written atomically)
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proxrl.errors import ConfigError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, numpy and JAX values → plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return obj


class RunDir:
    """A run directory. ``out=None`` makes ``runs/<name>-<timestamp>``; an explicit ``out`` must not
    already hold a run (a ``metrics.csv`` or ``config.json``), so nothing is overwritten."""

    def __init__(self, name: str, out: str | Path | None = None, root: str | Path = "runs") -> None:
        if out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(root) / f"{name}-{stamp}"
            i = 1
            while path.exists():
                path = Path(root) / f"{name}-{stamp}-{i}"
                i += 1
        else:
            path = Path(out)
            if (path / "metrics.csv").exists() or (path / "config.json").exists():
                raise ConfigError(f"--out {str(path)!r} already holds a run; choose a new directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create run directory {str(path)!r}: {e.strerror}") from None
        self.path = path
        self._fields: dict[str, list[str]] = {}
        self._tb: list[tuple[str, float, int]] = []

    @classmethod
    def reopen(cls, path: str | Path) -> RunDir:
        """An existing run directory, to append to (``--resume``)."""
        rd = cls.__new__(cls)
        rd.path, rd._fields, rd._tb = Path(path), {}, []
        for p in rd.path.glob("*.csv"):
            with p.open() as f:
                header = f.readline().strip()
            if header:
                rd._fields[p.stem] = header.split(",")
        return rd

    def write_config(self, config: Any) -> Path:
        p = self.path / "config.json"
        atomic_write_text(p, json.dumps(to_jsonable(config), indent=2, sort_keys=True) + "\n")
        return p

    def log(self, row: Mapping[str, Any], table: str = "metrics") -> None:
        """Append one row to ``<table>.csv`` (header on first write) and flush it to disk."""
        p = self.path / f"{table}.csv"
        fields = self._fields.get(table)
        if fields is None:
            fields = list(row)
            self._fields[table] = fields
            new = not p.exists()
        else:
            new = False
        with p.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="raise")
            if new:
                w.writeheader()
            w.writerow({k: _scalar(v) for k, v in row.items()})
            f.flush()

    def log_scalars(self, step: int, metrics: Mapping[str, Any], table: str = "metrics") -> None:
        """Append ``{"step": step, **metrics}`` to ``<table>.csv`` now, and queue each finite scalar for the
        TensorBoard event files under ``RUN_DIR/tb`` (written by :meth:`flush`; ``tensorboard --logdir RUN_DIR``)."""
        self.log({"step": int(step), **metrics}, table)
        for k, v in metrics.items():  # NaN (e.g. no episode ended yet) stays in the CSV only
            if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number) and np.isfinite(v):
                self._tb.append((f"{table}/{k}", float(v), int(step)))

    def flush(self) -> None:
        """Write the queued TensorBoard scalars and close the writer again, so that no writer thread runs
        while JAX computes (a resident writer thread coincided with JAX CPU computations that never
        completed)."""
        if not self._tb:
            return
        from tensorboardX import SummaryWriter

        writer = SummaryWriter(str(self.path / "tb"))
        for tag, value, step in self._tb:
            writer.add_scalar(tag, value, step)
        writer.close()
        self._tb = []

    def close(self) -> None:
        """Flush the TensorBoard queue (CSV rows are flushed as they are written)."""
        self.flush()

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<name>.png`` atomically and close it."""
        import matplotlib.pyplot as plt

        p = self.path / f"{name}.png"
        tmp = self.path / f".{name}.tmp.png"
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, p)
        plt.close(fig)
        return p

    def write_summary(self, text: str) -> Path:
        p = self.path / "summary.md"
        atomic_write_text(p, text)
        return p


def _scalar(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    if hasattr(v, "item") and np.ndim(v) == 0:
        return _scalar(v.item())
    return v
