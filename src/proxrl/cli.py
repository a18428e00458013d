"""The ``proxrl`` command line.

    proxrl lecture expert        EW vs softmax PG on the lecture's Ber(0.6)/Ber(0.4) problem
    proxrl lecture bandit        EXP3, PG and NPG from bandit feedback: pseudo-regret curves
    proxrl lecture conditioning  gradient descent vs preconditioned steps on ill-conditioned problems
    proxrl lecture mdp           API, EW, PG, NPG (exact and sampled) on random MDPs, a chain, FrozenLake
    proxrl lecture one-point     one-point and two-point gradient estimators; regret of bandit gradient descent
    proxrl train ALGO --env ID   train N seeds at once (gymnax traced, or Gymnasium host-side)
                                 (--preset NAME: published settings, e.g. --preset mujoco)
    proxrl evaluate RUN_DIR      evaluate a trained run's checkpoint; optionally write a GIF
    proxrl sweep [SWEEP_FILE]    a grid of runs (settings × environments × seeds) as Ray tasks, resumable
    proxrl sweep report DIR      normalised scores, IQM/mean/median with bootstrap intervals, plots
    proxrl sweep status DIR      where each cell stands: finished, running, stopped; steps, last evaluation

Every run writes a directory (``--out``, default ``runs/<name>-<timestamp>``) holding config.json,
metrics.csv, plots and summary.md.

Exit status:

- 0: done;
- 1: a sweep stopped because its Ray cluster was lost (one line; finished cells are kept and the same
  command continues), or a sweep that finished with failed cells (their errors are in its results.csv;
  ``--retry-failed`` runs them again);
- 2: bad input, printed as one line: an option out of range, a run directory that cannot be used (a corrupt,
  unhashed or foreign checkpoint, a config.json that disagrees with its checkpoint, a directory another process
  is training in, a symbolic link in it), or an operating-system error such as a full disk (the files of the run
  are left as they were after its last checkpoint: ``--resume`` continues it);
- 3: a training run produced a NaN or an infinity (in a metric, a parameter or an evaluation); one line names
  the value, the update and the seed. The run stopped before writing that chunk: its last checkpoint and the
  records up to it are kept;
- 130: interrupted by Ctrl-C (one line saying how to continue).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union

import tyro

from proxrl.deep.registry import TRAINERS
from proxrl.errors import ConfigError, NonFiniteError
from proxrl.lecture import bandit, conditioning, expert, mdp, one_point
from proxrl.run.commands import (
    EvaluateCommand,
    make_train_command,
    preset_defaults,
    resume_defaults,
    run_evaluate,
    run_train,
)
from proxrl.run.records import RunDir
from proxrl.run.sweep import SweepError

LECTURES: dict[str, tuple[type, Callable[[Any], RunDir]]] = {
    "expert": (expert.ExpertConfig, expert.run),
    "bandit": (bandit.BanditConfig, bandit.run),
    "conditioning": (conditioning.ConditioningConfig, conditioning.run),
    "mdp": (mdp.MDPConfig, mdp.run),
    "one-point": (one_point.OnePointConfig, one_point.run),
}

COMMANDS = {
    "lecture": f"Run one of the lecture's experiments: {', '.join(LECTURES)} (writes plots and a summary).",
    "train": f"Train an algorithm ({', '.join(TRAINERS)}) on an environment, many seeds at once.",
    "evaluate": "Evaluate a training run's checkpoint (returns per seed; --gif writes an episode).",
    "sweep": "Run a grid of training runs as Ray tasks, locally or on a cluster; 'sweep report' aggregates it, "
    "'sweep status' shows its progress.",
}


def _usage() -> str:
    lines = ["usage: proxrl COMMAND [SUBCOMMAND] [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<10} {doc}" for name, doc in COMMANDS.items()]
    lines += [
        "",
        "Run 'proxrl COMMAND --help' for a command's subcommands and options (each with its default).",
    ]
    return "\n".join(lines)


def _parse(spec: Any, prog: str, argv: list[str], default: Any = None) -> Any:
    """``tyro.cli`` with flat option names; a parse error becomes one ConfigError line (tyro's message without its
    box) instead of tyro's multi-line panel; ``--help`` prints as usual."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            extra = {} if default is None else {"default": default}
            return tyro.cli(spec, prog=prog, args=argv, config=(tyro.conf.OmitArgPrefixes,), **extra)
    except SystemExit as e:
        if not e.code:
            raise
        raise ConfigError(f"{_one_line(err.getvalue())} (see '{prog} --help')") from None


def _one_line(panel: str) -> str:
    """The message of a tyro error panel on one line: the section after the panel's title, box drawing removed.
    tyro draws the title into the top border on a terminal, or as a first line above a rule elsewhere."""
    box = set("─-+|│╭╮╰╯ ")
    sections: list[list[str]] = [[]]
    titled = False
    for line in panel.splitlines():
        if line.lstrip().startswith(("╭", "╰")):
            titled = True  # the title sits in the top border
            continue
        text = line.strip().strip("│|").strip()
        if text and set(text) <= box:
            sections.append([])  # a rule between sections
        elif text:
            sections[-1].append(text)
    sections = [s for s in sections if s]
    if not titled and len(sections) > 1 and len(sections[0]) == 1:
        sections = sections[1:]  # the title, on its own line above a rule
    if not sections:
        return "could not parse the command line"
    message = " ".join(sections[0])
    # a value that does not parse: name what the option takes, from the usage line of tyro's helptext
    bad = re.match(r"Error parsing (--[\w-]+): (.*)$", message)
    usage = [line for section in sections[1:2] if section[0] == "Argument helptext:" for line in section[1:2]]
    if bad and usage and usage[0].split(" ", 1)[0] == bad.group(1) and " " in usage[0]:
        return f"{bad.group(1)} takes {usage[0].split(' ', 1)[1]}; {bad.group(2)}"
    return message


def _lecture(argv: list[str]) -> RunDir:
    options = tuple(Annotated[cfg, tyro.conf.subcommand(name)] for name, (cfg, _) in LECTURES.items())
    cfg = _parse(Union[options], "proxrl lecture", argv)  # noqa: UP007
    return next(run for cfg_type, run in LECTURES.values() if isinstance(cfg, cfg_type))(cfg)


def _train(argv: list[str]) -> RunDir:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: proxrl train ALGO [OPTIONS]\n\nalgorithms:")
        width = max(map(len, TRAINERS))
        for name, entry in TRAINERS.items():
            print(f"  {name:<{width}}  {entry.description}")
        print("\nRun 'proxrl train ALGO --help' for its options (each with its default).")
        raise SystemExit(0 if argv else 2)
    name = argv[0]
    if name not in TRAINERS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of {', '.join(TRAINERS)}")
    command = make_train_command(name, TRAINERS[name].config)
    defaults = resume_defaults(command, argv[1:]) or preset_defaults(command, argv[1:])
    cmd = _parse(command, f"proxrl train {name}", argv[1:], defaults)
    return run_train(cmd)


def _evaluate(argv: list[str]) -> RunDir:
    cmd = _parse(EvaluateCommand, "proxrl evaluate", argv)
    return run_evaluate(cmd)


def _sweep(argv: list[str]) -> Any:
    from proxrl.run.sweep_command import sweep_main  # scipy's statistics load only for this command

    return sweep_main(argv)


INTERRUPTED = {
    "train": "continue the run from its last checkpoint with --resume RUN_DIR",
    "sweep": "finished cells keep their rows and a running cell its last checkpoint: rerun the same command "
    "to continue",
}


TYPED_AS = {"env_id": ("--env",), "num_seeds": ("--num-seeds", "--seeds")}
"""Options whose flag is not ``--`` + the field name in kebab case (``--seeds`` is the sweep's ``num_seeds``)."""

_SUBJECT = re.compile(r"^((?:cell [^:]*: )?)([a-z][a-z0-9_]*)(?=[ :])")
_FIELD = re.compile(r"(?<![\w-])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w-])")


def as_typed(message: str, argv: Sequence[str]) -> str:
    """``message`` with the options it names written as the flags the user typed: the field it starts with
    (``lr``, ``total_steps``) and any other field name with an underscore (``batch_size``) becomes ``--lr``,
    ``--total-steps``, ``--batch-size`` where that flag is on this command line. Values that came from a preset,
    a sweep file or a default keep the field name, which is what the user wrote or can look up."""
    typed = {a.split("=", 1)[0] for a in argv if a.startswith("--")}

    def flag(field: str) -> str | None:
        for candidate in ("--" + field.replace("_", "-"), *TYPED_AS.get(field, ())):
            if candidate in typed:
                return candidate
        return None

    match = _SUBJECT.match(message)
    head, rest = "", message
    if match is not None and (typed_flag := flag(match.group(2))) is not None:
        head, rest = match.group(1) + typed_flag, message[match.end() :]
    return head + _FIELD.sub(lambda m: flag(m.group(0)) or m.group(0), rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 a sweep's cluster lost or cells failed, 2 bad input or an OS error, 3 a
    non-finite value, 130 interrupted by Ctrl-C). Output cut short by its reader (``… | head``) ends quietly."""
    try:
        status = _main(argv)
        sys.stdout.flush()  # (inside the try: a closed pipe fails here, not at interpreter exit)
        return status
    except BrokenPipeError:
        with contextlib.suppress(OSError):  # nothing more can be written: let the exit's flush go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(
            f"proxrl: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        rd = {"lecture": _lecture, "train": _train, "evaluate": _evaluate, "sweep": _sweep}[command](rest)
    except ConfigError as e:
        print(f"proxrl: error: {as_typed(str(e), rest)}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"proxrl: error: {e}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # not an error of the run: main ends quietly
        raise
    except OSError as e:  # a full disk, a permission, …: one line
        where = f"{e.filename}: " if e.filename else ""
        print(f"proxrl: error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except SweepError as e:
        print(f"proxrl: error: {e}", file=sys.stderr)
        return 1
    except SystemExit as e:  # tyro/argparse: --help (0) or a parse error (2)
        return int(e.code or 0)
    except KeyboardInterrupt as e:  # Ctrl-C: one line saying what is kept and how to continue
        how = INTERRUPTED.get(command, "stopped before it finished")
        run_dir = getattr(e, "run_dir", None)  # set by the training driver
        if run_dir is not None:
            how = how.replace("RUN_DIR", str(run_dir))
        print(f"proxrl: interrupted; {how}", file=sys.stderr)
        return 130
    if rd is None:  # a command that only printed (proxrl sweep status)
        return 0
    print(f"run directory: {rd.path}")
    summary = rd.path / ("evaluation.md" if command == "evaluate" else "summary.md")
    print(f"summary:       {summary}")
    for png in sorted(rd.path.glob("*.png")):
        print(f"plot:          {png}")
    failed = getattr(rd, "failed", 0)
    if failed:  # a sweep that finished with failed cells
        print(
            f"proxrl: {failed} cell{'s' if failed > 1 else ''} failed (the error of each is in results.csv); "
            "--retry-failed runs them again",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
