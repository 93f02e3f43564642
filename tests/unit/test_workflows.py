"""The GitHub workflows (.github/workflows/): checked by rhysd/actionlint where it is installed, and always
by the project's own schema and safety checks (actionlint's PyPI wrapper downloads its binary from GitHub
when built, which this machine cannot): the structure GitHub requires (``on``, jobs with ``runs-on`` and
steps, each step ``uses`` xor ``run``), every action pinned by a full commit SHA, least-privilege
``permissions`` (nothing at the top, read-only jobs, ``pull-requests: write`` only where the comment is
written), no ``${{ github.event... }}`` expanded inside a shell script (script injection: through ``env``
only), and a diff job per stack of stacks/. Each rule is shown to reject a violating workflow."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, STACK_NAMES

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
UNTRUSTED = re.compile(r"\$\{\{\s*github\.(event|head_ref)")
#: the permission scopes GitHub knows, and the writes each job may hold
SCOPES = {"actions", "attestations", "checks", "contents", "deployments", "discussions", "id-token", "issues",
          "models", "packages", "pages", "pull-requests", "repository-projects", "security-events", "statuses"}
ALLOWED_WRITES = {"comment": {"pull-requests"}}


def load(path: Path) -> dict:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(doc, dict) and True in doc and "on" not in doc:  # YAML 1.1 reads the key `on` as true
        doc["on"] = doc.pop(True)
    return doc


def problems(doc: dict, text: str) -> list[str]:
    out: list[str] = []
    if not isinstance(doc, dict):
        return ["not a mapping"]
    if "on" not in doc:
        out.append("on: missing")
    if doc.get("permissions") not in ({}, "read-all") and doc.get("permissions") is not None:
        out.append("permissions: the workflow's default must grant nothing ({})")
    if "permissions" not in doc:
        out.append("permissions: missing (the default token would get the repository's defaults)")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        return [*out, "jobs: missing"]
    for name, job in jobs.items():
        where = f"jobs.{name}"
        if "runs-on" not in job:
            out.append(f"{where}.runs-on: missing")
        if "timeout-minutes" not in job:
            out.append(f"{where}.timeout-minutes: missing")
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            out.append(f"{where}.permissions: give each job its own, as a mapping (never write-all)")
            perms = {}
        for scope, level in perms.items():
            if scope not in SCOPES or level not in ("read", "write", "none"):
                out.append(f"{where}.permissions.{scope}: unknown scope or level {level!r}")
            elif level == "write" and scope not in ALLOWED_WRITES.get(name, set()):
                out.append(f"{where}.permissions.{scope}: write is not needed here")
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            out.append(f"{where}.steps: missing")
            continue
        for i, step in enumerate(steps):
            sw = f"{where}.steps[{i}]"
            if ("uses" in step) == ("run" in step):
                out.append(f"{sw}: needs exactly one of uses and run")
            if "uses" in step and not PINNED.match(str(step["uses"])):
                out.append(f"{sw}.uses: {step['uses']}: pin the action to a full commit SHA")
            if "run" in step and UNTRUSTED.search(str(step["run"])):
                out.append(f"{sw}.run: expands an untrusted github.event value inside the script: pass it via env")
    for line in text.splitlines():
        m = re.search(r"uses:\s*(\S+@[0-9a-f]{40})\s*(#.*)?$", line)
        if m and not (m.group(2) or "").strip("# "):
            out.append(f"{m.group(1)}: say which version the SHA is (# vX.Y.Z)")
    return out


def test_there_are_workflows():
    assert [p.name for p in WORKFLOWS] == ["preview.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_the_checks(path):
    assert problems(load(path), path.read_text()) == []


def test_preview_diffs_every_stack_and_comments():
    doc = load(ROOT / ".github" / "workflows" / "preview.yml")
    assert sorted(doc["jobs"]["diff"]["strategy"]["matrix"]["stack"]) == STACK_NAMES
    assert doc["on"] == {"pull_request": {"branches": ["main"]}}
    comment = doc["jobs"]["comment"]
    assert comment["needs"] == "diff" and comment["permissions"] == {"contents": "read", "pull-requests": "write"}
    run = "\n".join(s.get("run", "") for s in comment["steps"])
    assert "llmcluster pr-comment" in run
    diff_run = "\n".join(s.get("run", "") for s in doc["jobs"]["diff"]["steps"])
    assert "llmcluster diff --stack" in diff_run and "--save" in diff_run
    assert any(str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in doc["jobs"]["diff"]["steps"])


VIOLATIONS = {
    "unpinned action": ("uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2",
                        "uses: actions/checkout@v4", "pin the action"),
    "write-all": ("permissions: {}", "permissions: write-all", "the workflow's default must grant nothing"),
    "a write the job does not need": ("    permissions:\n      contents: read\n    strategy:",
                                      "    permissions:\n      contents: write\n    strategy:",
                                      "jobs.diff.permissions.contents: write is not needed"),
    "script injection": ('--base "$BASE_SHA"', '--base "${{ github.event.pull_request.base.sha }}"',
                         "expands an untrusted github.event value"),
    "SHA without its version": ("@a26af69be951a213d495a4c3e4e4022e16d87065  # v5.6.0",
                                "@a26af69be951a213d495a4c3e4e4022e16d87065", "say which version"),
}


@pytest.mark.parametrize("case", sorted(VIOLATIONS))
def test_checks_reject_a_violating_workflow(case):
    old, new, expected = VIOLATIONS[case]
    text = (ROOT / ".github" / "workflows" / "preview.yml").read_text()
    assert old in text
    bad = text.replace(old, new)
    found = problems(yaml.safe_load(bad) | {"on": True}, bad)
    assert any(expected in p for p in found), found


@pytest.mark.skipif(shutil.which("actionlint") is None,
                    reason="actionlint is not installed here (its PyPI wrapper downloads the binary from GitHub)")
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(path):
    p = subprocess.run(["actionlint", "-no-color", str(path)], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
