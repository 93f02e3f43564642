"""Firewall planner: zones and flows -> normalised per-host INPUT rules (pure, no I/O).

The policy is the same on every host and never configurable:

* ``input`` and ``forward`` default to **drop**, ``output`` to accept;
* loopback and ``established,related`` are accepted, ``invalid`` is dropped;
* ICMP essentials: echo-request is accepted rate-limited; fragmentation-needed (IPv4) and
  packet-too-big (IPv6) are **always** accepted, before the conntrack checks, because path
  MTU discovery breaks without them and the fabric runs jumbo frames next to 1500-byte
  VLANs; time-exceeded / parameter-problem and IPv6 neighbour discovery are accepted;
* what is finally dropped is logged, rate-limited, with the prefix ``llmcluster-drop ``.

Everything else is a *flow* from ``spec.flows``. For every host of the flow's ``to`` zone
the planner emits one rule per protocol: the sources are the flow VLAN addresses of all
hosts of the ``from`` zone (a zone allowed to itself therefore admits its peers) or the
CIDRs of an external zone; the destination is the host's own address on the flow VLAN
(plus the API virtual IP on the gateway hosts' inference VLAN). Interface names are not
known here, so rules match the destination **address** (``ip daddr``).

**Egress flows** (from a host zone to an external zone, e.g. the gateway's audit log to its
collector) add no host rule: ``output`` accepts. They are planned as :class:`EgressRule`
(``FirewallPlan.egress``: the source zone's addresses on the flow VLAN -> the external zone's
CIDRs, protocol and destination ports) so that the fabric ACL, which would otherwise drop
host-initiated traffic at the leaf, permits exactly them and their return traffic.

**Platform flows** are what a platform needs that no spec flow states. One exists: on AWS stacks
with an entry point, ``nlb-health`` admits the gateway port on every gateway's inference address
from exactly the internal NLB's planned addresses (``IpPlan.nlb``): the NLB health-checks its IP
targets from those addresses (clients' own traffic keeps their addresses, ``preserve_client_ip``,
and is the spec's ``api`` flow). It is planned as a :class:`PlatformFlow` (``FirewallPlan.platform``)
and its rules carry its name like any flow; bare-metal and lab plans have none.

Normalisation: rules with the same VLAN, protocol, source set and destinations are merged,
their port ranges merged where they overlap or touch (``100-200`` + ``150-300`` ->
``100-300``; ``3300``, ``6789`` and ``6800-7300`` stay apart), source addresses collapsed
into minimal CIDRs (``netaddr.cidr_merge``), everything sorted; each rule keeps the names
of the flows that produced it. A flow whose source zone has no hosts yields **no** rule:
an empty source set never turns into "any" (:class:`FirewallRule` refuses to exist with
no sources).

:meth:`FirewallPlan.matrix` evaluates the very same rules for every (source zone,
destination zone, service port) triple, so a verification suite can try real connections
and compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import netaddr

from llmcluster.plan.ipam import IpPlan
from llmcluster.spec.models import VLAN_ROLES, Spec

#: Base policy constants (shared by the renderer and the verification suite).
INPUT_POLICY = "drop"
FORWARD_POLICY = "drop"
OUTPUT_POLICY = "accept"
LOG_PREFIX = "llmcluster-drop "
LOG_RATE = "5/second"
LOG_BURST = 10
ECHO_RATE = "10/second"
ECHO_BURST = 20

PROTOCOLS = ("tcp", "udp", "icmp")
#: The platform flow of the internal NLB's health checks (AWS; see the module docstring).
NLB_HEALTH = "nlb-health"
_VLAN_ORDER = {r: i for i, r in enumerate(VLAN_ROLES)}


# --------------------------------------------------------------------------- helpers


def parse_port_spec(spec: str) -> tuple[str, int | None, int | None]:
    """``'tcp/443'`` -> ``('tcp', 443, 443)``; ``'tcp/6800-7300'`` -> ranges; ``'icmp'`` -> Nones."""
    if spec == "icmp":
        return "icmp", None, None
    proto, _, ports = spec.partition("/")
    lo, _, hi = ports.partition("-")
    return proto, int(lo), int(hi or lo)


def merge_ranges(ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """Merge overlapping or adjacent inclusive port ranges; the result is sorted."""
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((lo, hi) for lo, hi in out)


def format_range(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _ip_key(cidr: str) -> tuple[int, int]:
    net = netaddr.IPNetwork(cidr)
    return int(net.first), net.prefixlen


def minimal_cidrs(addresses: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Collapse addresses / CIDRs into the minimal sorted CIDR list."""
    return tuple(str(n) for n in netaddr.cidr_merge([netaddr.IPNetwork(a) for a in addresses]))


# --------------------------------------------------------------------------- plan objects


@dataclass(frozen=True)
class Service:
    """One declared service port (``tcp/22``, ``tcp/6800-7300``, ``icmp``)."""

    proto: str
    lo: int | None = None
    hi: int | None = None

    @property
    def name(self) -> str:
        return self.proto if self.lo is None else f"{self.proto}/{format_range(self.lo, self.hi or self.lo)}"

    def sort_key(self) -> tuple:
        return (self.proto, self.lo or 0, self.hi or 0)


@dataclass(frozen=True)
class FirewallRule:
    """One normalised accept rule on a host's INPUT chain."""

    vlan: str
    proto: str
    sources: tuple[str, ...]  # minimal CIDRs, never empty
    destinations: tuple[str, ...]  # this host's address on ``vlan`` (and VIPs)
    ports: tuple[tuple[int, int], ...]  # merged inclusive ranges; () for icmp
    flows: tuple[str, ...]
    source_zones: tuple[str, ...]
    #: flow name -> its own merged port ranges, so that logs and the matrix name the right flow
    flow_ports: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("a firewall rule needs at least one source: an empty set must never mean 'any'")
        if not self.destinations:
            raise ValueError("a firewall rule needs at least one destination address")
        if self.proto not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.proto!r}")
        if self.proto != "icmp" and not self.ports:
            raise ValueError(f"a {self.proto} rule needs ports")

    @property
    def port_strings(self) -> tuple[str, ...]:
        return tuple(format_range(lo, hi) for lo, hi in self.ports)

    def covers(self, lo: int | None, hi: int | None) -> bool:
        """Whether the whole port range ``lo-hi`` is inside one of the rule's ranges."""
        if self.proto == "icmp" or lo is None:
            return True
        return any(a <= lo and (hi or lo) <= b for a, b in self.ports)

    def overlaps(self, lo: int | None, hi: int | None) -> bool:
        if self.proto == "icmp" or lo is None:
            return True
        return any(a <= (hi or lo) and lo <= b for a, b in self.ports)

    def flows_for(self, lo: int | None, hi: int | None) -> tuple[str, ...]:
        """The flows whose own ports overlap ``lo-hi`` (all flows for ICMP)."""
        if self.proto == "icmp" or lo is None or not self.flow_ports:
            return self.flows
        top = hi or lo
        return tuple(f for f, ranges in self.flow_ports if any(a <= top and lo <= b for a, b in ranges))

    def matches(self, saddr: str, daddr: str, proto: str, port: int | None = None) -> bool:
        """Packet match, as the kernel would evaluate the rendered rule."""
        if proto != self.proto or daddr not in self.destinations:
            return False
        if proto != "icmp" and (port is None or not self.covers(port, port)):
            return False
        ip = netaddr.IPAddress(saddr)
        return any(ip in netaddr.IPNetwork(s) for s in self.sources)

    def sort_key(self) -> tuple:
        return (_VLAN_ORDER.get(self.vlan, 99), self.proto, tuple(_ip_key(s) for s in self.sources),
                self.ports, self.destinations)

    def to_dict(self) -> dict:
        return {
            "vlan": self.vlan, "proto": self.proto, "sources": list(self.sources),
            "destinations": list(self.destinations), "ports": list(self.port_strings),
            "flows": list(self.flows), "source_zones": list(self.source_zones),
            "flow_ports": {f: [format_range(lo, hi) for lo, hi in r] for f, r in self.flow_ports},
        }


@dataclass(frozen=True)
class EgressRule:
    """One normalised egress flow: cluster hosts (``sources``) to an external network (``destinations``)."""

    vlan: str
    proto: str
    sources: tuple[str, ...]  # the source zone's addresses on ``vlan`` (minimal CIDRs), never empty
    destinations: tuple[str, ...]  # the external zone's CIDRs (minimal), never empty
    ports: tuple[tuple[int, int], ...]  # merged inclusive ranges; () for icmp
    flows: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.sources or not self.destinations:
            raise ValueError("an egress rule needs sources and destinations: an empty set must never mean 'any'")
        if self.proto not in PROTOCOLS:
            raise ValueError(f"unknown protocol {self.proto!r}")
        if self.proto != "icmp" and not self.ports:
            raise ValueError(f"a {self.proto} rule needs ports")

    @property
    def port_strings(self) -> tuple[str, ...]:
        return tuple(format_range(lo, hi) for lo, hi in self.ports)

    def covers(self, lo: int | None, hi: int | None) -> bool:
        if self.proto == "icmp" or lo is None:
            return True
        return any(a <= lo and (hi or lo) <= b for a, b in self.ports)

    def admits(self, src: str, dst: str, proto: str, lo: int | None, hi: int | None) -> bool:
        """Whether every packet from CIDR ``src`` to CIDR ``dst`` on ``proto lo-hi`` is this egress flow's."""
        return (proto == self.proto and self.covers(lo, hi)
                and netaddr.IPSet([src]).issubset(netaddr.IPSet(self.sources))
                and netaddr.IPSet([dst]).issubset(netaddr.IPSet(self.destinations)))

    def sort_key(self) -> tuple:
        return (_VLAN_ORDER.get(self.vlan, 99), self.proto, tuple(_ip_key(s) for s in self.sources),
                tuple(_ip_key(d) for d in self.destinations), self.ports)

    def to_dict(self) -> dict:
        return {"vlan": self.vlan, "proto": self.proto, "sources": list(self.sources),
                "destinations": list(self.destinations), "ports": list(self.port_strings), "flows": list(self.flows)}


@dataclass(frozen=True)
class PlatformFlow:
    """A flow the platform needs and the spec does not state (``nlb-health``): ``sources`` -> the
    ``to_pool`` hosts' addresses on ``vlan``, ``proto`` ``ports``."""

    name: str
    description: str
    vlan: str
    proto: str
    sources: tuple[str, ...]  # minimal CIDRs, never empty
    to_pool: str
    ports: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"platform flow {self.name}: no sources (an empty set must never mean 'any')")

    def to_dict(self) -> dict:
        return {"description": self.description, "vlan": self.vlan, "proto": self.proto,
                "sources": list(self.sources), "to_pool": self.to_pool,
                "ports": [format_range(lo, hi) for lo, hi in self.ports]}


@dataclass(frozen=True)
class HostFirewall:
    """The firewall of one host: its addresses and its normalised flow rules."""

    host: str
    pool: str
    zone: str | None
    addresses: dict[str, str]  # VLAN role -> address
    vips: dict[str, tuple[str, ...]]  # VLAN role -> virtual IPs this host may hold
    rules: tuple[FirewallRule, ...]

    def local_addresses(self, vlan: str) -> tuple[str, ...]:
        own = (self.addresses[vlan],) if vlan in self.addresses else ()
        return own + self.vips.get(vlan, ())

    def allows(self, saddr: str, daddr: str, proto: str, port: int | None = None) -> tuple[str, ...]:
        """Flows admitting the packet (empty: the base policy drops it unless it is ICMP essentials)."""
        flows: set[str] = set()
        for r in self.rules:
            if r.matches(saddr, daddr, proto, port):
                flows.update(r.flows_for(port, port))
        return tuple(sorted(flows))

    def to_dict(self) -> dict:
        return {
            "host": self.host, "pool": self.pool, "zone": self.zone,
            "addresses": dict(self.addresses),
            "vips": {k: list(v) for k, v in self.vips.items()},
            "rules": [r.to_dict() for r in self.rules],
        }


@dataclass(frozen=True)
class ZoneInfo:
    name: str
    kind: str  # "hosts" | "external"
    pools: tuple[str, ...]
    hosts: tuple[str, ...]
    cidrs: tuple[str, ...]
    addresses: dict[str, tuple[str, ...]]  # VLAN role -> host addresses (host zones)

    def all_addresses(self) -> netaddr.IPSet:
        if self.kind == "external":
            return netaddr.IPSet(self.cidrs)
        return netaddr.IPSet([a for addrs in self.addresses.values() for a in addrs])

    def sources_on(self, vlan: str) -> netaddr.IPSet:
        if self.kind == "external":
            return netaddr.IPSet(self.cidrs)
        return netaddr.IPSet(self.addresses.get(vlan, ()))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "pools": list(self.pools), "hosts": list(self.hosts), "cidrs": list(self.cidrs),
                "addresses": {k: list(v) for k, v in self.addresses.items()}}


@dataclass(frozen=True)
class MatrixEntry:
    """Whether ``source_zone`` may reach ``destination_zone`` on ``service``.

    ``allowed``: every address of the source zone (for host zones: its addresses on the
    VLAN) reaches every host of the destination zone on at least one VLAN. ``partial``: not
    allowed, but some source addresses are admitted somewhere (overlapping zones, e.g. an
    admin network inside a clients network). ``vlans``: where it is allowed.
    """

    source_zone: str
    destination_zone: str
    service: str
    allowed: bool
    partial: bool
    vlans: tuple[str, ...]
    flows: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"from": self.source_zone, "to": self.destination_zone, "service": self.service,
                "allowed": self.allowed, "partial": self.partial, "vlans": list(self.vlans),
                "flows": list(self.flows)}


@dataclass(frozen=True)
class FirewallPlan:
    stack: str
    hosts: tuple[HostFirewall, ...]
    zones: tuple[ZoneInfo, ...]
    services: tuple[Service, ...]
    #: flows from host zones to external zones (no host rule: what the fabric ACL must permit out)
    egress: tuple[EgressRule, ...] = ()
    #: flows of the platform, not of the spec (AWS: ``nlb-health``); empty on bare metal and in the lab
    platform: tuple[PlatformFlow, ...] = ()
    policy: dict[str, str] = field(default_factory=lambda: {
        "input": INPUT_POLICY, "forward": FORWARD_POLICY, "output": OUTPUT_POLICY,
    })
    log_prefix: str = LOG_PREFIX
    log_rate: str = LOG_RATE
    log_burst: int = LOG_BURST
    echo_rate: str = ECHO_RATE
    echo_burst: int = ECHO_BURST

    def host(self, name: str) -> HostFirewall:
        for h in self.hosts:
            if h.host == name:
                return h
        raise KeyError(name)

    def zone(self, name: str) -> ZoneInfo:
        for z in self.zones:
            if z.name == name:
                return z
        raise KeyError(name)

    def allows(self, saddr: str, daddr: str, proto: str, port: int | None = None) -> tuple[str, ...]:
        """Flows admitting a packet to whichever host owns ``daddr`` (empty tuple: denied)."""
        flows: set[str] = set()
        for h in self.hosts:
            if any(daddr in h.local_addresses(v) for v in VLAN_ROLES):
                flows.update(h.allows(saddr, daddr, proto, port))
        return tuple(sorted(flows))

    def matrix(self) -> tuple[MatrixEntry, ...]:
        """Every (source zone, destination host zone, service) with the verdict of the rules.

        Destinations are host zones only (external zones have no hosts to firewall). ICMP
        echo-request is accepted from anywhere (rate-limited) by the base policy; an
        ``icmp`` service here reports only what flows add (all ICMP types).
        """
        out = []
        for src in self.zones:
            for dst in self.zones:
                if dst.kind != "hosts":
                    continue
                hosts = [self.host(n) for n in dst.hosts]
                for svc in self.services:
                    out.append(_evaluate(src, dst, hosts, svc))
        return tuple(out)

    def to_dict(self) -> dict:
        d = {
            "stack": self.stack,
            "policy": {
                **self.policy,
                "loopback": "accept", "established_related": "accept", "invalid": "drop",
                "log": {"prefix": self.log_prefix, "rate": self.log_rate, "burst": self.log_burst},
                "icmp": {
                    "echo_request": {"rate": self.echo_rate, "burst": self.echo_burst},
                    "always": ["icmp destination-unreachable frag-needed", "icmpv6 packet-too-big"],
                    "accept": ["icmp time-exceeded", "icmp parameter-problem",
                               "icmpv6 destination-unreachable", "icmpv6 time-exceeded",
                               "icmpv6 parameter-problem", "icmpv6 neighbour discovery (hop limit 255)"],
                },
            },
            "zones": {z.name: z.to_dict() for z in self.zones},
            "services": [s.name for s in self.services],
            "hosts": {h.host: h.to_dict() for h in self.hosts},
            "egress": [e.to_dict() for e in self.egress],
        }
        if self.platform:  # only where a platform adds flows: other plans keep their exact shape
            d["platform_flows"] = {p.name: p.to_dict() for p in self.platform}
        return d


def _evaluate(src: ZoneInfo, dst: ZoneInfo, hosts: list[HostFirewall], svc: Service) -> MatrixEntry:
    src_all = src.all_addresses()
    flows: set[str] = set()
    partial = False
    per_host: list[set[str]] = []
    for h in hosts:
        ok: set[str] = set()
        for vlan, addr in h.addresses.items():
            need = src.sources_on(vlan)
            admitted = netaddr.IPSet()
            for r in h.rules:
                if r.proto != svc.proto or addr not in r.destinations:
                    continue
                rule_set = netaddr.IPSet(r.sources)
                if r.overlaps(svc.lo, svc.hi) and (rule_set & src_all):
                    partial = True
                    flows.update(r.flows_for(svc.lo, svc.hi))
                if r.covers(svc.lo, svc.hi):
                    admitted |= rule_set
            if need and need.issubset(admitted):
                ok.add(vlan)
        per_host.append(ok)
    allowed = bool(hosts) and bool(src_all) and all(per_host)
    vlans = sorted(set().union(*per_host), key=lambda v: _VLAN_ORDER.get(v, 99)) if allowed else []
    return MatrixEntry(source_zone=src.name, destination_zone=dst.name, service=svc.name, allowed=allowed,
                       partial=partial and not allowed, vlans=tuple(vlans), flows=tuple(sorted(flows)))


# --------------------------------------------------------------------------- planner


def _zones(spec: Spec, ip: IpPlan) -> tuple[ZoneInfo, ...]:
    out = []
    for name in sorted(spec.zones):
        z = spec.zones[name]
        if z.cidrs:
            out.append(ZoneInfo(name=name, kind="external", pools=(), hosts=(),
                                cidrs=minimal_cidrs(z.cidrs), addresses={}))
            continue
        hosts = [h for h in ip.hosts if h.pool in z.pools]
        addrs: dict[str, tuple[str, ...]] = {}
        for role in VLAN_ROLES:
            on = tuple(h.addresses[role] for h in hosts if role in h.addresses)
            if on:
                addrs[role] = on
        out.append(ZoneInfo(name=name, kind="hosts", pools=tuple(z.pools), hosts=tuple(h.name for h in hosts),
                            cidrs=(), addresses=addrs))
    return tuple(out)


def _services(spec: Spec) -> tuple[Service, ...]:
    found: set[Service] = set()
    for f in spec.flows:
        for p in f.ports:
            found.add(Service(*parse_port_spec(p)))
    found.add(Service("tcp", spec.serving.port, spec.serving.port))
    if spec.serving.gateway is not None:
        found.add(Service("tcp", spec.serving.gateway.port, spec.serving.gateway.port))
    return tuple(sorted(found, key=Service.sort_key))


def build_firewall_plan(spec: Spec, ip: IpPlan) -> FirewallPlan:
    """Normalised per-host rules for every host of the IP plan (see the module docstring)."""
    zones = {z.name: z for z in _zones(spec, ip)}
    zone_of_pool = {p: zname for zname, z in spec.zones.items() for p in z.pools}
    gateway_pool = spec.serving.gateway.pool if spec.serving.gateway is not None else None
    api_vip = ip.vips.get("api")

    # (host, vlan, proto, sources, destinations) -> {flow: port ranges}, source zones
    groups: dict[tuple, tuple[dict[str, list[tuple[int, int]]], set[str]]] = {}
    host_vips: dict[str, dict[str, tuple[str, ...]]] = {}
    for h in ip.hosts:
        host_vips[h.name] = {"inference": (api_vip,)} if (
            api_vip and h.pool == gateway_pool and "inference" in h.addresses) else {}

    # (vlan, proto, sources, destinations) -> {flow: port ranges}
    egress: dict[tuple, dict[str, list[tuple[int, int]]]] = {}
    for flow in spec.flows:
        src, dst = zones.get(flow.from_), zones.get(flow.to)
        if src is not None and dst is not None and src.kind == "hosts" and dst.kind == "external":
            sources = minimal_cidrs(src.addresses.get(flow.vlan, ()))
            if sources:  # a source zone without hosts sends nothing
                for port in flow.ports:
                    proto, lo, hi = parse_port_spec(port)
                    ranges = egress.setdefault((flow.vlan, proto, sources, minimal_cidrs(dst.cidrs)), {})
                    ranges.setdefault(flow.name, []).extend([(lo, hi)] if lo is not None and hi is not None else [])
            continue
        if src is None or dst is None or dst.kind != "hosts":
            continue  # rejected by whole-spec validation; never widen the policy
        if src.kind == "external":
            sources = minimal_cidrs(src.cidrs)
        else:
            sources = minimal_cidrs(src.addresses.get(flow.vlan, ()))
        if not sources:
            continue  # a source zone without hosts admits nobody (never "any")
        for host_name in dst.hosts:
            h = ip.host(host_name)
            if flow.vlan not in h.addresses:
                continue
            dests = (h.addresses[flow.vlan],) + host_vips[host_name].get(flow.vlan, ())
            for port in flow.ports:
                proto, lo, hi = parse_port_spec(port)
                key = (host_name, flow.vlan, proto, sources, dests)
                by_flow, szones = groups.setdefault(key, ({}, set()))
                ranges = by_flow.setdefault(flow.name, [])
                if lo is not None and hi is not None:
                    ranges.append((lo, hi))
                szones.add(src.name)

    platform = _platform_flows(spec, ip)
    for pf in platform:
        for h in ip.hosts_in_pool(pf.to_pool):
            if pf.vlan not in h.addresses:
                continue
            # the NLB reaches the target address only (not the API VIP): nothing wider than it needs
            key = (h.name, pf.vlan, pf.proto, pf.sources, (h.addresses[pf.vlan],))
            by_flow, _ = groups.setdefault(key, ({}, set()))
            by_flow.setdefault(pf.name, []).extend(pf.ports)

    rules_by_host: dict[str, list[FirewallRule]] = {h.name: [] for h in ip.hosts}
    for (host_name, vlan, proto, sources, dests), (by_flow, szones) in groups.items():
        icmp = proto == "icmp"
        rules_by_host[host_name].append(FirewallRule(
            vlan=vlan, proto=proto, sources=sources, destinations=dests,
            ports=() if icmp else merge_ranges([r for ranges in by_flow.values() for r in ranges]),
            flows=tuple(sorted(by_flow)), source_zones=tuple(sorted(szones)),
            flow_ports=tuple((f, () if icmp else merge_ranges(by_flow[f])) for f in sorted(by_flow)),
        ))

    hosts = tuple(
        HostFirewall(
            host=h.name, pool=h.pool, zone=zone_of_pool.get(h.pool), addresses=dict(h.addresses),
            vips=host_vips[h.name],
            rules=tuple(sorted(rules_by_host[h.name], key=FirewallRule.sort_key)),
        )
        for h in ip.hosts
    )
    egress_rules = tuple(sorted(
        (EgressRule(vlan=vlan, proto=proto, sources=sources, destinations=dests,
                    ports=() if proto == "icmp" else merge_ranges([r for rs in by_flow.values() for r in rs]),
                    flows=tuple(sorted(by_flow)))
         for (vlan, proto, sources, dests), by_flow in egress.items()), key=EgressRule.sort_key))
    return FirewallPlan(stack=spec.stack, hosts=hosts, zones=tuple(zones.values()), services=_services(spec),
                        egress=egress_rules, platform=platform)


def _platform_flows(spec: Spec, ip: IpPlan) -> tuple[PlatformFlow, ...]:
    """``nlb-health`` where the IP plan gives the internal NLB addresses (AWS with an entry point)."""
    gw = spec.serving.gateway
    if not ip.nlb or gw is None:
        return ()
    return (PlatformFlow(
        name=NLB_HEALTH, description="the internal NLB's health checks of the gateways, from its own addresses",
        vlan="inference", proto="tcp", sources=minimal_cidrs(tuple(ip.nlb.values())), to_pool=gw.pool,
        ports=((gw.port, gw.port),)),)
