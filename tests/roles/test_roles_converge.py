"""Converge ``ansible/site.yml`` on the lab hosts: it succeeds, converges, and check mode agrees.

Three runs, in order (the first is the session's ``lab_converged``, which the verification tier
shares; the other two through ansible-runner, whose ``stats`` are the play recap):

1. converge: exits 0, no host failed or unreachable;
2. converge again: ``changed=0`` on every host (idempotence);
3. ``--check`` after converging: ``changed=0`` on every host (check mode sees no drift).

The hosts come from the ``lab_inventory`` fixture, which the lab runtime provides: the path
of an inventory file (or a callable returning it) whose hosts are up and reachable, with the
lab's variables set (``llmcluster_network_mode: access``, ``llmcluster_manage_services:
false`` where a host runs no systemd, the rendered rulesets and tc scripts, SSH settings).
Skipped, with the reason, where the lab runtime or root is missing. One test function:
the three runs share the hosts and must not run in parallel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

#: The lab's tests share one xdist worker (the lab fixture is requested dynamically below).
pytestmark = pytest.mark.xdist_group("lab")

PLAYBOOK = ROOT / "ansible" / "site.yml"
ANSIBLE_CFG = ROOT / "ansible" / "ansible.cfg"
#: Extra variables of every run. None: the lab inventory says where kernel parameters may be
#: applied (not on hosts that share this machine's kernel; yes on VM hosts, which have their own).
LAB_EXTRAVARS: dict = {}


def lab_runtime_problem() -> str | None:
    try:
        import llmcluster.lab.runtime  # noqa: F401
    except ImportError as e:
        return f"lab runtime not available ({e})"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "lab runtime not available: the lab needs root"
    return None


@pytest.fixture
def converge_inventory(request) -> Path:
    problem = lab_runtime_problem()
    if problem:
        pytest.skip(problem)
    try:
        inventory = request.getfixturevalue("lab_inventory")
    except pytest.FixtureLookupError:
        pytest.skip("lab runtime not available: no lab_inventory fixture")
    if callable(inventory):
        inventory = inventory()
    path = Path(inventory)
    assert path.exists(), f"lab_inventory gave {path}, which does not exist"
    return path


def run_site(private_data_dir: Path, inventory: Path, *cmdline: str):
    import ansible_runner

    venv_bin = str(Path(sys.executable).parent)
    private_data_dir.mkdir(parents=True, exist_ok=True)
    return ansible_runner.run(
        private_data_dir=str(private_data_dir),
        playbook=str(PLAYBOOK),
        inventory=str(inventory),
        extravars=dict(LAB_EXTRAVARS),
        envvars={
            "ANSIBLE_CONFIG": str(ANSIBLE_CFG),
            "ANSIBLE_CACHE_PLUGIN": "memory",  # no facts from an earlier lab
            "ANSIBLE_NOCOLOR": "1",
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        cmdline=" ".join(cmdline) or None,
        quiet=True,
    )


def events(runner, kind: str) -> list[dict]:
    return [e.get("event_data", {}) for e in runner.events if e.get("event") == kind]


def describe_failures(runner) -> str:
    lines = []
    for kind in ("runner_on_failed", "runner_on_unreachable"):
        for d in events(runner, kind):
            if d.get("ignore_errors"):
                continue
            res = d.get("res", {})
            lines.append(f"{d.get('host')}: {d.get('task')}: {res.get('msg') or res.get('stderr') or res}")
    return "\n".join(lines) or runner.stdout.read()[-4000:]


def changed_tasks(runner) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in events(runner, "runner_on_ok"):
        if d.get("res", {}).get("changed"):
            out.setdefault(d.get("host"), []).append(d.get("task"))
    return out


def assert_clean(runner, what: str) -> dict:
    stats = runner.stats
    assert runner.rc == 0 and stats is not None, f"{what}: rc {runner.rc}\n{describe_failures(runner)}"
    assert stats["processed"], f"{what}: no host was processed"
    assert not stats["failures"] and not stats["dark"], f"{what}:\n{describe_failures(runner)}"
    return stats


def test_converge_is_idempotent_and_check_mode_agrees(converge_inventory, request, tmp_path):
    # The first converge is the session's (``lab_converged``, shared with the verification tier: one
    # converge fewer per run); it fails this test if it failed. The lab tests between it and this one
    # leave the hosts as they found them, so the second converge must change nothing.
    request.getfixturevalue("lab_converged")

    second = run_site(tmp_path / "again", converge_inventory)
    stats = assert_clean(second, "second converge")
    hosts = sorted(stats["processed"])
    changed = {h: n for h, n in stats["changed"].items() if n}
    assert not changed, f"second converge changed {changed}: {changed_tasks(second)}"

    check = run_site(tmp_path / "check", converge_inventory, "--check")
    stats = assert_clean(check, "check after converge")
    assert sorted(stats["processed"]) == hosts
    changed = {h: n for h, n in stats["changed"].items() if n}
    assert not changed, f"--check after converge reports changes {changed}: {changed_tasks(check)}"
