"""IP plan: carving, gateways, reserved ranges, host numbering, exhaustion and overlap errors."""

from __future__ import annotations

import netaddr
import pytest

from llmcluster.errors import PlanError, SpecError
from llmcluster.plan.ipam import build_ip_plan, hostname
from llmcluster.spec import parse_stack_file
from llmcluster.validate import load_stack_file
from tests.conftest import STACKS, load_spec


def test_lab_subnets_are_carved_in_role_order_from_the_supernet():
    ip = build_ip_plan(load_spec("lab"))
    # All lab VLANs are /24: equal size, so canonical role order decides placement.
    assert {r: v.cidr for r, v in ip.vlans.items()} == {
        "mgmt": "10.42.0.0/24",
        "inference": "10.42.1.0/24",
        "storage_public": "10.42.2.0/24",
        "storage_cluster": "10.42.3.0/24",
        "rdma": "10.42.4.0/24",
    }
    mgmt = ip.vlans["mgmt"]
    assert mgmt.gateway == "10.42.0.1"
    assert (mgmt.reserved_first, mgmt.reserved_last) == ("10.42.0.1", "10.42.0.10")
    assert mgmt.first_host == "10.42.0.11" and mgmt.last_host == "10.42.0.254"
    assert mgmt.capacity == 254 - 10


def test_lab_hosts_and_addresses():
    ip = build_ip_plan(load_spec("lab"))
    assert [h.name for h in ip.hosts] == ["gpu-01", "gpu-02", "storage-01", "storage-02", "storage-03", "gw-01",
                                         "mon-01"]
    gpu1 = ip.host("gpu-01")
    assert gpu1.addresses == {"mgmt": "10.42.0.11", "inference": "10.42.1.11",
                              "storage_public": "10.42.2.11", "rdma": "10.42.4.11"}
    # storage-01 is the first host on storage_cluster, the third on mgmt.
    st = ip.host("storage-01")
    assert st.addresses["mgmt"] == "10.42.0.13" and st.addresses["storage_cluster"] == "10.42.3.11"
    assert ip.host("storage-03").addresses["storage_cluster"] == "10.42.3.13"
    assert ip.host("gw-01").fqdn == "gw-01.lab.llmcluster.internal"
    assert ip.host("gw-01").addresses["mgmt"] == "10.42.0.16"
    assert ip.vips == {"api": "10.42.1.2"}


def test_every_address_is_unique_inside_its_vlan_and_in_its_subnet():
    for stack in ("lab", "prod-baremetal", "prod-aws"):
        ip = build_ip_plan(load_spec(stack))
        for role, vlan in ip.vlans.items():
            addrs = [h.addresses[role] for h in ip.hosts if role in h.addresses]
            addrs += [h.bmc for h in ip.hosts if h.bmc and role == "oob"]
            assert len(addrs) == len(set(addrs)), f"{stack}/{role}: duplicate address"
            net = netaddr.IPNetwork(vlan.cidr)
            for a in addrs:
                assert netaddr.IPAddress(a) in net
                assert netaddr.IPAddress(a) > netaddr.IPAddress(vlan.reserved_last), f"{a} in reserved range"


def test_vlan_subnets_do_not_overlap():
    for stack in ("lab", "prod-baremetal", "dev-aws", "prod-aws"):
        nets = [netaddr.IPNetwork(v.cidr) for v in build_ip_plan(load_spec(stack)).vlans.values()]
        assert len(netaddr.cidr_merge(nets)) <= len(nets)
        total = sum(n.size for n in nets)
        assert netaddr.IPSet(nets).size == total, f"{stack}: overlapping VLAN subnets"


def test_bmc_addresses_follow_host_interfaces_on_oob():
    ip = build_ip_plan(load_spec("prod-baremetal"))
    # prod: 4 gpu + 3 storage + 2 gateway hosts, all with BMCs, none with an OS interface on oob.
    bmcs = [h.bmc for h in ip.hosts]
    assert bmcs[0] == "10.64.8.11" and bmcs[-1] == "10.64.8.19"


def test_hostname_width_grows_with_count():
    assert hostname("gpu", 7, 8) == "gpu-07"
    assert hostname("gpu", 7, 1024) == "gpu-0007"


def test_larger_vlans_are_placed_first_and_explicit_subnets_are_respected():
    # The field layer only: the lab's external zones sit in the reserved ranges of its VLANs, and this
    # layout moves hosts under them (zones.external-outside-cluster refuses that).
    spec = parse_stack_file(STACKS / "Pulumi.lab.yaml", overrides=[
        "fabric.vlans.rdma.prefix=22", "fabric.vlans.mgmt.subnet=10.42.200.0/24", "fabric.vlans.mgmt.prefix=24"])
    ip = build_ip_plan(spec)
    assert ip.vlans["mgmt"].cidr == "10.42.200.0/24"
    assert ip.vlans["rdma"].cidr == "10.42.0.0/22"  # the /22 is carved before the /24s
    assert ip.vlans["inference"].cidr == "10.42.4.0/24"


def test_exhaustion_names_the_vlan_and_suggests_a_prefix():
    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.lab.yaml", ["pools.gpu.count=300"])
    paths = {p.path: p.message for p in ei.value.problems}
    assert "fabric.vlans.mgmt.prefix" in paths, paths
    assert "use /23 or larger" in paths["fabric.vlans.mgmt.prefix"]


def test_overlapping_explicit_subnets_are_rejected():
    spec = parse_stack_file(STACKS / "Pulumi.lab.yaml", overrides=[
        "fabric.vlans.mgmt.subnet=10.42.0.0/23", "fabric.vlans.mgmt.prefix=23",
        "fabric.vlans.rdma.subnet=10.42.1.0/24"])
    with pytest.raises(PlanError) as ei:
        build_ip_plan(spec)
    assert ei.value.problem.path == "fabric.vlans.rdma.subnet"
    assert "overlaps" in ei.value.problem.message


def test_supernet_too_small_for_vlans():
    with pytest.raises(SpecError) as ei:
        load_stack_file(STACKS / "Pulumi.lab.yaml", ["site.supernet=10.42.0.0/23"])
    assert any(p.path.startswith("fabric.vlans.") and "no free" in p.message for p in ei.value.problems)


def test_1024_node_plan_fits_prod_vlans():
    # The IP plan alone (the field layer): 1024 such GPU nodes do not fit the L2 leaf-spine fabric
    # (switches.port-capacity), but the /21 VLANs are sized for them.
    ip = build_ip_plan(parse_stack_file(STACKS / "Pulumi.prod-baremetal.yaml", overrides=["pools.gpu.count=1024"]))
    assert len(ip.hosts) == 1024 + 3 + 2
    assert ip.host("gpu-1024").addresses["mgmt"] == str(netaddr.IPAddress("10.64.0.11") + 1023)
