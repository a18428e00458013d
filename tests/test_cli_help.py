"""Every ``proxrl ... --help`` shows text written for users.

The help comes from docstrings (tyro reads the config dataclasses), so markup meant for Sphinx, and notes
about how the code got where it is, leak into it unless checked. Each command's help is rendered in-process.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import textwrap

import pytest

from proxrl.cli import LECTURES, main
from proxrl.deep.registry import TRAINERS
from proxrl.run.commands import EvaluateCommand
from proxrl.run.train import RunConfig

COMMANDS = [
    [],
    ["lecture"],
    ["train"],
    ["evaluate"],
    ["sweep"],
    ["sweep", "report"],
    ["sweep", "status"],
    *(["lecture", name] for name in LECTURES),
    *(["train", name] for name in TRAINERS),
]

SPHINX_ROLE = re.compile(r":(?:class|func|mod|meth|data|attr|obj|exc|ref|py:\w+):`")
DOUBLE_BACKTICKS = re.compile(r"``[^`]*``|``")
# Words that narrate development (incidents, fixes, benchmark results) rather than say what an option does.
HISTORY = re.compile(
    r"\b(?:deadlock\w*|hung|hangs?|was (?:on|off) by default|since fixed|measured|collapsed|\d+ of \d+ seeds)\b",
    re.I,
)


def render_help(capsys, args: list[str]) -> str:
    assert main([*args, "--help"]) == 0
    out = capsys.readouterr()
    return out.out + out.err


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "proxrl")
def test_help_is_user_text(capsys, monkeypatch, args):
    monkeypatch.setenv("COLUMNS", "200")
    text = render_help(capsys, args)
    assert "usage: proxrl" in text
    flat = " ".join(text.split())  # a phrase the formatter wrapped over two lines is found too

    def context(m: re.Match[str]) -> str:
        return f"{m.group(0)!r} in …{flat[max(m.start() - 60, 0) : m.end() + 40]}…"

    problems = [f"Sphinx role {context(m)}" for m in SPHINX_ROLE.finditer(flat)]
    problems += [f"double backticks {context(m)}" for m in DOUBLE_BACKTICKS.finditer(flat)]
    problems += [f"development history {context(m)}" for m in HISTORY.finditer(flat)]
    if problems:
        pytest.fail(f"proxrl {' '.join(args)} --help:\n" + "\n".join(problems), pytrace=False)


def _help_dataclasses() -> list[type]:
    """Every dataclass whose fields become options, with the classes they inherit fields from."""
    roots = [
        RunConfig,
        EvaluateCommand,
        *(cfg for cfg, _ in LECTURES.values()),
        *(e.config for e in TRAINERS.values()),
    ]
    seen: dict[type, None] = {}
    for root in roots:
        for cls in root.__mro__:
            if dataclasses.is_dataclass(cls):
                seen.setdefault(cls, None)
    return list(seen)


def _multi_line_field_docs(cls: type) -> list[str]:
    """Fields of ``cls`` whose attribute docstring spans several source lines."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    found = []
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and "Suppress" not in ast.unparse(node.annotation)  # not an option
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
            and "\n" in following.value.value
        ):
            found.append(f"{cls.__module__}.{cls.__qualname__}.{node.target.id}")
    return found


@pytest.mark.parametrize("cls", _help_dataclasses(), ids=lambda c: c.__qualname__)
def test_option_help_is_one_line_in_source(cls):
    """tyro keeps the line breaks of a field's docstring (continuation lines start with indentation), so a
    docstring wrapped in the source shows up in ``--help`` broken in mid-sentence."""
    found = _multi_line_field_docs(cls)
    if found:
        pytest.fail(
            "option docstrings that --help shows with hard line breaks (keep each on one line):\n"
            + "\n".join(found),
            pytrace=False,
        )


@pytest.mark.parametrize("args", [["--help"], ["train", "ppo", "--help"], ["sweep", "--help"]])
def test_help_read_by_a_closed_pipe_ends_quietly(args):
    """``proxrl … --help | head -1``: once the reader has gone, the rest of the output goes nowhere, with exit
    status 0 and nothing on stderr (no 'Broken pipe' error, no traceback at exit)."""
    import subprocess
    import sys

    p = subprocess.Popen(
        [sys.executable, "-m", "proxrl.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    p.stdout.close()  # the reader goes away before anything is written
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0 and err == ""
