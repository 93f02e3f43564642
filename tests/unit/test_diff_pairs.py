"""``llmcluster diff`` on real pairs of plans: a stack of stacks/ and the same stack with one change,
both evaluated offline (tests/helpers/diff_pairs.py). Each test states the exact expected report:
the count summary whole, and the sections the change is about whole.

The full markdown of each pair is a golden file (tests/unit/golden/diff/<pair>.md; regenerate with
LLMCLUSTER_UPDATE_GOLDEN=1 and review the diff of the golden)."""

from __future__ import annotations

import os

import pytest

from llmcluster.diff.render import markdown
from tests.conftest import GOLDEN
from tests.helpers.diff_pairs import PAIRS, pair_report


def _summary(create=0, delete=0, replace=0, update=0, addresses=0, opened=0, closed=0, capacity=0, plan=0,
             added=0, removed=0, changed=0, hostvars=0, config=1):
    return {"resources": {"create": create, "delete": delete, "replace": replace, "update": update},
            "addresses": addresses, "flows": {"opened": opened, "closed": closed}, "capacity": capacity,
            "plan": plan, "artifacts": {"added": added, "removed": removed, "changed": changed},
            "hostvars": hostvars, "config": config, "changed": True}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pairs")
    return {name: pair_report(name, tmp) for name in PAIRS}


def _ops(report):
    return [(r["op"], r["urn"].rsplit("::", 1)[-1], [c["path"] for c in r["changes"]]) for r in report["resources"]]


def _arts(report):
    return [(a["path"], a["status"], a["added_lines"], a["removed_lines"]) for a in report["artifacts"]]


LAB_HOSTS = ["gpu-01", "gpu-02", "gw-01", "mon-01", "storage-01", "storage-02", "storage-03"]


def test_port_opened(reports):
    r = reports["port-opened"]
    assert r["summary"] == _summary(update=1, opened=1, plan=4, changed=3, hostvars=2)
    assert r["firewall"]["opened"] == [{"from": "admin", "to": "gpu", "port": "tcp/9401", "vlan": "mgmt"}]
    assert r["firewall"]["closed"] == []
    assert r["firewall"]["matrix"]["admin"]["gpu"] == ["tcp/22", "tcp/9100", "tcp/9400", "+tcp/9401"]
    assert _ops(r) == [("update", "fabric", ["configSha256.leaf-01"])]
    # only the GPU hosts accept the port (the admin zone's sources are not lab hosts); the leaf's ACL opens it too
    assert _arts(r) == [("hosts/gpu-01/nftables.nft", "changed", 1, 1), ("hosts/gpu-02/nftables.nft", "changed", 1, 1),
                        ("switches/leaf-01.nvue.yaml", "changed", 4, 4)]
    gpu = next(a["diff"] for a in r["artifacts"] if a["path"] == "hosts/gpu-01/nftables.nft")
    assert any(line.startswith("+") and "9400-9401" in line for line in gpu.splitlines()), gpu
    assert r["config"] == [{"path": "llmcluster:flows[name=metrics-gpu].ports", "before": ["tcp/9100", "tcp/9400"],
                            "after": ["tcp/9100", "tcp/9400", "tcp/9401"]}]
    assert [h["host"] for h in r["hostvars"]] == ["gpu-01", "gpu-02"]
    assert {c["path"] for h in r["hostvars"] for c in h["changes"]} == {"llmcluster_nftables_ruleset"}


def test_node_added(reports):
    r = reports["node-added"]
    assert r["summary"] == _summary(create=4, replace=6, update=7, addresses=22, capacity=8, plan=r["summary"]["plan"],
                                    added=3, changed=19, hostvars=8, config=2)
    created = [(name, typ) for op, name, _ in _ops(r) if op == "create"
               for typ in [next(x["type"] for x in r["resources"] if x["urn"].endswith("::" + name))]]
    assert created == [("compute-gpu-03", "llmcluster:baremetal:Host"),
                       ("pki-host-gpu-03-csr", "tls:index/certRequest:CertRequest"),
                       ("pki-host-gpu-03", "tls:index/locallySignedCert:LocallySignedCert"),
                       ("pki-host-gpu-03-key", "tls:index/privateKey:PrivateKey")]
    # the hosts numbered after the gpu pool move up one address: their CSRs change their IP SANs (a replacement)
    assert [(op, n, p) for op, n, p in _ops(r) if op == "replace"] == [
        ("replace", f"pki-{n}-csr", ["ipAddresses"]) for n in
        ("gateway-api", "host-gw-01", "host-mon-01", "host-storage-01", "host-storage-02", "host-storage-03")]
    added = [a for a in r["addresses"] if a.get("absent") == "before"]
    assert {a["path"]: a["after"] for a in added} == {
        "ip.hosts[name=gpu-03].addresses.inference": "10.42.1.13", "ip.hosts[name=gpu-03].addresses.mgmt": "10.42.0.13",
        "ip.hosts[name=gpu-03].addresses.rdma": "10.42.4.13",
        "ip.hosts[name=gpu-03].addresses.storage_public": "10.42.2.13",
        "ip.hosts[name=gpu-03].fqdn": "gpu-03.lab.llmcluster.internal", "ip.hosts[name=gpu-03].index": 3,
        "ip.hosts[name=gpu-03].name": "gpu-03", "ip.hosts[name=gpu-03].pool": "gpu",
        "ip.hosts[name=gpu-03].role": "gpu"}
    assert {"path": "ip.hosts[name=gw-01].addresses.mgmt", "before": "10.42.0.16", "after": "10.42.0.17"} \
        in r["addresses"]
    assert [a[:2] for a in _arts(r) if a[1] == "added"] == [
        ("hosts/gpu-03/nftables.nft", "added"), ("hosts/gpu-03/qos.sh", "added"),
        ("pki/certs/host-gpu-03.pem", "added")]
    assert next(h for h in r["hostvars"] if h["host"] == "gpu-03")["status"] == "added"
    assert r["config"] == [
        {"path": "llmcluster:pools.gpu.count", "before": 2, "after": 3},
        {"path": "llmcluster:serving.replicas", "before": 2, "after": 3}]


def test_model_changed(reports):
    r = reports["model-changed"]
    assert r["summary"] == _summary(capacity=11, plan=2)
    # R1 on H200 has NVIDIA's published recipe; V3 has none: the engine's rules apply and say so
    engine = {c["path"]: c for c in r["capacity"] if c["path"].startswith("serving.engine.")}
    assert engine["serving.engine.recipe"] == {"path": "serving.engine.recipe", "before": "r1-h200-fp8-8k1k-c4",
                                               "after": None}
    assert engine["serving.engine.recipe_source"]["after"] is None
    assert engine["serving.engine.departures"]["after"][-1] == \
        "no published configuration for deepseek-v3 on h200 in fp8: rules of llmcluster.plan.engine apply"
    assert [c for c in r["capacity"] if not c["path"].startswith("serving.engine.")] == [
        {"path": "capacity.model", "before": "deepseek-r1", "after": "deepseek-v3"},
        {"path": "serving.engine_key.model", "before": "deepseek-r1", "after": "deepseek-v3"},
        {"path": "serving.gateway.access.policies[name=analysts].models", "before": ["deepseek-r1"],
         "after": ["deepseek-v3"]},
        {"path": "serving.gateway.access.policies[name=apps].models", "before": ["deepseek-r1"],
         "after": ["deepseek-v3"]},
        {"path": "serving.hf_repo", "before": "deepseek-ai/DeepSeek-R1", "after": "deepseek-ai/DeepSeek-V3"},
        {"path": "serving.model", "before": "deepseek-r1", "after": "deepseek-v3"},
        {"path": "serving.model_manifest", "before": "/etc/llmcluster/models/deepseek-r1.json",
         "after": "/etc/llmcluster/models/deepseek-v3.json"},
        {"path": "serving.model_path", "before": "/srv/models/deepseek-ai/DeepSeek-R1",
         "after": "/srv/models/deepseek-ai/DeepSeek-V3"}]
    assert r["resources"] == [] and r["artifacts"] == [] and r["hostvars"] == []


def test_certificate_lifetime_changed(reports):
    r = reports["cert-lifetime"]
    leaves = ["admin", "client-lab-analyst", "client-lab-app", "gateway-api", "gateway-upstream",
              *[f"host-{h}" for h in LAB_HOSTS]]
    assert r["summary"] == _summary(replace=12, plan=36, changed=12, hostvars=7)
    assert _ops(r) == [("replace", f"pki-{n}", ["earlyRenewalHours", "validityPeriodHours"]) for n in leaves]
    assert all(x["replace_reasons"] == ["earlyRenewalHours", "validityPeriodHours"] for x in r["resources"])
    assert next(c for c in r["resources"][0]["changes"] if c["path"] == "validityPeriodHours") == \
        {"path": "validityPeriodHours", "before": 720, "after": 336}
    assert _arts(r) == [(f"pki/certs/{n}.pem", "changed", 1, 1) for n in leaves]
    admin = r["artifacts"][0]["diff"].splitlines()
    assert [x for x in admin if x[:1] in "+-" and x[:3] not in ("+++", "---")] == \
        ["-lifetime: 30 days", "+lifetime: 14 days"]
    assert {"path": "pki.leaves[name=admin].validity_hours", "before": 720, "after": 336} in r["plan"]


def test_vlan_mtu_changed(reports):
    r = reports["vlan-mtu"]
    assert r["summary"] == _summary(update=1, addresses=1, plan=2, changed=1, hostvars=7)
    assert r["addresses"] == [{"path": "ip.vlans.mgmt.mtu", "before": 1500, "after": 9000}]
    assert r["plan"] == [{"path": "switches.switches.leaf-01.svis[role=mgmt].mtu", "before": 1500, "after": 9000},
                         {"path": "switches.vlans[role=mgmt].mtu", "before": 1500, "after": 9000}]
    sw = r["artifacts"][0]
    assert (sw["path"], sw["added_lines"], sw["removed_lines"]) == ("switches/leaf-01.nvue.yaml", 1, 1)
    assert [x[0] + x[1:].strip() for x in sw["diff"].splitlines() if x[:1] in "+-" and x[:3] not in ("+++", "---")] == \
        ["-mtu: 1500", "+mtu: 9000"]
    assert [(h["host"], h["changes"]) for h in r["hostvars"]] == [
        (h, [{"path": "llmcluster_interfaces.mgmt.mtu", "before": 1500, "after": 9000}]) for h in LAB_HOSTS]


def test_aws_instance_type_changed(reports):
    r = reports["aws-instance-type"]
    assert r["stack"] == "dev-aws"
    assert r["summary"] == _summary(update=2, plan=1, hostvars=1)
    assert [(x["op"], x["type"], x["urn"].rsplit("::", 1)[-1], x["changes"]) for x in r["resources"]] == [
        ("update", "llmcluster:aws:NodePool", "compute-gateway",
         [{"path": "instanceType", "before": "m7i.large", "after": "m7i.xlarge"}]),
        ("update", "aws:ec2/launchTemplate:LaunchTemplate", "compute-gateway-gw-01",
         [{"path": "instanceType", "before": "m7i.large", "after": "m7i.xlarge"}])]
    assert r["plan"] == [{"path": "aws.pools.gateway.instance_type", "before": "m7i.large", "after": "m7i.xlarge"}]
    assert r["hostvars"] == [{"host": "gw-01", "status": "changed", "changes": [
        {"path": "llmcluster_aws_instance_type", "before": "m7i.large", "after": "m7i.xlarge"}]}]


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_markdown_golden(reports, name):
    text = markdown(reports[name])
    golden = GOLDEN / "diff" / f"{name}.md"
    if os.environ.get("LLMCLUSTER_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text + "\n", encoding="utf-8")
    assert text + "\n" == golden.read_text(encoding="utf-8"), f"{golden} differs (LLMCLUSTER_UPDATE_GOLDEN=1)"


def test_no_change_pair(reports, tmp_path_factory):
    from llmcluster.diff.core import compare
    from tests.helpers.diff_pairs import base_side

    tmp = tmp_path_factory.mktemp("same")
    a = base_side("lab", str(tmp))
    r = compare(a, a)
    assert r["summary"]["changed"] is False
    assert "**No changes.**" in markdown(r)
