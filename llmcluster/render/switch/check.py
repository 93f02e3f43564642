"""Checkers of rendered switch configurations: a real parse per OS, then shared semantic checks.

Parsing (each returns a :class:`ConfigView`, or raises :class:`ConfigParseError`):

* NVUE (Cumulus): ``yaml.safe_load`` + structure (a ``header`` and one ``set`` document with
  ``system.hostname``, ``interface``, ``qos``);
* SONiC: ``json.loads`` + the JSON schema ``sonic_config_db.schema.json`` (jsonschema) of the
  tables llmcluster emits, then cross-references (every VLAN member, QoS map and ACL port
  exists);
* EOS: ``hier_config`` (its EOS parsing rules: the section hierarchy) and a tokenizer for
  ACL entries.

:func:`semantic_problems` then compares the view with the switch plan, identically for all
three: every planned port exists and carries exactly its planned VLANs (access with one
untagged VLAN, trunk with every VLAN tagged), no other port carries a VLAN, fabric ports run
the fabric MTU, bond members sit in their bond, trust DSCP and the DSCP map match the QoS
plan, PFC is on the plan's lossless priorities only (RoCE, 3), ECN on the plan's ECN queues,
CNP strict, SVIs carry the gateways, and the ACL is bound inbound where the plan says and
permits nothing the firewall plan does not (each entry parsed back into source, destination,
protocol and ports and tested against the hosts' rules), with every planned flow present and
a final deny. Messages name the switch, the interface and the VLAN or entry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import netaddr
import yaml

from llmcluster.plan.firewall import FirewallPlan, format_range
from llmcluster.plan.switches import (
    ANY,
    ICMP_ESSENTIALS,
    PEER_VLAN,
    Switch,
    bond_name,
    port_name,
)

SCHEMA_PATH = Path(__file__).parent / "sonic_config_db.schema.json"
_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp"}


class ConfigParseError(ValueError):
    """The text is not a valid configuration of its OS (or not the structure llmcluster emits)."""


@dataclass
class PortView:
    name: str
    vlans: set[int] = field(default_factory=set)
    untagged: set[int] = field(default_factory=set)
    mtu: int | None = None
    bond: str | None = None  # the bond this port is a member of
    acl_in: set[str] = field(default_factory=set)
    is_bond: bool = False
    pfc: set[int] | None = None  # per-port PFC priorities (None: global setting applies)
    trust_dscp: bool | None = None  # per port (None: global setting applies)


@dataclass(frozen=True)
class AclRule:
    seq: int
    action: str
    proto: str
    src: str
    dst: str
    sport: tuple[int, int] | None = None
    dport: tuple[int, int] | None = None
    established: bool = False
    icmp_type: int | None = None
    icmp_code: int | None = None

    def text(self) -> str:
        s = f"{self.seq} {self.action} {self.proto} {self.src}"
        if self.sport:
            s += f" sport {format_range(*self.sport)}"
        s += f" -> {self.dst}"
        if self.dport:
            s += f" dport {format_range(*self.dport)}"
        if self.icmp_type is not None:
            s += f" icmp {self.icmp_type}" + (f"/{self.icmp_code}" if self.icmp_code is not None else "")
        if self.established:
            s += " established"
        return s


@dataclass
class ConfigView:
    nos: str
    hostname: str | None = None
    vlans: set[int] = field(default_factory=set)
    ports: dict[str, PortView] = field(default_factory=dict)
    svis: dict[int, set[str]] = field(default_factory=dict)  # VLAN -> addresses (own and virtual)
    trust_dscp: bool = False  # global (NVUE)
    pfc: set[int] | None = None  # global (NVUE)
    dscp_map: dict[int, int] = field(default_factory=dict)
    priority_to_queue: dict[int, int] = field(default_factory=dict)
    ecn: dict[int, tuple[int, int]] = field(default_factory=dict)  # queue -> (min bytes, max bytes)
    strict: set[int] = field(default_factory=set)
    weights: dict[int, int] = field(default_factory=dict)
    acls: dict[str, list[AclRule]] = field(default_factory=dict)

    def port(self, name: str) -> PortView:
        return self.ports.setdefault(name, PortView(name))


# --------------------------------------------------------------------------- helpers


def _cidr(value: str) -> str:
    if value in ("ANY", "any", ANY):
        return ANY
    try:
        return str(netaddr.IPNetwork(value).cidr)
    except (netaddr.AddrFormatError, ValueError) as exc:
        raise ConfigParseError(f"{value!r} is not an address or CIDR") from exc


def _range(text: str, sep: str) -> tuple[int, int]:
    lo, _, hi = str(text).partition(sep)
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError as exc:
        raise ConfigParseError(f"{text!r} is not a port or port range") from exc
    if not (0 <= a <= b <= 65535):
        raise ConfigParseError(f"{text!r} is not a valid port range")
    return a, b


# --------------------------------------------------------------------------- NVUE (Cumulus)


def parse_nvue(text: str) -> ConfigView:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigParseError(f"not YAML: {exc}") from exc
    if not isinstance(doc, list) or not doc:
        raise ConfigParseError("an NVUE startup document is a list: [{header: ...}, {set: ...}]")
    if not isinstance(doc[0], dict) or "header" not in doc[0]:
        raise ConfigParseError("the first item must be the 'header'")
    header = doc[0]["header"]
    if not isinstance(header, dict) or header.get("nvue-api-version") != "nvue_v1":
        raise ConfigParseError("header.nvue-api-version must be nvue_v1")
    sets = [d["set"] for d in doc[1:] if isinstance(d, dict) and "set" in d]
    if len(sets) != 1 or len(doc) != 2 or not isinstance(sets[0], dict):
        raise ConfigParseError("expected exactly one 'set' document after the header")
    cfg = sets[0]
    for key in ("system", "interface", "qos", "bridge"):
        if not isinstance(cfg.get(key), dict):
            raise ConfigParseError(f"set.{key} is missing or not a mapping")
    v = ConfigView("cumulus", hostname=cfg["system"].get("hostname"))
    br = cfg["bridge"].get("domain", {}).get("br_default", {})
    v.vlans = {int(x) for x in (br.get("vlan") or {})}
    for name, iface in cfg["interface"].items():
        if not isinstance(iface, dict) or "type" not in iface:
            raise ConfigParseError(f"interface {name}: needs a 'type'")
        kind = iface["type"]
        if kind not in ("swp", "bond", "peerlink", "svi", "sub", "loopback"):
            raise ConfigParseError(f"interface {name}: unknown type {kind!r}")
        if kind == "svi":
            vid = int(iface["vlan"])
            addrs = {str(netaddr.IPNetwork(a).ip) for a in (iface.get("ip", {}).get("address") or {})}
            vrr = iface.get("ip", {}).get("vrr") or {}
            addrs |= {str(netaddr.IPNetwork(a).ip) for a in (vrr.get("address") or {})}
            v.svis[vid] = addrs
            continue
        if kind == "sub":
            continue
        p = v.port(str(name))
        p.is_bond = kind in ("bond", "peerlink")
        mtu = (iface.get("link") or {}).get("mtu")
        p.mtu = int(mtu) if mtu is not None else None
        for member in ((iface.get("bond") or {}).get("member") or {}):
            v.port(str(member)).bond = str(name)
        dom = ((iface.get("bridge") or {}).get("domain") or {}).get("br_default")
        if isinstance(dom, dict):
            if "access" in dom:
                p.vlans = {int(dom["access"])}
                p.untagged = set(p.vlans)
            else:
                p.vlans = {int(x) for x in (dom.get("vlan") or {})}
                untagged = dom.get("untagged", 1)
                p.untagged = set() if untagged in ("none", None) else {int(untagged)} & p.vlans
        for acl_name, binding in (iface.get("acl") or {}).items():
            if isinstance(binding, dict) and "inbound" in binding:
                p.acl_in.add(str(acl_name))
    qos = cfg["qos"]
    mapping = (qos.get("mapping") or {}).get("default-global") or {}
    v.trust_dscp = mapping.get("trust") == "l3"
    v.dscp_map = {int(d): int(e["switch-priority"]) for d, e in (mapping.get("dscp") or {}).items()}
    eq = ((qos.get("egress-queue-mapping") or {}).get("default-global") or {}).get("switch-priority") or {}
    v.priority_to_queue = {int(p): int(e["traffic-class"]) for p, e in eq.items()}
    pfc = (qos.get("pfc") or {}).get("default-global") or {}
    v.pfc = {int(p) for p in (pfc.get("switch-priority") or {})}
    cc = ((qos.get("congestion-control") or {}).get("default-global") or {}).get("traffic-class") or {}
    for tc, e in cc.items():
        if e.get("ecn") == "enable":
            v.ecn[int(tc)] = (int(e["min-threshold"]), int(e["max-threshold"]))
    sched = ((qos.get("egress-scheduler") or {}).get("default-global") or {}).get("traffic-class") or {}
    for tc, e in sched.items():
        if e.get("mode") == "strict":
            v.strict.add(int(tc))
        else:
            v.weights[int(tc)] = int(e.get("bw-percent", 0))
    for acl_name, acl in (cfg.get("acl") or {}).items():
        rules = []
        for rid, rule in sorted((acl.get("rule") or {}).items(), key=lambda kv: int(kv[0])):
            rules.extend(_nvue_rule(int(rid), rule))
        v.acls[str(acl_name)] = rules
    return v


def _nvue_rule(seq: int, rule: dict) -> list[AclRule]:
    action = rule.get("action") or {}
    if set(action) not in ({"permit"}, {"deny"}):
        raise ConfigParseError(f"acl rule {seq}: action must be permit or deny")
    ip = (rule.get("match") or {}).get("ip") or {}
    proto = str(ip.get("protocol", "ip"))
    src, dst = _cidr(str(ip.get("source-ip", "ANY"))), _cidr(str(ip.get("dest-ip", "ANY")))
    l4 = ip.get(proto) or {}
    sports = [_range(k, ":") for k in (l4.get("source-port") or {})] or [None]
    dports = [_range(k, ":") for k in (l4.get("dest-port") or {})] or [None]
    established = "ack" in (l4.get("flags") or []) and "ack" in (l4.get("mask") or [])
    it, ic = ip.get("icmp-type"), ip.get("icmp-code")
    return [AclRule(seq, next(iter(action)), proto, src, dst, sp, dp, established,
                    int(it) if it is not None else None, int(ic) if ic is not None else None)
            for sp in sports for dp in dports]


# --------------------------------------------------------------------------- SONiC


@lru_cache(maxsize=1)
def _sonic_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def parse_sonic(text: str) -> ConfigView:
    try:
        db = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigParseError(f"not JSON: {exc}") from exc
    errors = sorted(_sonic_validator().iter_errors(db), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigParseError("; ".join(
            f"{'/'.join(str(x) for x in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:5]))
    v = ConfigView("sonic", hostname=db["DEVICE_METADATA"]["localhost"]["hostname"])
    v.vlans = {int(d["vlanid"]) for d in db["VLAN"].values()}
    for name, port in db["PORT"].items():
        v.port(name).mtu = int(port["mtu"])
    for name, lag in db.get("PORTCHANNEL", {}).items():
        p = v.port(name)
        p.is_bond, p.mtu = True, int(lag["mtu"])
    for key in db.get("PORTCHANNEL_MEMBER", {}):
        lag, member = key.split("|")
        if lag not in db.get("PORTCHANNEL", {}) or member not in db["PORT"]:
            raise ConfigParseError(f"PORTCHANNEL_MEMBER {key}: unknown port channel or port")
        v.port(member).bond = lag
    for key, m in db["VLAN_MEMBER"].items():
        vlan, member = key.split("|")
        if vlan not in db["VLAN"]:
            raise ConfigParseError(f"VLAN_MEMBER {key}: {vlan} is not in VLAN")
        if member not in db["PORT"] and member not in db.get("PORTCHANNEL", {}):
            raise ConfigParseError(f"VLAN_MEMBER {key}: {member} is neither a PORT nor a PORTCHANNEL")
        vid = int(db["VLAN"][vlan]["vlanid"])
        p = v.port(member)
        p.vlans.add(vid)
        if m["tagging_mode"] == "untagged":
            p.untagged.add(vid)
    for key in db.get("VLAN_INTERFACE", {}):
        if "|" in key:
            vlan, cidr = key.split("|")
            v.svis.setdefault(int(vlan[4:]), set()).add(str(netaddr.IPNetwork(cidr).ip))
    maps = {t: db[t] for t in ("DSCP_TO_TC_MAP", "TC_TO_QUEUE_MAP", "TC_TO_PRIORITY_GROUP_MAP",
                               "MAP_PFC_PRIORITY_TO_QUEUE", "PFC_PRIORITY_TO_PRIORITY_GROUP_MAP")}
    field_table = {"dscp_to_tc_map": "DSCP_TO_TC_MAP", "tc_to_queue_map": "TC_TO_QUEUE_MAP",
                   "tc_to_pg_map": "TC_TO_PRIORITY_GROUP_MAP", "pfc_to_queue_map": "MAP_PFC_PRIORITY_TO_QUEUE",
                   "pfc_to_pg_map": "PFC_PRIORITY_TO_PRIORITY_GROUP_MAP"}
    dscp_maps: set[str] = set()
    queue_maps: set[str] = set()
    for name, q in db["PORT_QOS_MAP"].items():
        if name not in db["PORT"]:
            raise ConfigParseError(f"PORT_QOS_MAP {name}: not a PORT")
        for fld, table in field_table.items():
            if fld in q and q[fld] not in maps[table]:
                raise ConfigParseError(f"PORT_QOS_MAP {name}.{fld}: no {table} named {q[fld]!r}")
        p = v.port(name)
        p.trust_dscp = "dscp_to_tc_map" in q
        p.pfc = {int(x) for x in q["pfc_enable"].split(",")} if q.get("pfc_enable") else set()
        dscp_maps.add(q["dscp_to_tc_map"])
        queue_maps.add(q["tc_to_queue_map"])
    if len(dscp_maps) == 1:
        v.dscp_map = {int(d): int(t) for d, t in maps["DSCP_TO_TC_MAP"][dscp_maps.pop()].items()}
    if len(queue_maps) == 1:
        v.priority_to_queue = {int(p): int(q) for p, q in maps["TC_TO_QUEUE_MAP"][queue_maps.pop()].items()}
    queue_sched: dict[int, set[str]] = {}
    queue_wred: dict[int, set[str | None]] = {}
    for key, q in db["QUEUE"].items():
        port, qn = key.split("|")
        if port not in db["PORT"]:
            raise ConfigParseError(f"QUEUE {key}: {port} is not a PORT")
        if q["scheduler"] not in db["SCHEDULER"]:
            raise ConfigParseError(f"QUEUE {key}: no SCHEDULER {q['scheduler']!r}")
        if "wred_profile" in q and q["wred_profile"] not in db.get("WRED_PROFILE", {}):
            raise ConfigParseError(f"QUEUE {key}: no WRED_PROFILE {q['wred_profile']!r}")
        queue_sched.setdefault(int(qn), set()).add(q["scheduler"])
        queue_wred.setdefault(int(qn), set()).add(q.get("wred_profile"))
    for qn, scheds in queue_sched.items():
        if len(scheds) != 1:
            raise ConfigParseError(f"queue {qn} has different schedulers on different ports: {sorted(scheds)}")
        s = db["SCHEDULER"][next(iter(scheds))]
        if s["type"] == "STRICT":
            v.strict.add(qn)
        else:
            v.weights[qn] = int(s["weight"])
        wred = queue_wred[qn]
        if len(wred) != 1:
            raise ConfigParseError(f"queue {qn} has ECN on some ports only")
        profile = next(iter(wred))
        if profile is not None:
            w = db["WRED_PROFILE"][profile]
            if w["ecn"] != "ecn_none" and w["wred_green_enable"] == "true":
                v.ecn[qn] = (int(w["green_min_threshold"]), int(w["green_max_threshold"]))
    for tname, table in db.get("ACL_TABLE", {}).items():
        if table["stage"] != "ingress":
            continue
        for port in table["ports"]:
            if port not in db["PORT"] and port not in db.get("PORTCHANNEL", {}):
                raise ConfigParseError(f"ACL_TABLE {tname}: bound to unknown port {port}")
            v.port(port).acl_in.add(tname)
        v.acls[tname] = []
    by_table: dict[str, list[tuple[int, AclRule]]] = {}
    for key, r in db.get("ACL_RULE", {}).items():
        tname, rname = key.split("|")
        if tname not in db.get("ACL_TABLE", {}):
            raise ConfigParseError(f"ACL_RULE {key}: no ACL_TABLE {tname}")
        by_table.setdefault(tname, []).append((int(r["PRIORITY"]), _sonic_rule(rname, r)))
    for tname, rules in by_table.items():
        prios = [p for p, _ in rules]
        if len(set(prios)) != len(prios):
            raise ConfigParseError(f"ACL_TABLE {tname}: two rules share a PRIORITY")
        if tname in v.acls:  # evaluation order: highest priority first
            v.acls[tname] = [r for _, r in sorted(rules, key=lambda pr: -pr[0])]
    return v


def _sonic_rule(name: str, r: dict) -> AclRule:
    m = re.search(r"(\d+)$", name)
    seq = int(m.group(1)) if m else 0
    if "IP_PROTOCOL" in r:
        num = int(r["IP_PROTOCOL"])
        proto = _PROTO_NAMES.get(num, str(num))
    else:
        proto = "ip"
        if r.get("ETHER_TYPE", "0x0800").lower() != "0x0800":
            raise ConfigParseError(f"ACL_RULE {name}: only IPv4 rules are expected")

    def ports(key: str) -> tuple[int, int] | None:
        if key in r:
            return _range(r[key], "-")
        if f"{key}_RANGE" in r:
            return _range(r[f"{key}_RANGE"], "-")
        return None

    flags = r.get("TCP_FLAGS")
    established = False
    if flags:
        val, _, mask = flags.partition("/")
        established = int(val, 16) & 0x10 == 0x10 and int(mask, 16) & 0x10 == 0x10
    return AclRule(seq, "permit" if r["PACKET_ACTION"] == "FORWARD" else "deny", proto,
                   _cidr(r.get("SRC_IP", ANY)), _cidr(r.get("DST_IP", ANY)), ports("L4_SRC_PORT"),
                   ports("L4_DST_PORT"), established,
                   int(r["ICMP_TYPE"]) if "ICMP_TYPE" in r else None,
                   int(r["ICMP_CODE"]) if "ICMP_CODE" in r else None)


# --------------------------------------------------------------------------- EOS


def _eos_tree(text: str) -> list:
    """The top-level sections of an EOS configuration, parsed by hier_config's EOS rules."""
    from hier_config import HConfig, Host

    root = HConfig(host=Host(hostname="switch", os="eos"))
    try:
        root.load_from_string(text)
    except Exception as exc:  # hier_config raises plain exceptions on malformed indentation
        raise ConfigParseError(f"not an EOS configuration: {exc}") from exc
    return list(root.children)


def _find(tree: list, pattern: str) -> list:
    rx = re.compile(pattern)
    return [c for c in tree if rx.search(c.text)]


_EOS_IF = re.compile(r"^interface\s+(\S+)$")


def parse_eos(text: str) -> ConfigView:
    if not text.rstrip().endswith("end"):
        raise ConfigParseError("an EOS configuration ends with 'end'")
    tree = _eos_tree(text)
    v = ConfigView("eos")
    hosts = _find(tree, r"^hostname\s+\S+$")
    if len(hosts) != 1:
        raise ConfigParseError("exactly one 'hostname' line expected")
    v.hostname = hosts[0].text.split()[1]
    for obj in _find(tree, r"^vlan\s+\d+$"):
        v.vlans.add(int(obj.text.split()[1]))
    for obj in _find(tree, r"^qos map dscp "):
        m = re.match(r"^qos map dscp ((?:\d+ )+)to traffic-class (\d)$", obj.text)
        if not m:
            raise ConfigParseError(f"cannot read {obj.text!r}")
        for d in m.group(1).split():
            if int(d) in v.dscp_map:
                raise ConfigParseError(f"DSCP {d} is mapped twice")
            v.dscp_map[int(d)] = int(m.group(2))
    for obj in _find(tree, r"^qos map traffic-class "):
        m = re.match(r"^qos map traffic-class (\d) to tx-queue (\d)$", obj.text)
        if not m:
            raise ConfigParseError(f"cannot read {obj.text!r}")
        v.priority_to_queue[int(m.group(1))] = int(m.group(2))
    queue_cfg: dict[int, set[tuple]] = {}
    for obj in _find(tree, r"^interface\s+"):
        m = _EOS_IF.match(obj.text)
        if not m:
            raise ConfigParseError(f"cannot read {obj.text!r}")
        name = m.group(1)
        if name.startswith("Vlan"):
            addrs = set()
            for c in obj.children:
                t = c.text.strip()
                if t.startswith("ip address ") or t.startswith("ip virtual-router address "):
                    addrs.add(str(netaddr.IPNetwork(t.split()[-1]).ip))
            v.svis[int(name[4:])] = addrs
            continue
        p = v.port(name)
        p.is_bond = name.startswith("Port-Channel")
        mode = None
        access = None
        allowed: set[int] = set()
        native_tag = False
        pfc_on = False
        pfc: set[int] = set()
        for c in obj.children:
            t = c.text.strip()
            if t.startswith("l2 mtu "):
                p.mtu = int(t.split()[2])
            elif t.startswith("channel-group "):
                p.bond = f"Port-Channel{t.split()[1]}"
            elif t.startswith("switchport mode "):
                mode = t.split()[2]
            elif t.startswith("switchport access vlan "):
                access = int(t.split()[3])
            elif t.startswith("switchport trunk allowed vlan "):
                spec = t.split()[4]
                if spec != "none":
                    for part in spec.split(","):
                        lo, _, hi = part.partition("-")
                        allowed.update(range(int(lo), int(hi or lo) + 1))
            elif t == "switchport trunk native vlan tag":
                native_tag = True
            elif t.startswith("ip access-group "):
                parts = t.split()
                if parts[-1] == "in":
                    p.acl_in.add(parts[2])
            elif t == "qos trust dscp":
                p.trust_dscp = True
            elif t == "priority-flow-control on":
                pfc_on = True
            elif t.startswith("priority-flow-control priority "):
                parts = t.split()
                if parts[-1] == "no-drop":
                    pfc.add(int(parts[2]))
            elif t.startswith("tx-queue "):
                q = int(t.split()[1])
                sub = tuple(sorted(x.text.strip() for x in c.children))
                queue_cfg.setdefault(q, set()).add(sub)
        if mode is not None:
            if mode == "access":
                p.vlans = {access} if access else {1}
                p.untagged = set(p.vlans)
            else:
                p.vlans = allowed
                p.untagged = set() if native_tag else ({1} & allowed)
        if not p.is_bond:
            p.pfc = pfc if pfc_on else set()
            p.trust_dscp = bool(p.trust_dscp)
    for q, variants in queue_cfg.items():
        if len(variants) != 1:
            raise ConfigParseError(f"tx-queue {q} is configured differently on different interfaces")
        lines = next(iter(variants))
        if "priority strict" in lines or "no priority" not in lines:
            v.strict.add(q)
        for ln in lines:
            if ln.startswith("bandwidth percent "):
                v.weights[q] = int(ln.split()[2])
            m = re.match(r"^random-detect ecn minimum-threshold (\d+) kbytes maximum-threshold (\d+) kbytes", ln)
            if m:
                v.ecn[q] = (int(m.group(1)) * 1024, int(m.group(2)) * 1024)
    for obj in _find(tree, r"^ip access-list\s+"):
        name = obj.text.split()[2]
        rules = []
        for c in obj.children:
            t = c.text.strip()
            if t == "counters per-entry" or re.match(r"^\d+ remark ", t):
                continue
            rules.append(parse_eos_acl_line(t))
        v.acls[name] = rules
    return v


def parse_eos_acl_line(line: str) -> AclRule:
    """``'20 permit tcp host 10.0.0.1 eq 22 10.0.10.0/24 established'`` -> :class:`AclRule`."""
    tok = line.split()
    if len(tok) < 5 or not tok[0].isdigit():
        raise ConfigParseError(f"cannot read ACL entry {line!r}")
    seq, action, proto = int(tok[0]), tok[1], tok[2]
    if action not in ("permit", "deny"):
        raise ConfigParseError(f"ACL entry {line!r}: action must be permit or deny")
    i = 3

    def addr() -> str:
        nonlocal i
        t = tok[i]
        if t == "any":
            i += 1
            return ANY
        if t == "host":
            i += 2
            return _cidr(tok[i - 1] + "/32")
        i += 1
        if "/" not in t:
            raise ConfigParseError(f"ACL entry {line!r}: use prefix notation, not {t!r}")
        return _cidr(t)

    def ports() -> tuple[int, int] | None:
        nonlocal i
        if i >= len(tok):
            return None
        t = tok[i]
        if t == "eq" and i + 2 <= len(tok) and tok[i + 1].isdigit():
            i += 2
            return _range(tok[i - 1], "-")
        if t == "range":
            i += 3
            return _range(f"{tok[i - 2]}-{tok[i - 1]}", "-")
        if t in ("gt", "lt", "neq") or (t == "eq" and i + 2 < len(tok) and tok[i + 2].isdigit()):
            raise ConfigParseError(f"ACL entry {line!r}: operator {t!r} is not one llmcluster emits")
        return None

    src = addr()
    sport = ports() if proto in ("tcp", "udp") else None
    dst = addr()
    dport = ports() if proto in ("tcp", "udp") else None
    itype = icode = None
    established = False
    rest = tok[i:]
    if proto == "icmp" and rest and rest[0].isdigit():
        itype = int(rest.pop(0))
        if rest and rest[0].isdigit():
            icode = int(rest.pop(0))
    if rest == ["established"] and proto == "tcp":
        established, rest = True, []
    if rest and rest != ["log"]:
        raise ConfigParseError(f"ACL entry {line!r}: cannot read {' '.join(rest)!r}")
    return AclRule(seq, action, proto, src, dst, sport, dport, established, itype, icode)


PARSERS = {"cumulus": parse_nvue, "sonic": parse_sonic, "eos": parse_eos}


def parse_config(text: str, nos: str) -> ConfigView:
    return PARSERS[nos](text)


# --------------------------------------------------------------------------- ACL against the policy


class _Policy:
    """The firewall plan indexed by destination address."""

    def __init__(self, fw: FirewallPlan):
        self.fw = fw
        self.owners: dict[str, list] = {}
        for h in fw.hosts:
            for vlan in h.addresses:
                for a in h.local_addresses(vlan):
                    self.owners.setdefault(a, []).append(h)

    def admitted(self, addr: str, proto: str, lo: int | None, hi: int | None) -> netaddr.IPSet:
        out = netaddr.IPSet()
        for h in self.owners.get(addr, []):
            for r in h.rules:
                if r.proto == proto and addr in r.destinations and r.covers(lo, hi):
                    out |= netaddr.IPSet(r.sources)
        return out

    def uncovered(self, src: str, dst: str, proto: str, lo: int | None, hi: int | None) -> str | None:
        """Why ``src -> dst proto lo-hi`` is wider than the policy, or None when every packet is allowed."""
        dnet = netaddr.IPNetwork(dst)
        if dnet.size > 4096:
            return f"destination {dst} is wider than any host rule"
        snet = netaddr.IPSet([src])
        for ip in dnet:
            a = str(ip)
            if a not in self.owners:
                return f"{a} is no host address of the plan"
            admitted = self.admitted(a, proto, lo, hi)
            if not snet.issubset(admitted):
                what = f"{proto}" + (f"/{format_range(lo, hi or lo)}" if lo is not None else "")
                allowed = ", ".join(str(c) for c in admitted.iter_cidrs()) or "nobody"
                return f"the policy admits {what} to {a} only from {allowed}"
        return None


def acl_problems(rules: list[AclRule], fw: FirewallPlan, fabric_cidrs: tuple[str, ...]) -> list[str]:
    """Every way ``rules`` is wider than the firewall plan, or misses one of its flows."""
    policy = _Policy(fw)
    fabric = netaddr.IPSet(fabric_cidrs)
    essentials = {(t, c) for t, c, _ in ICMP_ESSENTIALS}
    out: list[str] = []
    if not rules:
        return ["the ACL is empty"]
    last = rules[-1]
    if not (last.action == "deny" and last.proto == "ip" and last.src == ANY and last.dst == ANY):
        out.append(f"the last entry ({last.text()}) is not 'deny ip any any'")
    for r in rules[:-1]:
        if r.action == "deny":
            out.append(f"entry {r.text()}: a deny before the end would shadow planned flows")
    permits = [r for r in rules if r.action == "permit"]
    for r in permits:
        why = None
        if r.proto == "icmp" and r.icmp_type is not None:
            if (r.icmp_type, r.icmp_code) not in essentials:
                why = f"ICMP type {r.icmp_type}/{r.icmp_code} is not one the host firewalls accept"
            elif not netaddr.IPSet([r.dst]).issubset(fabric):
                why = f"ICMP towards {r.dst}, beyond the fabric's VLAN subnets"
        elif r.proto == "icmp":
            why = policy.uncovered(r.src, r.dst, "icmp", None, None)
        elif r.proto in ("tcp", "udp"):
            if r.dport and not r.sport and not r.established:
                why = policy.uncovered(r.src, r.dst, r.proto, *r.dport)
            elif r.sport and not r.dport:
                if r.proto == "tcp" and not r.established:
                    why = "a TCP return entry without 'established' admits new connections"
                else:
                    why = policy.uncovered(r.dst, r.src, r.proto, *r.sport)
                    why = why and f"not the return of a planned flow: {why}"
            else:
                why = "a TCP/UDP entry must match exactly one of source or destination ports"
        else:
            why = f"permits all of protocol {r.proto}"
        if why:
            out.append(f"entry {r.text()} is wider than the policy: {why}")
    # Completeness: every rule of every host (and its return traffic) is permitted.
    nets = {r: (netaddr.IPNetwork(r.src), netaddr.IPNetwork(r.dst)) for r in permits}
    for h in fw.hosts:
        for fr in h.rules:
            ranges = fr.ports if fr.proto != "icmp" else ((None, None),)
            need = netaddr.IPSet(fr.sources)
            for d in fr.destinations:
                for lo, hi in ranges:
                    got = netaddr.IPSet()
                    back = netaddr.IPSet()
                    for r in permits:
                        if r.proto != fr.proto or r.icmp_type is not None:
                            continue
                        if fr.proto == "icmp" or (r.dport and r.dport[0] <= lo and hi <= r.dport[1]):
                            if d in nets[r][1] and not r.sport:
                                got.add(nets[r][0])
                        if fr.proto != "icmp" and r.sport and r.sport[0] <= lo and hi <= r.sport[1] \
                                and d in nets[r][0]:
                            back.add(nets[r][1])
                    what = f"{fr.proto}" + (f"/{format_range(lo, hi)}" if lo is not None else "")
                    if not need.issubset(got):
                        out.append(f"flow {', '.join(fr.flows)}: {what} to {d} from "
                                   f"{', '.join(str(c) for c in (need - got).iter_cidrs())} is not permitted")
                    elif fr.proto != "icmp" and not need.issubset(back):
                        out.append(f"flow {', '.join(fr.flows)}: return traffic of {what} from {d} is not permitted")
    return out


# --------------------------------------------------------------------------- semantic checks


def semantic_problems(sw: Switch, view: ConfigView, fw: FirewallPlan) -> list[str]:
    """Differences between a parsed configuration and the plan of switch ``sw`` (empty: it conforms)."""
    nos = view.nos
    out: list[str] = []
    name = sw.name

    def err(msg: str) -> None:
        out.append(f"{name} {msg}")

    if view.hostname != name:
        err(f"hostname is {view.hostname!r}")
    planned_vlans = {v.id for v in sw.vlans}
    missing = planned_vlans - view.vlans
    if missing:
        err(f"VLAN {', '.join(map(str, sorted(missing)))} not declared")
    extra = view.vlans - planned_vlans - ({PEER_VLAN} if sw.mlag else set())
    if extra:
        err(f"VLAN {', '.join(map(str, sorted(extra)))} declared but not in the plan")
    roles = {v.id: v.role for v in sw.vlans}

    def vname(v: int) -> str:
        return f"{v} ({roles[v]})" if v in roles else str(v)

    planned: dict[str, tuple[tuple[int, ...], str]] = {}
    for p in sw.ports:
        if p.bond is None:
            planned[port_name(nos, p.number)] = (p.vlans, p.kind)
    for b in sw.bonds:
        planned[bond_name(nos, b)] = (b.vlans, b.kind)
    for ifname, (vids, kind) in planned.items():
        pv = view.ports.get(ifname)
        if pv is None:
            err(f"{ifname}: missing (planned VLANs {', '.join(map(str, vids))})")
            continue
        want = set(vids)
        got = set(pv.vlans)
        if kind == "peerlink":  # the MLAG peer VLAN rides the peer link as the OS wants it
            want.discard(PEER_VLAN)
            got.discard(PEER_VLAN)
        for v in sorted(want - got):
            err(f"{ifname}: VLAN {vname(v)} missing (planned {_ids(want)}, configured {_ids(got)})")
        for v in sorted(got - want):
            err(f"{ifname}: VLAN {vname(v)} is not planned on this port (planned {_ids(want)})")
        if len(want) == 1 and pv.untagged != want:
            err(f"{ifname}: access port must carry VLAN {vname(next(iter(want)))} untagged")
        if len(want) > 1 and pv.untagged:
            err(f"{ifname}: trunk carries VLAN {_ids(pv.untagged)} untagged; every VLAN must be tagged")
    for ifname, pv in view.ports.items():
        if ifname not in planned and pv.vlans and pv.bond is None:
            err(f"{ifname}: carries VLAN {_ids(pv.vlans)} but is not a planned port")
    # Bond membership.
    for p in sw.ports:
        ifname = port_name(nos, p.number)
        pv = view.ports.get(ifname)
        if pv is None:
            if p.bond is not None:
                err(f"{ifname}: missing (member of {bond_name(nos, sw.bond(p.bond))})")
            continue
        want_bond = bond_name(nos, sw.bond(p.bond)) if p.bond is not None else None
        if pv.bond != want_bond:
            err(f"{ifname}: member of {pv.bond or 'no bond'}, planned {want_bond or 'no bond'}")
    # MTU on every fabric port and bond.
    for ifname in sorted(set(planned) | {port_name(nos, p.number) for p in sw.ports}):
        pv = view.ports.get(ifname)
        if pv is not None and pv.mtu != sw.fabric_mtu:
            err(f"{ifname}: MTU {pv.mtu}, the fabric runs {sw.fabric_mtu}")
    # QoS.
    q = sw.qos
    phys = [view.ports[port_name(nos, p.number)] for p in sw.ports if port_name(nos, p.number) in view.ports]
    if nos == "cumulus":
        if not view.trust_dscp:
            err("qos: DSCP is not trusted (mapping trust l3)")
        if view.pfc != set(q.pfc_priorities):
            err(f"qos: PFC on priority {_ids(view.pfc or set())}, planned only {_ids(set(q.pfc_priorities))}")
    else:
        for pv in phys:
            if not pv.trust_dscp:
                err(f"{pv.name}: DSCP is not trusted")
            if pv.pfc != set(q.pfc_priorities):
                err(f"{pv.name}: PFC on priority {_ids(pv.pfc or set())}, planned only {_ids(set(q.pfc_priorities))}")
    want_map = dict(q.dscp_to_priority)
    for d, p in sorted(want_map.items()):
        if view.dscp_map.get(d) != p:
            err(f"qos: DSCP {d} -> priority {view.dscp_map.get(d)}, planned {p}")
    for p, qu in q.priority_to_queue:
        if view.priority_to_queue.get(p, p) != qu:
            err(f"qos: priority {p} -> queue {view.priority_to_queue.get(p)}, planned {qu}")
    for sq in q.queues:
        if sq.strict and sq.queue not in view.strict:
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) is not strict priority")
        if not sq.strict and view.weights.get(sq.queue) != sq.weight:
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) weight {view.weights.get(sq.queue)}, "
                f"planned {sq.weight}")
        if sq.ecn and view.ecn.get(sq.queue) != (sq.ecn_min_bytes, sq.ecn_max_bytes):
            err(f"qos: queue {sq.queue} ({', '.join(sq.classes)}) ECN {view.ecn.get(sq.queue)}, planned "
                f"{(sq.ecn_min_bytes, sq.ecn_max_bytes)}")
    for qn in sorted(set(view.ecn) - {sq.queue for sq in q.queues if sq.ecn}):
        err(f"qos: ECN on queue {qn}, which the plan keeps without")
    # SVIs.
    planned_svis = {s.vlan: s for s in sw.svis}
    for vid, s in planned_svis.items():
        addrs = view.svis.get(vid)
        if addrs is None:
            err(f"Vlan{vid}: SVI missing (gateway {s.gateway})")
        elif s.gateway not in addrs:
            err(f"Vlan{vid}: gateway {s.gateway} missing (configured {', '.join(sorted(addrs))})")
    for vid in sorted(set(view.svis) - set(planned_svis) - ({PEER_VLAN} if sw.mlag else set())):
        err(f"Vlan{vid}: SVI not in the plan")
    # ACL binding and content.
    acl = sw.acl
    bound_where = {port_name(nos, n) for n in sw.acl_ports} | {bond_name(nos, sw.bond(b)) for b in sw.acl_bonds}
    for ifname, pv in sorted(view.ports.items()):
        want = {acl.name} if acl and ifname in bound_where else set()
        if pv.acl_in != want:
            err(f"{ifname}: inbound ACL {sorted(pv.acl_in) or 'none'}, planned {sorted(want) or 'none'}")
    for ifname in sorted(bound_where - set(view.ports)):
        err(f"{ifname}: missing, so its inbound ACL is not applied")
    if acl is not None:
        rules = view.acls.get(acl.name)
        if rules is None:
            err(f"ACL {acl.name} missing")
        else:
            fabric = tuple(v.cidr for v in sw.vlans)
            out.extend(f"{name} ACL {acl.name}: {p}" for p in acl_problems(rules, fw, fabric))
    elif view.acls:
        err(f"ACL {', '.join(sorted(view.acls))} defined but the plan has none on this switch")
    return out


def _ids(vids) -> str:
    return ",".join(str(v) for v in sorted(vids)) or "none"


def check_switch(sw: Switch, text: str, nos: str, fw: FirewallPlan) -> list[str]:
    """Parse ``text`` as ``nos`` and compare it with the plan; a parse failure is one problem."""
    try:
        view = parse_config(text, nos)
    except ConfigParseError as exc:
        return [f"{sw.name}: not a valid {nos} configuration: {exc}"]
    return semantic_problems(sw, view, fw)
