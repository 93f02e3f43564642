"""SONiC: ``config_db.json`` tables (``<switch>.config_db.json``), ``config load`` to apply them.

* Ports ``Ethernet0``, ``Ethernet8`` ... (8 lanes per port on a 64-port platform: front-panel
  port ``n`` is ``Ethernet<8 (n - 1)>``); bonds ``PortChannel<id>``.
* Template ``templates/sonic.config_db.json.j2``: the ``config_db.json`` tables the plan needs
  (QoS maps and profiles named :data:`MAP_NAME`; ACL rules from :func:`sonic_acl_rule`). QoS
  (DSCP trust, PFC) is per port (``PORT_QOS_MAP``).
* Parser :func:`parse_sonic`: ``json.loads`` + the JSON schema ``sonic_config_db.schema.json``
  (jsonschema) of the tables llmcluster emits, then cross-references (every VLAN member, QoS
  map and ACL port exists).
* Apply: ``sudo config load -y <file>`` then ``sudo config save -y``. ``config load`` merges the
  rendered tables into the running CONFIG_DB without restarting services; ``config reload``
  would replace the whole CONFIG_DB and restart the switch's services (traffic loss), and
  llmcluster's document holds only the tables it manages (no management interface, users,
  AAA), so a reload would wipe those. The consequence of the merge, stated: an entry that
  disappears from the rendered document (a removed VLAN or ACL rule) stays on the switch until
  it is removed by hand or by a reload with a complete ``config_db.json``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from llmcluster.nos.base import (
    ANY,
    AclRule,
    ConfigParseError,
    ConfigView,
    Nos,
    NosProcedure,
    address_of,
    parse_cidr,
    parse_range,
)

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.switches import AclEntry, Bond, Switch

NAME = "sonic"
SCHEMA_PATH = Path(__file__).parent / "sonic_config_db.schema.json"
#: QoS map / profile names.
MAP_NAME = "LLMC"
#: IP protocol numbers of the ACL protocols (config_db holds numbers).
PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17}
_PROTO_NAMES = {n: p for p, n in PROTO_NUMBERS.items()}
LANES_PER_PORT = 8
_PORT = re.compile(r"^Ethernet(\d{1,5})$")


# --------------------------------------------------------------------------- names


def port_name(number: int) -> str:
    return f"Ethernet{(number - 1) * LANES_PER_PORT}"


def port_number(name: str) -> int | None:
    m = _PORT.match(name)
    if not m:
        return None
    v = int(m.group(1))
    return v // LANES_PER_PORT + 1 if v % LANES_PER_PORT == 0 else None


def bond_name(bond: Bond) -> str:
    return f"PortChannel{bond.id}"


# --------------------------------------------------------------------------- template


def sonic_acl_rule(e: AclEntry, priority: int) -> dict[str, str]:
    """One ``ACL_RULE`` entry's fields (all strings, as config_db holds them)."""
    d = {"PRIORITY": str(priority), "PACKET_ACTION": "FORWARD" if e.action == "permit" else "DROP"}
    if e.proto == "ip":
        d["ETHER_TYPE"] = "0x0800"  # IPv4 only: ARP, LACP and LLDP are not this ACL's business
    else:
        d["IP_PROTOCOL"] = str(PROTO_NUMBERS[e.proto])
    if not e.src_is_any:
        d["SRC_IP"] = e.src
    if not e.dst_is_any:
        d["DST_IP"] = e.dst
    for key, rng in (("L4_SRC_PORT", e.sport), ("L4_DST_PORT", e.dport)):
        if rng:
            lo, hi = rng
            if lo == hi:
                d[key] = str(lo)
            else:
                d[f"{key}_RANGE"] = f"{lo}-{hi}"
    if e.established:
        d["TCP_FLAGS"] = "0x10/0x10"  # ACK set: return traffic of an established connection
    if e.icmp_type is not None:
        d["ICMP_TYPE"] = str(e.icmp_type)
    if e.icmp_code is not None:
        d["ICMP_CODE"] = str(e.icmp_code)
    return d


def sonic_lanes(number: int) -> str:
    first = (number - 1) * LANES_PER_PORT
    return ",".join(str(first + i) for i in range(LANES_PER_PORT))


def variables(switch: Switch) -> dict:
    """``map_name`` and ``acl_rules``: (entry, ACL_RULE fields), the first entry with the highest priority."""
    acl = switch.acl
    rules = [] if acl is None else [(e, sonic_acl_rule(e, len(acl.entries) - i)) for i, e in enumerate(acl.entries)]
    return {"map_name": MAP_NAME, "acl_rules": rules}


# --------------------------------------------------------------------------- parser


@lru_cache(maxsize=1)
def _sonic_validator():
    import jsonschema

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def parse_sonic(text: str) -> ConfigView:
    """A ``config_db.json`` -> :class:`ConfigView`: ``json.loads``, the JSON schema, then cross-references."""
    try:
        db = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigParseError(f"not JSON: {exc}") from exc
    errors = sorted(_sonic_validator().iter_errors(db), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigParseError("; ".join(
            f"{'/'.join(str(x) for x in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:5]))
    v = ConfigView(NAME, hostname=db["DEVICE_METADATA"]["localhost"]["hostname"])
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
            v.svis.setdefault(int(vlan[4:]), set()).add(address_of(cidr))
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
            return parse_range(r[key], "-")
        if f"{key}_RANGE" in r:
            return parse_range(r[f"{key}_RANGE"], "-")
        return None

    flags = r.get("TCP_FLAGS")
    established = False
    if flags:
        val, _, mask = flags.partition("/")
        established = int(val, 16) & 0x10 == 0x10 and int(mask, 16) & 0x10 == 0x10
    return AclRule(seq, "permit" if r["PACKET_ACTION"] == "FORWARD" else "deny", proto,
                   parse_cidr(r.get("SRC_IP", ANY)), parse_cidr(r.get("DST_IP", ANY)), ports("L4_SRC_PORT"),
                   ports("L4_DST_PORT"), established,
                   int(r["ICMP_TYPE"]) if "ICMP_TYPE" in r else None,
                   int(r["ICMP_CODE"]) if "ICMP_CODE" in r else None)


def normalise_running(text: str) -> str:
    """``show runningconfiguration all`` with sorted keys (its key order changes on its own)."""
    try:
        return json.dumps(json.loads(text), sort_keys=True, indent=1) + "\n"
    except json.JSONDecodeError:
        return text


NOS = Nos(
    name=NAME,
    title="SONiC (config_db.json)",
    format_name="SONiC config_db",
    extension="config_db.json",
    template="sonic.config_db.json.j2",
    port_name=port_name,
    port_number=port_number,
    port_name_hint="EthernetN (N = 8 x (port - 1))",
    bond_name=bond_name,
    parse=parse_sonic,
    procedure=NosProcedure("/tmp", ("sudo config load -y {path}", "sudo config save -y"),
                           "show runningconfiguration all", normalise_running),
    filters={"sonic_lanes": sonic_lanes},
    variables=variables,
)
