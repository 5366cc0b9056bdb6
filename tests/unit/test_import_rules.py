"""DESIGN.md's import rules, read from the source: imports flow pipelines -> components ->
(llm floor, components.common); serving and monitoring -> (floor, common); no stage imports another
stage; the floor and common import no stage and no orchestrator; no core imports kfp, argparse or
yaml; no import cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from components.common.params import STAGES

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("components", "llm", "monitoring", "pipelines", "serving")
ORCHESTRATORS = ("kfp", "dvc", "pipelines")


def _modules() -> dict[str, Path]:
    mods = {}
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            parts = file.relative_to(ROOT).with_suffix("").parts
            mods[".".join(p for p in parts if p != "__init__")] = file
    return mods


MODULES = _modules()


def imports_of(name: str) -> set[str]:
    """Every module name ``name`` imports (also inside functions: lazy imports count)."""
    file = MODULES[name]
    package = name if file.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def owner(name: str) -> str:
    """``components.clean.core`` -> ``stage:clean``; ``components.common.io`` -> ``common``;
    ``llm.gpt.model`` -> ``llm``; ``serving.app`` -> ``serving``."""
    parts = name.split(".")
    if parts[0] == "components" and len(parts) > 1:
        return (
            "common" if parts[1] == "common" else f"stage:{parts[1]}" if parts[1] in STAGES else "components"
        )
    return parts[0]


def breaks() -> list[str]:
    found = []
    for name in MODULES:
        me = owner(name)
        for imported in imports_of(name):
            top = imported.split(".")[0]
            them = owner(imported)
            if me.startswith("stage:") and them.startswith("stage:") and them != me:
                found.append(f"{name} imports another stage ({imported})")
            if me in ("common", "llm", "serving", "monitoring") and them.startswith("stage:"):
                found.append(f"{name} ({me}) imports a stage ({imported})")
            if me in ("common", "llm") and top in ("serving", "monitoring", "pipelines"):
                found.append(f"{name} ({me}) imports {top}")
            if me == "llm" and top in ORCHESTRATORS:
                found.append(f"{name} (the floor) imports an orchestrator ({top})")
            if me.startswith("stage:") and top in ("serving", "monitoring", "pipelines"):
                found.append(f"{name} imports {top}")
            if me in ("serving", "monitoring") and top == "pipelines":
                found.append(f"{name} imports pipelines")
        if name.rpartition(".")[2] == "core":
            for imported in imports_of(name):
                if imported.split(".")[0] in ("kfp", "argparse", "yaml"):
                    found.append(f"{name} is a core and imports {imported.split('.')[0]}")
    return sorted(set(found))


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module in the project's import graph."""
    graph = {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_import_rules_hold():
    assert breaks() == []


def test_there_is_no_import_cycle():
    assert cycles() == []


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        ("components.clean.core", "from components.tokenize.core import run\n", "imports another stage"),
        ("llm.scoring", "import kfp\n", "imports an orchestrator"),
        ("serving.app", "from components.deploy import params\n", "imports a stage"),
        ("components.select.core", "def f():\n    import yaml\n", "is a core and imports yaml"),
    ],
)
def test_a_break_is_reported(monkeypatch, tmp_path: Path, module: str, source: str, expected: str):
    file = tmp_path / "mod.py"
    file.write_text(source)
    monkeypatch.setitem(MODULES, module, file)
    assert any(expected in b and b.startswith(module) for b in breaks())


def test_a_cycle_is_reported(monkeypatch, tmp_path: Path):
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from llm import formats\nimport llm.tokenizer\n")
    b.write_text("import llm.formats\n")
    monkeypatch.setitem(MODULES, "llm.formats", b)
    monkeypatch.setitem(MODULES, "llm.tokenizer", a)
    b.write_text("import llm.tokenizer\n")
    assert ["llm.formats", "llm.tokenizer"] in cycles()
