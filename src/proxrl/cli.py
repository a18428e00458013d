"""The ``proxrl`` command line.

    proxrl lecture expert        EW vs softmax PG on the lecture's Ber(0.6)/Ber(0.4) problem
    proxrl lecture bandit        EXP3, PG and NPG from bandit feedback: pseudo-regret curves
    proxrl lecture conditioning  gradient descent vs preconditioned steps on ill-conditioned problems

Every run writes a directory (``--out``, default ``runs/<name>-<timestamp>``) holding config.json,
metrics.csv, plots and summary.md. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union

import tyro

from proxrl.errors import ConfigError
from proxrl.lecture import bandit, conditioning, expert
from proxrl.run.records import RunDir

LECTURES: dict[str, tuple[type, Callable[[Any], RunDir]]] = {
    "expert": (expert.ExpertConfig, expert.run),
    "bandit": (bandit.BanditConfig, bandit.run),
    "conditioning": (conditioning.ConditioningConfig, conditioning.run),
}

COMMANDS = {
    "lecture": "Run one of the lecture's experiments: "
    + ", ".join(LECTURES)
    + " (writes plots and a summary).",
}


def _usage() -> str:
    lines = ["usage: proxrl COMMAND [SUBCOMMAND] [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<10} {doc}" for name, doc in COMMANDS.items()]
    lines += [
        "",
        "Run 'proxrl COMMAND --help' for a command's subcommands and options (each with its default).",
    ]
    return "\n".join(lines)


def _lecture(argv: list[str]) -> RunDir:
    options = tuple(Annotated[cfg, tyro.conf.subcommand(name)] for name, (cfg, _) in LECTURES.items())
    cfg = tyro.cli(Union[options], prog="proxrl lecture", args=argv, config=(tyro.conf.OmitArgPrefixes,))  # noqa: UP007
    return next(run for cfg_type, run in LECTURES.values() if isinstance(cfg, cfg_type))(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 bad input)."""
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
        rd = _lecture(rest)
    except ConfigError as e:
        print(f"proxrl: error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:  # tyro/argparse: --help (0) or a parse error (2)
        return int(e.code or 0)
    print(f"run directory: {rd.path}")
    print(f"summary:       {rd.path / 'summary.md'}")
    for png in sorted(rd.path.glob("*.png")):
        print(f"plot:          {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
