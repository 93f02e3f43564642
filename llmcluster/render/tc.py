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
from llmcluster.plan.qos import DEFAULT_LINK_SPEED, QosPlan, format_speed, parse_speed, tc_classes
from llmcluster.render import template_environment
from llmcluster.spec.models import VLAN_ROLES

TEMPLATE = "host-qos.sh.j2"
QUANTUM = 200_000  # bytes; the kernel's own cap (larger computed quanta only warn)
MIN_BURST = 32 * 1024
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")


@dataclass(frozen=True)
class TcInterface:
    role: str
    ifname: str
    vlan_id: int
    address: str


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

