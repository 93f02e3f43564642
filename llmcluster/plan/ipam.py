"""IP plan: VLAN subnets carved from the site supernet, gateways, VIPs and host addresses.

Pure and deterministic (netaddr only). Rules:

* VLANs with an explicit ``subnet`` are placed first; the rest are carved largest-first
  (then in canonical role order) from the lowest free space of the supernet, so adding a
  small VLAN never moves a big one.
* In every VLAN the first ``reserved`` host addresses are kept: ``.1`` is the router
  (gateway), the inference VLAN's ``.2`` is the API virtual IP of the gateway pool; the
  rest are for switch SVIs and future VIPs.
* Hosts are numbered per pool (``gpu-01`` ...) in pool declaration order and get the next
  free address in each VLAN their pool attaches to; BMCs follow on the oob VLAN.
* On AWS the internal NLB takes one address in the inference subnet of each zone that holds a
  gateway: the last reserved address of that zone's slice (:func:`llmcluster.plan.aws_zones.nlb_address`),
  where no host is ever numbered (``IpPlan.nlb``).
* Running out of addresses is a :class:`~llmcluster.errors.PlanError` naming the VLAN key
  to enlarge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import netaddr

from llmcluster.errors import PlanError
from llmcluster.spec.models import VLAN_ROLES, Spec


@dataclass(frozen=True)
class VlanPlan:
    role: str
    id: int
    cidr: str
    gateway: str
    mtu: int
    reserved_first: str
    reserved_last: str
    first_host: str
    last_host: str
    capacity: int
    used: int

    @property
    def prefixlen(self) -> int:
        return int(self.cidr.rsplit("/", 1)[1])

    def to_dict(self) -> dict:
        return {
            "role": self.role,
            "id": self.id,
            "cidr": self.cidr,
            "gateway": self.gateway,
            "mtu": self.mtu,
            "reserved": [self.reserved_first, self.reserved_last],
            "hosts": [self.first_host, self.last_host],
            "capacity": self.capacity,
            "used": self.used,
        }


@dataclass(frozen=True)
class HostPlan:
    name: str
    fqdn: str
    pool: str
    role: str
    index: int
    addresses: dict[str, str]  # VLAN role -> IPv4 address
    bmc: str | None = None

    @property
    def mgmt_ip(self) -> str:
        return self.addresses["mgmt"]

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "fqdn": self.fqdn,
            "pool": self.pool,
            "role": self.role,
            "index": self.index,
            "addresses": dict(self.addresses),
        }
        if self.bmc:
            d["bmc"] = self.bmc
        return d


@dataclass(frozen=True)
class IpPlan:
    supernet: str
    vlans: dict[str, VlanPlan]
    hosts: tuple[HostPlan, ...]
    vips: dict[str, str] = field(default_factory=dict)
    #: AWS only: availability zone -> the internal NLB's private address in that zone's inference subnet
    nlb: dict[str, str] = field(default_factory=dict)

    def host(self, name: str) -> HostPlan:
        index = self.__dict__.get("_index")
        if index is None:  # built once: lookups stay O(1) for 1000+ node plans
            index = {h.name: h for h in self.hosts}
            object.__setattr__(self, "_index", index)
        return index[name]

    def hosts_in_pool(self, pool: str) -> list[HostPlan]:
        return [h for h in self.hosts if h.pool == pool]

    def to_dict(self) -> dict:
        d = {
            "supernet": self.supernet,
            "vlans": {r: v.to_dict() for r, v in self.vlans.items()},
            "vips": dict(self.vips),
            "hosts": [h.to_dict() for h in self.hosts],
        }
        if self.nlb:  # AWS stacks with an entry point only: other plans keep their exact shape
            d["nlb"] = dict(self.nlb)
        return d


def hostname(prefix: str, index: int, count: int) -> str:
    width = max(2, len(str(count)))
    return f"{prefix}-{index:0{width}d}"


def _carve(spec: Spec) -> dict[str, netaddr.IPNetwork]:
    supernet = netaddr.IPNetwork(spec.site.supernet)
    free = netaddr.IPSet([supernet])
    placed: dict[str, netaddr.IPNetwork] = {}
    declared = spec.fabric.vlans.items()
    # Explicit subnets first.
    for role, vlan in declared:
        if vlan.subnet is None:
            continue
        net = netaddr.IPNetwork(vlan.subnet)
        path = f"fabric.vlans.{role}.subnet"
        if net not in supernet:
            raise PlanError(path, f"{net} is outside site.supernet {supernet}")
        for other, onet in placed.items():
            if net in onet or onet in net or (net.first <= onet.last and onet.first <= net.last):
                raise PlanError(path, f"{net} overlaps fabric.vlans.{other}.subnet {onet}")
        placed[role] = net
        free.remove(net)
    order = {r: i for i, r in enumerate(VLAN_ROLES)}
    pending = sorted(
        ((role, vlan) for role, vlan in declared if vlan.subnet is None),
        key=lambda rv: (rv[1].prefixlen, order[rv[0]]),
    )
    for role, vlan in pending:
        prefix = vlan.prefixlen
        if prefix < supernet.prefixlen:
            raise PlanError(
                f"fabric.vlans.{role}.prefix", f"/{prefix} is larger than site.supernet {supernet}"
            )
        chosen = None
        for cidr in free.iter_cidrs():
            if cidr.prefixlen <= prefix:
                chosen = next(cidr.subnet(prefix))
                break
        if chosen is None:
            raise PlanError(
                f"fabric.vlans.{role}.prefix",
                f"no free /{prefix} left in site.supernet {supernet}: enlarge the supernet or shrink VLAN prefixes",
            )
        placed[role] = chosen
        free.remove(chosen)
    return placed


def exhausted_vlans(spec: Spec) -> list[PlanError]:
    """Every VLAN whose hosts (and BMCs) do not fit, each as the PlanError :func:`build_ip_plan` raises
    for the first of them (it stops there; validation reports them all in one run). Carving errors
    (subnets that do not fit the supernet) are raised, as by :func:`build_ip_plan`."""
    nets = _carve(spec)
    vlan_specs = dict(spec.fabric.vlans.items())
    out: list[PlanError] = []
    for role, net in nets.items():
        vlan = vlan_specs[role]
        if net.size - 2 - vlan.reserved < 1:
            out.append(PlanError(f"fabric.vlans.{role}.reserved",
                                 f"{vlan.reserved} reserved addresses leave no host addresses in {net}"))
    if out:
        return out
    demand = _demand(spec)
    for role, net in nets.items():
        capacity = net.size - 2 - vlan_specs[role].reserved
        if demand.get(role, 0) > capacity:
            out.append(_exhausted(spec, role, net, _nth_user(spec, role, capacity + 1), demand))
    return out


def _nth_user(spec: Spec, role: str, n: int) -> str:
    """The ``n``-th address user of VLAN ``role`` in plan order (hosts by pool, then BMCs on oob)."""
    seen = 0
    for pool_name, pool in spec.pools.items():
        if role in pool.vlans:
            if seen + pool.count >= n:
                return hostname(spec.hostname_prefix(pool_name), n - seen, pool.count)
            seen += pool.count
    if role == "oob":
        for pool_name, pool in spec.pools.items():
            if pool.bmc:
                if seen + pool.count >= n:
                    return f"{hostname(spec.hostname_prefix(pool_name), n - seen, pool.count)} BMC"
                seen += pool.count
    return "?"  # pragma: no cover - only called with n <= demand


def _exhausted(spec: Spec, role: str, net: netaddr.IPNetwork, what: str, demand: dict[str, int]) -> PlanError:
    vlan = dict(spec.fabric.vlans.items())[role]
    need = demand.get(role, 0) + vlan.reserved + 2
    suggest = max(1, 32 - (need - 1).bit_length())
    return PlanError(
        f"fabric.vlans.{role}.prefix",
        f"{net} is exhausted at {what}: {demand.get(role, 0)} addresses needed, "
        f"{net.size - 2 - vlan.reserved} available after {vlan.reserved} reserved; use /{suggest} or larger",
    )


def build_ip_plan(spec: Spec) -> IpPlan:
    from llmcluster.plan import aws_zones

    nets = _carve(spec)
    # Demand per VLAN, in host order.
    hosts_out: list[HostPlan] = []
    next_free: dict[str, int] = {}
    capacity: dict[str, int] = {}
    vlan_specs = dict(spec.fabric.vlans.items())
    # On AWS a VLAN whose hosts sit in several availability zones is one subnet per zone
    # (llmcluster.plan.aws_zones): each zone's hosts are numbered in their zone's slice.
    zone_nets: dict[tuple[str, int], netaddr.IPNetwork] = {}
    for role, net in nets.items():
        vlan = vlan_specs[role]
        size = net.size - 2  # network and broadcast
        if size - vlan.reserved < 1:
            raise PlanError(
                f"fabric.vlans.{role}.reserved",
                f"{vlan.reserved} reserved addresses leave no host addresses in {net}",
            )
        next_free[role] = net.first + 1 + vlan.reserved
        capacity[role] = size - vlan.reserved
        parts = aws_zones.slices(spec, role, net)
        if len(parts) > 1:
            for z, part in parts.items():
                zone_nets[(role, z)] = part
                next_free[f"{role}@{z}"] = part.first + 1 + vlan.reserved

    def take(role: str, what: str, zone: int = 0) -> str:
        key = f"{role}@{zone}" if (role, zone) in zone_nets else role
        net = zone_nets.get((role, zone), nets[role])
        ip = next_free[key]
        if ip > net.last - 1:
            raise _exhausted(spec, role, net, what, _demand(spec))
        next_free[key] = ip + 1
        return str(netaddr.IPAddress(ip))

    domain = spec.site.domain
    for pool_name, pool in spec.pools.items():
        prefix = spec.hostname_prefix(pool_name)
        for i in range(1, pool.count + 1):
            name = hostname(prefix, i, pool.count)
            zone = aws_zones.host_zone(spec, pool_name, i) if spec.platform == "aws" else 0
            addrs = {role: take(role, name, zone) for role in VLAN_ROLES if role in pool.vlans and role in nets}
            hosts_out.append(
                HostPlan(
                    name=name,
                    fqdn=f"{name}.{domain}",
                    pool=pool_name,
                    role=pool.role,
                    index=i,
                    addresses=addrs,
                )
            )
    # BMCs after all host interfaces on the oob VLAN.
    final_hosts: list[HostPlan] = []
    for h in hosts_out:
        if spec.pools[h.pool].bmc and "oob" in nets:
            h = HostPlan(
                h.name, h.fqdn, h.pool, h.role, h.index, h.addresses, bmc=take("oob", f"{h.name} BMC")
            )
        final_hosts.append(h)

    vips: dict[str, str] = {}
    if "inference" in nets and spec.serving.gateway is not None:
        vips["api"] = str(netaddr.IPAddress(nets["inference"].first + 2))

    nlb: dict[str, str] = {}
    if "inference" in nets:
        reserved = vlan_specs["inference"].reserved
        names = aws_zones.zones(spec)
        for z in aws_zones.entry_zones(spec):
            part = zone_nets.get(("inference", z), nets["inference"])
            if reserved < aws_zones.MIN_RESERVED_ENTRY:  # rule aws.reserved-addresses reports it first
                raise PlanError("fabric.vlans.inference.reserved",
                                f"{reserved}: the internal NLB's address is the last reserved one and AWS reserves "
                                f"the first {aws_zones.MIN_RESERVED} host addresses of every subnet: use "
                                f"{aws_zones.MIN_RESERVED_ENTRY} or more")
            nlb[names[z]] = str(aws_zones.nlb_address(part, reserved))

    vlans = {}
    for role in VLAN_ROLES:
        if role not in nets:
            continue
        net, vlan = nets[role], vlan_specs[role]
        used = next_free[role] - (net.first + 1 + vlan.reserved)
        used += sum(next_free[f"{role}@{z}"] - (part.first + 1 + vlan.reserved)
                    for (r, z), part in zone_nets.items() if r == role)
        vlans[role] = VlanPlan(
            role=role,
            id=vlan.id,
            cidr=str(net.cidr),
            gateway=str(netaddr.IPAddress(net.first + 1)),
            mtu=vlan.mtu,
            reserved_first=str(netaddr.IPAddress(net.first + 1)),
            reserved_last=str(netaddr.IPAddress(net.first + vlan.reserved)),
            first_host=str(netaddr.IPAddress(net.first + 1 + vlan.reserved)),
            last_host=str(netaddr.IPAddress(net.last - 1)),
            capacity=capacity[role],
            used=used,
        )
    return IpPlan(supernet=spec.site.supernet, vlans=vlans, hosts=tuple(final_hosts), vips=vips, nlb=nlb)


def _demand(spec: Spec) -> dict[str, int]:
    demand: dict[str, int] = {}
    for pool in spec.pools.values():
        for role in pool.vlans:
            demand[role] = demand.get(role, 0) + pool.count
        if pool.bmc:
            demand["oob"] = demand.get("oob", 0) + pool.count
    return demand
