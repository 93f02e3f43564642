"""The ceph role's refusals, run for real (ansible-playbook, the role's preflight tasks, local
connection): every safety rule rejects its violating input with its message, and the plan of the
lab stack passes, on a Ceph host and on a GPU client. No lab needed."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, load_plan
from tests.helpers.tools import tool, tool_env

PLAN = load_plan("lab").storage.ceph.to_dict()

PLAYBOOK = """\
- name: The ceph role's preflight, case by case
  hosts: all
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  tasks:
    - name: Each case of this host
      ansible.builtin.include_tasks: case.yml
      loop: "{{ cases | dict2items | selectattr('value.host', 'equalto', inventory_hostname) | list }}"
      loop_control:
        loop_var: case
"""

CASE = """\
- name: One case
  block:
    - name: Preflight
      ansible.builtin.include_role:
        name: ceph
        tasks_from: preflight
      vars:
        ceph_plan: "{{ case.value.plan }}"
        ceph_osd_backend: "{{ case.value.backend }}"
        ceph_lab_simulation: "{{ case.value.lab }}"
        ceph_osd_encrypt: "{{ case.value.encrypt }}"
        ceph_osd_devices: ["/dev/nvme0n1", "/dev/nvme1n1"]
        ceph_manage_services: "{{ case.value.systemd }}"
        ceph_clients: "{{ case.value.clients }}"
        llmcluster_addresses: {storage_public: 10.42.2.13, storage_cluster: 10.42.3.11}
    - name: Passed
      ansible.builtin.copy:
        content: "ok"
        dest: "{{ out }}/{{ case.key }}.result"
        mode: "0644"
  rescue:
    - name: Refused
      ansible.builtin.copy:
        content: "{{ ansible_failed_result.msg | default('failed') }}"
        dest: "{{ out }}/{{ case.key }}.result"
        mode: "0644"
"""


def _case(host="storage-01", plan=None, backend="file", lab=True, encrypt=False, systemd=True, clients=None):
    return {"host": host, "plan": plan or PLAN, "backend": backend, "lab": lab, "encrypt": encrypt,
            "systemd": systemd, "clients": clients or {"models": {"pools": ["models"], "groups": ["gpu"]}}}


def _plan(**changes):
    p = copy.deepcopy(PLAN)
    p.update(changes)
    return p


def _pools(size, min_size):
    return [dict(p, size=size, min_size=min_size) for p in PLAN["pools"]]


CASES = {
    "server-ok": (_case(), "ok"),
    "client-ok": (_case(host="gpu-01"), "ok"),
    "production-backend-ok": (_case(backend="lvm", lab=False, encrypt=True), "ok"),
    "file-outside-the-lab": (_case(lab=False), "lab simulation: refused outside the lab"),
    "file-encrypted": (_case(encrypt=True), "cannot encrypt OSDs"),
    "unknown-backend": (_case(backend="zfs"), "an OSD backend lvm or raw (got zfs)"),
    "size-2": (_case(plan=_plan(pools=_pools(2, 1))), "keep fewer than 3 copies"),
    "min-size-1": (_case(plan=_plan(pools=_pools(3, 1))), "keep fewer than 3 copies"),
    "host-domain-two-hosts": (_case(plan=_plan(hosts=["storage-01", "storage-02"], mons=["storage-01"])),
                              "the plan has 2 Ceph host(s)"),
    "even-monitors": (_case(plan=_plan(mons=["storage-01", "storage-02"])), "an odd number of"),
    "no-systemd": (_case(systemd=False), "needs a storage_public and a storage_cluster address"),
    "client-without-key": (_case(host="gw-01"), "needs a client key"),
    "client-key-for-another-pool": (_case(host="gpu-01", clients={"models": {"pools": ["nosuch"],
                                                                            "groups": ["gpu"]}}),
                                    "needs a client key"),
    "client-named-admin": (_case(host="gpu-01", clients={"admin": {"pools": ["models"], "groups": ["gpu"]}}),
                           "Only Ceph hosts get the admin key"),
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    playbook_bin = tool("ansible-playbook")
    if playbook_bin is None:
        pytest.skip("ansible-playbook is not installed")
    d = tmp_path_factory.mktemp("ceph-preflight")
    (d / "play.yml").write_text(PLAYBOOK)
    (d / "case.yml").write_text(CASE)
    inventory = {"all": {"children": {
        "storage": {"hosts": {h: {"ansible_connection": "local"} for h in PLAN["hosts"]}},
        "gpu": {"hosts": {"gpu-01": {"ansible_connection": "local"}}},
        "gateway": {"hosts": {"gw-01": {"ansible_connection": "local"}}}}}}
    (d / "inventory.yml").write_text(yaml.safe_dump(inventory))
    (d / "vars.json").write_text(json.dumps({"cases": {k: v for k, (v, _) in CASES.items()}, "out": str(d)}))
    r = subprocess.run([playbook_bin, "-i", str(d / "inventory.yml"), str(d / "play.yml"), "-e", f"@{d / 'vars.json'}",
                        "-f", "5"], capture_output=True, text=True, env=tool_env(), cwd=ROOT / "ansible",
                       timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    return {k: (d / f"{k}.result").read_text() if (d / f"{k}.result").exists() else "<no result>" for k in CASES}


@pytest.mark.parametrize("case", list(CASES))
def test_preflight(results, case):
    want = CASES[case][1]
    got = results[case]
    if want == "ok":
        assert got == "ok", f"{case}: refused: {got}"
    else:
        assert got != "ok" and want in got, f"{case}: expected a refusal saying {want!r}, got {got!r}"
