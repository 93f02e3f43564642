"""Probe sources for external zones: where the verification suite's firewall matrix starts.

The firewall matrix tries real connections *from* every zone. Host zones have hosts; an
external zone (``zones.<name>.cidrs``, e.g. the API clients) has none in the lab. The
controller (this machine, on the mgmt bridge at the VLAN gateway address) stands for a zone
that contains its address (the lab's ``admin`` zone). For every other external zone the lab
creates a **probe namespace**: a network namespace with one untagged port per VLAN that
overlaps the zone, addressed with a free address of the zone (the highest one not used by a
host, a virtual IP or the VLAN gateway). It runs no process; the suite runs its prober there
with ``ip netns exec``. Probe namespaces are recorded in the lab state like hosts, so ``down``
removes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import netaddr

from llmcluster.lab import network as N
from llmcluster.plan.build import Plan


@dataclass(frozen=True)
class ProbeSource:
    zone: str
    netns: str
    addresses: dict[str, str]  # VLAN role -> address (on that VLAN's bridge)

    def to_dict(self) -> dict:
        return {"netns": self.netns, "addresses": dict(self.addresses)}


def probe_netns(zone: str) -> str:
    return N.netns_name(f"probe-{zone}")


def controller_address(plan: Plan) -> str:
    return str(plan.ip.vlans["mgmt"].gateway)


def probe_sources(plan: Plan) -> tuple[ProbeSource, ...]:
    """One probe per external zone the controller does not stand in for (pure)."""
    used = {a for h in plan.ip.hosts for a in h.addresses.values()} | set(plan.ip.vips.values())
    used |= {str(v.gateway) for v in plan.ip.vlans.values() if v.gateway}
    controller = netaddr.IPAddress(controller_address(plan))
    out = []
    for zone in plan.firewall.zones:
        if zone.kind != "external":
            continue
        zone_set = netaddr.IPSet(zone.cidrs)
        if controller in zone_set:
            continue
        addresses: dict[str, str] = {}
        for role, vlan in plan.ip.vlans.items():
            net = netaddr.IPNetwork(vlan.cidr)
            usable = zone_set & netaddr.IPSet([net]) - netaddr.IPSet([net.network, net.broadcast])
            free = [ip for ip in reversed(list(usable)) if str(ip) not in used]
            if free:
                addresses[role] = str(free[0])
        if addresses:
            out.append(ProbeSource(zone=zone.name, netns=probe_netns(zone.name), addresses=addresses))
    return tuple(out)


def ensure_probes(plan: Plan, state, progress=None) -> tuple[ProbeSource, ...]:
    """Create (or repair) the probe namespaces; every object is recorded in ``state`` first."""
    probes = probe_sources(plan)
    for probe in probes:
        if progress is not None:
            progress(f"probe {probe.netns} for zone {probe.zone}: {', '.join(probe.addresses.values())}")
        state.record("netns", probe.netns, probe=probe.zone)
        N.ensure_netns(probe.netns)
        for role, addr in probe.addresses.items():
            vlan = plan.ip.vlans[role]
            veth = N.veth_name(f"probe-{probe.zone}", vlan)
            state.record("veth", veth, probe=probe.zone, netns=probe.netns, ifname=N.host_ifname(role),
                         bridge=N.bridge_name(vlan))
            N.ensure_host_port(netns=probe.netns, veth=veth, ifname=N.host_ifname(role),
                               bridge=N.bridge_name(vlan), cidr=f"{addr}/{vlan.prefixlen}", mtu=vlan.mtu)
    return probes
