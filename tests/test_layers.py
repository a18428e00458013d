"""Imports point one way: cli > {lecture, agents} > run > {tabular, deep} > prox > {estimators, config} > types (errors sits with
types); the two worlds, tabular/ (exact and sampled tables) and deep/ (networks, environments, rollouts),
never import each other."""

import ast
from pathlib import Path

import proxrl

RANK = {
    "types": 0, "errors": 0,
    "config": 1,  # configs built from pieces, options addressed by name
    "estimators": 1,
    "prox": 2,  # the proximal-step kit: surrogates, geometries, solvers, critics (both worlds use it)
    "tabular": 3, "deep": 3,  # the two worlds: each on the kernel, never one on the other
    "run": 4,
    "lecture": 5, "agents": 5,  # the lecture's experiments and the agent objects, both on the driver
    "cli": 6, "__init__": 6,
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
