"""The converge driver runs real ansible-playbook processes through ansible-runner.

Targets here are local connections only (no network); the lab converge tests live with the roles.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmcluster.converge import recap_rows, run_playbook
from tests.conftest import ROOT

PLAYBOOK = """\
- name: Driver test
  hosts: all
  gather_facts: false
  tasks:
    - name: Write a file
      ansible.builtin.copy:
        dest: "{{ target_dir }}/{{ inventory_hostname }}.txt"
        content: "hello\\n"
        mode: "0644"
      tags: [write]
    - name: Probe
      ansible.builtin.command: "true"
      changed_when: false
    - name: Fail on request
      ansible.builtin.fail:
        msg: "asked to fail"
      when: fail_here | default(false) | bool
"""


@pytest.fixture()
def project(tmp_path: Path):
    pb = tmp_path / "pb.yml"
    pb.write_text(PLAYBOOK)
    inv = tmp_path / "inv.ini"
    py = sys.executable
    inv.write_text(f"alpha ansible_connection=local ansible_python_interpreter={py}\n"
                   f"beta ansible_connection=local ansible_python_interpreter={py}\n")
    out = tmp_path / "files"
    out.mkdir()
    return pb, inv, out


def test_converge_then_reconverge_reports_zero_changes(project):
    pb, inv, out = project
    first = run_playbook(pb, inv, extravars={"target_dir": str(out)})
    assert first.ok, (first.rc, first.hosts)
    # (host, ok, changed, failed, unreachable, skipped): the fail task is skipped.
    assert recap_rows(first) == [("alpha", 2, 1, 0, 0, 1), ("beta", 2, 1, 0, 0, 1)]
    assert first.changed_tasks == {"alpha": ["Write a file"], "beta": ["Write a file"]}
    second = run_playbook(pb, inv, extravars={"target_dir": str(out)})
    assert second.ok and second.changed() == 0


def test_check_mode_changes_nothing(project):
    pb, inv, out = project
    r = run_playbook(pb, inv, check=True, diff=True, extravars={"target_dir": str(out)})
    assert r.ok and r.changed("alpha") == 1
    assert not list(out.iterdir()), "check mode wrote files"


def test_tags_and_limit(project):
    pb, inv, out = project
    r = run_playbook(pb, inv, tags=["write"], limit="beta", extravars={"target_dir": str(out)})
    assert r.ok and sorted(r.stats) == ["beta"]
    assert [p.name for p in out.iterdir()] == ["beta.txt"]


def test_failure_is_reported_per_host(project):
    pb, inv, out = project
    r = run_playbook(pb, inv, limit="alpha", extravars={"target_dir": str(out), "fail_here": True})
    assert not r.ok and r.failed_hosts == ["alpha"]
    assert r.hosts["alpha"].last_error == "asked to fail"


def test_cli_converge_with_an_inventory_file(project):
    pb, inv, out = project
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "converge", "--inventory", str(inv),
                        "--playbook", str(pb), "--limit", "alpha"], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=300, check=False)
    # target_dir is undefined: the play fails and the CLI says so with exit 4, not a traceback.
    assert r.returncode == 4, r.stdout + r.stderr
    assert "converge failed" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "llmcluster.cli", "converge"], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 2 and "--stack" in r.stderr


def test_run_playbook_restores_the_callers_signal_handlers(tmp_path):
    """ansible-runner installs SIGINT/SIGTERM handlers and leaves them: run_playbook puts ours back."""
    import signal

    from llmcluster.converge import run_playbook

    play = tmp_path / "noop.yml"
    play.write_text("- hosts: localhost\n  gather_facts: false\n  tasks: []\n")
    inv = tmp_path / "inv.yml"
    inv.write_text("all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")

    def mine(signum, frame):  # pragma: no cover - never delivered
        pass

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        signal.signal(signal.SIGTERM, mine)
        signal.signal(signal.SIGINT, mine)
        result = run_playbook(play, inv)
        assert result.ok, result
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def test_an_installed_package_without_the_checkout_is_a_clear_error(project, monkeypatch, tmp_path):
    """From a wheel there is no ansible/ or roles/ beside the package: say so instead of running
    Ansible against site-packages (where ``ansible`` is Ansible's own package folder)."""
    import llmcluster.converge as conv
    from llmcluster.errors import LLMClusterError

    pb, inv, _ = project
    site = tmp_path / "site-packages"
    (site / "ansible").mkdir(parents=True)
    monkeypatch.setattr(conv, "ROOT", site)
    monkeypatch.setattr(conv, "ANSIBLE_DIR", site / "ansible")
    with pytest.raises(LLMClusterError, match="converge runs from the project checkout"):
        run_playbook(pb, inv)
