"""Run records: one directory per run, nothing lost, nothing written twice.

RUN_DIR/config.json   the resolved configuration (written atomically)
RUN_DIR/metrics.csv   metrics, appended row by row and flushed as the run goes
RUN_DIR/eval.csv      evaluation returns of a training run, one row per chunk
RUN_DIR/timing.csv    wall-clock seconds per chunk (kept apart: the other tables are the same on every rerun)
RUN_DIR/tb/           TensorBoard event files: one per training session (a resume opens a new one)
RUN_DIR/*.png         plots
RUN_DIR/summary.md    the headline numbers (written atomically)
RUN_DIR/.lock         the pid of the process training in the directory (see :meth:`RunDir.lock`)

Whole files are written atomically (a temporary file in the directory, synced, then renamed over the old one).
A training run writes nothing through a symbolic link: :meth:`RunDir.refuse_links` refuses a directory holding
one, and appends open their files without following links.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime as _dt
import errno
import fcntl
import json
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from proxrl.errors import ConfigError
from proxrl.run import faults

LOCK = ".lock"
TABLES_CHECKED = ("metrics", "eval")
"""Tables that must reach a checkpoint's step when a run resumes from it (timing.csv is only cut)."""


def atomic_write_bytes(
    path: Path, data: bytes, verify: Callable[[Path], None] | None = None, fault: str | None = None
) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part.

    The data goes to a temporary file in the same directory, is synced to disk, checked by ``verify(tmp)``
    if given (it raises to refuse the file, which leaves the old one in place), then renamed over ``path``
    (a rename replaces a symbolic link at ``path``; it never writes through it). An OSError names ``path``."""
    path = Path(path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if fault is not None:
            faults.inject(fault)
        if verify is not None:
            verify(Path(tmp))
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as e:
        if e.filename is None:  # e.g. ENOSPC from write(): say which file
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (where the platform allows syncing a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _no_follow(path: str, flags: int) -> int:
    """``open(..., opener=_no_follow)``: refuse to open a symbolic link (OSError ELOOP)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


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


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C of TFRecord framing (what TensorBoard checks)."""
    from tensorboardX.record_writer import masked_crc32c as crc

    return crc(data)


def read_events(path: str | Path) -> Iterator[tuple[int, int, Any]]:
    """The records of a TensorBoard event file as ``(start offset, end offset, Event)``, up to the first record
    that is incomplete or fails its checksum (the tail a killed writer may leave)."""
    from tensorboardX.proto.event_pb2 import Event

    data = Path(path).read_bytes()
    pos = 0
    while pos + 12 <= len(data):
        header = data[pos : pos + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
        end = pos + 12 + length + 4
        if header_crc != masked_crc32c(header) or end > len(data):
            return
        body = data[pos + 12 : pos + 12 + length]
        if struct.unpack("<I", data[end - 4 : end])[0] != masked_crc32c(body):
            return
        event = Event()
        try:
            event.ParseFromString(body)
        except Exception:  # a record that is not an Event: stop as at a torn record
            return
        yield pos, end, event
        pos = end


def event_files(tb: Path) -> list[Path]:
    """The TensorBoard event files in ``tb``, in name (= creation time) order."""
    return sorted(p for p in tb.glob("*tfevents*") if p.is_file() and not p.name.startswith("."))


class EventFile:
    """One TensorBoard event file, created under a name no other writer uses (creation time in ns, host, pid;
    created exclusively, so an existing file is never opened for writing) and appended to synchronously (no
    writer thread)."""

    def __init__(self, directory: Path) -> None:
        from tensorboardX.proto.event_pb2 import Event

        directory.mkdir(exist_ok=True)
        if directory.is_symlink():
            raise ConfigError(f"{str(directory)!r} is a symbolic link; proxrl writes no file through a link")
        host = socket.gethostname().replace("/", "_")
        while True:
            self.path = directory / f"events.out.tfevents.{time.time_ns()}.{host}.{os.getpid()}"
            try:
                fd = os.open(
                    self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666
                )
                break
            except FileExistsError:
                continue
        self._file = os.fdopen(fd, "wb")
        self.write_events([Event(wall_time=time.time(), file_version="brain.Event:2")])

    def write_scalars(self, scalars: list[tuple[str, float, int]]) -> None:
        """Append ``(tag, value, step)`` scalars and sync them to disk."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        now = time.time()
        self.write_events(
            [
                Event(
                    wall_time=now, step=step, summary=Summary(value=[Summary.Value(tag=tag, simple_value=v)])
                )
                for tag, v, step in scalars
            ]
        )

    def write_events(self, events: list[Any]) -> None:
        out = bytearray()
        for event in events:
            body = event.SerializeToString()
            header = struct.pack("<Q", len(body))
            out += (
                header
                + struct.pack("<I", masked_crc32c(header))
                + body
                + struct.pack("<I", masked_crc32c(body))
            )
        try:
            self._file.write(out)
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            raise OSError(e.errno, e.strerror, str(self.path)) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class RunDir:
    """A run directory. ``out=None`` makes ``runs/<name>-<timestamp>``; an explicit ``out`` must not
    already hold a run (a ``metrics.csv`` or ``config.json``), so nothing is overwritten. ``lock=True`` takes
    the directory's lock first (:meth:`lock`), as a training run does."""

    def __init__(
        self, name: str, out: str | Path | None = None, root: str | Path = "runs", lock: bool = False
    ) -> None:
        if out is None:
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            path = Path(root) / f"{name}-{stamp}"
            i = 1
            while path.exists():
                path = Path(root) / f"{name}-{stamp}-{i}"
                i += 1
        else:
            path = Path(out)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            what = "a file of that name exists" if path.exists() or path.is_symlink() else e.strerror
            raise ConfigError(f"--out {str(path)!r} cannot be made a run directory: {what}") from None
        self._init(path)
        if lock:
            self.lock()
        try:
            if out is not None and ((path / "metrics.csv").exists() or (path / "config.json").exists()):
                raise ConfigError(f"--out {str(path)!r} already holds a run; choose a new directory")
            if lock:
                self.refuse_links()
        except BaseException:
            self.unlock()
            raise

    def _init(self, path: Path) -> None:
        self.path = path
        self._fields: dict[str, list[str]] = {}
        self._tb: list[tuple[str, float, int]] = []
        self._events: EventFile | None = None
        self._lock_fd: int | None = None

    @classmethod
    def reopen(cls, path: str | Path) -> RunDir:
        """An existing run directory, to append to (``--resume``) or to read."""
        rd = cls.__new__(cls)
        rd._init(Path(path))
        rd._read_headers()
        return rd

    def _read_headers(self) -> None:
        self._fields = {}
        for p in self.path.glob("*.csv"):
            with p.open() as f:
                header = f.readline()
            if header.endswith("\n") and header.strip():
                self._fields[p.stem] = header.strip().split(",")

    # --- ownership -------------------------------------------------------------------------------------------

    @staticmethod
    def holder(path: str | Path) -> int | None:
        """The pid of the live process that holds the lock of run directory ``path`` (see :meth:`lock`), or None
        when no process holds it (the lock is probed, never kept). A held lock whose file names no pid is 0."""
        p = Path(path) / LOCK
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        except OSError:  # no flock on this file system: trust the pid if its process lives
            owner = _read_pid(fd)
            return owner if owner and _alive(owner) else None
        finally:
            os.close(fd)  # (closing drops a shared lock taken by the probe)
        return None

    def lock(self) -> None:
        """Take the directory's lock, ``RUN_DIR/.lock``, for this process: an exclusive ``flock`` on the file,
        which holds the owner's pid. A lock held by a live process is a one-line ConfigError naming its pid; a
        lock left by a process that died (the kernel drops a dead process's flock) is taken over. Where the
        file system has no flock, a pid in the file that names a live process counts as held."""
        p = self.path / LOCK
        try:
            fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ConfigError(_link_message(self.path, p)) from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_pid(fd)
            os.close(fd)
            raise ConfigError(
                f"run directory {str(self.path)!r} is in use by process {owner or '?'} (lock file {LOCK}); "
                "wait for it to finish or stop it"
            ) from None
        except OSError:  # no flock on this file system: trust the pid if its process lives
            owner = _read_pid(fd)
            if owner and owner != os.getpid() and _alive(owner):
                os.close(fd)
                raise ConfigError(
                    f"run directory {str(self.path)!r} is in use by process {owner} (lock file {LOCK})"
                ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock taken by :meth:`lock` (the file stays, empty)."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def refuse_links(self) -> None:
        """A one-line ConfigError if the directory or its ``tb/`` holds a symbolic link (a write through it
        could land outside the run directory)."""
        entries = list(self.path.iterdir())
        tb = self.path / "tb"
        if tb.is_dir() and not tb.is_symlink():
            entries += list(tb.iterdir())
        for entry in entries:
            if entry.is_symlink():
                raise ConfigError(_link_message(self.path, entry))

    # --- resume ----------------------------------------------------------------------------------------------

    def cut_back(self, step: int) -> None:
        """Make the records end at ``step`` (a checkpoint's; 0 for a run restarted from scratch): the rows of
        every ``*.csv`` table after ``step`` and the TensorBoard events after it go, as do temporary files a
        killed process left. Each file is replaced atomically by its kept prefix, so a cut interrupted half-way
        is finished by the next. metrics.csv and eval.csv must reach ``step`` exactly (one-line ConfigError
        otherwise, before anything changes)."""
        self.remove_temporaries()
        plan: list[tuple[Path, bytes, int]] = []  # (file, contents, bytes to keep)
        for p in sorted(self.path.glob("*.csv")):
            data = p.read_bytes()
            keep, last = _csv_prefix(data, step)
            if step > 0 and p.stem in TABLES_CHECKED and last != step:
                where = "has no rows" if last is None else f"ends at step {last}"
                raise ConfigError(
                    f"{p.stem}.csv in {str(self.path)!r} {where}, but the checkpoint is at step {step}: "
                    "the records do not belong to this checkpoint"
                )
            plan.append((p, data, 0 if step == 0 else keep))
        for p in event_files(self.path / "tb"):
            keep = 0
            if step > 0:
                for start, end, event in read_events(p):
                    if event.HasField("summary") and event.step > step:
                        keep = start
                        break
                    keep = end
            plan.append((p, p.read_bytes(), keep))
        for p, data, keep in plan:
            if keep == 0:
                p.unlink()
            elif keep < len(data):
                atomic_write_bytes(p, data[:keep])
        self._read_headers()

    def remove_temporaries(self) -> None:
        """Delete the temporary files (``.NAME.*.tmp``) a killed writer left in the directory or ``tb/``."""
        for d in (self.path, self.path / "tb"):
            if d.is_dir() and not d.is_symlink():
                for p in [*d.glob(".*.tmp"), *d.glob(".*.tmp.png")]:
                    if p.is_file() or p.is_symlink():
                        p.unlink()

    # --- writing ---------------------------------------------------------------------------------------------

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
            new = not p.exists() or p.stat().st_size == 0
        else:
            new = False
            if list(row) != fields:
                raise ConfigError(
                    f"{table}.csv in {str(self.path)!r} has the columns {','.join(fields)}; "
                    f"this run logs {','.join(row)}"
                )
        try:
            with open(p, "a", newline="", opener=_no_follow) as f:
                w = csv.DictWriter(f, fieldnames=fields, extrasaction="raise")
                if new:
                    w.writeheader()
                w.writerow({k: _scalar(v) for k, v in row.items()})
                f.flush()
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ConfigError(_link_message(self.path, p)) from None
            if e.filename is None:
                raise OSError(e.errno, e.strerror, str(p)) from None
            raise

    def log_scalars(self, step: int, metrics: Mapping[str, Any], table: str = "metrics") -> None:
        """Append ``{"step": step, **metrics}`` to ``<table>.csv`` now, and queue each finite scalar for the
        run's TensorBoard event file under ``RUN_DIR/tb`` (written by :meth:`flush`;
        ``tensorboard --logdir RUN_DIR``)."""
        self.log({"step": int(step), **metrics}, table)
        for k, v in metrics.items():  # NaN (e.g. no episode ended yet) stays in the CSV only
            if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number) and np.isfinite(v):
                self._tb.append((f"{table}/{k}", float(v), int(step)))

    def flush(self) -> None:
        """Append the queued TensorBoard scalars to this run's event file (opened on the first flush, under a
        new name, and kept open: one writer per run) and sync it."""
        if not self._tb:
            return
        if self._events is None:
            self._events = EventFile(self.path / "tb")
        self._events.write_scalars(self._tb)
        self._tb = []

    def close(self) -> None:
        """Flush the TensorBoard queue, close the event file and release the lock (CSV rows are flushed as
        they are written)."""
        try:
            self.flush()
        finally:
            if self._events is not None:
                self._events.close()
                self._events = None
            self.unlock()

    def save_figure(self, fig: Any, name: str) -> Path:
        """Save a matplotlib figure as ``<name>.png`` atomically and close it."""
        import io

        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        p = self.path / f"{name}.png"
        atomic_write_bytes(p, buf.getvalue())
        return p

    def write_summary(self, text: str) -> Path:
        p = self.path / "summary.md"
        atomic_write_text(p, text)
        return p


def _csv_prefix(data: bytes, step: int) -> tuple[int, int | None]:
    """``(bytes to keep, step of the last row kept)``: the header and the complete rows up to the first row
    after ``step`` (or the first torn or unreadable line)."""
    end = data.find(b"\n")
    if end < 0 or not data.startswith(b"step,"):
        return 0, None
    pos, last = end + 1, None
    while (end := data.find(b"\n", pos)) >= 0:
        try:
            s = int(data[pos:end].split(b",", 1)[0])
        except ValueError:
            break
        if s > step:
            break
        pos, last = end + 1, s
    return pos, last


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _link_message(run_dir: Path, link: Path) -> str:
    try:
        target = f" (to {os.readlink(link)!r})"
    except OSError:
        target = ""
    return (
        f"{str(link.relative_to(run_dir))!r} in run directory {str(run_dir)!r} is a symbolic link{target}; "
        "proxrl writes no file through a link: replace it by a regular file"
    )


def _scalar(v: Any) -> Any:
    if isinstance(v, float | np.floating):
        return f"{float(v):.6g}"
    if hasattr(v, "item") and np.ndim(v) == 0:
        return _scalar(v.item())
    return v
