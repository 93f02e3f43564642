"""The switch plan: topology, port map, uplinks, SVIs, QoS read from the QoS plan, ACL from the firewall plan."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from llmcluster.errors import SpecError
from llmcluster.nos import get
from llmcluster.nos.base import AclRule
from llmcluster.plan.build import build_plan
from llmcluster.plan.switches import (
    ACL_NAME,
    ANY,
    PEER_VLAN,
    capacity_problems,
    host_ports_per_leaf,
    nic_ports,
)
from llmcluster.render.switch.check import acl_problems
from llmcluster.validate import load_stack_file
from tests.conftest import STACKS, load_plan, load_spec

PROD = STACKS / "Pulumi.prod-baremetal.yaml"


def with_port_map(tmp_path: Path, port_map: str, base: Path = PROD, extra: tuple[tuple[str, str], ...] = ()) -> Path:
    """A copy of a stack file with ``port_map`` (YAML, indented under baremetal) added."""
    text = base.read_text(encoding="utf-8")
    anchor = "    spine_switches: 2\n" if base == PROD else "    spine_switches: 0\n"
    text = text.replace(anchor, anchor + "    port_map:\n" + port_map)
    for a, b in extra:
        text = text.replace(a, b)
    path = tmp_path / f"Pulumi.{base.name.split('.')[1]}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, overrides: list[str] | None = None) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_stack_file(path, overrides or [])
    return [f"{p.path}: {p.message}" for p in exc.value.problems]


# --------------------------------------------------------------------------- topology


def test_lab_is_a_single_leaf_and_prod_an_mlag_spine_pair():
    lab, prod = load_plan("lab").switches, load_plan("prod-baremetal").switches
    assert [s.name for s in lab.switches] == ["leaf-01"] and lab.design == "single-leaf"
    assert [s.name for s in prod.switches] == ["leaf-01", "leaf-02", "leaf-03", "leaf-04", "spine-01", "spine-02"]
    assert prod.design == "l2-leaf-spine-mlag" and lab.nos == prod.nos == "cumulus"
    assert lab.fabric_mtu == prod.fabric_mtu == 9216
    # the lab leaf routes (it holds the gateways); prod leaves are L2, the spines route
    assert [s.gateway for s in lab.switch("leaf-01").svis] == [v.gateway for v in load_plan("lab").ip.vlans.values()]
    assert all(not s.svis for s in prod.leaves) and all(s.svis for s in prod.spines)


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_every_host_nic_port_lands_on_exactly_one_leaf_port(stack):
    plan = load_plan(stack)
    sp = plan.switches
    want = {(p.host, p.nic, p.nic_index + 1) for p in nic_ports(plan.spec)}
    got = [(p.host, p.nic, p.nic_port) for s in sp.leaves for p in s.host_ports]
    assert sorted(got) == sorted(want) and len(got) == len(set(got))
    for s in sp.switches:
        numbers = [p.number for p in s.ports]
        assert len(numbers) == len(set(numbers)), s.name
    # NIC VLANs decide the port's VLANs; one VLAN: access, several: tagged trunk
    for s in sp.leaves:
        for p in s.host_ports:
            pool = plan.spec.pools[plan.ip.host(p.host).pool]
            roles = next((n.vlans for n in pool.nics if n.name == p.nic), pool.vlans)
            assert p.vlans == tuple(sorted(plan.spec.fabric.vlans.get(r).id for r in roles))
            assert p.mode == ("access" if len(p.vlans) == 1 else "trunk")


def test_multi_port_nics_are_rail_aligned_and_single_ports_spread():
    sp = load_plan("prod-baremetal").switches
    for host in ("gpu-01", "gpu-02", "gpu-03", "gpu-04"):
        for j in range(1, 9):  # cx7 port j of every GPU node on the same leaf
            assert sp.host_port(host, "cx7", j)[0] == f"leaf-0{(j - 1) % 4 + 1}"
    gw = [sp.host_port(f"gw-0{i}", "uplink", j)[0] for i in (1, 2) for j in (1, 2)]
    assert sorted(gw) == ["leaf-01", "leaf-02", "leaf-03", "leaf-04"]  # both gateways never share a leaf
    loads = Counter(s.name for s in sp.leaves for _ in s.host_ports)
    assert max(loads.values()) - min(loads.values()) <= 2, loads


def test_uplinks_bond_to_both_spines_and_cabling_is_symmetric():
    sp = load_plan("prod-baremetal").switches
    leaf = sp.switch("leaf-01")
    (bond,) = leaf.bonds
    assert bond.name == "uplink" and bond.members == (61, 62, 63, 64)
    assert bond.vlans == tuple(sorted({v for p in leaf.host_ports for v in p.vlans}))
    assert [leaf.port(n).peer for n in bond.members] == ["spine-01:1", "spine-01:2", "spine-02:1", "spine-02:2"]
    assert len(sp.cable_plan) == 4 * 2 * 2 + 2  # 2 uplinks per leaf and spine, 2 peer-link cables
    for a, b in sp.cable_plan:  # both ends of every cable name each other
        for x, y in ((a, b), (b, a)):
            sw, port = x.split(":")
            assert sp.switch(sw).port(int(port)).peer == y
    spine = sp.switch("spine-01")
    assert [b.mlag_id for b in spine.bonds if b.kind == "downlink"] == [1, 2, 3, 4]
    peer = next(b for b in spine.bonds if b.kind == "peerlink")
    assert peer.members == (63, 64) and PEER_VLAN in peer.vlans
    assert spine.mlag is not None and spine.mlag.peer == "spine-02"
    assert sp.switch("spine-02").mlag.local_address == spine.mlag.peer_address
    # host ports never take an uplink port, nor a number past the switch's 64 ports: 64 GPU nodes
    # (653 host NIC ports) need 12 leaves of 60 host ports; 4 are refused, naming the minimum
    with pytest.raises(SpecError) as ei:
        load_spec("prod-baremetal", ("pools.gpu.count=64",))
    (p,) = ei.value.problems
    assert p.path == "baremetal.leaf_switches" and "set leaf_switches >= 12" in p.message
    assert ei.value.rules[p] == "switches.port-capacity"
    big = build_plan(load_spec("prod-baremetal", ("pools.gpu.count=64", "baremetal.leaf_switches=12"))).switches
    for s in big.leaves:
        assert not {p.number for p in s.host_ports} & {61, 62, 63, 64}
        assert max(p.number for p in s.host_ports) <= 60


def test_svis_carry_the_ip_plan_gateways_and_the_spines_own_addresses():
    plan = load_plan("prod-baremetal")
    sp = plan.switches
    assert {v.role for v in sp.vlans} == {"mgmt", "inference", "storage_public", "storage_cluster", "rdma"}
    assert "oob" in sp.unswitched and "out-of-band" in sp.unswitched["oob"]
    for k, spine in enumerate(sp.spines, start=1):
        for svi in spine.svis:
            vp = next(v for v in plan.ip.vlans.values() if v.id == svi.vlan)
            assert svi.gateway == vp.gateway and svi.mtu == vp.mtu
            assert svi.address.endswith(f".{2 + k}")  # .3 / .4: inside the reserved range, never a host
            assert svi.address not in {a for h in plan.ip.hosts for a in h.addresses.values()}


# --------------------------------------------------------------------------- QoS from the QoS plan


def test_switch_qos_reads_the_qos_plan():
    plan = load_plan("prod-baremetal")
    q = plan.switches.qos
    dscp = dict(q.dscp_to_priority)
    assert len(dscp) == 64
    assert dscp[26] == 3 and dscp[48] == 6 and dscp[34] == 4 and dscp[10] == 1  # RoCE, CNP (NVIDIA), inference
    assert dscp[46] == plan.qos.default_class.pcp  # unlisted -> default class
    assert q.pfc_priorities == (3,) == plan.qos.pfc_priorities
    roce = q.queue(3)
    assert roce.lossless and roce.ecn and (roce.ecn_min_bytes, roce.ecn_max_bytes) == (150 * 1024, 1500 * 1024)
    assert q.queue(6).strict and not q.queue(6).lossless  # CNP strict priority
    inference, storage = plan.qos.by_traffic("inference"), plan.qos.by_traffic("storage")
    assert inference.pcp > storage.pcp and q.queue(inference.queue).weight >= q.queue(storage.queue).weight
    assert sum(x.weight for x in q.queues) == sum(c.bandwidth_percent for c in plan.qos.classes)
    broadcom = build_plan(load_spec("prod-baremetal", ("fabric.qos.nic_vendor=broadcom",))).switches.qos
    assert dict(broadcom.dscp_to_priority)[48] == 7 and broadcom.queue(7).strict


# --------------------------------------------------------------------------- ACL from the firewall plan


def as_rules(acl) -> list[AclRule]:
    return [AclRule(e.seq, e.action, e.proto, e.src, e.dst, e.sport, e.dport, e.established, e.icmp_type,
                    e.icmp_code) for e in acl.entries]


@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_acl_is_exactly_the_firewall_policy(stack):
    plan = load_plan(stack)
    acl = plan.switches.acl
    assert acl.name == ACL_NAME
    fabric = tuple(v.cidr for v in plan.switches.vlans)
    assert acl_problems(as_rules(acl), plan.firewall, fabric) == []
    flows = [e for e in acl.entries if e.kind == "flow"]
    assert flows and all(not e.src_is_any and not e.dst_is_any for e in flows)
    assert {f for e in flows for f in e.flows} == {
        f for h in plan.firewall.hosts for r in h.rules for f in r.flows} | {f for e in plan.firewall.egress
                                                                           for f in e.flows}
    last = acl.entries[-1]
    assert (last.action, last.proto, last.src, last.dst) == ("deny", "ip", ANY, ANY)
    assert [e.seq for e in acl.entries] == sorted({e.seq for e in acl.entries})
    # applied inbound on every leaf host port and uplink, nowhere on the spines
    for s in plan.switches.leaves:
        assert set(s.acl_ports) == {p.number for p in s.host_ports}
        assert set(s.acl_bonds) == {b.id for b in s.bonds}
    assert all(s.acl is None for s in plan.switches.spines)


def test_egress_flows_are_permitted_out_and_back_and_no_wider():
    """The audit log's egress flow (gateway -> the logs zone, tcp/19532): permitted from the gateways'
    mgmt addresses to the collectors' CIDRs only, with its established return; the checker notices a
    missing or widened entry."""
    plan = load_plan("prod-baremetal")
    (egress,) = plan.firewall.egress
    gws = [h.addresses["mgmt"] for h in plan.ip.hosts_in_pool("gateway")]
    assert (egress.vlan, egress.proto, egress.ports, egress.flows) == ("mgmt", "tcp", ((19532, 19532),),
                                                                       ("audit-forward",))
    assert egress.destinations == ("10.0.20.0/28",) and egress.admits(f"{gws[0]}/32", "10.0.20.5/32", "tcp", 19532,
                                                                     19532)
    assert not egress.admits(f"{gws[0]}/32", "10.0.21.5/32", "tcp", 19532, 19532)
    rules = as_rules(plan.switches.acl)
    out = [r for r in rules if r.dst == "10.0.20.0/28"]
    back = [r for r in rules if r.src == "10.0.20.0/28"]
    assert out and all(r.dport == (19532, 19532) and not r.sport for r in out)
    assert back and all(r.sport == (19532, 19532) and r.established for r in back)
    fabric = tuple(v.cidr for v in plan.switches.vlans)
    missing = [r for r in rules if r not in out]
    assert any("egress flow audit-forward" in p and "not permitted" in p
               for p in acl_problems(missing, plan.firewall, fabric))
    no_return = [r for r in rules if r not in back]
    assert any("return traffic" in p for p in acl_problems(no_return, plan.firewall, fabric))
    wide = [AclRule(r.seq, r.action, r.proto, r.src, "10.0.0.0/8", r.sport, r.dport) if r in out else r for r in rules]
    assert any("wider than the policy" in p for p in acl_problems(wide, plan.firewall, fabric))


def test_acl_checker_rejects_a_wider_entry():
    plan = load_plan("prod-baremetal")
    rules = as_rules(plan.switches.acl)
    fabric = tuple(v.cidr for v in plan.switches.vlans)
    i = next(i for i, r in enumerate(rules) if r.dport == (22, 22))
    wide = rules[:i] + [AclRule(rules[i].seq, "permit", "tcp", ANY, rules[i].dst, None, (22, 22))] + rules[i + 1:]
    assert any("wider than the policy" in p and "0.0.0.0/0" in p for p in acl_problems(wide, plan.firewall, fabric))
    ports = rules[:i] + [AclRule(rules[i].seq, "permit", "tcp", rules[i].src, rules[i].dst, None, (1, 1024))]
    assert any("tcp/1-1024" in p for p in acl_problems(ports + rules[i + 1:], plan.firewall, fabric))
    no_est = [AclRule(r.seq, r.action, r.proto, r.src, r.dst, r.sport, r.dport, False) for r in rules]
    assert any("without 'established'" in p for p in acl_problems(no_est, plan.firewall, fabric))
    missing = rules[:i] + rules[i + 1:]
    assert any("is not permitted" in p for p in acl_problems(missing, plan.firewall, fabric))


# --------------------------------------------------------------------------- port map


def test_port_map_pins_ports_and_the_rest_fill_around_them(tmp_path):
    path = with_port_map(tmp_path, "      leaf-02:\n        swp20: {host: gpu-01, nic: bf3, port: 1, "
                                   "vlans: [mgmt, inference, storage_public]}\n        1: {host: gw-02, nic: uplink, "
                                   "port: 2}\n")
    sp = build_plan(load_stack_file(path)).switches
    assert sp.host_port("gpu-01", "bf3", 1) == ("leaf-02", 20)
    assert sp.host_port("gw-02", "uplink", 2) == ("leaf-02", 1)
    leaf2 = sp.switch("leaf-02")
    assert leaf2.port(20).pinned and leaf2.port(20).mode == "trunk"
    auto = sp.switch("leaf-01")
    assert "gpu-01" not in {p.host for p in auto.host_ports if p.nic == "bf3"}
    assert len({p.number for p in leaf2.ports}) == len(leaf2.ports)


def test_port_map_bad_inputs_are_reported_at_their_keys(tmp_path):
    got = problems(with_port_map(tmp_path, "      leaf-01:\n        swp5: {host: gpu-09, nic: cx7}\n"))
    assert got == ["baremetal.port_map.leaf-01.swp5.host: references unknown host 'gpu-09'; known: "
                   "gpu-01..gpu-04, storage-01..storage-03, gw-01..gw-02"]
    got = problems(with_port_map(tmp_path, "      leaf-01:\n        swp3: {host: gpu-01, nic: bf3, "
                                           "vlans: [mgmt, storage_public]}\n"))
    assert got == ["baremetal.port_map.leaf-01.swp3.vlans: VLAN 'inference' of gpu-01's NIC bf3 is missing from "
                   "the trunk leaf-01 swp3 (carries mgmt, storage_public): add it or fix pools.gpu.nics"]
    got = problems(with_port_map(tmp_path, "      leaf-01:\n        swp3: {host: gpu-01, nic: bf3}\n"
                                           "      leaf-03:\n        swp9: {host: gpu-01, nic: bf3}\n"))
    assert got == ["baremetal.port_map.leaf-03.swp9: gpu-01 bf3 port 1 is already mapped at leaf-01 swp3"]
    got = problems(with_port_map(tmp_path, "      spine-01:\n        swp9: {host: gpu-01, nic: bf3}\n"))
    assert got == ["baremetal.port_map.spine-01: a spine: hosts connect to leaves; known leaves: leaf-01..leaf-04"]
    got = problems(with_port_map(tmp_path, "      leaf-01:\n        swp1: {host: gpu-01, nic: cx7, port: 9}\n"))
    assert got == ["baremetal.port_map.leaf-01.swp1.port: 9: NIC cx7 of pool gpu has 8 port(s)"]
    got = problems(with_port_map(tmp_path, "      leaf-01:\n        swp1: {host: storage-01}\n"))
    assert got == ["baremetal.port_map.leaf-01.swp1.nic: missing: storage-01 (pool storage) has NICs public, "
                   "cluster: name the one cabled here"]
    # a pool without NICs: its hosts have one 'data' port (the lab's storage node)
    lab = STACKS / "Pulumi.lab.yaml"
    ok = with_port_map(tmp_path, "      leaf-01:\n        swp30: {host: storage-01, vlans: [mgmt, storage_public, "
                                 "storage_cluster]}\n", base=lab)
    sp = build_plan(load_stack_file(ok)).switches
    assert sp.host_port("storage-01", "data", 1) == ("leaf-01", 30)


def test_topology_rules(tmp_path):
    assert problems(PROD, ["baremetal.spine_switches=3"]) == [
        "baremetal.spine_switches: 3 spines: the L2 leaf-spine fabric has at most 2 (one, or an MLAG pair); "
        "more spines need a routed EVPN fabric, not built here"]
    assert problems(PROD, ["baremetal.spine_switches=0"]) == [
        "baremetal.spine_switches: 0 spines cannot join 4 leaves: set spine_switches to 1 or 2, or leaf_switches to 1"]
    got = problems(PROD, ["fabric.vlans.mgmt.reserved=3"])
    assert any(p.startswith("fabric.vlans.mgmt.reserved: 3: an MLAG spine pair needs at least 4") for p in got)
    one = build_plan(load_spec("prod-baremetal", ("baremetal.spine_switches=1",))).switches
    assert one.design == "l2-leaf-spine-lag" and one.switch("spine-01").mlag is None
    assert all(s.address is None for s in one.switch("spine-01").svis)
    assert one.switch("leaf-01").bonds[0].members == (63, 64)


def test_port_names_round_trip():
    for nos, names in {"cumulus": ("swp1", "swp64"), "sonic": ("Ethernet0", "Ethernet504"),
                       "eos": ("Ethernet1/1", "Ethernet64/1")}.items():
        switch_os = get(nos)
        assert (switch_os.port_name(1), switch_os.port_name(64)) == names
        for n in (1, 7, 64, 200):
            assert switch_os.parse_port(switch_os.port_name(n)) == n
            assert switch_os.parse_port(str(n)) == n
    assert get("sonic").parse_port("Ethernet4") is None and get("cumulus").parse_port("Ethernet1/1") is None
    assert get("cumulus").parse_port("0") is None
    assert get("eos").parse_port("Ethernet5") == 5


def test_aws_has_no_switches_and_the_plan_document_carries_them():
    assert load_plan("dev-aws").switches is None
    doc = json.loads(json.dumps(load_plan("prod-baremetal").to_dict()))
    sw = doc["switches"]
    assert sw["nos"] == "cumulus" and set(sw["switches"]) == {
        "leaf-01", "leaf-02", "leaf-03", "leaf-04", "spine-01", "spine-02"}
    assert sw["qos"]["pfc_priorities"] == [3] and sw["acl"]["entries"][-1]["action"] == "deny"
    assert load_plan("dev-aws").to_dict()["switches"] is None


def test_switch_plan_is_deterministic():
    a = build_plan(load_spec("prod-baremetal")).switches.to_dict()
    b = build_plan(load_spec("prod-baremetal")).switches.to_dict()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


@pytest.mark.parametrize(("stack", "overrides"), [
    ("lab", ()), ("prod-baremetal", ()),
    ("prod-baremetal", ("pools.gpu.count=37", "baremetal.leaf_switches=9")),
    ("prod-baremetal", ("pools.storage.count=5", "pools.gpu.count=11", "baremetal.leaf_switches=3")),
    ("prod-baremetal", ("baremetal.port_map={leaf-02: {7: {host: gpu-01, nic: bf3, port: 1}, "
                        "9: {host: gw-01, nic: uplink, port: 2}}}",)),
])
def test_port_capacity_counts_the_ports_the_planner_lays_out(stack: str, overrides: tuple[str, ...]) -> None:
    """switches.port-capacity reasons about the layout build_switch_plan makes: the same ports per leaf."""
    plan = build_plan(load_spec(stack, overrides))
    leaves = plan.switches.leaves
    assert host_ports_per_leaf(plan.spec, len(leaves)) == [len(s.host_ports) for s in leaves]
    assert not capacity_problems(plan.spec)
