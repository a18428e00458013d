"""`proxrl sweep`: bad input fails before any work, cells run as Ray tasks on a local 2-CPU Ray, rows are
written once per cell, reruns skip finished cells, failing cells are recorded, a killed worker's cell runs again,
a lost cluster stops the sweep with one line and a rerun finishes it.

Cells are tiny (an 8-unit network, 64 steps, one evaluation): what is checked is the sweep machinery, not
learning. Ray starts once for the module (2 CPUs, no dashboard)."""

from __future__ import annotations

import csv
import fcntl
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from proxrl.cli import main
from proxrl.errors import ConfigError
from proxrl.run.sweep import (
    ATTEMPTS,
    NOTES,
    PID_FILE,
    Cell,
    Setting,
    _time_left,
    cells,
    load_spec,
    parse_spec,
    read_results,
    run_cell,
    run_sweep,
    write_row,
)
from proxrl.run.sweep_command import duration

TINY = "hidden = [8], num_envs = 2, num_steps = 16, num_minibatches = 1, update_epochs = 1"
RUN = "seeds = 2\ntotal_steps = 64\neval_every = 64\neval_episodes = 1\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(text)
    return path


def one_line_error(capsys, args: list[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("proxrl: error: ") and "\n" not in err, err
    return err


GOOD = f'envs = ["CartPole-v1"]\n{RUN}[[settings]]\nalgo = "ppo"\noptions = {{ {TINY} }}\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD + "colour = 1\n", "unknown key 'colour'"),
        (GOOD + '[[settings]]\nalgo = "ppo"\nlearning_rate = 1\n', "unknown key 'learning_rate'"),
        (GOOD + '[[settings]]\nalgo = "dqn"\n', "algo must be one of"),
        (GOOD + '[[settings]]\nalgo = "ppo"\noptions = { lrr = 1e-3 }\n', "ppo has no option 'lrr'"),
        (
            GOOD + '[[settings]]\nalgo = "ppo"\noptions = { lr = "fast" }\n',
            "option 'lr' of ppo expects a number",
        ),
        (GOOD + '[[settings]]\nalgo = "ppo"\noptions = { num_envs = 2.5 }\n', "expects an integer"),
        (GOOD + '[[settings]]\nalgo = "ppo"\ngrid = { lr = 1e-3 }\n', "must be a non-empty list"),
        (GOOD + '[[settings]]\nalgo = "ppo"\npreset = "atari"\n', "not a preset of ppo"),
        (GOOD + '[scores]\n"CartPole-v1" = [500, 9]\n', "min < max"),
        (GOOD.replace("seeds = 2", 'seeds = "two"'), "seeds must be an integer"),
        (GOOD.replace("CartPole-v1", "CartPol-v1"), "CartPol-v1"),
        (GOOD.replace("hidden = [8]", "hidden = [8], lr = -1.0"), "lr must be a finite number > 0"),
        (GOOD.replace("total_steps = 64", "total_steps = 16"), "total_steps must be >= num_envs·num_steps"),
        ("envs = [\n", "sweep.toml"),
        # the algorithm on the environment's spaces, checked before any cell runs
        (
            GOOD + '[[settings]]\nalgo = "sac"\n',
            "cell sac on CartPole-v1: SAC needs a continuous (Box) action",
        ),
        (
            GOOD.replace("seeds = 2", 'seeds = 2\nbackend = "gymnax"')
            + f'[[settings]]\nalgo = "appo"\noptions = {{ {TINY} }}\n',
            "env-runner actors step Gymnasium environments",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_bad_sweep_file_is_one_line_error_before_any_work(tmp_path, capsys, text, fragment):
    out = tmp_path / "out"
    err = one_line_error(capsys, ["sweep", str(write(tmp_path, text)), "--out", str(out), "--no-progress"])
    assert fragment in err
    assert not out.exists()  # nothing started: no sweep directory, no Ray


def test_bad_command_line_is_one_line_error_before_any_work(tmp_path, capsys):
    out = tmp_path / "out"
    spec = str(write(tmp_path, GOOD))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert "cannot reach a Ray cluster" in one_line_error(
        capsys, ["sweep", spec, "--out", str(out), "--address", f"127.0.0.1:{port}"]
    )
    assert "HOST:PORT" in one_line_error(capsys, ["sweep", spec, "--out", str(out), "--address", "nowhere"])
    assert "--workers must be an integer >= 1" in one_line_error(
        capsys, ["sweep", spec, "--out", str(out), "--workers", "0"]
    )
    assert "add --algo" in one_line_error(capsys, ["sweep", spec, "--set", "lr=1e-3", "--out", str(out)])
    assert "give a sweep file" in one_line_error(capsys, ["sweep", "--out", str(out)])
    assert "does not exist" in one_line_error(capsys, ["sweep", str(tmp_path / "none.toml")])
    assert "not a sweep directory" in one_line_error(capsys, ["sweep", "report", str(tmp_path)])
    assert not out.exists()


def test_grid_expands_and_a_cell_is_what_it_computes():
    spec = parse_spec(
        {
            "envs": ["CartPole-v1", "Acrobot-v1"],
            "settings": [
                {"algo": "ppo", "label": "p", "options": {"num_envs": 2}, "grid": {"lr": [1e-3, 3e-4]}},
                {"algo": "a2c"},
            ],
        }
    )
    names = [s.name for s in spec.settings]
    assert names == ["p[lr=0.001]", "p[lr=0.0003]", "a2c"]
    grid = cells(spec)
    assert len(grid) == 6 and len({c.key for c in grid}) == 6
    same = Cell(Setting("a2c", label="renamed"), "Acrobot-v1", spec.run)
    assert same.key == grid[-1].key  # the label is not part of the identity
    with pytest.raises(ConfigError, match="same configuration"):
        cells(
            parse_spec(
                {"envs": ["CartPole-v1"], "settings": [{"algo": "a2c"}, {"algo": "a2c", "label": "x"}]}
            )
        )


def test_sweep_writes_one_row_per_cell_records_failures_resumes_and_reports(local_ray, tmp_path, capsys):
    text = (
        f'envs = ["Pendulum-v1"]\n{RUN}'
        f'[[settings]]\nalgo = "ppo"\nlabel = "ok"\noptions = {{ {TINY} }}\n'
        f'[[settings]]\nalgo = "ppo"\nlabel = "diverges"\noptions = {{ {TINY}, log_std_init = 100.0 }}\n'
        f'[[settings]]\nalgo = "ppo"\nlabel = "slow"\noptions = {{ {TINY}, lr = 1e-5 }}\n'
        '[scores]\n"Pendulum-v1" = [-1600.0, 0.0]\n'
    )
    out = tmp_path / "sweep"
    args = [
        "sweep",
        str(write(tmp_path, text)),
        "--out",
        str(out),
        "--no-progress",
        "--reps",
        "200",
        "--workers",
        "1",
    ]
    assert main(args) == 1  # a cell failed: the sweep finishes, then says so
    assert "1 cell failed (the error of each is in results.csv); --retry-failed" in capsys.readouterr().err
    rows = {r["label"]: r for r in read_results(out / "results.csv")}
    assert len(read_results(out / "results.csv")) == 3, rows
    # one after another, each cell in a process of its own (no cell runs in a process an earlier one shaped)
    pids = [int(p.read_text().split()[0]) for p in sorted((out / "cells").glob(f"*/{PID_FILE}"))]
    assert len(pids) == 3 and len(set(pids)) == 3, pids
    assert rows["ok"]["status"] == "ok", rows["ok"]
    assert len(json.loads(rows["ok"]["final_per_seed"])) == 2 and rows["ok"]["steps"] == "64"
    assert (out / rows["ok"]["run_dir"] / "eval.csv").is_file()
    assert rows["diverges"]["status"] == "failed"
    assert rows["diverges"]["error"].startswith("FloatingPointError: non-finite values in the training state")
    assert rows["slow"]["status"] == "ok"
    assert all("\n" not in r["error"] for r in rows.values())
    summary = (out / "summary.md").read_text()
    assert "| ok | Pendulum-v1 |" in summary and "diverges" in summary
    assert (out / "learning_curves.png").is_file() and (out / "performance_profile.png").is_file()
    capsys.readouterr()

    # the same command again: every cell has a row, nothing runs, the table is unchanged
    before = (out / "results.csv").read_text()
    assert main(args) == 1
    assert "0 cells run, 3 already finished, 1 failed" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == before
    # and the directory alone resumes it (its sweep.json)
    result = run_sweep(parse_spec(json.loads((out / "sweep.json").read_text())), out, progress=False)
    assert (result.ran, result.skipped) == (0, 3)


def test_killed_worker_runs_its_cell_again_and_every_cell_has_one_row(local_ray, tmp_path):
    spec = parse_spec(
        {
            "envs": ["CartPole-v1"],
            "seeds": 1,
            "total_steps": 64,
            "eval_every": 64,
            "eval_episodes": 1,
            "settings": [
                {"algo": "ppo", "options": {"hidden": [8], "num_envs": 2, "num_steps": 16, "lr": lr}}
                for lr in (1e-3, 3e-4)
            ],
        }
    )
    out = tmp_path / "sweep"
    results: list = []
    thread = threading.Thread(
        target=lambda: results.append(run_sweep(spec, out, progress=False)), daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 120
    pid_files: list[Path] = []
    while not pid_files and time.monotonic() < deadline:
        pid_files = sorted((out / "cells").glob(f"*/{PID_FILE}")) if (out / "cells").exists() else []
        time.sleep(0.05)
    assert pid_files, "no cell started within 120 s"
    victim = pid_files[0].parent
    pid = int(pid_files[0].read_text())
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep did not finish within 300 s of the kill"
    rows = read_results(out / "results.csv")
    assert sorted(r["key"] for r in rows) == sorted(c.key for c in cells(spec))  # each cell exactly once
    assert all(r["status"] == "ok" for r in rows), rows
    killed = next(r for r in rows if r["run_dir"].endswith(victim.name))
    assert killed["attempts"] == "2", killed
    pids = [line.split("pid=")[1] for line in (victim / ATTEMPTS).read_text().splitlines()]
    assert pids[0] == str(pid) and pids[1] != str(pid)
    assert results and results[0].ran == 2


def test_a_finished_sweep_run_again_neither_starts_nor_joins_ray(tmp_path, monkeypatch):
    """With every cell in the table there is nothing to run: the rerun returns at once without Ray (starting it
    would attach to whatever cluster the machine has, or leave an instance running)."""
    import ray

    import proxrl.run.sweep as sweep_module

    spec = parse_spec(
        {
            "envs": ["CartPole-v1"],
            "seeds": 1,
            "total_steps": 512,
            "settings": [{"algo": "ppo", "label": f"h{h}", "options": {"hidden": [h]}} for h in (8, 16)],
        }
    )
    out = tmp_path / "sweep"
    out.mkdir()
    for cell in cells(spec):
        write_row(out / "results.csv", {"key": cell.key, "label": cell.setting.name, "status": "ok"})
    # a failed row of a cell the sweep file no longer has: kept in the table, not counted as this sweep's failure
    write_row(out / "results.csv", {"key": "0123456789ab", "label": "gone", "status": "failed", "error": "E"})

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a sweep with nothing to run")

    monkeypatch.setattr(sweep_module, "connect", no_ray)
    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.setattr(ray, "get_runtime_context", no_ray)  # (it starts Ray when none runs)
    started = ray.is_initialized()  # (another test of this module may hold one)
    result = run_sweep(spec, out, progress=False)
    assert (result.ran, result.skipped, len(result.rows), result.failed, result.failed_elsewhere) == (
        0,
        2,
        3,
        0,
        1,
    )
    assert ray.is_initialized() == started


def test_a_cells_stderr_is_kept_in_its_notes_file(tmp_path, capsys):
    """A Ray worker's stderr is not shown, so a cell appends what its run prints there (here the note that the
    budget is not a whole number of updates) to notes.log, time-stamped, and passes it on."""
    spec = parse_spec(
        {
            "envs": ["CartPole-v1"],
            "seeds": 1,
            "total_steps": 80,
            "eval_every": 64,
            "eval_episodes": 1,
            "settings": [{"algo": "ppo", "options": {"hidden": [8], "num_envs": 2, "num_steps": 16}}],
        }
    )
    row = run_cell(cells(spec)[0], tmp_path / "cell")
    assert row["status"] == "ok", row
    note = "note: --total-steps 80 is not a multiple of the 32 steps of one update"
    assert note in capsys.readouterr().err
    lines = (tmp_path / "cell" / NOTES).read_text().splitlines()
    assert len(lines) == 1 and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d " + re.escape(note) + ".*", lines[0]
    )


def test_sweep_status_shows_where_every_cell_stands(tmp_path, monkeypatch, capsys):
    """Five cells: one finished, one stopped after its first checkpoint (Ctrl-C), one whose run directory a live
    process holds, one recorded as failed, one not started; `proxrl sweep status` prints each with its steps and
    last evaluation, writes nothing, and exits 0."""
    spec = parse_spec(
        {
            "envs": ["CartPole-v1"],
            "seeds": 1,
            "total_steps": 128,
            "eval_every": 64,
            "eval_episodes": 1,
            "settings": [
                {
                    "algo": "ppo",
                    "label": label,
                    "options": {"hidden": [8], "num_envs": 2, "num_steps": 16, "lr": lr},
                }
                for label, lr in [
                    ("done", 1e-3),
                    ("stopped", 2e-3),
                    ("held", 3e-3),
                    ("broken", 4e-3),
                    ("new", 5e-3),
                ]
            ],
        }
    )
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(spec.to_record()))
    done, stopped, held, broken, _ = cells(spec)
    write_row(out / "results.csv", run_cell(done, out / "cells" / done.dirname))
    monkeypatch.setenv("PROXRL_FAULT", "checkpoint#1:interrupt")
    with pytest.raises(KeyboardInterrupt):
        run_cell(stopped, out / "cells" / stopped.dirname)
    monkeypatch.delenv("PROXRL_FAULT")
    write_row(out / "results.csv", {"key": broken.key, "status": "failed", "error": "ValueError: bad"})
    held_dir = out / "cells" / held.dirname
    held_dir.mkdir()
    fd = os.open(held_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    capsys.readouterr()
    try:
        assert main(["sweep", "status", str(out)]) == 0
    finally:
        os.close(fd)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == [
        "cell",
        "environment",
        "status",
        "steps",
        "per",
        "seed",
        "last",
        "evaluation",
        "time",
        "left",
        "attempts",
    ]
    table = {line.split()[0]: line for line in lines[1:-1]}
    final = json.loads(read_results(out / "results.csv")[0]["final_per_seed"])[0]
    assert re.search(rf"finished\s+128 / 128\s+{final:.1f}\s+-\s+1$", table["done"]), table["done"]
    # the stopped cell has one chunk (64 steps) left, which should take as long as its first took
    with (out / "cells" / stopped.dirname / "timing.csv").open() as f:
        first = float(next(csv.DictReader(f))["chunk_seconds"])
    left = duration(first)
    assert re.search(rf"stopped\s+64 / 128\s+-?\d+\.\d\s+{left}\s+1$", table["stopped"]), table["stopped"]
    assert re.search(rf"running \(pid {os.getpid()}\)\s+0 / 128\s+-\s+-\s+0$", table["held"]), table["held"]
    assert re.search(r"failed: ValueError: bad\s+0 / 128\s+-\s+-\s+0$", table["broken"]), table["broken"]
    assert re.search(r"not started\s+0 / 128\s+-\s+-\s+0$", table["new"]), table["new"]
    assert lines[-1] == "1 finished, 1 failed, 1 running, 1 stopped, 1 not started of 5 cells"
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # nothing written


def _kill_processes_mentioning(text: str) -> int:
    """SIGKILL every process whose command line contains ``text`` (a Ray cluster's own temp dir); their count."""
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if text in cmdline and int(pid) != os.getpid():
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
        except (OSError, ValueError):
            pass
    return killed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the cluster's processes in /proc")
def test_lost_cluster_stops_the_sweep_with_one_line_and_a_rerun_finishes_it(local_ray, tmp_path):
    """A cluster started with `ray start --head` dies after the first cell: the sweep stops with one line
    (exit 1) keeping that cell's row, and the same command without the cluster runs the rest, every cell once."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONFAULTHANDLER": "1"}
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    with socket.socket() as s:
        s.bind(("", 0))
        port = s.getsockname()[1]
    ray_cli = str(Path(sys.executable).parent / "ray")
    head = [ray_cli, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"]
    head += ["--disable-usage-stats", f"--temp-dir={temp}"]
    spec = write(
        tmp_path,
        f'envs = ["CartPole-v1"]\n{RUN.replace("seeds = 2", "seeds = 1")}'
        + "".join(
            f'[[settings]]\nalgo = "ppo"\nlabel = "lr{lr}"\noptions = {{ {TINY}, lr = {lr} }}\n'
            for lr in (1e-3, 3e-4, 1e-4)
        ),
    )
    out = tmp_path / "sweep"
    try:
        started = subprocess.run(head, capture_output=True, text=True, env=env, timeout=120)
        assert started.returncode == 0, started.stderr[-2000:]
        address = re.search(r"ray start --address='([^']+)'", started.stdout + started.stderr).group(1)
        command = [sys.executable, "-m", "proxrl.cli", "sweep", str(spec), "--out", str(out), "--no-progress"]
        sweep = subprocess.Popen(
            [*command, "--address", address],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 180
        while not read_results(out / "results.csv") and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.1)
        assert _kill_processes_mentioning(temp) > 0  # the cluster's GCS, raylet and their helpers
        try:
            _, err = sweep.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            sweep.send_signal(signal.SIGABRT)  # every thread's stack, then fail
            _, err = sweep.communicate(timeout=30)
            pytest.fail(f"the sweep did not stop within 120 s of losing its cluster:\n{err[-5000:]}")
    finally:
        _kill_processes_mentioning(temp)
        shutil.rmtree(temp, ignore_errors=True)
    ours = [line for line in err.splitlines() if line.startswith("proxrl: error:")]
    assert sweep.returncode == 1 and len(ours) == 1 and "Traceback" not in err, err[-3000:]
    assert "lost the Ray cluster" in ours[0] and "rerun the same command" in ours[0]
    first = read_results(out / "results.csv")
    assert 1 <= len(first) < 3 and all(r["status"] == "ok" for r in first), first

    # later, without the cluster (Ray in this process): the remaining cells run, the finished ones are kept
    result = run_sweep(load_spec(spec), out, progress=False)
    rows = read_results(out / "results.csv")
    assert (result.ran, result.skipped) == (3 - len(first), len(first))
    assert rows[: len(first)] == first
    assert sorted(r["label"] for r in rows) == ["lr0.0001", "lr0.0003", "lr0.001"]
    assert all(r["status"] == "ok" for r in rows), rows


def test_starting_ray_drops_its_token_notice_and_keeps_its_other_warnings(monkeypatch):
    """Ray says on every start that its instance uses token authentication (the logger and words of Ray 2.5x's
    authentication_token_setup); init_ray drops that line and lets every other warning through."""
    import logging

    import ray

    from proxrl.run.cluster import init_ray

    setup = logging.getLogger("ray._private.authentication.authentication_token_setup")
    seen = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        setup.warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled ...")
        setup.warning("Token authentication is disabled for this Ray cluster. Anyone with network access ...")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage()[:40])

    kept: list[str] = []
    handler = Keep()
    setup.addHandler(handler)  # (Ray's loggers do not propagate to the root logger)
    monkeypatch.setattr(ray, "init", fake_init)
    try:
        init_ray(address="local", num_cpus=1)
    finally:
        setup.removeHandler(handler)
    assert kept == ["Token authentication is disabled for thi"]
    assert seen == {
        "address": "local",
        "num_cpus": 1,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    assert not setup.filters  # removed again


def test_time_left_is_the_median_of_recent_chunks_times_the_chunks_left(tmp_path):
    """A cell at 300 of 1000 steps, chunks of 100 steps, its last 10 chunks timed 1..10 s after 2 slow ones: the
    median of those 10 (5.5 s) × 7 chunks left = 38.5 s; without a timing file, unknown. A chunk is as long as
    the last one took."""
    times = [500.0, 400.0, *range(1, 11)]
    (tmp_path / "timing.csv").write_text(
        "step,chunk_seconds\n" + "".join(f"{100 * (i + 1)},{t}\n" for i, t in enumerate(times))
    )
    assert _time_left(tmp_path, 300, 1000) == 5.5 * 7
    assert math.isnan(_time_left(tmp_path / "none", 300, 1000))
    # chunks of 96 steps (eval_every 100 in whole updates of 32): 700 steps left are 8 chunks, not 7
    (tmp_path / "timing.csv").write_text("step,chunk_seconds\n96,2.0\n192,4.0\n")
    assert _time_left(tmp_path, 192, 892) == 3.0 * 8
    assert [duration(x) for x in (math.nan, 42.4, 1020, 7500)] == ["-", "42 s", "17 min", "2 h 05 min"]
