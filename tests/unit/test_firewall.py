"""Firewall planner: zone sources, peers, normalisation, the empty-source guard and the matrix."""

from __future__ import annotations

import functools
import json

import pytest

from llmcluster.plan.firewall import (
    FirewallRule,
    build_firewall_plan,
    merge_ranges,
    minimal_cidrs,
    parse_port_spec,
)
from llmcluster.plan.ipam import build_ip_plan
from llmcluster.spec import parse_stack_file
from tests.conftest import STACKS, check_golden



@functools.cache
def spec_of(stack: str, overrides: tuple[str, ...] = ()):
    return parse_stack_file(STACKS / f"Pulumi.{stack}.yaml", list(overrides))


def plan_of(stack: str, overrides: tuple[str, ...] = ()):
    spec = spec_of(stack, overrides)
    return build_firewall_plan(spec, build_ip_plan(spec))


def rules_for(plan, host: str, flow: str) -> list[FirewallRule]:
    return [r for r in plan.host(host).rules if flow in r.flows]


# --------------------------------------------------------------------------- helpers


def test_port_spec_parsing_and_range_merging():
    assert parse_port_spec("tcp/443") == ("tcp", 443, 443)
    assert parse_port_spec("tcp/6800-7300") == ("tcp", 6800, 7300)
    assert parse_port_spec("icmp") == ("icmp", None, None)
    # Ceph's ports stay apart (6789 and 6800 are not adjacent) ...
    assert merge_ranges([(6800, 7300), (3300, 3300), (6789, 6789)]) == ((3300, 3300), (6789, 6789), (6800, 7300))
    # ... overlapping and touching ranges merge.
    assert merge_ranges([(150, 300), (100, 200)]) == ((100, 300),)
    assert merge_ranges([(22, 22), (23, 23), (25, 25)]) == ((22, 23), (25, 25))


def test_minimal_cidrs_collapses_addresses():
    assert minimal_cidrs(("10.0.0.2", "10.0.0.3", "10.0.0.1")) == ("10.0.0.1/32", "10.0.0.2/31")
    assert minimal_cidrs(("10.1.0.0/24", "10.1.1.0/24")) == ("10.1.0.0/23",)


def test_a_rule_without_sources_cannot_exist():
    with pytest.raises(ValueError, match="never mean 'any'"):
        FirewallRule(vlan="mgmt", proto="tcp", sources=(), destinations=("10.0.0.1",), ports=((22, 22),),
                     flows=("x",), source_zones=("z",))


# --------------------------------------------------------------------------- lab rules


def test_external_zone_sources_are_its_cidrs():
    plan = plan_of("lab")
    (rule,) = rules_for(plan, "gw-01", "api")
    assert rule.sources == ("10.42.1.0/29",)  # zone clients
    # gw-01's inference address and the API VIP (.2 of the inference VLAN) it may hold.
    assert rule.destinations == ("10.42.1.13", "10.42.1.2")
    assert (rule.vlan, rule.proto, rule.port_strings) == ("inference", "tcp", ("443",))


def test_host_zone_sources_are_its_hosts_on_the_flow_vlan():
    plan = plan_of("lab")
    (rule,) = rules_for(plan, "gpu-02", "serve")
    assert rule.sources == ("10.42.1.13/32",)  # gw-01 on the inference VLAN, not its mgmt address
    assert rule.destinations == ("10.42.1.12",)
    assert rule.port_strings == ("8000",)


def test_zone_to_itself_allows_peers():
    plan = plan_of("lab")
    rules = rules_for(plan, "gpu-01", "nccl")
    by_proto = {r.proto: r for r in rules}
    assert set(by_proto) == {"tcp", "udp"}
    for r in rules:
        assert r.vlan == "rdma"
        assert r.sources == ("10.42.4.11/32", "10.42.4.12/32")  # itself and gpu-02
        assert r.destinations == ("10.42.4.11",)
    assert by_proto["udp"].port_strings == ("4791",)
    assert by_proto["tcp"].port_strings == ("29500-29510",)
    assert plan.host("gpu-01").allows("10.42.4.12", "10.42.4.11", "udp", 4791) == ("nccl",)


def test_rules_of_one_source_set_merge_and_keep_flow_names():
    plan = plan_of("lab")
    (rule,) = rules_for(plan, "gpu-01", "ssh-gpu")
    assert rule.flows == ("metrics-gpu", "ssh-gpu")
    assert rule.port_strings == ("22", "9100", "9400")
    assert dict(rule.flow_ports) == {"metrics-gpu": ((9100, 9100), (9400, 9400)), "ssh-gpu": ((22, 22),)}
    assert rule.flows_for(22, 22) == ("ssh-gpu",)


def test_ceph_ports_stay_distinct():
    plan = plan_of("lab")
    (rule,) = rules_for(plan, "storage-01", "ceph-clients")
    assert rule.port_strings == ("3300", "6789", "6800-7300")
    assert rule.sources == ("10.42.2.11/32", "10.42.2.12/32")  # gpu-01, gpu-02 on storage_public
    assert rule.destinations == ("10.42.2.13",)
    # prod-baremetal: gpu-01..04 are .11-.14 on storage_public -> .11/32, .12/31, .14/32.
    (prod,) = rules_for(plan_of("prod-baremetal"), "storage-02", "ceph-clients")
    assert prod.sources == ("10.64.24.11/32", "10.64.24.12/31", "10.64.24.14/32")


def test_overlapping_ranges_of_two_flows_merge():
    flows = (
        "flows=[{name: a, from: gpu, to: gpu, ports: ['tcp/100-200'], vlan: rdma},"
        " {name: b, from: gpu, to: gpu, ports: ['tcp/150-300', 'tcp/301', 'udp/150'], vlan: rdma}]"
    )
    plan = plan_of("lab", (flows,))
    rules = plan.host("gpu-01").rules
    assert [(r.proto, r.port_strings, r.flows) for r in rules] == [
        ("tcp", ("100-301",), ("a", "b")),
        ("udp", ("150",), ("b",)),
    ]


def test_every_host_gets_only_its_zone_rules():
    plan = plan_of("lab")
    assert {h.host: sorted({f for r in h.rules for f in r.flows}) for h in plan.hosts} == {
        "gpu-01": ["metrics-gpu", "metrics-mon-gpu", "nccl", "serve", "ssh-gpu"],
        "gpu-02": ["metrics-gpu", "metrics-mon-gpu", "nccl", "serve", "ssh-gpu"],
        **{f"storage-0{i}": ["ceph-clients", "ceph-peers", "ceph-replication", "metrics-mon-storage", "ssh-storage"]
           for i in (1, 2, 3)},
        "gw-01": ["api", "metrics-mon-gateway", "ssh-gateway"],
        "mon-01": ["audit-store", "ssh-monitor"],
    }


def test_default_policies():
    plan = plan_of("prod-baremetal")
    assert plan.policy == {"input": "drop", "forward": "drop", "output": "accept"}
    assert plan.log_prefix == "llmcluster-drop "
    assert plan.log_rate == "5/second"


# --------------------------------------------------------------------------- empty sources


def test_source_zone_without_hosts_yields_no_rule():
    # The gateway pool is emptied: the serve flow's source zone has no hosts. The GPU hosts
    # must get no serve rule at all (an empty source set must never become "any").
    plan = plan_of("lab", ("pools.gateway.count=0",))
    for host in ("gpu-01", "gpu-02"):
        assert rules_for(plan, host, "serve") == []
        assert plan.host(host).allows("10.42.1.99", "10.42.1.11", "tcp", 8000) == ()
    for h in plan.hosts:
        for r in h.rules:
            assert r.sources and "0.0.0.0/0" not in r.sources
    entry = {(e.source_zone, e.destination_zone, e.service): e for e in plan.matrix()}
    assert entry[("gateway", "gpu", "tcp/8000")].allowed is False
    assert entry[("clients", "gpu", "tcp/8000")].allowed is False


def test_no_rule_in_any_stack_has_an_empty_or_any_source():
    for stack in ("lab", "prod-baremetal", "dev-aws", "prod-aws"):
        plan = plan_of(stack)
        for h in plan.hosts:
            for r in h.rules:
                assert r.sources, (stack, h.host, r)
                assert r.destinations, (stack, h.host, r)
                assert "0.0.0.0/0" not in r.sources, (stack, h.host, r)


# --------------------------------------------------------------------------- matrix


def _matrix(stack: str):
    return {(e.source_zone, e.destination_zone, e.service): e for e in plan_of(stack).matrix()}


def test_lab_matrix():
    m = _matrix("lab")
    assert m[("admin", "gpu", "tcp/22")].allowed
    assert m[("admin", "gpu", "tcp/22")].vlans == ("mgmt",)
    assert m[("admin", "gpu", "tcp/22")].flows == ("ssh-gpu",)
    assert not m[("clients", "gpu", "tcp/8000")].allowed
    assert not m[("clients", "gpu", "tcp/8000")].partial
    assert m[("gateway", "gpu", "tcp/8000")].allowed
    assert m[("gateway", "gpu", "tcp/8000")].vlans == ("inference",)
    assert m[("clients", "gateway", "tcp/443")].allowed
    assert m[("gpu", "gpu", "udp/4791")].allowed
    assert m[("gpu", "storage", "tcp/6800-7300")].allowed
    assert not m[("storage", "gpu", "tcp/6800-7300")].allowed
    for (src, dst, _svc), e in m.items():
        if src == "storage" and dst == "gpu":
            assert not e.allowed and not e.partial, e
    # Ceph among its own hosts: monitors and OSDs on storage_public, replication on storage_cluster.
    assert m[("storage", "storage", "tcp/6800-7300")].vlans == ("storage_public", "storage_cluster")
    assert m[("storage", "storage", "tcp/3300")].vlans == ("storage_public",)
    # Exactly the declared flows are allowed: 26 (zone pair, service) entries.
    allowed = sorted((s, d, v) for (s, d, v), e in m.items() if e.allowed)
    assert allowed == [
        ("admin", "gateway", "tcp/22"),
        ("admin", "gpu", "tcp/22"), ("admin", "gpu", "tcp/9100"), ("admin", "gpu", "tcp/9400"),
        ("admin", "monitor", "tcp/22"), ("admin", "monitor", "tcp/9090"), ("admin", "monitor", "tcp/9093"),
        ("admin", "storage", "tcp/22"),
        ("clients", "gateway", "tcp/443"),
        ("gateway", "gpu", "tcp/8000"),
        ("gateway", "monitor", "tcp/19532"),
        ("gpu", "gpu", "tcp/29500-29510"), ("gpu", "gpu", "udp/4791"),
        ("gpu", "storage", "tcp/3300"), ("gpu", "storage", "tcp/6789"), ("gpu", "storage", "tcp/6800-7300"),
        ("monitor", "gateway", "tcp/8405"), ("monitor", "gateway", "tcp/9100"),
        ("monitor", "gpu", "tcp/9100"), ("monitor", "gpu", "tcp/9400"), ("monitor", "gpu", "tcp/9401"),
        ("monitor", "storage", "tcp/9100"), ("monitor", "storage", "tcp/9283"),
        ("storage", "storage", "tcp/3300"), ("storage", "storage", "tcp/6789"), ("storage", "storage", "tcp/6800-7300"),
    ]
    # 7 source zones (logs: the egress-only audit collector; monitor) x 4 host zones (monitor) x 17 declared
    # services (tcp/19093: the alert-webhook egress flow, which admits nothing into a host zone).
    assert len(m) == 7 * 4 * 17
    # (tcp/19532 into the monitor zone is the audit-store flow, gateway -> monitor)
    assert not any(e.allowed or e.partial for (s, d, v), e in m.items()
                   if s == "logs" or (v == "tcp/19532" and d != "monitor"))


def test_matrix_reports_overlapping_zones_as_partial():
    # prod-baremetal: the admin network 10.0.10.0/24 lies inside clients 10.0.0.0/12, so some
    # client addresses reach ssh: not "allowed" (not the whole zone), but "partial".
    m = _matrix("prod-baremetal")
    e = m[("clients", "gpu", "tcp/22")]
    assert (e.allowed, e.partial, e.flows) == (False, True, ("ssh-gpu",))
    assert m[("storage", "storage", "tcp/6800-7300")].vlans == ("storage_public", "storage_cluster")


def test_matrix_agrees_with_packet_evaluation():
    # The matrix and per-packet evaluation derive from the same rules.
    plan = plan_of("lab")
    gw = "10.42.1.13"
    assert plan.allows(gw, "10.42.1.11", "tcp", 8000) == ("serve",)
    assert plan.allows(gw, "10.42.1.11", "tcp", 8001) == ()
    assert plan.allows("10.42.0.2", "10.42.0.11", "tcp", 22) == ("ssh-gpu",)
    assert plan.allows("10.42.0.9", "10.42.0.11", "tcp", 22) == ()  # outside admin 10.42.0.0/29
    assert plan.allows("10.42.1.3", "10.42.1.2", "tcp", 443) == ("api",)  # the API VIP


def test_to_dict_is_json_and_stable():
    a = plan_of("lab").to_dict()
    b = plan_of("lab").to_dict()
    text = json.dumps(a, indent=2, sort_keys=True) + "\n"
    assert text == json.dumps(b, indent=2, sort_keys=True) + "\n"
    assert set(a) == {"stack", "policy", "zones", "services", "hosts", "egress"}
    check_golden("firewall-lab.json", text)
