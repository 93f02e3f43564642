"""The layering of the ``llmcluster`` package, read from its source with ``ast`` (nothing is imported).

Every ``import`` counts, at module level or inside a function; one under ``if TYPE_CHECKING:``
counts for the layering rules but not for cycles (it never runs). ``from package import name``
imports the submodule ``package.name`` when there is one, else ``package`` itself; parent
packages' ``__init__`` are not counted as imported (as ``grimp``/``import-linter`` do).

* ``llmcluster.spec`` (models and parser) imports nothing of ``llmcluster`` but ``errors``;
* ``llmcluster.plan`` imports nothing above it (rules, renderers, components, inventory, lab, ...);
* ``llmcluster.validate`` (the rules) sits on spec and plan, below everything that consumes a spec;
* no import cycle in the package at all;
* ``verify/``, ``lab/`` and ``inventory.py`` take no facts from ``render/``, and nothing but the
  programs that build it imports the inventory.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


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


def test_no_import_cycle_at_all() -> None:
    assert RUNTIME_CYCLES == [], f"import cycles: {RUNTIME_CYCLES}"


#: What render/ may give the layers that consume the plan: renderings (text), never facts. The
#: inventory carries the host renderings (nftables ruleset, tc script); nothing else in verify/,
#: lab/ or inventory.py imports render/.
RENDERINGS = {("llmcluster.inventory", "llmcluster.render.hostfiles")}


def test_verify_lab_and_inventory_take_no_facts_from_render() -> None:
    bad = [_where(e) for e in EDGES
           if any(_in(e.source, p) for p in ("llmcluster.verify", "llmcluster.lab", "llmcluster.inventory"))
           and _in(e.target, "llmcluster.render") and (e.source, e.target) not in RENDERINGS]
    assert not bad, "facts live in plan/ (hostnet, qos, serving), switch OS knowledge in nos/:\n" + "\n".join(bad)


#: Who may import the inventory: to print it (cli), export it (program), write the lab's (lab.runtime).
INVENTORY_BUILDERS = {"llmcluster.cli", "llmcluster.program", "llmcluster.lab.runtime"}


def test_nothing_imports_the_inventory_for_facts() -> None:
    bad = [_where(e) for e in EDGES if e.target == "llmcluster.inventory" and e.source not in INVENTORY_BUILDERS]
    assert not bad, "read facts from the plan (llmcluster.plan.*), not from the inventory:\n" + "\n".join(bad)


def test_tests_take_facts_from_the_plan_too() -> None:
    """The verification suite and the unit tests of verify/ learn serving facts from the plan."""
    offenders = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if "verify" not in path.parts and path.name not in ("test_verify_gpu.py", "test_verify_checks.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "llmcluster.inventory":
                names = {a.name for a in node.names}
                if names - {"build_inventory"}:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {sorted(names)}")
    assert not offenders, "\n".join(offenders)
