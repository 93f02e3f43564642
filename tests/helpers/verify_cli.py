"""Running ``llmcluster verify`` as a user does (the CLI in a child process) and reading its results:
the breakage tests of tests/verify."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def verify_cli(inventory, *extra: str) -> tuple[int, dict, str]:
    """``llmcluster verify --stack lab --inventory I [extra]``: exit code, the ``--json`` document, output."""
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-m", "llmcluster.cli", "verify", "--stack", "lab", "--inventory", str(inventory), *extra],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=900, check=False)
    doc = json.loads(proc.stdout) if "--json" in extra and proc.stdout.strip().startswith("{") else {}
    return proc.returncode, doc, proc.stdout + proc.stderr


def failed_checks(doc: dict) -> dict[str, str]:
    """``"<host> <check>" -> message`` of the failed checks of a ``verify --json`` document."""
    return {f"{r['host']} {r['check']}": r["message"] for r in doc["results"] if r["outcome"] == "failed"}


def assert_fail_as_expected(failed: dict[str, str], expected: dict[str, str]) -> None:
    """Every expected check failed, and its message says the expected text."""
    missing = {k: v for k, v in expected.items() if k not in failed}
    assert not missing, (f"checks that should fail but did not: {sorted(missing)}\n"
                         f"failed: {json.dumps(failed, indent=1)}")
    for key, text in expected.items():
        assert text in failed[key], f"{key}: message {failed[key]!r} does not say {text!r}"
