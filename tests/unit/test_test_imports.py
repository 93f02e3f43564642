"""No test module imports another test module: shared helpers live in a conftest.py or in
tests/helpers (an import of a test module runs its module-level code twice, under two names,
and couples tests to each other's internals)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

TESTS = ROOT / "tests"
#: The packaged verification suite's test modules (llmcluster/verify/suite) are tests too.
SUITE = ROOT / "llmcluster" / "verify" / "suite"
#: The one sanctioned exception: tests/verify's modules re-export the packaged suite's tests
#: (``from llmcluster.verify.suite.test_x import *``) so that ``make test`` runs them on the lab.
SHIM = "llmcluster.verify.suite.test_"


def _is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_")


def imports_of_test_modules(path: Path) -> list[str]:
    """``line: module`` for every import of a test module (``test_*``) in ``path``, shims excepted."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names = [base] + [f"{base}{'.' if node.module else ''}{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if not _is_test_module(name):
                continue
            shim = (isinstance(node, ast.ImportFrom) and name.startswith(SHIM) and path.parent == TESTS / "verify"
                    and [a.name for a in node.names] == ["*"])
            if not shim:
                found.append(f"{node.lineno}: {name}")
            break  # one finding per import statement
    return found


def test_no_test_module_imports_another():
    files = sorted([*TESTS.rglob("*.py"), *SUITE.glob("*.py")])
    assert len(files) > 50 and TESTS / "conftest.py" in files
    offenders = {str(f.relative_to(ROOT)): bad for f in files if (bad := imports_of_test_modules(f))}
    assert not offenders, f"move the shared helpers into a conftest.py or tests/helpers: {offenders}"


def test_the_check_sees_each_form_of_import(tmp_path):
    cases = {
        "from tests.roles.test_roles_static import tool\n": ["1: tests.roles.test_roles_static"],
        "import tests.unit.test_ipam as t\n": ["1: tests.unit.test_ipam"],
        "from test_ipam import plans\n": ["1: test_ipam"],
        "from . import test_ipam\n": ["1: .test_ipam"],
        "from tests.unit import test_ipam\n": ["1: tests.unit.test_ipam"],
        "def f():\n    from tests.verify.test_verify_detects_breakage import failed_checks\n":
            ["2: tests.verify.test_verify_detects_breakage"],
        "from llmcluster.verify.suite.test_hosts import test_host\n": ["1: llmcluster.verify.suite.test_hosts"],
        "from tests.conftest import load_plan\nfrom tests.helpers.tools import tool\n": [],
    }
    for source, want in cases.items():
        f = tmp_path / "test_case.py"
        f.write_text(source)
        assert imports_of_test_modules(f) == want, source


def duplicate_basenames(root: Path) -> dict[str, list[str]]:
    """Test module basenames that occur in more than one folder under ``root``: the suite's folders
    are not packages (rootdir import mode), so pytest refuses the second one at collection and the
    whole run stops with "import file mismatch" (CI failed that way once)."""
    seen: dict[str, list[str]] = {}
    for f in sorted(root.rglob("test_*.py")):
        seen.setdefault(f.name, []).append(str(f.parent.relative_to(root)))
    return {name: dirs for name, dirs in seen.items() if len(dirs) > 1}


def test_every_test_module_basename_is_unique():
    assert not duplicate_basenames(TESTS), "rename one of each pair (pytest collects only the first)"


def test_the_basename_check_finds_a_clash(tmp_path):
    for sub in ("unit", "verify"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "test_x.py").write_text("")
    (tmp_path / "unit" / "test_y.py").write_text("")
    assert duplicate_basenames(tmp_path) == {"test_x.py": ["unit", "verify"]}
