"""Run the verification suite (``llmcluster/verify/suite``) against an inventory and collect its results.

``llmcluster verify`` and ``llmcluster lab verify`` call :func:`run_verify`: pytest runs in a
child process (one run per call, no xdist: the suite batches its own work) on the suite folder
of this package, writes one result per host and check to a JSON file, and :func:`results_table`
turns them into the table the CLI prints. The suite ships in the package, so an installed
``llmcluster`` verifies without a checkout; it needs the stack file (``--stacks-dir``) and an
inventory. Ansible's configuration: the project's ``ansible/ansible.cfg`` where a checkout is
found (:func:`project_ansible_config`), else Ansible's own lookup (``ANSIBLE_CONFIG``,
``./ansible.cfg``, ``~/.ansible.cfg``): connection settings come from the inventory, and the
suite needs no roles or playbooks.
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

#: The checkout this module runs from, when it runs from one (else an installation's site-packages).
ROOT = Path(__file__).resolve().parents[2]
#: The verification suite, shipped in the package.
SUITE = Path(__file__).resolve().parent / "suite"
#: What running the suite needs from the package (a partial installation fails with their names).
SUITE_FILES = ("conftest.py", "pytest.ini", "plugin.py", "test_hosts.py", "test_firewall_matrix.py",
               "test_gateway.py", "test_gpu.py", "test_audit.py", "test_model.py",
               "test_storage_raid.py", "test_storage_ceph.py", "test_monitoring.py")
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


def project_ansible_config(stacks_dir: str | Path | None = None) -> Path | None:
    """``ansible/ansible.cfg`` of the project checkout this package runs from, else of the project
    whose stacks are verified (``stacks_dir``'s parent); ``None`` outside a checkout."""
    roots = [ROOT] + ([Path(stacks_dir).resolve().parent] if stacks_dir else [])
    for root in roots:
        cfg = root / "ansible" / "ansible.cfg"
        if (root / "Pulumi.yaml").is_file() and cfg.is_file():
            return cfg
    return None


def check_suite() -> None:
    """A clean error naming what is missing when the installation lacks (part of) the suite."""
    missing = [f for f in SUITE_FILES if not (SUITE / f).is_file()]
    if missing:
        raise LLMClusterError(f"the verification suite is incomplete in this installation ({SUITE}): missing "
                              f"{', '.join(missing)}; reinstall llmcluster (the suite is package data)")


def check_inventory(inventory: str | Path, planned_hosts: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The inventory's hosts; a clean error when it cannot be read or has hosts the plan does not know."""
    from llmcluster.converge import ANSIBLE_DIR
    from llmcluster.verify.remote import Inventory

    if not Path(inventory).exists():
        hint = ""
        if Path(inventory) == ANSIBLE_DIR / "inventory" / "llmcluster.py":
            hint = (" (the stack's dynamic inventory is part of the project checkout, not of the package: "
                    "run from a checkout or pass --inventory)")
        raise LLMClusterError(f"--inventory {inventory}: no such file{hint}")
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
    check_suite()
    inventory = Path(inventory).resolve()
    if not inventory.exists():
        raise LLMClusterError(f"--inventory {inventory}: no such file")
    with tempfile.TemporaryDirectory(prefix="llmcluster-verify-") as tmp:
        results = Path(tmp) / "results.json"
        # -P: the working directory is not put on sys.path (no stray llmcluster/ shadows this package).
        # -c/--rootdir: the suite's own pytest.ini and folder, whatever configuration files sit above it.
        # --opt=value: pytest takes a path after a not-yet-registered option for a rootdir candidate.
        cmd = [sys.executable, "-P", "-m", "pytest", "-c", str(SUITE / "pytest.ini"), f"--rootdir={SUITE}",
               str(SUITE), "-p", "no:xdist", "-p", "no:cacheprovider", "-q", "--no-header", "--tb=no", "-rN",
               f"--llmcluster-stack={stack}", f"--llmcluster-inventory={inventory}",
               f"--llmcluster-results={results}"]
        if stacks_dir:
            cmd.append(f"--llmcluster-stacks-dir={Path(stacks_dir).resolve()}")
        if keyword:
            cmd += ["-k", keyword]
        use_local_ansible()
        env = dict(os.environ)
        cfg = project_ansible_config(stacks_dir)
        if cfg is not None:
            env["ANSIBLE_CONFIG"] = str(cfg)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, check=False)
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
                  escape(r["message"]) if r["outcome"] != "passed" else escape(r.get("detail", "")))
    return t


#: Where ``llmcluster lab verify`` keeps its last report (JSON, in the lab's state dir): ``lab summary`` reads it.
LAB_REPORT = "verify-report.json"


def report_document(report: VerifyReport) -> dict[str, Any]:
    """The ``--json`` document of a run (what ``lab verify`` saves, too)."""
    return {"stack": report.stack, "ok": report.ok, "counts": dict(report.counts), "results": report.results}


def save_report(report: VerifyReport, path: Path) -> Path:
    """Write :func:`report_document` to ``path`` atomically (a reader never sees half a report)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(report_document(report), indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def load_report(path: Path) -> VerifyReport | None:
    """A saved report (:func:`save_report`), or ``None`` when there is none or it cannot be read."""
    try:
        doc = json.loads(Path(path).read_text())
        return VerifyReport(rc=0 if doc["ok"] else 1, stack=str(doc["stack"]), results=list(doc["results"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def summary(report: VerifyReport) -> str:
    c = report.counts
    return (f"verify {report.stack}: {c.get('passed', 0)} passed, {c.get('failed', 0)} failed, "
            f"{c.get('skipped', 0)} skipped")
