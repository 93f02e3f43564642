"""The `llmcluster` CLI as users run it: exit codes, one line per problem, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, STACKS


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LLMCLUSTER_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "llmcluster.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def assert_no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


def test_validate_all_stacks_by_default():
    r = run("validate", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["valid"] and len(data["stacks"]) == 4
    assert {s["stack"] for s in data["stacks"]} == {"lab", "prod-baremetal", "dev-aws", "prod-aws"}


def test_validate_reports_each_problem_on_its_own_line(tmp_path: Path):
    bad = tmp_path / "Pulumi.bad.yaml"
    text = (STACKS / "Pulumi.lab.yaml").read_text()
    text = text.replace("count: 2\n", "count: two\n", 1).replace("mgmt: {id: 10,", "mgmt: {id: 4095,")
    bad.write_text(text)
    r = run("validate", str(bad), str(STACKS / "Pulumi.lab.yaml"))
    assert r.returncode == 2
    assert_no_traceback(r)
    lines = [line for line in r.stderr.splitlines() if line.startswith(str(bad))]
    assert f"{bad}: fabric.vlans.mgmt.id: Input should be less than or equal to 4094" in lines
    assert any(line.startswith(f"{bad}: pools.gpu.count: Input should be a valid integer") for line in lines)


def test_validate_malformed_yaml_is_a_clean_error(tmp_path: Path):
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config:\n  llmcluster:site: {name: [\n")
    r = run("validate", str(bad))
    assert r.returncode == 2
    assert_no_traceback(r)
    assert r.stderr.startswith(f"{bad}: malformed YAML: line ")


def test_validate_unknown_key_suggests_the_right_one(tmp_path: Path):
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text((STACKS / "Pulumi.lab.yaml").read_text().replace("supernet:", "supernt:"))
    r = run("validate", str(bad))
    assert r.returncode == 2
    assert f"{bad}: site.supernt: unknown key; did you mean 'supernet'?" in r.stderr.splitlines()


def test_size_json_keys_and_values():
    r = run("size", "--model", "deepseek-r1", "--gpu", "h200", "--precision", "fp8", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("model", "gpu", "precision", "weights_bytes", "kv_bytes_per_token", "tp", "pp", "ep", "gpus",
                "nodes", "gpus_per_node", "backend", "max_batch_size", "max_num_tokens",
                "kv_cache_free_gpu_memory_fraction", "decode_tokens_per_s_bound"):
        assert key in d, key
    assert (d["gpus"], d["nodes"], d["tp"], d["ep"], d["backend"]) == (8, 1, 8, 8, "pytorch")


@pytest.mark.parametrize("argv,needle", [
    (["--model", "deepseek-r1", "--gpu", "a100-80gb", "--precision", "fp8"], "Hopper"),
    (["--model", "deepseek-r2", "--gpu", "h100"], "did you mean"),
    (["--model", "deepseek-r1", "--gpu", "h100", "--precision", "fp4"], "Blackwell"),
    (["--model", "deepseek-r1", "--gpu", "h100", "--context", "500000"], "max_position_embeddings"),
])
def test_size_infeasible_exits_2_with_the_reason(argv, needle):
    r = run("size", *argv, "--json")
    assert r.returncode == 2
    assert_no_traceback(r)
    assert needle in r.stderr and r.stdout == ""


def test_plan_json_and_set_override():
    r = run("plan", "--stack", "lab", "--set", "pools.gpu.count=4", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    hosts = [h["name"] for h in doc["plan"]["ip"]["hosts"]]
    assert hosts[:4] == ["gpu-01", "gpu-02", "gpu-03", "gpu-04"]
    assert doc["resource_counts"]["llmcluster:pki:Pki"] == 1
    assert "PRIVATE KEY" not in r.stdout


def test_plan_override_is_validated_like_the_file():
    r = run("plan", "--stack", "lab", "--set", "pools.gpu.count=-1")
    assert r.returncode == 2
    assert_no_traceback(r)
    assert "pools.gpu.count: Input should be greater than or equal to 0" in r.stderr
    r = run("plan", "--stack", "lab", "--set", "pools.gpu.cout=3")
    assert r.returncode == 2 and "did you mean 'count'" in r.stderr


def test_plan_unknown_stack():
    r = run("plan", "--stack", "prod-baremetl")
    assert r.returncode == 2
    assert "did you mean 'prod-baremetal'" in r.stderr


def test_plan_out_writes_artifacts(tmp_path: Path):
    out = tmp_path / "out"
    r = run("plan", "--stack", "lab", "--out", str(out))
    assert r.returncode == 0, r.stderr
    for rel in ("plan.json", "inventory.json", "pki/root-ca.pem", "pki/ca-chain.pem",
                "pki/certs/host-gpu-01.pem", "hosts/gpu-01/nftables.nft", "hosts/gw-01/qos.sh"):
        assert (out / rel).is_file(), rel
    assert not list(out.rglob("*.key"))
    assert "PRIVATE KEY" not in "".join(p.read_text() for p in out.rglob("*") if p.is_file())


def test_inventory_list_and_host():
    r = run("inventory", "--stack", "prod-baremetal", "--list")
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)
    assert inv["gpu"]["hosts"] == ["gpu-01", "gpu-02", "gpu-03", "gpu-04"]
    assert sorted(inv["nvswitch"]["hosts"]) == inv["gpu"]["hosts"]
    hv = inv["_meta"]["hostvars"]["gpu-03"]
    assert hv["llmcluster_gpu"]["model"] == "h200" and hv["llmcluster_gpu"]["count"] == 8
    assert hv["llmcluster_interfaces"]["rdma"]["vlan_id"] == 140
    assert hv["llmcluster_serving"] == {"replica": 2, "node_rank": 0, "nodes": 1, "head": "gpu-03",
                                        "head_address": hv["llmcluster_addresses"]["inference"],
                                        "hosts": [{"name": "gpu-03", "address": hv["llmcluster_addresses"]["inference"],
                                                   "slots": 8}]}
    r = run("inventory", "--stack", "prod-baremetal", "--host", "gpu-03")
    assert r.returncode == 0 and json.loads(r.stdout) == hv
    r = run("inventory", "--stack", "prod-baremetal", "--host", "gpu-3")
    assert r.returncode == 2 and "no host 'gpu-3'" in r.stderr


def test_ansible_inventory_parses_the_dynamic_inventory():
    ansible_inventory = Path(sys.executable).parent / "ansible-inventory"
    assert ansible_inventory.exists(), f"{ansible_inventory}: missing (ansible is a pinned dependency)"
    env = {**os.environ, "LLMCLUSTER_STACK": "lab", "ANSIBLE_CONFIG": str(ROOT / "ansible" / "ansible.cfg")}
    r = subprocess.run([str(ansible_inventory), "-i", str(ROOT / "ansible" / "inventory" / "llmcluster.py"),
                        "--list"], capture_output=True, text=True, env=env, cwd=ROOT / "ansible", timeout=120)
    assert r.returncode == 0, r.stderr
    inv = json.loads(r.stdout)
    assert sorted(inv["_meta"]["hostvars"]) == ["gpu-01", "gpu-02", "gw-01", "mon-01", "storage-01", "storage-02",
                                                   "storage-03"]
    assert inv["_meta"]["hostvars"]["gpu-01"]["ansible_host"] == "10.42.0.11"
    assert inv["_meta"]["hostvars"]["gpu-01"]["llmcluster_stack"] == "lab"  # group var from all.vars


def test_verify_bad_input_is_a_clean_error(tmp_path: Path):
    r = run("verify", "--stack", "nope")
    assert r.returncode == 2 and "--stack: no stack 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run("verify", "--stack", "lab", "--inventory", str(tmp_path / "missing.yml"))
    assert r.returncode == 2 and "--inventory:" in r.stderr and "no such file" in r.stderr


def test_verify_rejects_an_inventory_with_hosts_the_stack_does_not_plan(tmp_path: Path):
    inv = tmp_path / "inventory.yml"
    inv.write_text("all:\n  hosts:\n    stranger-01: {ansible_host: 127.0.0.1}\n")
    r = run("verify", "--stack", "lab", "--inventory", str(inv))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "stranger-01" in r.stderr and "Traceback" not in r.stderr


def test_lab_verify_without_a_lab_is_a_clean_error(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("lab commands need root")
    r = run("lab", "verify", "--state-dir", str(tmp_path / "no-lab"))
    assert r.returncode == 2 and "is not up" in r.stderr and "llmcluster lab up" in r.stderr
