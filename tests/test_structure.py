"""The map of docs/architecture.md, checked: no import circles, nothing below the face
imports it, each part imports only the parts beneath it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from domain.paths import PROJECT_ROOT

FIRST_PARTY = ("domain", "storage", "ingest", "detectors", "rules", "simulators", "flights",
               "review", "citywatch", "bench")
# What each part may import besides itself (the face and the benchmarks import anything).
ALLOWED = {
    "domain": set(),
    "storage": {"domain"},
    "ingest": {"domain", "storage", "detectors"},  # frames: the quality gate of detectors/
    "detectors": {"domain", "storage", "simulators"},  # training renders scenes
    "rules": {"domain", "storage"},
    "simulators": {"domain", "ingest"},  # the wire format
    "flights": {"domain", "storage"},
    "review": {"domain", "storage", "rules"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """First-party modules a file imports, anywhere in it (type-checking and function-level
    imports count: a circle is a circle)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n.split(".")[0] in FIRST_PARTY)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for top in FIRST_PARTY if (PROJECT_ROOT / top).is_dir()
             for p in (PROJECT_ROOT / top).rglob("*.py")}
    edges = {}
    for module, path in files.items():
        # `from pkg import name` names a module when pkg/name.py exists, else an attribute
        edges[module] = {m for m in _imports(path, module) if m in files and m != module}
    return edges


def test_nothing_below_the_face_imports_it(graph):
    offenders = sorted(f"{m} imports {t}" for m, targets in graph.items()
                       if m.split(".")[0] not in ("citywatch", "bench")
                       for t in targets if t.split(".")[0] == "citywatch")
    assert offenders == []


def test_parts_import_only_what_lies_beneath_them(graph):
    offenders = sorted(f"{m} imports {t}" for m, targets in graph.items()
                       if m.split(".")[0] in ALLOWED
                       for t in targets
                       if t.split(".")[0] != m.split(".")[0]
                       and t.split(".")[0] not in ALLOWED[m.split(".")[0]])
    assert offenders == []


def test_no_import_circles(graph):
    """Tarjan's strongly connected components: any with more than one module is a circle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_docs_cite_every_rule_with_its_legal_basis():
    """docs/domain.md's table names every rule of the default rule set."""
    text = (PROJECT_ROOT / "docs" / "domain.md").read_text(encoding="utf-8")
    ids = [r["id"] for f in sorted((PROJECT_ROOT / "configs" / "rules").glob("*.yaml"))
           for r in yaml.safe_load(f.read_text(encoding="utf-8"))["rules"]]
    assert [i for i in ids if f"| `{i}` |" not in text] == []


def test_the_repository_cites_its_own_docs():
    """Code and docs point at docs/architecture.md and docs/domain.md, which ship with it."""
    offenders = [str(p.relative_to(PROJECT_ROOT))
                 for top in (*FIRST_PARTY, "configs", "docs", "tests")
                 if (PROJECT_ROOT / top).is_dir()
                 for p in (PROJECT_ROOT / top).rglob("*")
                 if p.is_file() and p.suffix in (".py", ".md", ".yaml", ".sh")
                 and p.name != "test_structure.py"
                 and ("ARCHITECTURE.md" in p.read_text(encoding="utf-8", errors="replace")
                      or "DOMAIN.md" in p.read_text(encoding="utf-8", errors="replace"))]
    assert offenders == []
