"""Switch configurations from the switch plan: NVIDIA Cumulus Linux (NVUE), SONiC, Arista EOS.

* ``cumulus`` -> ``<switch>.nvue.yaml``: an NVUE startup document (``nv config apply``
  format: a ``header`` and one ``set`` tree);
* ``sonic`` -> ``<switch>.config_db.json``: the ``config_db.json`` tables the plan needs;
* ``eos`` -> ``<switch>.eos.cfg``: an EOS running-config in CLI form.

Templates (``templates/``) receive plan objects only (:class:`~llmcluster.plan.switches.Switch`
with its ports, bonds, VLANs, SVIs, QoS and ACL). :func:`render_switch` renders one switch,
:func:`render_all` every switch of a plan. Each output has a checker in
:mod:`llmcluster.render.switch.check` (real parse + the same semantic checks for all three).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from llmcluster.render import template_environment

from llmcluster.plan.firewall import format_range
from llmcluster.plan.switches import (
    ANY,
    NOSES,
    PROTO_NUMBERS,
    AclEntry,
    Bond,
    Switch,
    SwitchPlan,
    bond_name,
    port_name,
)

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan

TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATES = {"cumulus": "cumulus.nvue.yaml.j2", "sonic": "sonic.config_db.json.j2", "eos": "eos.cfg.j2"}
EXTENSIONS = {"cumulus": "nvue.yaml", "sonic": "config_db.json", "eos": "eos.cfg"}
NOS_TITLES = {"cumulus": "NVIDIA Cumulus Linux (NVUE)", "sonic": "SONiC (config_db.json)", "eos": "Arista EOS"}
#: Cumulus VRR virtual MAC (VRRP range, as Cumulus documents) and EOS VARP virtual MAC.
CUMULUS_VRR_MAC = "00:00:5e:00:01:01"
EOS_VARP_MAC = "00:1c:73:00:00:99"
#: SONiC QoS map / profile names.
SONIC_MAP = "LLMC"


def file_name(switch: str, nos: str) -> str:
    return f"{switch}.{EXTENSIONS[nos]}"


# --------------------------------------------------------------------------- filters


def _vlan_list(vids) -> str:
    return ",".join(str(v) for v in vids)


def _eos_addr(cidr: str) -> str:
    if cidr == ANY:
        return "any"
    if cidr.endswith("/32"):
        return f"host {cidr[:-3]}"
    return cidr


def _eos_ports(rng) -> str:
    lo, hi = rng
    return f"eq {lo}" if lo == hi else f"range {lo} {hi}"


def eos_acl_line(e: AclEntry) -> str:
    """One EOS ``ip access-list`` entry (without its sequence number)."""
    parts = [e.action, e.proto, _eos_addr(e.src)]
    if e.sport:
        parts.append(_eos_ports(e.sport))
    parts.append(_eos_addr(e.dst))
    if e.dport:
        parts.append(_eos_ports(e.dport))
    if e.icmp_type is not None:
        parts.append(str(e.icmp_type))
        if e.icmp_code is not None:
            parts.append(str(e.icmp_code))
    if e.established:
        parts.append("established")
    return " ".join(parts)


def nvue_port(rng) -> str:
    """NVUE port or range key (``'22'``, ``'6800:7300'``)."""
    lo, hi = rng
    return str(lo) if lo == hi else f"{lo}:{hi}"


def nvue_ip(cidr: str) -> str:
    return "ANY" if cidr == ANY else cidr


def sonic_acl_rule(e: AclEntry, priority: int) -> dict[str, str]:
    """One SONiC ``ACL_RULE`` entry's fields (all strings, as config_db holds them)."""
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
    first = (number - 1) * 8
    return ",".join(str(first + i) for i in range(8))


def _json(value) -> str:
    return json.dumps(value, sort_keys=True)


def _chunks(items, size: int):
    items = list(items)
    return [items[i:i + size] for i in range(0, len(items), size)]


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return template_environment({
        "vlan_list": _vlan_list, "eos_acl_line": eos_acl_line, "nvue_port": nvue_port, "nvue_ip": nvue_ip,
        "json": _json, "range_text": lambda r: format_range(*r), "chunks": _chunks, "sonic_lanes": sonic_lanes,
    }, TEMPLATE_DIR)


# --------------------------------------------------------------------------- rendering


def render_switch(switch: Switch, nos: str, stack: str = "") -> str:
    """The configuration of one switch for ``nos`` (``cumulus``, ``sonic`` or ``eos``)."""
    if nos not in NOSES:
        raise ValueError(f"unknown switch OS {nos!r}: use one of {', '.join(NOSES)}")

    def pname(number: int) -> str:
        return port_name(nos, number)

    def bname(bond: Bond) -> str:
        return bond_name(nos, bond)

    members = {p.number: p for p in switch.ports if p.bond is not None}
    ctx = {
        "sw": switch, "nos": nos, "title": NOS_TITLES[nos], "stack": stack, "port_name": pname,
        "bond_name": bname, "members": members, "qos": switch.qos, "acl": switch.acl,
        "standalone_ports": [p for p in switch.ports if p.bond is None],
        "vrr_mac": CUMULUS_VRR_MAC, "varp_mac": EOS_VARP_MAC, "map_name": SONIC_MAP,
    }
    if nos == "sonic":
        ctx["acl_rules"] = [] if switch.acl is None else [
            (e, sonic_acl_rule(e, len(switch.acl.entries) - i)) for i, e in enumerate(switch.acl.entries)
        ]
    text = _env().get_template(TEMPLATES[nos]).render(**ctx)
    if nos in ("cumulus", "eos"):  # macro calls leave blank lines behind; neither format wants them
        text = "\n".join(line for line in text.splitlines() if line.strip()) + "\n"
    return text


def render_all(plan: Plan | SwitchPlan, nos: str | None = None) -> dict[str, str]:
    """``{file name: text}`` for every switch of the plan, in the stack's switch OS unless ``nos``."""
    switches = plan if isinstance(plan, SwitchPlan) else plan.switches
    if switches is None:
        return {}
    nos = nos or switches.nos
    return {file_name(s.name, nos): render_switch(s, nos, switches.stack) for s in switches.switches}
