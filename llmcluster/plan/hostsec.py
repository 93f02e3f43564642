"""Host hardening facts derived from the plan: reverse-path filtering per host.

Strict reverse-path filtering (``rp_filter = 1``) drops a packet whose source address the host
would not route back through the interface it arrived on. The roles give every host one
subnet per VLAN interface and a default route through ``mgmt`` only (the network role's
``network_default_route_vlan``), so strict filtering is right wherever every source a flow
admits on a VLAN other than mgmt lies inside that VLAN's subnet: such sources are routed back
through the same interface, and a packet from anywhere else on that interface is spoofed.

Where a flow admits sources from outside the subnet of a VLAN that is not mgmt (an external
zone routed to the gateway over the inference VLAN, say ``clients: 10.0.0.0/12``), their
packets arrive on that VLAN while the route back is the default route through mgmt: strict
filtering would drop every one. Such a host gets loose filtering (``rp_filter = 2``: the
source must be routable through some interface), on all its interfaces, and the reason is
kept next to it (:attr:`RpFilter.routed_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass

import netaddr

from llmcluster.plan.firewall import FirewallPlan
from llmcluster.plan.ipam import IpPlan

#: The VLAN the hosts' default route goes through (the network role's default).
DEFAULT_ROUTE_VLAN = "mgmt"
STRICT = 1
LOOSE = 2


@dataclass(frozen=True)
class RpFilter:
    """A host's reverse-path filtering: ``mode`` 1 strict or 2 loose, and why loose."""

    mode: int
    #: VLAN role -> source CIDRs some flow admits there from outside the VLAN's subnet.
    routed_sources: dict[str, tuple[str, ...]]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "routed_sources": {v: list(s) for v, s in self.routed_sources.items()}}


def rp_filter(firewall: FirewallPlan, ip: IpPlan, host: str) -> RpFilter:
    """Strict unless a flow admits routed sources on a VLAN other than :data:`DEFAULT_ROUTE_VLAN`."""
    routed: dict[str, set[str]] = {}
    for rule in firewall.host(host).rules:
        if rule.vlan == DEFAULT_ROUTE_VLAN or rule.vlan not in ip.vlans:
            continue
        subnet = netaddr.IPNetwork(ip.vlans[rule.vlan].cidr)
        outside = {s for s in rule.sources if netaddr.IPNetwork(s) not in subnet}
        if outside:
            routed.setdefault(rule.vlan, set()).update(outside)
    sources = {v: tuple(sorted(s, key=lambda c: (netaddr.IPNetwork(c).first, c))) for v, s in sorted(routed.items())}
    return RpFilter(LOOSE if sources else STRICT, sources)
