"""The ``proxrl sweep`` command: run a sweep (:mod:`proxrl.run.sweep`) and rebuild its report
(:mod:`proxrl.run.sweep_report`)."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import Any

from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError
from proxrl.run.sweep import (
    SPEC,
    CellStatus,
    load_spec,
    parse_spec,
    run_sweep,
    spec_from_options,
    sweep_status,
)
from proxrl.run.sweep_report import Report, report

DESCRIPTION = """\
Run a grid of training runs on Ray: every (setting, environment) cell is one task that trains all its seeds
at once with the ordinary training driver, in its own run directory under the sweep directory. Settings and
environments come from a sweep file (TOML) or from --algo, --set and --env. Without --address, Ray starts on
this machine with one worker per core (--workers N to choose); with --address HOST:PORT the same sweep runs on
a cluster started with 'ray start --head'. results.csv gets one row per finished cell as cells finish; running
the same command again skips finished cells. A cell whose worker process dies is run again (--max-retries); a
cell that fails is recorded with its error and the sweep goes on. When every cell has finished, summary.md and
the plots are rebuilt ('proxrl sweep report SWEEP_DIR' rebuilds them at any time).

A sweep file:

  envs = ["CartPole-v1", "Acrobot-v1"]
  seeds = 3
  total_steps = 100000
  eval_every = 10000

  [[settings]]
  algo = "ppo"
  options = { lr = 3e-4 }
  grid = { ent_coef = [0.0, 0.01] }

  [[settings]]
  algo = "a2c"

  [scores]
  "CartPole-v1" = [9.0, 500.0]
  "Acrobot-v1" = [-500.0, -60.0]

Top-level keys: envs, settings, scores, name and the run options seeds, seed, total_steps, eval_every,
eval_episodes, backend, normalize_obs, normalize_reward. A setting: algo, and optionally label, preset, options
(option values by name, as 'proxrl train ALGO --help' lists them) and grid (lists of values, one setting per
combination). scores: [min, max] per task for normalised scores (min scores 0, max scores 1)."""

REPORT_DESCRIPTION = """\
Rebuild summary.md and the plots of a sweep directory from its results.csv: final returns per task, normalised
scores (with the sweep file's [scores] bounds) as IQM, mean and median with 95% stratified-bootstrap intervals,
per task and over all tasks, performance profiles and learning curves."""


def sweep_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="proxrl sweep",
        usage="proxrl sweep [SWEEP_FILE] [OPTIONS]\n       proxrl sweep report SWEEP_DIR [--reps N]\n"
        "       proxrl sweep status SWEEP_DIR",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", nargs="?", type=Path, metavar="SWEEP_FILE", help="sweep file (TOML)")
    p.add_argument(
        "--algo",
        action="append",
        default=[],
        help=f"add a setting: one of {', '.join(TRAINERS)} (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an option of every --algo setting, e.g. --set lr=3e-4 (repeatable)",
    )
    p.add_argument(
        "--env", action="append", default=[], help="environment id (repeatable; replaces the file's envs)"
    )
    p.add_argument("--seeds", type=int, help="seeds per cell, trained together (default 1)")
    p.add_argument("--seed", type=int, help="base seed (default 0)")
    p.add_argument("--total-steps", type=int, help="environment steps per seed (default 100000)")
    p.add_argument("--eval-every", type=int, help="environment steps between evaluations (default 10000)")
    p.add_argument("--eval-episodes", type=int, help="deterministic episodes per evaluation (default 10)")
    p.add_argument("--backend", help="auto, gymnax or gymnasium (default auto)")
    p.add_argument(
        "--out",
        type=Path,
        help="sweep directory (default runs/sweep-NAME, NAME the file's name key, else its stem)",
    )
    p.add_argument(
        "--workers",
        type=int,
        help="cells at a time (default: one per core of this machine, or as many as the cluster schedules)",
    )
    p.add_argument(
        "--address",
        help="HOST:PORT of a Ray cluster started with 'ray start --head' (default: Ray on this machine)",
    )
    p.add_argument(
        "--max-retries",
        type=int,
        default=3,
        help="runs of a cell again after its worker process died (default 3)",
    )
    p.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report (default 2000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="proxrl sweep report", description=REPORT_DESCRIPTION)
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a directory written by 'proxrl sweep'")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the resamples (default 0)")
    return p


STATUS_DESCRIPTION = """\
Show where every cell of a sweep stands, from its sweep.json, results.csv and the cells' run directories
(nothing is written): finished or failed (it has a row), running (a live process holds its run directory),
stopped (the next run of the sweep command continues it from its checkpoint) or not started; the steps per seed
at its last evaluation, that evaluation's mean return, the time a running or stopped cell should still take (its
recent chunks' median time × the chunks left) and its attempts."""


def status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="proxrl sweep status", description=STATUS_DESCRIPTION)
    p.add_argument("sweep_dir", type=Path, metavar="SWEEP_DIR", help="a directory written by 'proxrl sweep'")
    return p


def duration(seconds: float) -> str:
    """``seconds`` for a person: "-" if unknown (NaN), "42 s", "17 min" or "2 h 05 min"."""
    if math.isnan(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def status_table(rows: list[CellStatus]) -> str:
    """The lines ``proxrl sweep status`` prints: one per cell, columns aligned (the time left where a running or
    stopped cell's chunks were timed, else "-"), and a count by status."""
    head = ("cell", "environment", "status", "steps per seed", "last evaluation", "time left", "attempts")
    body = [
        (
            r.name,
            r.env,
            r.status + (f" (pid {r.pid})" if r.pid else "") + (f": {r.error}" if r.error else ""),
            f"{r.steps:,} / {r.total_steps:,}",
            "-" if math.isnan(r.last_return) else f"{r.last_return:.1f}",
            duration(r.time_left_s),
            str(r.attempts),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [head, *body]) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
             for line in [head, *body]]  # fmt: skip
    counts = Counter(r.status for r in rows)
    order = ("finished", "failed", "running", "stopped", "not started")
    lines.append(", ".join(f"{counts[k]} {k}" for k in order if counts[k]) + f" of {len(rows)} cells")
    return "\n".join(lines)


def _check_reps(reps: int) -> int:
    if reps < 100:
        raise ConfigError(f"--reps must be an integer >= 100, got {reps}")
    return reps


def sweep_main(argv: list[str]) -> Any:
    """``proxrl sweep ...``: run (and report) a sweep, or ``proxrl sweep report DIR``; returns the report.
    ``proxrl sweep status DIR`` prints where its cells stand and returns None."""
    if argv and argv[0] == "report":
        args = report_parser().parse_args(argv[1:])
        return report(args.sweep_dir, _check_reps(args.reps), args.seed)
    if argv and argv[0] == "status":
        args = status_parser().parse_args(argv[1:])
        print(status_table(sweep_status(args.sweep_dir)))
        return None
    args = sweep_parser().parse_args(argv)
    _check_reps(args.reps)
    run = {
        "seeds": args.seeds,
        "seed": args.seed,
        "total_steps": args.total_steps,
        "eval_every": args.eval_every,
        "eval_episodes": args.eval_episodes,
        "backend": args.backend,
    }
    run = {k: v for k, v in run.items() if v is not None}
    if args.set and not args.algo:
        raise ConfigError(
            "--set gives options of the --algo settings; add --algo (or put options in the file)"
        )
    if args.spec is not None:
        record = _file_record(args.spec)
        name = record.get("name") or args.spec.stem
    elif args.algo:
        record, name = {}, "sweep"
    elif args.out is not None and (args.out / SPEC).is_file():
        record = _file_record(args.out / SPEC)  # rerun of a sweep directory
        name = record.get("name") or args.out.name
    else:
        raise ConfigError(
            "give a sweep file, or --algo and --env (or --out of an earlier sweep to resume it)"
        )
    extra = spec_from_options(args.algo, args.env, args.set, run)
    record = {
        **record,
        **{k: v for k, v in extra.items() if k not in ("envs", "settings")},
        "settings": list(record.get("settings", [])) + extra["settings"],
        "envs": extra["envs"] or record.get("envs", []),
        "name": name,
    }
    spec = parse_spec(record, str(args.spec.name) if args.spec else "options")
    out = args.out or Path("runs") / f"sweep-{spec.name}"
    result = run_sweep(
        spec,
        out,
        workers=args.workers,
        address=args.address,
        max_retries=args.max_retries,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
    )
    failed = result.failed
    elsewhere = (
        f" (and {result.failed_elsewhere} failed of cells not in this sweep file)"
        if result.failed_elsewhere
        else ""
    )
    print(
        f"sweep: {result.ran} cells run, {result.skipped} already finished, {failed} failed{elsewhere} "
        f"in {out / 'results.csv'}"
    )
    return report(out, args.reps)._replace(failed=failed)


def _file_record(path: Path) -> dict[str, Any]:
    """The table of a sweep file, checked (so a bad file fails before anything else)."""
    import json
    import tomllib

    load_spec(path)  # one-line errors for a bad file
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)


__all__ = ["Report", "report_parser", "status_parser", "status_table", "sweep_main", "sweep_parser"]
