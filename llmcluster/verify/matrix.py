"""The firewall matrix as real connection attempts: which source tries which address and port.

For every entry of :meth:`FirewallPlan.matrix` (source zone, destination zone, service) the
suite picks a source in the source zone and tries every destination host of the destination
zone on every VLAN the two share (a VLAN is a flat L2 segment: without a shared subnet there
is no path to test), on the service's first and last port. Sources:

* a host zone: its first host in the inventory (the attempt runs on it over SSH);
* an external zone: this machine when one of its addresses is in the zone (the lab's
  controller is in ``admin``), else a probe the inventory names in
  ``llmcluster_verify_probes`` (the lab's probe namespaces); otherwise the entry is skipped
  with the reason.

The expected verdict of each attempt is :meth:`FirewallPlan.allows` for its exact source,
destination, protocol and port — the same rules the host firewall was rendered from — so
``open`` must match "allowed" and ``timeout`` (dropped) must match "denied". ``refused``
means the packet reached the host's stack: never acceptable for a denied flow. ICMP services
are not probed here (echo is accepted rate-limited by the base policy everywhere).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import netaddr

from llmcluster.plan.build import Plan

LOCAL = "local"
NETNS = "netns"
HOST = "host"


@dataclass(frozen=True)
class Source:
    name: str  # host name, "controller" or "probe-<zone>"
    zone: str
    kind: str  # host | local | netns
    addresses: tuple[tuple[str, str], ...]  # (VLAN role, address)
    netns: str | None = None


@dataclass(frozen=True)
class Attempt:
    source: str
    source_address: str
    destination: str
    address: str
    vlan: str
    proto: str
    port: int
    flows: tuple[str, ...]  # flows that admit it; () = must be dropped

    @property
    def allowed(self) -> bool:
        return bool(self.flows)

    def to_probe(self) -> dict:
        return {"source": self.source_address, "address": self.address, "proto": self.proto, "port": self.port}

    def describe(self) -> str:
        return f"{self.source} {self.source_address} -> {self.destination} {self.address} {self.proto}/{self.port}"


@dataclass(frozen=True)
class MatrixCase:
    source_zone: str
    destination_zone: str
    service: str
    allowed: bool  # the matrix verdict (whole zone to whole zone)
    partial: bool
    flows: tuple[str, ...]
    attempts: tuple[Attempt, ...]
    skip_reason: str | None = None

    @property
    def id(self) -> str:
        return f"{self.source_zone}->{self.destination_zone} {self.service}"


def judge(attempt: Attempt, outcome: str) -> str | None:
    """``None`` when the outcome is what the plan says, else the problem in words."""
    if attempt.allowed:
        if outcome == "open":
            return None
        return f"{attempt.describe()}: {outcome}, expected open (flow {', '.join(attempt.flows)})"
    if outcome == "timeout":
        return None
    why = "connected" if outcome == "open" else "the host answered (not filtered)" if outcome == "refused" else outcome
    return f"{attempt.describe()}: {why}, expected dropped (no flow allows it)"


def _vlan_of(plan: Plan, address: str) -> str | None:
    ip = netaddr.IPAddress(address)
    for role, vlan in plan.ip.vlans.items():
        if ip in netaddr.IPNetwork(vlan.cidr):
            return role
    return None


def sources(plan: Plan, inventory_hosts: Iterable[str], local_addresses: Iterable[str] = (),
            probes: Mapping[str, Mapping] | None = None) -> dict[str, Source | str]:
    """Zone -> its probing source, or the reason it has none."""
    present = set(inventory_hosts)
    local = [a for a in local_addresses if _vlan_of(plan, a)]
    out: dict[str, Source | str] = {}
    for zone in plan.firewall.zones:
        if zone.kind == "hosts":
            hosts = [h for h in zone.hosts if h in present]
            if not hosts:
                out[zone.name] = f"zone {zone.name} has no host in the inventory"
                continue
            h = plan.ip.host(hosts[0])
            out[zone.name] = Source(h.name, zone.name, HOST, tuple(sorted(h.addresses.items())))
            continue
        zone_set = netaddr.IPSet(zone.cidrs)
        mine = [a for a in local if netaddr.IPAddress(a) in zone_set]
        if mine:
            out[zone.name] = Source("controller", zone.name, LOCAL,
                                    tuple(sorted((_vlan_of(plan, a) or "", a) for a in mine)))
            continue
        probe = (probes or {}).get(zone.name)
        if probe and probe.get("netns"):
            addrs = tuple(sorted((str(r), str(a)) for r, a in (probe.get("addresses") or {}).items()))
            out[zone.name] = Source(f"probe-{zone.name}", zone.name, NETNS, addrs, netns=str(probe["netns"]))
            continue
        out[zone.name] = (f"no source in external zone {zone.name} ({', '.join(zone.cidrs)}): run verify from a "
                          "machine inside it, or name a probe in llmcluster_verify_probes")
    return out


def _ports(service) -> list[int]:
    if service.lo is None:
        return []
    return sorted({service.lo, service.hi or service.lo})


def matrix_cases(plan: Plan, inventory_hosts: Iterable[str], local_addresses: Iterable[str] = (),
                 probes: Mapping[str, Mapping] | None = None) -> list[MatrixCase]:
    present = set(inventory_hosts)
    srcs = sources(plan, present, local_addresses, probes)
    services = {s.name: s for s in plan.firewall.services}
    out = []
    for entry in plan.firewall.matrix():
        svc = services[entry.service]
        base = dict(source_zone=entry.source_zone, destination_zone=entry.destination_zone, service=entry.service,
                    allowed=entry.allowed, partial=entry.partial, flows=tuple(entry.flows))
        if svc.proto == "icmp":
            out.append(MatrixCase(**base, attempts=(), skip_reason="ICMP is not probed (echo is accepted "
                                                                    "rate-limited by the base policy)"))
            continue
        src = srcs[entry.source_zone]
        if isinstance(src, str):
            out.append(MatrixCase(**base, attempts=(), skip_reason=src))
            continue
        attempts = []
        for dst_name in plan.firewall.zone(entry.destination_zone).hosts:
            if dst_name not in present or dst_name == src.name:
                continue
            dst = plan.ip.host(dst_name)
            for role, saddr in src.addresses:
                daddr = dst.addresses.get(role)
                if daddr is None:
                    continue
                for port in _ports(svc):
                    flows = plan.firewall.allows(saddr, daddr, svc.proto, port)
                    attempts.append(Attempt(src.name, saddr, dst_name, daddr, role, svc.proto, port, tuple(flows)))
        reason = None if attempts else (f"{src.name} shares no VLAN with a host of zone {entry.destination_zone}"
                                        if any(h in present and h != src.name
                                               for h in plan.firewall.zone(entry.destination_zone).hosts)
                                        else f"zone {entry.destination_zone} has no other host to try")
        out.append(MatrixCase(**base, attempts=tuple(attempts), skip_reason=reason))
    return out


def listener_spec(a: Attempt) -> str:
    """``proto/port@address``: the listener of one attempt, bound to the attempt's destination address.

    Not the wildcard address: a service that holds the port on another of the host's addresses (a Ceph
    OSD's cluster-network messenger on 6800, after its public one re-bound elsewhere) makes a wildcard
    bind fail as "in use", and the probe to the attempted address then meets no listener at all."""
    return f"{a.proto}/{a.port}@{a.address}"


def listeners(cases: Iterable[MatrixCase]) -> dict[str, list[str]]:
    """Destination host -> the ``proto/port@address`` listeners the attempts need (sorted)."""
    out: dict[str, set[str]] = {}
    for case in cases:
        for a in case.attempts:
            out.setdefault(a.destination, set()).add(listener_spec(a))

    def key(spec: str) -> tuple[str, int, tuple[int, ...]]:
        proto, rest = spec.split("/", 1)
        port, address = rest.split("@", 1)
        return proto, int(port), tuple(int(x) for x in address.split("."))

    return {h: sorted(v, key=key) for h, v in sorted(out.items())}


def attempts_by_source(cases: Iterable[MatrixCase]) -> dict[str, list[Attempt]]:
    out: dict[str, list[Attempt]] = {}
    seen: set[Attempt] = set()
    for case in cases:
        for a in case.attempts:
            if a not in seen:
                seen.add(a)
                out.setdefault(a.source, []).append(a)
    return out
