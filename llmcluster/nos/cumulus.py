"""NVIDIA Cumulus Linux: NVUE startup documents (``<switch>.nvue.yaml``), ``nv config`` to apply them.

* Ports ``swp1`` ... ``swp64``; a bond is named after the plan's bond (``uplink``, ``leaf-01``,
  ``peerlink``).
* Template ``templates/cumulus.nvue.yaml.j2``: an NVUE document in ``nv config apply`` format (a
  ``header`` and one ``set`` tree). Gateways on an MLAG pair are VRR addresses with
  :data:`VRR_MAC`. QoS (DSCP trust, PFC) is switch-wide (``default-global``).
* Parser :func:`parse_nvue`: ``yaml.safe_load`` + structure (a ``header`` and one ``set``
  document with ``system.hostname``, ``interface``, ``qos``).
* Apply: ``nv config replace <file>`` then ``nv config apply -y``. A replace, not a patch: the
  NVUE document is the whole switch configuration, so anything configured by hand is removed
  (apply also saves it as the startup configuration).
"""

from __future__ import annotations

import re
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
    from llmcluster.plan.switches import Bond, Switch

NAME = "cumulus"
#: VRR virtual MAC (VRRP range, as Cumulus documents).
VRR_MAC = "00:00:5e:00:01:01"
_PORT = re.compile(r"^swp(\d{1,4})$")


# --------------------------------------------------------------------------- names


def port_name(number: int) -> str:
    return f"swp{number}"


def port_number(name: str) -> int | None:
    m = _PORT.match(name)
    if not m:
        return None
    v = int(m.group(1))
    return v if v >= 1 else None


def bond_name(bond: Bond) -> str:
    return bond.name


# --------------------------------------------------------------------------- template


def nvue_port(rng) -> str:
    """NVUE port or range key (``'22'``, ``'6800:7300'``)."""
    lo, hi = rng
    return str(lo) if lo == hi else f"{lo}:{hi}"


def nvue_ip(cidr: str) -> str:
    return "ANY" if cidr == ANY else cidr


def variables(_switch: Switch) -> dict[str, str]:
    return {"vrr_mac": VRR_MAC}


# --------------------------------------------------------------------------- parser


def parse_nvue(text: str) -> ConfigView:
    """An NVUE startup document -> :class:`ConfigView` (``yaml.safe_load`` + the structure llmcluster emits)."""
    import yaml

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
    v = ConfigView(NAME, hostname=cfg["system"].get("hostname"))
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
            addrs = {address_of(a) for a in (iface.get("ip", {}).get("address") or {})}
            vrr = iface.get("ip", {}).get("vrr") or {}
            addrs |= {address_of(a) for a in (vrr.get("address") or {})}
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
    src, dst = parse_cidr(str(ip.get("source-ip", "ANY"))), parse_cidr(str(ip.get("dest-ip", "ANY")))
    l4 = ip.get(proto) or {}
    sports = [parse_range(k, ":") for k in (l4.get("source-port") or {})] or [None]
    dports = [parse_range(k, ":") for k in (l4.get("dest-port") or {})] or [None]
    established = "ack" in (l4.get("flags") or []) and "ack" in (l4.get("mask") or [])
    it, ic = ip.get("icmp-type"), ip.get("icmp-code")
    return [AclRule(seq, next(iter(action)), proto, src, dst, sp, dp, established,
                    int(it) if it is not None else None, int(ic) if ic is not None else None)
            for sp in sports for dp in dports]


NOS = Nos(
    name=NAME,
    title="NVIDIA Cumulus Linux (NVUE)",
    format_name="NVUE",
    extension="nvue.yaml",
    template="cumulus.nvue.yaml.j2",
    port_name=port_name,
    port_number=port_number,
    port_name_hint="swpN",
    bond_name=bond_name,
    parse=parse_nvue,
    procedure=NosProcedure("/tmp", ("nv config replace {path}", "nv config apply -y"), "nv config show -o yaml"),
    filters={"nvue_port": nvue_port, "nvue_ip": nvue_ip},
    variables=variables,
    strip_blank_lines=True,
    qos_global=True,
)
