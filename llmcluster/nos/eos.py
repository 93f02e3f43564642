"""Arista EOS: a running-config in CLI form (``<switch>.eos.cfg``), ``configure replace`` to apply it.

* Ports ``Ethernet1/1`` ... ``Ethernet64/1`` (first lane of each front-panel port; a port map
  may say ``Ethernet5``); bonds ``Port-Channel<id>``.
* Template ``templates/eos.cfg.j2``: gateways on an MLAG pair are VARP addresses with
  :data:`VARP_MAC`; ACL entries from :func:`eos_acl_line`. QoS (DSCP trust, PFC) is per
  interface.
* Parser :func:`parse_eos`: ``hier_config`` (its EOS parsing rules: the section hierarchy)
  and a tokenizer for ACL entries (:func:`parse_eos_acl_line`).
* Apply: the file goes to ``/mnt/flash`` (EOS's ``flash:``; SFTP needs a privilege-15 user),
  then ``configure replace flash:<file>`` (an atomic replace of the running configuration) and
  ``copy running-config startup-config``.
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
    from llmcluster.plan.switches import AclEntry, Bond, Switch

NAME = "eos"
#: VARP virtual MAC of the gateways on an MLAG pair.
VARP_MAC = "00:1c:73:00:00:99"
_PORT = re.compile(r"^Ethernet(\d{1,4})(?:/1)?$")


# --------------------------------------------------------------------------- names


def port_name(number: int) -> str:
    return f"Ethernet{number}/1"


def port_number(name: str) -> int | None:
    m = _PORT.match(name)
    if not m:
        return None
    v = int(m.group(1))
    return v if v >= 1 else None


def bond_name(bond: Bond) -> str:
    return f"Port-Channel{bond.id}"


# --------------------------------------------------------------------------- template


def _addr(cidr: str) -> str:
    if cidr == ANY:
        return "any"
    if cidr.endswith("/32"):
        return f"host {cidr[:-3]}"
    return cidr


def _ports(rng) -> str:
    lo, hi = rng
    return f"eq {lo}" if lo == hi else f"range {lo} {hi}"


def eos_acl_line(e: AclEntry) -> str:
    """One ``ip access-list`` entry (without its sequence number)."""
    parts = [e.action, e.proto, _addr(e.src)]
    if e.sport:
        parts.append(_ports(e.sport))
    parts.append(_addr(e.dst))
    if e.dport:
        parts.append(_ports(e.dport))
    if e.icmp_type is not None:
        parts.append(str(e.icmp_type))
        if e.icmp_code is not None:
            parts.append(str(e.icmp_code))
    if e.established:
        parts.append("established")
    return " ".join(parts)


def variables(_switch: Switch) -> dict[str, str]:
    return {"varp_mac": VARP_MAC}


# --------------------------------------------------------------------------- parser


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
    """An EOS running-config -> :class:`ConfigView` (hier_config's section hierarchy, ACL entries tokenized)."""
    if not text.rstrip().endswith("end"):
        raise ConfigParseError("an EOS configuration ends with 'end'")
    tree = _eos_tree(text)
    v = ConfigView(NAME)
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
                    addrs.add(address_of(t.split()[-1]))
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
            return parse_cidr(tok[i - 1] + "/32")
        i += 1
        if "/" not in t:
            raise ConfigParseError(f"ACL entry {line!r}: use prefix notation, not {t!r}")
        return parse_cidr(t)

    def ports() -> tuple[int, int] | None:
        nonlocal i
        if i >= len(tok):
            return None
        t = tok[i]
        if t == "eq" and i + 2 <= len(tok) and tok[i + 1].isdigit():
            i += 2
            return parse_range(tok[i - 1], "-")
        if t == "range":
            i += 3
            return parse_range(f"{tok[i - 2]}-{tok[i - 1]}", "-")
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


def normalise_running(text: str) -> str:
    """``show running-config`` without its ``!`` comment lines (they carry the time, and change on their own)."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("!")) + "\n"


NOS = Nos(
    name=NAME,
    title="Arista EOS",
    format_name="EOS",
    extension="eos.cfg",
    template="eos.cfg.j2",
    port_name=port_name,
    port_number=port_number,
    port_name_hint="EthernetN/1",
    bond_name=bond_name,
    parse=parse_eos,
    procedure=NosProcedure("/mnt/flash", ("configure replace flash:{name}", "copy running-config startup-config"),
                           "show running-config", normalise_running),
    filters={"eos_acl_line": eos_acl_line},
    variables=variables,
    strip_blank_lines=True,
)
