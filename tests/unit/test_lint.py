"""Static checks that keep the codebase honest: ruff (the version pinned in pyproject.toml) over the
project's Python, tests included, with the project's ruff configuration."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT

#: What ``make lint`` checks (keep the two in step). roles/*/filter_plugins are not in it yet.
LINTED = ("llmcluster", "tests", "bench", "scripts", "ansible", "__main__.py")


def _ruff() -> str:
    """The ruff beside this interpreter (the project's venv), else on PATH; missing is a failure:
    ruff is a pinned test dependency (pip install -e '.[test]')."""
    beside = Path(sys.executable).parent / "ruff"
    ruff = str(beside) if beside.exists() else shutil.which("ruff")
    assert ruff, "ruff is not installed: it is a pinned test dependency (pip install -e '.[test]')"
    return ruff


def test_ruff_is_the_pinned_version():
    test_deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pin = next(d.split("==", 1)[1] for d in test_deps if re.match(r"ruff\s*==", d))
    out = subprocess.run([_ruff(), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["ruff", pin], f"{out.strip()}: pyproject.toml pins ruff=={pin}"


def test_ruff_is_clean():
    missing = [p for p in LINTED if not (ROOT / p).exists()]
    assert not missing, f"lint paths gone: {missing}"
    r = subprocess.run([_ruff(), "check", "--no-cache", *LINTED], cwd=ROOT, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_make_lint_checks_the_same_paths():
    lint = re.search(r"^lint:.*\n\t\$\(BIN\)/ruff check (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert lint, "Makefile: no lint target running ruff check"
    assert sorted(lint.group(1).split()) == sorted(LINTED)
