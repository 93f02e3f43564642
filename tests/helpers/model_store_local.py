"""The model_store role run by Ansible on this machine (connection local, every path in a temporary
folder): the playbooks and runners shared by tests/roles/test_model_store_local.py and
tests/roles/test_model_store_objects_local.py."""

from __future__ import annotations

import filecmp
import json
import re
import subprocess
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers.tools import tool, tool_env

ROLE = ROOT / "roles" / "model_store"
#: ansible/ansible.cfg caches facts on disk: this machine's facts stay out of it.
NO_FACT_CACHE = {"ANSIBLE_CACHE_PLUGIN": "memory"}

SERVING = {"replica": 0, "node_rank": 0, "nodes": 1, "head": "gpu-01", "head_address": "127.0.0.1",
           "hosts": [{"name": "gpu-01", "address": "127.0.0.1", "slots": 8}]}

CONVERGE = """\
- name: Converge the model_store role on this machine
  hosts: localhost
  connection: local
  gather_facts: true
  gather_subset: [min]
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  roles:
    - role: {role}
"""

EACH_CASE = """\
- name: Run {tasks} of the model_store role for each case
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: The OS variables (Debian, as the lab)
      ansible.builtin.include_vars: {role}/vars/Debian.yml
    - name: Each case
      ansible.builtin.include_tasks: {case_file}
      loop: "{{{{ cases.keys() | list }}}}"
      loop_control:
        loop_var: case
"""

CASE = """\
- name: One case
  block:
    - name: The role's tasks
      ansible.builtin.include_role:
        name: {role}
        tasks_from: {tasks}
      vars:
        llmcluster_serving: "{{{{ cases[case].serving }}}}"
        llmcluster_serving_plan: "{{{{ cases[case].plan }}}}"
        llmcluster_model_dir: "{{{{ cases[case].model_dir }}}}"
        model_store_manifest_src: "{{{{ cases[case].manifest_src }}}}"
        model_store_source: "{{{{ cases[case].source }}}}"
        model_store_group: root
    - name: Passed
      ansible.builtin.copy:
        content: "ok"
        dest: "{{{{ out }}}}/{{{{ case }}}}.result"
        mode: "0644"
  rescue:
    - name: Refused
      ansible.builtin.copy:
        content: "{{{{ ansible_failed_result.msg | default('failed') }}}}"
        dest: "{{{{ out }}}}/{{{{ case }}}}.result"
        mode: "0644"
"""


class Run:
    def __init__(self, r: subprocess.CompletedProcess):
        self.rc, self.out = r.returncode, r.stdout + r.stderr
        m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", r.stdout)
        self.changed = int(m.group(2)) if m else -1
        self.failed = int(m.group(4)) if m else -1

    def __repr__(self) -> str:
        return f"exit {self.rc}, changed {self.changed}:\n{self.out[-4000:]}"


def converge(d: Path, variables: dict, *args: str) -> Run:
    d.mkdir(parents=True, exist_ok=True)
    (d / "converge.yml").write_text(CONVERGE.format(role=ROLE))
    (d / "vars.json").write_text(json.dumps(variables))
    r = subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(d / "converge.yml"),
                        "-e", f"@{d / 'vars.json'}", *args], cwd=d, env={**tool_env(), **NO_FACT_CACHE},
                       capture_output=True, text=True, check=False)
    return Run(r)


def each_case(d: Path, tasks: str, cases: dict) -> dict[str, str]:
    """Run the role's tasks file ``tasks`` for each case; case -> "ok" or the failure message."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "case.yml").write_text(CASE.format(role=ROLE, tasks=tasks))
    (d / "play.yml").write_text(EACH_CASE.format(role=ROLE, tasks=tasks, case_file=d / "case.yml"))
    (d / "vars.json").write_text(json.dumps({"cases": cases, "out": str(d)}))
    r = subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(d / "play.yml"),
                        "-e", f"@{d / 'vars.json'}"], cwd=d, env={**tool_env(), **NO_FACT_CACHE},
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    return {c: (d / f"{c}.result").read_text() for c in cases}


def same_tree(a: Path, b: Path) -> None:
    names = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.is_file())
    assert names == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)
