"""The layering of the ``llmcluster`` package, read from its source with ``ast`` (nothing is imported).

Every ``import`` counts, at module level or inside a function; one under ``if TYPE_CHECKING:``
counts for the layering rules but not for cycles (it never runs). ``from package import name``
imports the submodule ``package.name`` when there is one, else ``package`` itself; parent
packages' ``__init__`` are not counted as imported (as ``grimp``/``import-linter`` do).

* ``llmcluster.spec`` (models and parser) imports nothing of ``llmcluster`` but ``errors``;
* ``llmcluster.plan`` imports nothing above it (rules, renderers, components, inventory, lab, ...);
* ``llmcluster.validate`` (the rules) sits on spec and plan, below everything that consumes a spec;
* no import cycle among the modules of spec, plan and validate, and (xfail until fixed) none at all.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "llmcluster"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    type_checking: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else test.attr if isinstance(test, ast.Attribute) else ""
            if name == "TYPE_CHECKING":
                for child in node.body:
                    for sub in ast.walk(child):
                        if hasattr(sub, "lineno"):
                            lines.add(sub.lineno)
    return lines


def _known(name: str) -> str | None:
    """The deepest llmcluster module named by ``name`` (``a.b.C`` -> ``a.b`` when C is not a module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "llmcluster" and (t := _known(alias.name)):
                yield t
        return
    if node.level:
        base = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join(base + ([node.module] if node.module else []))
    else:
        origin = node.module or ""
    if origin.split(".")[0] != "llmcluster":
        return
    plain = False
    for alias in node.names:
        if f"{origin}.{alias.name}" in MODULES:
            yield f"{origin}.{alias.name}"
        else:
            plain = True
    if plain and (t := _known(origin)):
        yield t


def build_graph() -> list[Edge]:
    edges: list[Edge] = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        guarded = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _targets(module, node):
                    if target != module:
                        edges.append(Edge(module, target, node.lineno, node.lineno in guarded))
    return edges


EDGES = build_graph()


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _where(e: Edge) -> str:
    return f"{MODULES[e.source].relative_to(ROOT)}:{e.line}: {e.source} -> {e.target}"


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for e in edges:
        graph[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


RUNTIME_CYCLES = cycles([e for e in EDGES if not e.type_checking])


def test_the_graph_sees_function_level_imports() -> None:
    """Sanity: imports inside functions are edges (cli imports almost everything lazily)."""
    assert any(e.source == "llmcluster.cli" and e.target == "llmcluster.validate" for e in EDGES)
    assert any(e.source == "llmcluster.program" and _in(e.target, "llmcluster.validate") for e in EDGES)
    assert len(MODULES) > 50 and len(EDGES) > 100


def test_spec_imports_only_errors() -> None:
    bad = [_where(e) for e in EDGES
           if _in(e.source, "llmcluster.spec") and not _in(e.target, "llmcluster.spec")
           and e.target != "llmcluster.errors"]
    assert not bad, "llmcluster.spec is the bottom layer (models and parser):\n" + "\n".join(bad)


PLAN_MUST_NOT_IMPORT = ("llmcluster.validate", "llmcluster.render", "llmcluster.components", "llmcluster.inventory",
                        "llmcluster.lab", "llmcluster.verify", "llmcluster.cli", "llmcluster.program",
                        "llmcluster.offline")


def test_plan_imports_nothing_above_it() -> None:
    bad = [_where(e) for e in EDGES
           if _in(e.source, "llmcluster.plan") and any(_in(e.target, p) for p in PLAN_MUST_NOT_IMPORT)]
    assert not bad, "planners are pure: the rules and every consumer sit above them:\n" + "\n".join(bad)


def test_validate_sits_on_spec_and_plan_only() -> None:
    allowed = ("llmcluster.validate", "llmcluster.spec", "llmcluster.plan", "llmcluster.errors")
    bad = [_where(e) for e in EDGES
           if _in(e.source, "llmcluster.validate") and not any(_in(e.target, p) for p in allowed)]
    assert not bad, "\n".join(bad)


def test_no_cycle_through_spec_plan_or_validate() -> None:
    mine = [c for c in RUNTIME_CYCLES
            if any(_in(m, p) for m in c for p in ("llmcluster.spec", "llmcluster.plan", "llmcluster.validate"))]
    assert not mine, f"import cycles: {mine}"


@pytest.mark.xfail(strict=True, reason="llmcluster.lab.runtime <-> llmcluster.lab.vm (vm imports runtime's "
                                       "LAB_SSH_COMMON_ARGS in a function) is being removed separately")
def test_no_import_cycle_at_all() -> None:
    assert RUNTIME_CYCLES == [], f"import cycles: {RUNTIME_CYCLES}"


def test_the_known_cycle_is_the_only_one() -> None:
    """What the xfail above waits for; a new cycle fails here rather than hiding behind it."""
    assert all(set(c) <= {"llmcluster.lab.runtime", "llmcluster.lab.vm"} for c in RUNTIME_CYCLES), RUNTIME_CYCLES
