"""Run the verification suite (``tests/verify``) against an inventory and collect its results.

``llmcluster verify`` and ``llmcluster lab verify`` call :func:`run_verify`: pytest runs in a
child process (one run per call, no xdist: the suite batches its own work), writes one
result per host and check to a JSON file, and :func:`results_table` turns them into the
table the CLI prints. The suite lives in the project checkout (``tests/verify``), next to the
playbooks it verifies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcluster.errors import LLMClusterError

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "tests" / "verify"
#: Exit code of ``llmcluster verify`` when a check fails (0: all passed; 2: bad input).
EXIT_FAILED = 5


@dataclass
class VerifyReport:
    rc: int  # pytest's exit status
    stack: str
    results: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""

    @property
    def counts(self) -> Counter:
        return Counter(r["outcome"] for r in self.results)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r["outcome"] == "failed"]

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures


def use_local_ansible() -> None:
    """Put the Ansible installed beside this interpreter (the project's venv) first on ``PATH``:
    testinfra runs ``ansible-inventory`` by name."""
    here = str(Path(sys.executable).parent)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != here:
        os.environ["PATH"] = f"{here}{os.pathsep}{os.environ.get('PATH', '')}"


def check_inventory(inventory: str | Path, planned_hosts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The inventory's hosts; a clean error when it cannot be read or has hosts the plan does not know."""
    from llmcluster.verify.remote import Inventory

    use_local_ansible()

    try:
        hosts = Inventory(inventory).hosts
    except Exception as exc:  # ansible-inventory failed: the user's inventory, not our bug
        raise LLMClusterError(f"--inventory {inventory}: ansible-inventory cannot read it: {exc}") from None
    unknown = sorted(set(hosts) - set(planned_hosts))
    if unknown:
        raise LLMClusterError(f"--inventory {inventory}: hosts the stack does not plan: {', '.join(unknown)} "
                              f"(planned: {', '.join(planned_hosts)})")
    if not hosts:
        raise LLMClusterError(f"--inventory {inventory}: no hosts")
    return hosts


def run_verify(stack: str, inventory: str | Path, *, stacks_dir: str | Path | None = None,
               keyword: str | None = None, timeout: float = 1800) -> VerifyReport:
    """Verify the hosts of ``inventory`` against stack ``stack``'s plan."""
    if not (SUITE / "conftest.py").is_file():
        raise LLMClusterError(f"the verification suite is not here ({SUITE}): run llmcluster verify from a "
                              "checkout of the project")
    inventory = Path(inventory).resolve()
    if not inventory.exists():
        raise LLMClusterError(f"--inventory {inventory}: no such file")
    with tempfile.TemporaryDirectory(prefix="llmcluster-verify-") as tmp:
        results = Path(tmp) / "results.json"
        cmd = [sys.executable, "-m", "pytest", str(SUITE), "-p", "no:xdist", "-p", "no:cacheprovider",
               "-q", "--no-header", "--tb=no", "-rN", "--llmcluster-stack", stack,
               "--llmcluster-inventory", str(inventory), "--llmcluster-results", str(results)]
        if stacks_dir:
            cmd += ["--llmcluster-stacks-dir", str(Path(stacks_dir).resolve())]
        if keyword:
            cmd += ["-k", keyword]
        use_local_ansible()
        env = dict(os.environ)
        env["ANSIBLE_CONFIG"] = str(ROOT / "ansible" / "ansible.cfg")
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise LLMClusterError(f"verification did not finish within {timeout:.0f}s") from None
        output = proc.stdout + proc.stderr
        if not results.exists():
            raise LLMClusterError(f"the verification suite did not run (pytest exit {proc.returncode}):\n"
                                  + _tail(output))
        doc = json.loads(results.read_text())
    if proc.returncode not in (0, 1):  # 2 interrupted, 3 internal, 4 usage error, 5 nothing collected
        raise LLMClusterError(f"the verification suite stopped (pytest exit {proc.returncode}):\n" + _tail(output))
    return VerifyReport(rc=proc.returncode, stack=stack, results=doc["results"], output=output)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def results_table(report: VerifyReport, *, failures_only: bool = False):
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"verify {report.stack}")
    for col in ("host", "check", "result", "detail"):
        t.add_column(col, overflow="fold")
    style = {"passed": "[green]pass[/]", "failed": "[red]FAIL[/]", "skipped": "[yellow]skip[/]"}
    rows = report.failures if failures_only else report.results
    for r in rows:
        # Check names carry brackets (link[mgmt], gpu[driver]): escape them, or rich reads markup.
        t.add_row(escape(r["host"]), escape(r["check"]), style.get(r["outcome"], r["outcome"]),
                  escape(r["message"]) if r["outcome"] != "passed" else "")
    return t


def summary(report: VerifyReport) -> str:
    c = report.counts
    return (f"verify {report.stack}: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
            f"{c.get('skipped', 0)} skipped")
