"""Per-host checks of the verification suite: what the plan expects, and how an observation is judged.

Pure functions, no I/O: the suite (``llmcluster/verify/suite``) gathers one *facts* document per host
(:data:`llmcluster.verify.scripts.GATHER`: ``ip -j addr``, ``tc -j`` per interface, ``nft -j``
of the llmcluster table) and every check turns it into a list of problems. A problem says
what was observed and what the plan expects, so a failure names host, check and value:
``gpu-01 link[storage_public]: stor-pub MTU 1500, expected 9000``.

Checks (ids as in the results table):

* ``link[<vlan>]`` — the VLAN's interface exists, is up, carries the planned address/prefix and
  the VLAN's MTU (bare metal; on AWS the VPC owns interfaces);
* ``pmtu[<vlan>]`` — a full-size, don't-fragment ping (``MTU - 28`` bytes of payload: 8972 on
  a 9000 VLAN) reaches the next host on the VLAN (VLANs with jumbo MTU);
* ``qos[<vlan>]`` — the htb root qdisc with the plan's default class and one class per QoS
  class on the VLAN's interface (bare metal);
* ``nftables`` — table ``inet llmcluster`` loaded, chain policies as planned, every planned
  accept rule present with exactly the planned sources, destinations and ports, drops logged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr

from llmcluster.plan.build import Plan
from llmcluster.plan.firewall import FirewallRule
from llmcluster.plan.qos import DEFAULT_LINK_SPEED, parse_speed, tc_classes

NFT_FAMILY = "inet"
NFT_TABLE = "llmcluster"
#: Ping payload = MTU - IPv4 header (20) - ICMP header (8).
PING_OVERHEAD = 28


@dataclass(frozen=True)
class HostCheck:
    """One check of one host; ``params`` carries what the plan expects (plain data)."""

    host: str
    kind: str  # link | pmtu | qos | nftables
    vlan: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.vlan}]" if self.vlan else self.kind

    @property
    def id(self) -> str:
        return f"{self.host}:{self.name}"


def interface_names(plan: Plan, host: str, hostvars: Mapping[str, Any] | None) -> dict[str, str]:
    """VLAN role -> interface name: the inventory's ``llmcluster_interface_names`` when it has
    them (they are what the roles configured), else what the plan's network mode gives."""
    names = dict((hostvars or {}).get("llmcluster_interface_names") or {})
    return names or dict(plan.hostnet.host(host).interfaces)


def host_checks(plan: Plan, hostvars: Mapping[str, Mapping[str, Any]]) -> list[HostCheck]:
    """Every check of every host of the plan that the inventory has (sorted, deterministic)."""
    out: list[HostCheck] = []
    own_links = plan.hostnet.hosts_own_links
    link_bits = parse_speed(DEFAULT_LINK_SPEED)
    classes = tc_classes(plan.qos, link_bits)
    default_minor = next(c.minor for c in classes if c.cls.name == plan.qos.default_class.name)
    for host in plan.ip.hosts:
        if host.name not in hostvars:
            continue
        names = interface_names(plan, host.name, hostvars[host.name])
        for role, addr in host.addresses.items():
            vlan = plan.ip.vlans[role]
            ifname = names.get(role)
            if own_links and ifname:
                out.append(HostCheck(host.name, "link", role, {
                    "ifname": ifname, "address": addr, "prefixlen": vlan.prefixlen, "mtu": vlan.mtu}))
                out.append(HostCheck(host.name, "qos", role, {
                    "ifname": ifname, "default": default_minor,
                    "classes": {f"1:{c.minor}": c.cls.name for c in classes}}))
            peers = [h for h in plan.ip.hosts if role in h.addresses and h.name in hostvars]
            if vlan.mtu > 1500 and len(peers) > 1:
                i = next(k for k, h in enumerate(peers) if h.name == host.name)
                peer = peers[(i + 1) % len(peers)]
                out.append(HostCheck(host.name, "pmtu", role, {
                    "peer": peer.name, "peer_address": peer.addresses[role], "source": addr,
                    "mtu": vlan.mtu, "payload": vlan.mtu - PING_OVERHEAD}))
        fw = plan.firewall.host(host.name)
        out.append(HostCheck(host.name, "nftables", None, {
            "policy": dict(plan.firewall.policy), "rules": [_rule_key(r) for r in fw.rules],
            "log_prefix": plan.firewall.log_prefix}))
    return out


# --------------------------------------------------------------------------- facts helpers


class FactsError(Exception):
    """A fact could not be gathered (the command failed or printed no JSON)."""


def fact(facts: Mapping[str, Any], *path: str) -> Any:
    node: Any = facts
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise FactsError(f"no {'/'.join(path)} in the gathered facts")
        node = node[key]
    if isinstance(node, Mapping) and "error" in node:
        raise FactsError(f"{'/'.join(path)}: {node['error']}")
    return node["data"] if isinstance(node, Mapping) and "data" in node else node


# --------------------------------------------------------------------------- link


def check_link(check: HostCheck, facts: Mapping[str, Any]) -> list[str]:
    p = check.params
    links = {i.get("ifname"): i for i in fact(facts, "ip") or []}
    link = links.get(p["ifname"])
    if link is None:
        return [f"interface {p['ifname']} missing (host has {', '.join(sorted(n for n in links if n)) or 'none'})"]
    problems = []
    flags = link.get("flags") or []
    state = link.get("operstate", "?")
    if "UP" not in flags or state not in ("UP", "UNKNOWN"):
        problems.append(f"{p['ifname']} is {state} (flags {','.join(flags) or '-'}), expected UP")
    if link.get("mtu") != p["mtu"]:
        problems.append(f"{p['ifname']} MTU {link.get('mtu')}, expected {p['mtu']}")
    want = f"{p['address']}/{p['prefixlen']}"
    have = [f"{a.get('local')}/{a.get('prefixlen')}" for a in link.get("addr_info") or [] if a.get("family") == "inet"]
    if want not in have:
        problems.append(f"{p['ifname']} has {', '.join(have) or 'no IPv4 address'}, expected {want}")
    return problems


# --------------------------------------------------------------------------- qos


def check_qos(check: HostCheck, facts: Mapping[str, Any]) -> list[str]:
    p = check.params
    ifname = p["ifname"]
    qdiscs = fact(facts, "tc", ifname, "qdisc") or []
    root = next((q for q in qdiscs if q.get("root")), None)
    if root is None or root.get("kind") != "htb":
        kind = root.get("kind") if root else "none"
        return [f"{ifname}: root qdisc is {kind}, expected htb (handle 1:)"]
    problems = []
    if root.get("handle") != "1:":
        problems.append(f"{ifname}: root htb handle {root.get('handle')}, expected 1:")
    default = str((root.get("options") or {}).get("default", ""))
    if default.lower().removeprefix("0x") != p["default"]:
        problems.append(f"{ifname}: htb default {default or 'unset'}, expected {p['default']} "
                        f"({p['classes'].get('1:' + p['default'], '?')})")
    # ``tc class show`` lines: "class htb 1:10 parent 1:1 prio 4 rate 50Gbit ..." (text: iproute2 6.1's
    # JSON output omits htb classes).
    have = {f[2] for line in str(fact(facts, "tc", ifname, "class") or "").splitlines()
            if len(f := line.split()) > 2 and f[:2] == ["class", "htb"]}
    missing = [f"{h} ({name})" for h, name in p["classes"].items() if h not in have]
    if "1:1" not in have:
        missing.insert(0, "1:1 (root class)")
    if missing:
        problems.append(f"{ifname}: htb classes missing: {', '.join(missing)}")
    return problems


# --------------------------------------------------------------------------- nftables


def _rule_key(rule: FirewallRule) -> dict[str, Any]:
    return {"proto": rule.proto, "sources": sorted(rule.sources), "destinations": sorted(rule.destinations),
            "ports": [list(r) for r in rule.ports], "flows": list(rule.flows)}


def _nft_values(right: Any) -> list[Any]:
    """An nft JSON right-hand side as a flat list of scalars, prefixes and ranges."""
    if isinstance(right, Mapping) and "set" in right:
        return list(right["set"])
    return [right]


def _as_cidrs(values: list[Any]) -> list[str]:
    out = []
    for v in values:
        if isinstance(v, Mapping) and "prefix" in v:
            out.append(f"{v['prefix']['addr']}/{v['prefix']['len']}")
        elif isinstance(v, Mapping) and "range" in v:
            lo, hi = v["range"]
            out.extend(str(c) for c in netaddr.iprange_to_cidrs(lo, hi))
        elif isinstance(v, str):
            out.append(f"{v}/32" if "/" not in v else v)
    return sorted(str(c) for c in netaddr.cidr_merge(out)) if out else []


def _as_ports(values: list[Any]) -> list[list[int]]:
    out = []
    for v in values:
        if isinstance(v, Mapping) and "range" in v:
            out.append([int(v["range"][0]), int(v["range"][1])])
        elif isinstance(v, int):
            out.append([v, v])
    return sorted(out)


def parse_nft_rule(exprs: list[Mapping[str, Any]]) -> dict[str, Any] | None:
    """An accept rule of the input chain as ``{proto, sources, destinations, ports}`` (else None)."""
    rule: dict[str, Any] = {"proto": None, "sources": [], "destinations": [], "ports": []}
    verdict = None
    for e in exprs:
        if "accept" in e:
            verdict = "accept"
        m = e.get("match")
        if not m or m.get("op") not in ("==", "in"):
            continue
        left = m.get("left") or {}
        if isinstance(left, Mapping) and (left.get("meta") or {}).get("key") == "l4proto":
            rule["proto"] = m.get("right") if isinstance(m.get("right"), str) else rule["proto"]
            continue
        payload = left.get("payload") if isinstance(left, Mapping) else None
        if not payload:
            continue
        proto, fld = payload.get("protocol"), payload.get("field")
        values = _nft_values(m.get("right"))
        if proto == "ip" and fld == "saddr":
            rule["sources"] = _as_cidrs(values)
        elif proto == "ip" and fld == "daddr":
            rule["destinations"] = _as_cidrs(values)
        elif proto in ("tcp", "udp") and fld == "dport":
            rule["proto"], rule["ports"] = proto, _as_ports(values)
    if verdict != "accept" or not rule["sources"] or not rule["destinations"]:
        return None
    return rule


def _norm_planned(rule: Mapping[str, Any]) -> tuple:
    srcs = sorted(str(c) for c in netaddr.cidr_merge(rule["sources"]))
    dsts = sorted(str(c) for c in netaddr.cidr_merge(rule["destinations"]))
    return (rule["proto"], tuple(srcs), tuple(dsts), tuple(tuple(p) for p in sorted(rule["ports"])))


def _describe(key: tuple) -> str:
    proto, srcs, dsts, ports = key
    what = f"{proto} dport {','.join(str(a) if a == b else f'{a}-{b}' for a, b in ports)}" if ports else str(proto)
    return f"{what} from {', '.join(srcs)} to {', '.join(dsts)}"


def check_nftables(check: HostCheck, facts: Mapping[str, Any]) -> list[str]:
    p = check.params
    try:
        doc = fact(facts, "nft")
    except FactsError as exc:
        return [f"table {NFT_FAMILY} {NFT_TABLE} not loaded ({exc})"]
    items = (doc or {}).get("nftables", [])
    chains = {i["chain"]["name"]: i["chain"] for i in items if "chain" in i}
    rules: dict[str, list[list[Mapping[str, Any]]]] = {}
    for i in items:
        if "rule" in i:
            rules.setdefault(i["rule"]["chain"], []).append(i["rule"].get("expr") or [])
    problems = []
    for chain, policy in p["policy"].items():
        c = chains.get(chain)
        if c is None:
            problems.append(f"chain {chain} missing from table {NFT_FAMILY} {NFT_TABLE}")
        elif c.get("policy") != policy or c.get("hook") != chain:
            problems.append(f"chain {chain}: hook {c.get('hook')} policy {c.get('policy')}, "
                            f"expected hook {chain} policy {policy}")
    loaded = [r for r in (parse_nft_rule(e) for e in rules.get("input", [])) if r]
    have = {_norm_planned(r) for r in loaded}
    for want in p["rules"]:
        key = _norm_planned(want)
        if key not in have:
            problems.append(f"input rule for flow {', '.join(want['flows'])} missing: {_describe(key)}")
    planned = {_norm_planned(w) for w in p["rules"]}
    for extra in sorted(have - planned, key=str):
        problems.append(f"input accepts {_describe(extra)}: not in the plan")
    logged = any(any("log" in e and (e["log"] or {}).get("prefix") == p["log_prefix"] for e in exprs)
                 for exprs in rules.get("input", []))
    if not logged:
        problems.append(f"input chain does not log drops with prefix {p['log_prefix']!r}")
    return problems


CHECKERS = {"link": check_link, "qos": check_qos, "nftables": check_nftables}
