"""The package's layout: imports run downward only, no cycles, no private names across modules.

Layers, bottom to top (DESIGN.md): leaves -> runner -> passes and models -> analyses ->
session -> widgets, report, cli. A new module must be placed in ``RANKS`` deliberately.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gandissect_widgets"
PACKAGE = "gandissect_widgets"

LEAVES = ["checks", "render", "stats", "cache", "jobs", "hooks", "edits", "arena", "events"]
LEAVES += ["sources", "stages", "layerkinds", "bilinear"]
ANALYSES = ["dissect", "effects", "rewrite", "distributed", "export", "invert", "photos"]
ANALYSES += ["steering", "attacks"]
RANKS = {
    **dict.fromkeys(LEAVES, 0),
    "runner": 1,
    "passes": 2,
    "zoo": 2,
    **dict.fromkeys(
        ["dissect", "effects", "rewrite", "distributed", "export", "invert", "photos", "survey"],
        3,
    ),
    **dict.fromkeys(["steering", "attacks"], 3),
    "session": 4,
    **dict.fromkeys(["widgets", "report", "cli", "notebook_run"], 5),
    "__init__": 6,
    "conftest": 6,  # the doctest namespace: imports the package like a user
}


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES.get(name, Path()).name == "__init__.py"


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``from ... import`` refers to."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if _is_package(module) else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(target module, imported names or None, line) for every import of ``module``."""
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            target = _resolve(module, node)
            if not target.startswith(PACKAGE):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:  # `from . import render`: the submodule itself
                    yield sub, None, node.lineno
                else:
                    yield target, alias.name, node.lineno


def _graph() -> dict[str, set[str]]:
    return {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}


def _rank(module: str) -> int:
    parts = module.split(".")
    key = parts[1] if len(parts) > 1 else "__init__"
    assert key in RANKS, f"place the new module {module} in a layer of RANKS (tests/test_layout.py)"
    return RANKS[key]


def _cycles(graph) -> list[list[str]]:
    state, cycles = {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(path[path.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_import_cycles():
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_imports_run_downward():
    upward = [
        f"{m} (layer {_rank(m)}) imports {t} (layer {_rank(t)}) at line {line}"
        for m in MODULES
        for t, _, line in _imports(m)
        if t in MODULES and _rank(t) > _rank(m)
    ]
    assert not upward, "\n".join(upward)


def _private_uses(module: str) -> list[str]:
    found = []
    modules_bound = set()
    for target, name, line in _imports(module):
        if name is not None and name.startswith("_") and not name.startswith("__"):
            found.append(f"{module}:{line} imports {target}.{name}")
        if name is None:
            modules_bound.add(target.rsplit(".", 1)[-1])
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
            continue
        if node.attr.startswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", None)
        if name in modules_bound or (name == "session" and not module.endswith(".session")):
            found.append(f"{module}:{node.lineno} uses {name}.{node.attr}")
    return found


def test_no_private_names_across_modules():
    found = [use for m in MODULES for use in _private_uses(m)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from .session import _check\n", "imports gandissect_widgets.session._check"),
        ("from . import render\nrender._lut()\n", "uses render._lut"),
        ("def f(session):\n    return session._inputs([0])\n", "uses session._inputs"),
    ],
)
def test_the_checks_catch_what_they_claim(tmp_path, monkeypatch, source, expected):
    fake = tmp_path / "fake.py"
    fake.write_text(source)
    monkeypatch.setitem(MODULES, f"{PACKAGE}.fake", fake)
    assert any(expected in use for use in _private_uses(f"{PACKAGE}.fake"))


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from . import b\n")
    b.write_text("def f():\n    from .a import g\n")
    monkeypatch.setitem(MODULES, f"{PACKAGE}.a", a)
    monkeypatch.setitem(MODULES, f"{PACKAGE}.b", b)
    assert [f"{PACKAGE}.a", f"{PACKAGE}.b", f"{PACKAGE}.a"] in _cycles(_graph())
