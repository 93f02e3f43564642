"""The AWS plan (:mod:`llmcluster.plan.aws`) and the instance facts, directly: subnets per VLAN and
zone agree with the IP plan, the interface layouts per instance type, capacity modes and their
placement, security-group rules traceable to flows, NAT only for public destinations."""

from __future__ import annotations

import netaddr
import pytest

from llmcluster.plan import aws_zones
from llmcluster.plan.aws import INTERFACE_ENDPOINTS, PLATFORM_FLOWS, build_aws_plan
from llmcluster.plan.aws_instances import FACTS_VERSION, INSTANCE_TYPES, interface_layout
from llmcluster.plan.build import build_plan
from tests.conftest import load_spec


def plan(stack: str, overrides: tuple[str, ...] = ()):
    return build_plan(load_spec(stack, overrides))


def test_baremetal_has_no_aws_plan():
    p = plan("prod-baremetal")
    assert p.aws is None and p.to_dict()["aws"] is None
    assert build_aws_plan(p.spec, p.ip, p.firewall) is None


def test_subnets_split_a_vlan_per_zone_and_hosts_sit_in_their_zones_slice():
    p = plan("prod-aws")
    a = p.aws
    assert a.zones == ("us-east-2b", "us-east-2c") and a.vpc_cidr == p.spec.site.supernet
    by_name = {s.name: s for s in a.subnets}
    # mgmt and inference carry gateways in both zones: two halves; rdma (GPU only): one subnet
    assert [s.name for s in a.subnets_of("rdma")] == ["rdma-us-east-2b"]
    for vlan in ("mgmt", "inference"):
        subs = a.subnets_of(vlan)
        assert [s.az for s in subs] == list(a.zones)
        whole = netaddr.IPNetwork(p.ip.vlans[vlan].cidr)
        assert netaddr.IPSet([s.cidr for s in subs]) == netaddr.IPSet([whole])
    for inst in a.instances:
        for subnet, ip in inst.interfaces:
            s = by_name[subnet]
            assert s.az == inst.az
            if ip is not None:
                assert netaddr.IPAddress(ip) in netaddr.IPNetwork(s.cidr), (inst.host, subnet, ip)
                # AWS reserves the first four addresses and the last of every subnet
                net = netaddr.IPNetwork(s.cidr)
                assert net.first + 4 <= int(netaddr.IPAddress(ip)) < net.last
    assert {i.host: i.az for i in a.instances} == {
        "gpu-01": "us-east-2b", "gpu-02": "us-east-2b", "gw-01": "us-east-2b", "gw-02": "us-east-2c"}


def test_one_zone_stacks_keep_the_vlan_whole_and_the_ip_plan_unchanged():
    p = plan("dev-aws")
    assert [s.cidr for s in p.aws.subnets] == [p.ip.vlans["mgmt"].cidr, p.ip.vlans["inference"].cidr]
    assert aws_zones.vlan_zones(p.spec, "mgmt") == (0,)


@pytest.mark.parametrize("itype,cards,efa", [("p5.48xlarge", 32, 32), ("p5e.48xlarge", 32, 32),
                                             ("p5en.48xlarge", 16, 16), ("p4d.24xlarge", 4, 4)])
def test_efa_layout_follows_the_aws_efa_guide(itype, cards, efa):
    it = INSTANCE_TYPES[itype]
    assert (it.network_cards, it.efa_interfaces) == (cards, efa)
    layout = interface_layout(it, ("mgmt", "inference"), efa=True, efa_vlan="rdma")
    assert layout[0].primary and layout[0].kind == "interface" and layout[0].vlan == "mgmt"
    efa_ifaces = [i for i in layout if i.kind == "efa-only"]
    assert len(efa_ifaces) == efa
    assert (efa_ifaces[0].card, efa_ifaces[0].device) == (0, 1)
    assert [(i.card, i.device) for i in efa_ifaces[1:]] == [(c, 0) for c in range(1, cards)]
    assert all(i.vlan == "rdma" for i in efa_ifaces)
    assert layout[-1].kind == "interface" and (layout[-1].card, layout[-1].device) == (1, 1)
    # (card, device) pairs are unique: AWS refuses a repeated pair
    assert len({(i.card, i.device) for i in layout}) == len(layout)


def test_no_efa_means_ena_only():
    layout = interface_layout(INSTANCE_TYPES["p5en.48xlarge"], ("mgmt", "inference"), efa=False, efa_vlan="rdma")
    assert [(i.card, i.device, i.kind) for i in layout] == [(0, 0, "interface"), (0, 1, "interface")]
    assert interface_layout(None, ("mgmt",), efa=True, efa_vlan="mgmt")[0].primary


def test_facts_table_is_versioned_and_complete():
    assert FACTS_VERSION
    for it in INSTANCE_TYPES.values():
        assert it.gpu_memory_gb > 0 and it.network_cards >= 1, it.name
        assert it.efa_interfaces <= it.network_cards + (1 if it.efa_on_card0 else 0), it.name
        assert it.nvlink_domain in (0, it.gpus), it.name
    assert plan("prod-aws").aws.to_dict()["facts_version"] == FACTS_VERSION


def test_placement_group_only_on_demand_and_reservations_warn():
    a = plan("prod-aws").aws
    assert a.pools["gpu"].placement_group == "pg-gpu" and a.pools["gateway"].placement_group is None
    assert not a.warnings
    r = plan("prod-aws", ("pools.gpu.aws.capacity=capacity-block",
                          "pools.gpu.aws.capacity_reservation_id=cr-0123456789abcdef0")).aws
    assert r.pools["gpu"].placement_group is None and r.pools["gpu"].capacity == "capacity-block"
    assert len(r.warnings) == 1 and "pools.gpu.aws.capacity" in r.warnings[0]
    off = plan("prod-aws", ("aws.placement_group=false",)).aws
    assert off.pools["gpu"].placement_group is None and not off.warnings


def test_every_rule_names_a_flow_and_references_groups_not_hosts():
    p = plan("prod-aws")
    a = p.aws
    names = {f.name for f in p.spec.flows} | set(PLATFORM_FLOWS)
    for r in a.rules:
        assert r.flows and set(r.flows) <= names, r
        assert r.group in a.security_groups
        if r.peer_kind == "sg":
            assert r.peer in a.security_groups
        elif r.peer_kind == "cidr":
            assert r.peer != "0.0.0.0/0"
    # O(zones): the rule count does not grow with the nodes
    big = plan("prod-aws", ("pools.gpu.count=64", "serving.replicas=64")).aws
    assert len(big.rules) == len(a.rules)
    assert len({(r.group, r.direction, r.protocol, r.from_port, r.to_port, r.peer) for r in a.rules}) == len(a.rules)


def test_endpoints_nat_and_eks():
    a = plan("dev-aws").aws
    assert a.interface_endpoints == INTERFACE_ENDPOINTS and a.nat_vlans == () and a.public_subnet is None
    e = plan("prod-aws", ('aws.eks={"log_retention_days": 400}',)).aws
    assert e.eks is not None and e.eks.log_retention_days == 400 and "eks-auth" in e.interface_endpoints
    assert e.pools["gpu"].eks_node_group and not [i for i in e.instances if i.pool == "gpu"]
    assert e.eks.subnets == ("mgmt-us-east-2b", "mgmt-us-east-2c")
    n = plan("dev-aws", ("aws.public_subnet=10.80.200.0/28", 'zones.updates={"cidrs": ["52.94.0.0/16"]}',
                         'flows=[{"name": "updates", "from": "gateway", "to": "updates", "ports": ["tcp/443"], '
                         '"vlan": "mgmt"}, {"name": "api", "from": "clients", "to": "gateway", "ports": ["tcp/443"], '
                         '"vlan": "inference"}, {"name": "serve", "from": "gateway", "to": "gpu", '
                         '"ports": ["tcp/8000"], "vlan": "inference"}]')).aws
    assert n.nat_vlans == ("mgmt",) and n.public_subnet == "10.80.200.0/28"
