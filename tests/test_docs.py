"""The documentation cites code by symbol, and every cited symbol exists.

README.md and docs/**/*.md name code as backticked dotted names (`proxrl.deep.on_policy.ppo.make_learner`), never as
``file.py:123`` line numbers, which go stale with every edit above them. These tests import each cited name,
so a renamed or moved function fails here until the page that cites it is updated.
"""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
SYMBOL = re.compile(r"(?<![\w.])proxrl(?:\.[A-Za-z_]\w*)+")
# `file.py:123`, `file.py:12-34`, `file.py#L123`, and the bare `(:123)` / `:123` shorthands used after a file.
LINE_CITATIONS = (
    re.compile(r"[\w/.-]+\.py(?::\d+|#L\d+)"),
    re.compile(r"\(:\d+"),
    re.compile(r"`:\d+`"),
)
# Paths to files of this repository (tests, benchmarks, scripts, sources) that a page names.
REPO_PATH = re.compile(
    r"(?<![\w/.-])((?:src/proxrl|tests|bench|scripts|docs)/[\w/.-]+\.(?:py|md|sh))(?:::(\w+))?"
)


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _prose_and_fences(text: str) -> tuple[str, list[str]]:
    """The text outside fenced code blocks, and the fenced blocks' bodies."""
    fences = [m.group(0) for m in FENCE.finditer(text)]
    return FENCE.sub("", text), fences


def _cited_symbols(page: Path) -> set[str]:
    prose, _ = _prose_and_fences(page.read_text(encoding="utf-8"))
    return {name for m in CODE_SPAN.finditer(prose) for name in SYMBOL.findall(m.group(2))}


@cache
def resolve(name: str) -> object:
    """Import the longest importable module prefix of ``name``, then ``getattr`` the rest."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
                continue  # this prefix is not a module: try a shorter one
            raise  # the module exists but imports something missing: a real error
        for attr in parts[i:]:
            obj = getattr(obj, attr)  # AttributeError names what is missing
        return obj
    raise ModuleNotFoundError(name)


def all_cited_symbols() -> dict[str, list[str]]:
    """``{symbol: [pages citing it]}`` over README.md and docs/."""
    cited: dict[str, list[str]] = {}
    for page in PAGES:
        for name in _cited_symbols(page):
            cited.setdefault(name, []).append(_rel(page))
    return dict(sorted(cited.items()))


def test_pages_exist_and_cite_symbols():
    assert len(PAGES) > 10, PAGES
    assert len(all_cited_symbols()) > 50


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_cited_symbols_resolve(page):
    missing = []
    for name in sorted(_cited_symbols(page)):
        try:
            resolve(name)
        except (ImportError, AttributeError) as e:
            missing.append(f"`{name}`: {type(e).__name__}: {e}")
    assert not missing, f"{_rel(page)} cites names that do not resolve:\n" + "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_no_line_number_citations(page):
    found = [
        f"line {i}: {m.group(0)!r}"
        for i, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for pattern in LINE_CITATIONS
        for m in pattern.finditer(line)
    ]
    assert not found, f"{_rel(page)} cites code by line number (cite `proxrl.module.function` instead):\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_cited_repository_files_exist(page):
    """`tests/test_x.py`, `bench/bench_y.py` (and `tests/test_x.py::test_name`) name files and tests that exist."""
    missing = []
    for m in REPO_PATH.finditer(page.read_text(encoding="utf-8")):
        path, test = ROOT / m.group(1), m.group(2)
        if not path.is_file():
            missing.append(m.group(1))
        elif test and not re.search(rf"^def {re.escape(test)}\b", path.read_text(encoding="utf-8"), re.M):
            missing.append(m.group(0))
    assert not missing, f"{_rel(page)} names files or tests that do not exist: {sorted(set(missing))}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_python_examples_import_what_exists(page):
    """``from proxrl.x import a, b`` in the pages' fenced Python examples names things that exist."""
    _, fences = _prose_and_fences(page.read_text(encoding="utf-8"))
    missing = []
    for fence in fences:
        if not fence.startswith("```python"):
            continue
        tree = ast.parse(fence.split("\n", 1)[1].rsplit("```", 1)[0])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("proxrl"):
                for alias in node.names:
                    try:
                        resolve(f"{node.module}.{alias.name}")
                    except (ImportError, AttributeError) as e:
                        missing.append(f"from {node.module} import {alias.name}: {e}")
    assert not missing, f"{_rel(page)}: examples import names that do not exist:\n" + "\n".join(missing)


if __name__ == "__main__":  # print the cited symbols (for whoever renames code)
    for symbol, pages in all_cited_symbols().items():
        print(f"{symbol}  ({', '.join(p.removeprefix('docs/methods/') for p in pages)})")
