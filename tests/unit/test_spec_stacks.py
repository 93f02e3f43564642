"""Every shipped stack loads and validates; typed values; frozen specs; ``--set`` overrides."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from llmcluster.errors import SpecError
from llmcluster.spec import SECTIONS, Spec, parse_stack_file
from llmcluster.spec.loader import stack_name_from_path
from llmcluster.validate import load_stack_file

STACKS = Path(__file__).resolve().parents[2] / "stacks"
STACK_FILES = sorted(STACKS.glob("Pulumi.*.yaml"))
LAB = STACKS / "Pulumi.lab.yaml"
PROD_BM = STACKS / "Pulumi.prod-baremetal.yaml"
DEV_AWS = STACKS / "Pulumi.dev-aws.yaml"
PROD_AWS = STACKS / "Pulumi.prod-aws.yaml"


def _paths(exc: SpecError) -> list[str]:
    return [p.path for p in exc.problems]


def test_the_four_stacks_are_there() -> None:
    names = {stack_name_from_path(p) for p in STACK_FILES}
    assert {"lab", "dev-aws", "prod-aws", "prod-baremetal"} <= names


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_stack_loads_and_validates(path: Path) -> None:
    spec = load_stack_file(path)
    assert isinstance(spec, Spec)
    assert spec.stack == stack_name_from_path(path)
    # Every serving pool and gateway pool exists, and every pool sits in exactly one zone.
    assert spec.serving.pool in spec.pools
    members = [p for z in spec.zones.values() for p in z.pools]
    assert sorted(members) == sorted(spec.pools)


@pytest.mark.parametrize("path", STACK_FILES, ids=lambda p: p.name)
def test_stack_field_layer_alone_also_passes(path: Path) -> None:
    assert isinstance(parse_stack_file(path), Spec)


def test_lab_values() -> None:
    spec = load_stack_file(LAB)
    assert spec.stack == "lab"
    assert spec.platform == "baremetal"
    gpu = spec.pools["gpu"]
    assert gpu.role == "gpu"
    assert gpu.count == 2
    assert gpu.gpu is not None and gpu.gpu.model == "h200" and gpu.gpu.count == 8
    assert gpu.gpu.nvswitch is True
    assert gpu.gpu.driver_version == "570.172.08"  # quoted in YAML: stays a string
    assert gpu.vlans == ("mgmt", "inference", "storage_public", "rdma")
    assert [n.name for n in gpu.nics] == ["cx7", "bf3"]
    assert spec.site.supernet == "10.42.0.0/16"
    assert spec.fabric.mtu == 9216
    assert [r for r, _ in spec.fabric.vlans.items()] == [
        "mgmt", "inference", "storage_public", "storage_cluster", "rdma"]
    assert spec.fabric.vlans.oob is None
    assert spec.baremetal is not None and spec.baremetal.os == "debian-12"
    assert spec.aws is None
    assert spec.storage.raid is not None and spec.storage.raid.level == 10
    assert spec.storage.ceph is not None and spec.storage.ceph.failure_domain == "host"
    assert spec.flows[0].from_ == "clients" and spec.flows[0].to == "gateway"
    assert spec.serving.model == "deepseek-r1" and spec.serving.precision == "fp8"
    # Defaults are filled in.
    assert spec.pki.algorithm == "ECDSA" and spec.pki.leaf_validity_days == 30
    assert spec.fabric.qos.classes is None
    assert spec.hostname_prefix("gateway") == "gw"
    assert spec.hostname_prefix("gpu") == "gpu"


def test_prod_baremetal_values() -> None:
    spec = load_stack_file(PROD_BM)
    assert spec.site.supernet == "10.64.0.0/16"
    assert spec.site.dns_servers == ("10.0.0.53", "10.0.1.53")
    assert spec.fabric.vlans.mgmt.prefix == 21 and spec.fabric.vlans.mgmt.prefixlen == 21
    assert spec.fabric.vlans.oob is not None and spec.fabric.vlans.oob.id == 111
    assert spec.pools["gpu"].gpu is not None and spec.pools["gpu"].gpu.model == "h200"
    assert spec.pools["gpu"].count == 4 and spec.pools["gpu"].bmc is True
    assert spec.pools["storage"].nvme is not None and spec.pools["storage"].nvme.count == 12
    assert spec.serving.replicas == 4
    assert spec.serving.gateway is not None and spec.serving.gateway.rate_limit_rps == 50
    assert len(spec.storage.ceph.pools) == 3  # type: ignore[union-attr]


def test_dev_aws_values() -> None:
    spec = load_stack_file(DEV_AWS)
    assert spec.platform == "aws"
    assert spec.aws is not None and spec.aws.region == "us-east-1"
    assert spec.aws.availability_zone == "us-east-1a" and spec.aws.efa is False
    assert spec.pools["gpu"].aws is not None and spec.pools["gpu"].aws.instance_type == "g6e.xlarge"
    assert spec.pools["gateway"].aws is not None and spec.pools["gateway"].aws.instance_type == "m7i.large"
    assert spec.pools["gpu"].gpu is not None and spec.pools["gpu"].gpu.model == "l40s"
    assert spec.baremetal is None


def test_prod_aws_values() -> None:
    spec = load_stack_file(PROD_AWS)
    assert spec.pools["gpu"].aws is not None and spec.pools["gpu"].aws.instance_type == "p5en.48xlarge"
    assert spec.aws is not None and spec.aws.placement_group is True
    assert spec.storage.raid is not None and spec.storage.raid.drives is None


def test_provider_keys_of_other_namespaces_are_ignored() -> None:
    # dev-aws has ``aws:region`` (a provider setting) next to the llmcluster keys.
    assert "aws:region" in DEV_AWS.read_text()
    assert load_stack_file(DEV_AWS).aws is not None


def test_sections_match_the_model() -> None:
    assert "stack" not in SECTIONS
    assert {"platform", "site", "fabric", "zones", "flows", "pools", "storage", "pki", "serving", "access", "nvidia",
            "aws", "baremetal", "lab", "kubernetes", "monitoring"} == set(SECTIONS)


# --------------------------------------------------------------------------- frozen


def test_spec_is_frozen() -> None:
    spec = load_stack_file(LAB)
    with pytest.raises(pydantic.ValidationError):
        spec.platform = "aws"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        spec.pools["gpu"].count = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        spec.fabric.vlans.mgmt.id = 99  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        spec.site.supernet = "10.0.0.0/8"  # type: ignore[misc]
    # Sequences are tuples, so they cannot be changed in place either.
    assert isinstance(spec.flows, tuple) and isinstance(spec.pools["gpu"].vlans, tuple)
    with pytest.raises(TypeError):
        spec.pools["gpu"].vlans[0] = "oob"  # type: ignore[index]


def test_specs_are_hashable_where_frozen_and_equal_when_reloaded() -> None:
    a, b = load_stack_file(LAB), load_stack_file(LAB)
    assert a == b
    assert hash(a.site) == hash(b.site)


# --------------------------------------------------------------------------- --set overrides


def test_override_changes_value() -> None:
    spec = load_stack_file(LAB, ["pools.gpu.count=3"])
    assert spec.pools["gpu"].count == 3
    assert load_stack_file(LAB).pools["gpu"].count == 2  # the file itself is untouched


def test_several_overrides_apply_in_order() -> None:
    spec = load_stack_file(LAB, ["pools.gpu.count=3", "pools.gpu.count=4", "serving.concurrency=4",
                                 "site.organization=Other Org"])
    assert spec.pools["gpu"].count == 4
    assert spec.serving.concurrency == 4
    assert spec.site.organization == "Other Org"


def test_override_flow_values_and_lists() -> None:
    spec = load_stack_file(LAB, ["flows.0.ports=[tcp/443, tcp/8443]", "pools.gateway.labels={tier: edge}"])
    assert spec.flows[0].ports == ("tcp/443", "tcp/8443")
    assert spec.pools["gateway"].labels == {"tier": "edge"}


def test_override_creates_missing_mapping() -> None:
    # dev-aws has no llmcluster:pki or llmcluster:storage section: overrides create them.
    spec = load_stack_file(DEV_AWS, ["pki.leaf_validity_days=30", "storage.model_dir=/data/models"])
    assert spec.pki.leaf_validity_days == 30
    assert spec.storage.model_dir == "/data/models"


def test_override_bad_type_is_reported_at_the_key() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["pools.gpu.count=abc"])
    assert "pools.gpu.count" in _paths(ei.value)
    assert ei.value.source == str(LAB)


def test_override_unknown_key_did_you_mean() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["pools.gpu.cuont=3"])
    (problem,) = [p for p in ei.value.problems if p.path == "pools.gpu.cuont"]
    assert "unknown key" in problem.message
    assert "did you mean 'count'" in problem.message


def test_override_unknown_section() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["nosuch.x=1"])
    assert any(p.path.split(".")[0] == "nosuch" and "unknown section" in p.message for p in ei.value.problems)


def test_override_unknown_section_did_you_mean() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["pool.gpu.count=3"])
    assert any("did you mean 'pools'" in p.message for p in ei.value.problems)


def test_override_runs_whole_spec_rules() -> None:
    # 2 GPU nodes cannot hold 3 replicas of a 1-node DeepSeek-R1 deployment.
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["serving.replicas=3"])
    assert "pools.gpu.count" in _paths(ei.value)
    # ... and an override can also fix what it broke.
    spec = load_stack_file(LAB, ["serving.replicas=3", "pools.gpu.count=3"])
    assert spec.serving.replicas == 3


def test_override_field_rules_apply() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["fabric.vlans.mgmt.id=4095"])
    assert _paths(ei.value) == ["fabric.vlans.mgmt.id"]


@pytest.mark.parametrize("bad", ["pools.gpu.count", "=3", "pools..count=3", "pools.gpu.count 3", " =1"])
def test_malformed_override_text(bad: str) -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, [bad])
    assert ei.value.problems


def test_override_through_a_scalar_is_an_error() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["pools.gpu.count.x=1"])
    assert any(p.path.startswith("pools.gpu.count") for p in ei.value.problems)


def test_override_list_index_out_of_range() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["flows.99.name=x"])
    assert any(p.path.startswith("flows") for p in ei.value.problems)


def test_prod_baremetal_does_not_fit_1024_gpu_nodes_on_its_fabric() -> None:
    # The /21 VLANs are sized for pools past 1,000 nodes (tests/unit/test_ipam.py), but 1024 nodes of
    # 10 NIC ports are 10,253 host ports: 4 leaves rendered 2,564 ports each. An L2 leaf-spine pair of
    # 64-port spines joins at most 31 leaves of 60 host ports, so it is refused, naming the setting.
    with pytest.raises(SpecError) as ei:
        load_stack_file(PROD_BM, ["pools.gpu.count=1024"])
    (p,) = ei.value.problems
    assert p.path == "baremetal.leaf_switches"
    assert "10253 host NIC ports" in p.message and "even 31 leaves" in p.message
    assert ei.value.rules[p] == "switches.port-capacity"


def test_prod_baremetal_grows_with_leaves() -> None:
    with pytest.raises(SpecError) as ei:
        load_stack_file(PROD_BM, ["pools.gpu.count=100"])
    (p,) = ei.value.problems
    assert p.path == "baremetal.leaf_switches" and "set leaf_switches >= 18" in p.message
    spec = load_stack_file(PROD_BM, ["pools.gpu.count=100", "baremetal.leaf_switches=18"])
    assert spec.pools["gpu"].count == 100


def test_lab_does_not_scale_to_1024_gpu_nodes() -> None:
    # Its /24s are exhausted: the problem names the VLAN prefix to enlarge.
    with pytest.raises(SpecError) as ei:
        load_stack_file(LAB, ["pools.gpu.count=1024"])
    assert any(p.path.startswith("fabric.vlans.") and p.path.endswith(".prefix") for p in ei.value.problems)
