"""Host tc script: QoS plan -> POSIX sh applying an htb hierarchy with DSCP filters.

One htb class per QoS class under a root class at the link speed: ``rate`` is the class's
bandwidth share of the link (classes with no share, e.g. strict-priority CNP, get 0.1 %,
because htb needs a rate), ``ceil`` the whole link, ``prio`` 0 for strict classes and
``7 - PCP`` (at least 1) otherwise, so higher priorities borrow spare bandwidth first. Each
class gets a ``u32 match ip dsfield <tos> 0xfc`` filter; unmatched traffic goes to the
plan's default class. Bursts are 100 microseconds at the link speed (at least 32 KiB):
small byte bursts round to zero at 100 Gb/s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import jinja2

from llmcluster.errors import PlanError
from llmcluster.plan.ipam import IpPlan
from llmcluster.plan.qos import QosClassPlan, QosPlan
from llmcluster.render import template_environment
from llmcluster.spec.models import VLAN_ROLES

TEMPLATE = "host-qos.sh.j2"
DEFAULT_LINK_SPEED = "100gbit"
QUANTUM = 200_000  # bytes; the kernel's own cap (larger computed quanta only warn)
MIN_BURST = 32 * 1024
_SPEED = re.compile(r"^(\d+)(bit|kbit|mbit|gbit|tbit)$")
_UNITS = {"bit": 1, "kbit": 10**3, "mbit": 10**6, "gbit": 10**9, "tbit": 10**12}
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


def parse_speed(speed: str) -> int:
    """``'100gbit'`` -> bits per second."""
    m = _SPEED.match(speed)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{speed!r} is not a tc rate such as '100gbit', '25gbit' or '800mbit'")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_speed(bits: int) -> str:
    for unit in ("tbit", "gbit", "mbit", "kbit"):
        if bits % _UNITS[unit] == 0:
            return f"{bits // _UNITS[unit]}{unit}"
    return f"{bits}bit"


@dataclass(frozen=True)
class TcClass:
    cls: QosClassPlan
    minor: str  # hex minor of the classid (1:<minor>)
    rate: str
    prio: int


@dataclass(frozen=True)
class TcInterface:
    role: str
    ifname: str
    vlan_id: int
    address: str


def tc_classes(qos: QosPlan, link_bits: int) -> list[TcClass]:
    out = []
    for i, c in enumerate(qos.classes):
        rate = link_bits * c.bandwidth_percent // 100 or max(8_000, link_bits // 1000)
        prio = 0 if c.strict else max(1, 7 - c.pcp)
        out.append(TcClass(cls=c, minor=format(0x10 + i, "x"), rate=format_speed(rate), prio=prio))
    return out


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return template_environment()


def render_host_tc(host_name: str, ip_plan: IpPlan, qos_plan: QosPlan, interfaces: Mapping[str, str],
                   link_speed: str = DEFAULT_LINK_SPEED) -> str:
    """A POSIX sh script applying the QoS classes on ``interfaces`` (VLAN role -> interface name)."""
    host = ip_plan.host(host_name)
    link_bits = parse_speed(link_speed)
    ifaces = []
    for role in sorted(interfaces, key=lambda r: VLAN_ROLES.index(r) if r in VLAN_ROLES else len(VLAN_ROLES)):
        name = interfaces[role]
        if role not in host.addresses:
            raise PlanError(f"interfaces.{role}", f"host {host_name} has no address on VLAN '{role}' "
                                                  f"(it is on {', '.join(host.addresses)})")
        if not _IFNAME.match(name):
            raise PlanError(f"interfaces.{role}", f"{name!r} is not an interface name (1-15 of A-Z a-z 0-9 _ . -)")
        ifaces.append(TcInterface(role=role, ifname=name, vlan_id=ip_plan.vlans[role].id,
                                  address=host.addresses[role]))
    classes = tc_classes(qos_plan, link_bits)
    default = next(c for c in classes if c.cls.name == qos_plan.default_class.name)
    burst = f"{max(MIN_BURST, link_bits // 8 // 10_000)}b"
    return _env().get_template(TEMPLATE).render(
        host=host, qos=qos_plan, classes=classes, default=default, interfaces=ifaces,
        link_speed=format_speed(link_bits), burst=burst, quantum=QUANTUM,
    )

