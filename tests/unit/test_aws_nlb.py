"""The internal NLB's planned addresses and the gateways' host firewall (AWS).

The NLB health-checks its IP targets from its own private addresses in its subnets. The IP plan
reserves one per entry subnet (``IpPlan.nlb``: the last reserved address of the zone's inference
slice), the AWS plan maps the NLB onto them (``EntryPlan.subnet_mappings``) and the firewall plan
admits the gateway port on the gateways from exactly them (platform flow ``nlb-health``). Every
planned instance address of the AWS stacks avoids the addresses AWS reserves; rule
``aws.reserved-addresses`` refuses the ``reserved`` counts that would break that.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import shutil
import subprocess

import netaddr
import pytest

from llmcluster.errors import PlanError, SpecError
from llmcluster.plan.aws_zones import aws_reserved
from llmcluster.plan.build import build_plan
from llmcluster.plan.firewall import NLB_HEALTH, build_firewall_plan
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.plan.qos import build_qos_plan
from llmcluster.render.nftables import render_host_nftables
from llmcluster.spec import parse_stack_file
from llmcluster.validate.aws import reserved_addresses
from tests.conftest import STACKS, load_spec

AWS_STACKS = ("dev-aws", "prod-aws")
EKS_ON = ('aws.eks={"admin_principals": ["arn:aws:iam::123456789012:role/platform-admin"]}',)
#: AWS variants whose planned addresses must avoid AWS's reserved ones: the shipped stacks, EKS (mgmt in
#: both zones), more gateways than zones, the smallest reserved counts the rule accepts.
VARIANTS = [
    ("dev-aws", ()),
    ("prod-aws", ()),
    ("prod-aws", EKS_ON),
    ("prod-aws", ("pools.gateway.count=5",)),
    ("prod-aws", ("fabric.vlans.mgmt.reserved=3", "fabric.vlans.inference.reserved=4",
                  "fabric.vlans.rdma.reserved=3")),
    ("dev-aws", ("fabric.vlans.mgmt.reserved=3", "fabric.vlans.inference.reserved=4")),
]
NFT = shutil.which("nft")


@functools.cache
def plan(stack: str, overrides: tuple[str, ...] = ()):
    return build_plan(load_spec(stack, overrides))


# --------------------------------------------------------------------------- the reserved addresses


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_every_planned_instance_address_avoids_the_aws_reserved_addresses_of_its_subnet(stack, overrides):
    p = plan(stack, overrides)
    checked = 0
    for inst in p.aws.instances:
        for subnet, address in inst.interfaces:
            if address is None:  # EFA-only interfaces carry no IP
                continue
            net = netaddr.IPNetwork(p.aws.subnet(subnet).cidr)
            assert netaddr.IPAddress(address) in net, (inst.host, subnet, address)
            assert netaddr.IPAddress(address) not in aws_reserved(net), (
                f"{inst.host}: {address} is reserved by AWS in {subnet} {net} (first four and last)")
            checked += 1
    assert checked >= 2 * len(p.aws.instances)  # mgmt + inference at least, on every instance


def test_aws_reserved_is_the_first_four_and_the_last():
    got = aws_reserved(netaddr.IPNetwork("10.96.4.0/23"))
    assert [str(a) for a in got] == ["10.96.4.0", "10.96.4.1", "10.96.4.2", "10.96.4.3", "10.96.5.255"]


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS)
def test_one_nlb_address_per_entry_subnet_avoiding_aws_reserved_and_every_host(stack, overrides):
    p = plan(stack, overrides)
    entry = p.aws.entry
    gw_azs = {i.az for i in p.aws.instances if i.pool == p.spec.serving.gateway.pool}
    assert entry.subnets == tuple(f"inference-{az}" for az in p.aws.zones if az in gw_azs)
    assert len(entry.addresses) == len(entry.subnets) == len(set(entry.addresses))
    assert dict(zip([s.removeprefix("inference-") for s in entry.subnets], entry.addresses, strict=True)) == p.ip.nlb
    taken = {a for h in p.ip.hosts for a in h.addresses.values()} | set(p.ip.vips.values())
    taken |= {v.gateway for v in p.ip.vlans.values()}
    for subnet, address in entry.subnet_mappings:
        net = netaddr.IPNetwork(p.aws.subnet(subnet).cidr)
        assert p.aws.subnet(subnet).vlan == "inference"
        assert netaddr.IPAddress(address) in net, (subnet, address, net)
        assert netaddr.IPAddress(address) not in aws_reserved(net), (subnet, address)
        assert address not in taken, f"{address} in {subnet} is already planned for a host, a VIP or a gateway"


def test_the_nlb_address_is_the_last_reserved_one_and_does_not_move_with_the_hosts():
    p = plan("prod-aws")
    assert p.ip.nlb == {"us-east-2b": "10.96.4.10", "us-east-2c": "10.96.6.10"}
    assert p.to_dict()["ip"]["nlb"] == p.ip.nlb
    assert p.to_dict()["aws"]["entry"]["subnet_mappings"] == [
        {"subnet": "inference-us-east-2b", "private_ipv4_address": "10.96.4.10"},
        {"subnet": "inference-us-east-2c", "private_ipv4_address": "10.96.6.10"}]
    # in every zone's inference subnet the hosts are numbered right after it
    for h in p.ip.hosts:
        a = netaddr.IPAddress(h.addresses["inference"])
        sub = next(s for s in p.aws.subnets_of("inference") if a in netaddr.IPNetwork(s.cidr))
        assert a > netaddr.IPAddress(p.ip.nlb[sub.az]), (h.name, str(a), sub.name)
    assert plan("prod-aws", ("pools.gateway.count=6", "pools.gpu.count=4", "serving.replicas=4")).ip.nlb == p.ip.nlb
    assert plan("prod-aws", ("fabric.vlans.inference.reserved=4",)).ip.nlb == {
        "us-east-2b": "10.96.4.4", "us-east-2c": "10.96.6.4"}


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_bare_metal_and_lab_plans_have_no_nlb_and_no_platform_flow(stack):
    p = plan(stack)
    assert p.ip.nlb == {} and "nlb" not in p.ip.to_dict()
    assert p.firewall.platform == () and "platform_flows" not in p.firewall.to_dict()
    assert not any(NLB_HEALTH in r.flows for h in p.firewall.hosts for r in h.rules)


def test_a_gateway_less_zone_gets_no_nlb_address():
    # one gateway, two zones: the NLB sits only in the gateway's zone
    p = plan("prod-aws", ("pools.gateway.count=1",))
    assert p.ip.nlb == {"us-east-2b": "10.96.4.10"} and p.aws.entry.subnets == ("inference-us-east-2b",)


# --------------------------------------------------------------------------- the rule and the planner's guard


@pytest.mark.parametrize(("overrides", "path", "text"), [
    (("fabric.vlans.inference.reserved=3",), "fabric.vlans.inference.reserved", "internal NLB"),
    (("fabric.vlans.mgmt.reserved=2",), "fabric.vlans.mgmt.reserved", "use 3 or more"),
    (("fabric.vlans.rdma.reserved=2",), "fabric.vlans.rdma.reserved", "use 3 or more"),
])
def test_rule_refuses_reserved_counts_that_would_hit_aws_reserved_addresses(overrides, path, text):
    with pytest.raises(SpecError) as info:
        load_spec("prod-aws", overrides)
    hits = [p for p in info.value.problems if p.path == path]
    assert hits and text in hits[0].message, info.value.problems
    assert info.value.rules.get(hits[0]) == "aws.reserved-addresses"


def test_rule_leaves_bare_metal_alone():
    for stack in ("lab", "prod-baremetal"):
        spec = parse_stack_file(STACKS / f"Pulumi.{stack}.yaml", ["fabric.vlans.mgmt.reserved=2"])
        assert list(reserved_addresses(spec)) == [], stack
    # the same check on an AWS spec finds it (the rule is not vacuous)
    spec = parse_stack_file(STACKS / "Pulumi.dev-aws.yaml", ["fabric.vlans.mgmt.reserved=2"])
    assert [p.path for p in reserved_addresses(spec)] == ["fabric.vlans.mgmt.reserved"]


def test_ip_plan_refuses_an_nlb_address_aws_reserves_even_without_the_rule():
    spec = parse_stack_file(STACKS / "Pulumi.prod-aws.yaml", ["fabric.vlans.inference.reserved=3"])
    with pytest.raises(PlanError) as info:
        build_ip_plan(spec)
    assert info.value.problem.path == "fabric.vlans.inference.reserved"


# --------------------------------------------------------------------------- the gateways' host firewall


def _without_nlb(stack: str):
    spec = load_spec(stack)
    ip = build_ip_plan(spec)
    assert ip.nlb
    return spec, ip, build_firewall_plan(spec, dataclasses.replace(ip, nlb={})), build_qos_plan(spec)


@pytest.mark.parametrize("stack", AWS_STACKS)
def test_gateways_admit_the_gateway_port_from_the_nlb_addresses_and_nothing_else_new(stack):
    p = plan(stack)
    spec, ip, fw_without, qos = _without_nlb(stack)
    gw = spec.serving.gateway
    nlb = sorted(p.ip.nlb.values(), key=lambda a: int(netaddr.IPAddress(a)))
    gateways = {h.name for h in ip.hosts_in_pool(gw.pool)}
    for h in ip.hosts:
        with_text = render_host_nftables(h.name, p.firewall, p.qos)
        without_text = render_host_nftables(h.name, fw_without, qos)
        diff = [d for d in difflib.ndiff(without_text.splitlines(), with_text.splitlines()) if d[:2] in ("+ ", "- ")]
        if h.name not in gateways:
            assert diff == [], f"{h.name}: only the gateways change: {diff}"
            continue
        want = (f"+ \t\tip saddr {{ {', '.join(nlb)} }} ip daddr {{ {h.addresses['inference']} }} "
                f"tcp dport {{ {gw.port} }} accept comment \"flow {NLB_HEALTH}\"")
        assert diff == [want], f"{h.name}: exactly one new rule, the NLB's health checks: {diff}"
        # the plan's own evaluation agrees: the NLB addresses on the gateway port, nothing else
        fw_host = p.firewall.host(h.name)
        target = h.addresses["inference"]
        for a in nlb:
            assert fw_host.allows(a, target, "tcp", gw.port) == (NLB_HEALTH,)
            assert fw_host.allows(a, target, "tcp", 22) == ()
            assert fw_host.allows(a, h.addresses["mgmt"], "tcp", gw.port) == ()
        subnet = netaddr.IPNetwork(ip.vlans["inference"].cidr)
        for other in (subnet.first + 4, subnet.first + 9, subnet.first + 11, subnet.last - 1):
            a = str(netaddr.IPAddress(other))
            if a not in nlb:  # a neighbour of the NLB address in the same subnet is not admitted
                assert NLB_HEALTH not in fw_host.allows(a, target, "tcp", gw.port), a
        new = [r for r in fw_host.rules if NLB_HEALTH in r.flows]
        assert len(new) == 1 and new[0].flows == (NLB_HEALTH,) and new[0].source_zones == ()
        assert new[0].sources == tuple(f"{a}/32" for a in nlb) and new[0].destinations == (target,)
        assert new[0].ports == ((gw.port, gw.port),) and new[0].vlan == "inference"


def test_the_platform_flow_is_in_the_firewall_plan_document():
    p = plan("prod-aws")
    doc = p.firewall.to_dict()["platform_flows"]
    assert doc == {NLB_HEALTH: {
        "description": p.firewall.platform[0].description, "vlan": "inference", "proto": "tcp",
        "sources": ["10.96.4.10/32", "10.96.6.10/32"], "to_pool": "gateway", "ports": ["443"]}}
    rule = p.firewall.host("gw-02").to_dict()["rules"]
    assert any(r["flows"] == [NLB_HEALTH] and r["flow_ports"] == {NLB_HEALTH: ["443"]} for r in rule)
    # the security groups carry the same flow name: one concern, two enforcement points
    assert any(NLB_HEALTH in r.flows and r.group == "gateway" and r.direction == "ingress" for r in p.aws.rules)


@pytest.mark.parametrize(("stack", "host"), [(s, h.name) for s in AWS_STACKS for h in plan(s).ip.hosts])
def test_nft_check_accepts_every_aws_host(stack, host, tmp_path):
    if NFT is None:
        pytest.skip("nft is not installed (apt-get install nftables): cannot run 'nft -c'")
    if os.geteuid() != 0:
        pytest.skip("'nft -c' needs CAP_NET_ADMIN: run the tests as root to check the rulesets")
    p = plan(stack)
    path = tmp_path / f"{host}.nft"
    path.write_text(render_host_nftables(host, p.firewall, p.qos), encoding="utf-8")
    r = subprocess.run([NFT, "-c", "-f", str(path)], check=False, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"nft -c rejected {stack}/{host}:\n{r.stderr}"
