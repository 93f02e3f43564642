"""Switch rules: the leaf/spine topology, the port map, and pushing configs to switches
(``baremetal.switch_mgmt`` / ``switch_access`` / ``switch_apply``).

Management addresses belong to known switches, sit on the out-of-band VLAN (``oob``, else
``mgmt``) and collide with nothing the IP plan hands out; ``push`` needs one per switch. The
topology and port-map checks live next to the planner that relies on them
(:mod:`llmcluster.plan.switches`), which refuses to plan around them.
"""

from __future__ import annotations

from collections.abc import Iterator

import netaddr

from llmcluster.errors import PlanError, Problem
from llmcluster.plan.switches import (
    capacity_problems,
    leaf_names,
    port_map_problems,
    spine_names,
    topology_problems,
)
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


def _switches(spec: Spec) -> list[str]:
    bm = spec.baremetal
    assert bm is not None
    return leaf_names(bm.leaf_switches) + spine_names(bm.spine_switches)


def _baremetal(spec: Spec) -> bool:
    return spec.platform == "baremetal" and spec.baremetal is not None


@rule("switches.topology")
def topology(spec: Spec) -> list[Problem]:
    """The L2 leaf-spine fabric: at most 2 spines, spines whenever there are several leaves, 4 reserved
    addresses per VLAN for an MLAG spine pair."""
    return topology_problems(spec)


@rule("switches.port-map", layer=PLAN)
def port_map(facts: PlanFacts) -> list[Problem]:
    """baremetal.port_map: known leaves, hosts and NICs; front-panel ports of the switch OS that are not
    uplinks, each mapped once; the VLANs of the cabled NIC, all of them."""
    return port_map_problems(facts.spec)


@rule("switches.port-capacity", layer=PLAN, requires=("switches.topology", "switches.port-map"))
def port_capacity(facts: PlanFacts) -> list[Problem]:
    """Every leaf has the front-panel ports for the host NIC ports the layout puts on it plus its uplinks, and
    the spines have a downlink pair for every leaf; otherwise the minimum baremetal.leaf_switches is named."""
    return capacity_problems(facts.spec)


@rule("switches.mgmt-known-switches")
def mgmt_known_switches(spec: Spec) -> Iterator[Problem]:
    """switch_mgmt and switch_access.host_keys name switches of this fabric."""
    if not _baremetal(spec):
        return
    bm = spec.baremetal
    assert bm is not None
    switches = _switches(spec)
    known = ", ".join(switches[:8]) + (", ..." if len(switches) > 8 else "")
    for key, what in (("switch_mgmt", bm.switch_mgmt), ("switch_access.host_keys", bm.switch_access.host_keys)):
        for name in what:
            if name not in switches:
                yield Problem(f"baremetal.{key}.{name}",
                              f"unknown switch{did_you_mean(name, switches)} (this fabric has {known})")


@rule("switches.push-needs-mgmt")
def push_needs_mgmt(spec: Spec) -> Iterator[Problem]:
    """switch_apply 'push' has the management address of every switch."""
    if not _baremetal(spec):
        return
    bm = spec.baremetal
    assert bm is not None
    if bm.switch_apply == "push":
        missing = [s for s in _switches(spec) if s not in bm.switch_mgmt]
        if missing:
            more = f" and {len(missing) - 6} more" if len(missing) > 6 else ""
            yield Problem("baremetal.switch_mgmt",
                          f"switch_apply 'push' needs the management address of every switch: missing "
                          f"{', '.join(missing[:6])}{more} (or use switch_apply 'render-only')")


@rule("switches.mgmt-address-free", layer=PLAN)
def mgmt_address_free(facts: PlanFacts) -> list[Problem]:
    """A switch management address is a usable address of the oob (else mgmt) VLAN that the IP plan gives
    to nothing else (gateway, VIPs, hosts, BMCs, the MLAG spines' SVIs) and no other switch."""
    spec = facts.spec
    bm = spec.baremetal
    if not _baremetal(spec) or bm is None or not bm.switch_mgmt:
        return []
    role = "oob" if spec.fabric.vlans.oob is not None else "mgmt"
    try:
        ip = facts.ip_plan()
    except PlanError:
        return []  # addresses.ip-plan reports why the plan cannot be built
    out: list[Problem] = []
    vlan = ip.vlans[role]
    net = netaddr.IPNetwork(vlan.cidr)
    taken: dict[str, str] = {vlan.gateway: "the VLAN's gateway"}
    if bm.spine_switches == 2:
        for k, sp in enumerate(spine_names(2), start=1):
            taken[str(netaddr.IPAddress(net.first + 2 + k))] = f"{sp}'s own SVI address on the MLAG pair"
    for name, addr in ip.vips.items():
        taken[addr] = f"the {name} VIP"
    for h in ip.hosts:
        if h.addresses.get(role):
            taken[h.addresses[role]] = f"host {h.name}"
        if role == "oob" and h.bmc:
            taken[h.bmc] = f"the BMC of {h.name}"
    seen: dict[str, str] = {}
    for name, addr in bm.switch_mgmt.items():
        path = f"baremetal.switch_mgmt.{name}"
        a = netaddr.IPAddress(addr)
        if a not in net:
            out.append(Problem(path, f"{addr} is outside the {role} VLAN {vlan.cidr}: switch management addresses "
                                     f"live on the {'out-of-band' if role == 'oob' else 'management'} VLAN"))
        elif a in (net.network, net.broadcast):
            out.append(Problem(path, f"{addr} is the {'network' if a == net.network else 'broadcast'} address "
                                     f"of {vlan.cidr}"))
        elif addr in taken:
            first = netaddr.IPAddress(vlan.reserved_first) + 1
            out.append(Problem(path, f"{addr} is already {taken[addr]}: pick a free address, e.g. in the "
                                     f"reserved range after the gateway ({first}-{vlan.reserved_last})"))
        elif addr in seen:
            out.append(Problem(path, f"{addr} is also the address of {seen[addr]}"))
        seen.setdefault(addr, name)
    return out
