"""Secrets never reach a diff report: the canary test, and the host-configuration summariser on real
``ansible-playbook --check --diff`` output produced on this machine (a role run on localhost, no lab).

Canary markers are planted in the spec (a secret-shaped value in a free-text field), in the Pulumi config
(the switch credentials, plain and ``secure:``) and in a role variable that a template renders; each test
first proves the marker is in the raw material the report is made from (so redaction, not luck, keeps
it out), then that no output (markdown, JSON, rich) holds it."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys

import pytest

from llmcluster.diff.core import compare
from llmcluster.diff.redact import Redactor
from llmcluster.diff.render import markdown, print_rich, to_json
from tests.conftest import ROOT
from tests.helpers.diff_pairs import evaluate_doc, stack_doc

SPEC_CANARY = "CANARYspec5f1e2d3c"
PULUMI_CANARY = "CANARYpulumi9a8b7c6d"
SECURE_CANARY = "v1:CANARYsecureAAAABBBBCCCCDDDD0123456789=="
ROLE_CANARY = "CANARYrole41d9e8f7"
ROLE_KEY_CANARY = "CANARYkeyline" + "Q" * 40


def _outputs(report) -> str:
    from rich.console import Console

    buf = io.StringIO()
    print_rich(report, Console(file=buf, width=200, color_system=None))
    return markdown(report) + to_json(report) + buf.getvalue()


def test_canary_spec_and_pulumi_config(tmp_path):
    base = stack_doc("lab")
    head = copy.deepcopy(base)
    head["config"]["llmcluster:site"]["organization"] = f"llmcluster lab password={SPEC_CANARY}"
    head["config"]["llmcluster-switches:password"] = PULUMI_CANARY
    head["config"]["llmcluster-switches:privateKey"] = {"secure": SECURE_CANARY}
    a = evaluate_doc(base, tmp_path / "a", "lab", "base")
    b = evaluate_doc(head, tmp_path / "b", "lab", "head")
    # the markers are in what the report is made from
    raw = json.dumps(b.document) + json.dumps(b.files) + json.dumps(b.config)
    assert SPEC_CANARY in json.dumps(b.document), "the spec canary must reach the plan (else this proves nothing)"
    assert PULUMI_CANARY in raw and SECURE_CANARY in raw
    report = compare(a, b)
    out = _outputs(report)
    for canary in (SPEC_CANARY, PULUMI_CANARY, SECURE_CANARY, "CANARY"):
        assert canary not in out, f"{canary} leaked"
    # the changes are still reported, as redacted changes
    assert report["summary"]["changed"]
    config = {c["path"]: c for c in report["config"]}
    assert config["llmcluster-switches:password"]["after"] == "<redacted>"
    assert config["llmcluster-switches:privateKey.secure"]["after"] == "<redacted>"
    assert config["llmcluster:site.organization"]["after"] == "llmcluster lab password=<redacted>"


def test_redactor_patterns():
    red = Redactor()
    pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n-----END PRIVATE KEY-----\n"
    assert "MIGHAg" not in red.text(pem)
    diff = "+-----BEGIN EC PRIVATE KEY-----\n+MIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n+bW9yZQ==\n context line.\n"
    assert red.text(diff) == "+<redacted>\n+<redacted>\n+<redacted>\n context line.\n"
    assert red.text("aws key AKIAABCDEFGHIJKLMNOP here") == "aws key <redacted:aws-access-key-id> here"
    assert "ghp_" not in red.text("token ghp_" + "a" * 36)
    assert red.text('api_key: "abc123def"') == "api_key: <redacted>"
    assert red.text("type tls:index/privateKey:PrivateKey") == "type tls:index/privateKey:PrivateKey"
    assert red.value("password", "hunter2hunter2") == "<redacted>"
    assert red.value("private_key_path", "/etc/x.key") == "/etc/x.key"
    red.collect({"a": {"db_token": "s3cr3t-value-x", "plain": "visible-value"}})
    assert red.text("x s3cr3t-value-x y visible-value") == "x <redacted> y visible-value"


ROLE_DEFAULTS = f"""---
canary_password: {ROLE_CANARY}
canary_signing_key: |
  -----BEGIN PRIVATE KEY-----
  {ROLE_KEY_CANARY}
  -----END PRIVATE KEY-----
canary_dir: "{{{{ playbook_dir }}}}/out"
canary_port: 8443
"""
ROLE_TASKS = """---
- name: Folder
  ansible.builtin.file:
    path: "{{ canary_dir }}"
    state: directory
    mode: "0755"
- name: Service configuration (renders the password)
  ansible.builtin.copy:
    dest: "{{ canary_dir }}/service.conf"
    content: "port = {{ canary_port }}\\nsecret_value {{ canary_password }}\\n"
    mode: "0600"
- name: Signing key (no_log)
  ansible.builtin.copy:
    dest: "{{ canary_dir }}/signing.key"
    content: "{{ canary_signing_key }}"
    mode: "0600"
  no_log: true
- name: Key copy without diff (diff false)
  ansible.builtin.copy:
    dest: "{{ canary_dir }}/signing2.key"
    content: "{{ canary_signing_key }}"
    mode: "0600"
  diff: false
- name: Plain setting
  ansible.builtin.lineinfile:
    path: "{{ canary_dir }}/plain.conf"
    line: "listen {{ canary_port }}"
    create: true
    mode: "0644"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostdiff")
    role = d / "roles" / "canary"
    (role / "defaults").mkdir(parents=True)
    (role / "tasks").mkdir()
    (role / "defaults" / "main.yml").write_text(ROLE_DEFAULTS)
    (role / "tasks" / "main.yml").write_text(ROLE_TASKS)
    (d / "site.yml").write_text("- name: Canary\n  hosts: all\n  gather_facts: false\n  roles:\n    - role: canary\n")
    (d / "inventory.ini").write_text(f"node-1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    (d / "out").mkdir()
    (d / "out" / "plain.conf").write_text("# existing\n")
    return d


def test_host_diff_summary_from_a_real_check_diff_run(project):
    from llmcluster.converge import run_playbook
    from llmcluster.diff.cli import _secret_values_from_roles
    from llmcluster.diff.hosts import summarise_events

    events: list[dict] = []
    result = run_playbook(project / "site.yml", project / "inventory.ini", check=True, diff=True,
                          envvars={"ANSIBLE_CACHE_PLUGIN": "memory", "ANSIBLE_ROLES_PATH": str(project / "roles")},
                          on_event=events.append)
    assert result.ok, result
    raw = json.dumps(events)
    assert ROLE_CANARY in raw, "the rendered password is in Ansible's own diff output (else this proves nothing)"
    assert not (project / "out" / "service.conf").exists()  # --check wrote nothing
    red = Redactor()
    _secret_values_from_roles(red, project / "site.yml")
    report = summarise_events(events, label="local", stack="local", redactor=red)
    out = _outputs(report)
    assert ROLE_CANARY not in out and ROLE_KEY_CANARY not in out and "CANARY" not in out
    (host,) = report["hosts"]["hosts"]
    # the folder exists already (unchanged); the no_log task changes, as the recap counts
    assert host["host"] == "node-1" and host["changed"] == 4 and host["failed"] == 0
    (role,) = host["roles"]
    assert role["role"] == "canary"
    tasks = {t["task"]: t for t in role["tasks"]}
    assert list(tasks) == ["Service configuration (renders the password)", "Signing key (no_log)",
                           "Key copy without diff (diff false)", "Plain setting"]
    conf = tasks["Service configuration (renders the password)"]
    assert "+port = 8443" in conf["diff"].splitlines() and "+secret_value <redacted>" in conf["diff"].splitlines()
    assert tasks["Signing key (no_log)"] == {"task": "Signing key (no_log)", "action": "ansible.builtin.copy",
                                             "diff": "",
                                             "note": "output hidden: no_log (whether it changes is hidden too)"}
    assert tasks["Key copy without diff (diff false)"]["diff"] == ""
    assert tasks["Key copy without diff (diff false)"]["note"].startswith("no diff")
    assert "+listen 8443" in tasks["Plain setting"]["diff"].splitlines()
    assert report["summary"] == {"hosts": {"hosts_total": 1, "hosts_changed": 1, "tasks_changed": 4, "failed": 0,
                                           "unreachable": 0}, "changed": True}


def test_host_diff_cli(project, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ANSIBLE_CACHE_PLUGIN": "memory",
           "ANSIBLE_ROLES_PATH": str(project / "roles")}
    save = tmp_path / "hosts.json"
    p = subprocess.run([sys.executable, "-m", "llmcluster.cli", "diff", "--layer", "hosts", "--inventory",
                        str(project / "inventory.ini"), "--playbook", str(project / "site.yml"), "--format",
                        "markdown", "--save", str(save)], capture_output=True, text=True, env=env, timeout=300,
                       check=False)
    assert p.returncode == 1, p.stderr
    assert "CANARY" not in p.stdout + p.stderr + save.read_text()
    assert "role <code>canary</code>: 4 task(s)" in p.stdout and "output hidden: no_log" in p.stdout
    assert json.loads(save.read_text())["layer"] == "hosts"
