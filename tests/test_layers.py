"""Imports point one way: cli > lecture > run > algos > collect > prox > estimators > policies > settings
> types (errors sits with types)."""

import ast
from pathlib import Path

import proxrl

RANK = {
    "types": 0, "errors": 0,
    "settings": 1,
    "policies": 2,
    "estimators": 3,
    "prox": 3.5,  # the proximal-step kit: surrogates, geometries, solvers, critics
    "collect": 4,
    "algos": 5,
    "run": 6,
    "lecture": 7,
    "cli": 8, "__init__": 8,
}  # fmt: skip
ROOT = Path(proxrl.__file__).parent


def _layer(module: str) -> str:
    return module.split(".")[1] if "." in module else "__init__"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("proxrl.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("proxrl"):
            out.add(node.module)
    return out


def test_every_layer_is_ranked():
    layers = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").exists() or p.is_dir()
    }
    layers -= {"__pycache__", "py"}
    assert layers <= set(RANK), layers - set(RANK)


def test_imports_point_down():
    bad = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        own = rel.parts[0].removesuffix(".py")
        for mod in _imports(path):
            dep = _layer(mod)
            if dep != own and RANK[dep] >= RANK[own]:
                bad.append(f"{rel} imports {mod} ({own}:{RANK[own]} -> {dep}:{RANK[dep]})")
    assert not bad, "\n".join(bad)
