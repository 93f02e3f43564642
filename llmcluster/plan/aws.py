"""AWS plan: the facts the AWS backend turns into resources (pure, no Pulumi, no I/O).

Derived once from the spec, the IP plan and the firewall plan (:mod:`llmcluster.plan.firewall`,
the same zone policy the host firewalls and switch ACLs come from):

* **network** — the VPC is the site supernet; every VLAN is one subnet per availability zone it
  needs (:mod:`llmcluster.plan.aws_zones`: GPU/storage pools in ``aws.availability_zone``,
  gateway/control pools round robin over the secondary zones too), each VLAN with its own private
  route table. No internet gateway on any VLAN subnet: AWS services are reached through VPC
  endpoints (S3 gateway; ECR api/dkr, STS, SSM, SSM messages, EC2 messages, CloudWatch Logs
  interface endpoints in the mgmt subnets). A NAT gateway (with its internet gateway, in
  ``aws.public_subnet``) exists only when a flow goes from a host zone to a zone with public
  addresses; only the VLANs of those flows route to it.
* **security groups** — one per host zone, plus ``endpoints`` (the interface endpoints) and
  ``entry`` (the internal NLB). Rules reference groups (O(zones), not O(nodes^2)); each rule
  names its flow: a spec flow, or one of the platform flows of :data:`PLATFORM_FLOWS` (EFA's
  self-referencing all-traffic rule, endpoint and S3 access, the NLB's health checks, EKS).
  Security groups have no VLAN: a zone's rule admits its flow on whichever interface.
* **instances** — per pool a launch-template shape (the exact interface list from the
  instance-facts table, :func:`llmcluster.plan.aws_instances.interface_layout`), the capacity mode
  and the cluster placement group (GPU pools, ``aws.placement_group``, on-demand only: capacity
  reservations and capacity blocks carry their own placement, so the group is dropped with a
  warning); per host its zone and the planned addresses of its ENA interfaces.
* **entry** — an internal NLB in the gateways' inference subnets, TCP (TLS passthrough) on the
  gateway port to the gateways' inference addresses: mTLS ends at HAProxy, never at AWS. Its private
  address in each subnet is planned (``IpPlan.nlb``, subnet mappings): the NLB health-checks its
  targets from them, and the gateways' host firewall admits exactly them (platform flow
  ``nlb-health`` of the firewall plan) next to the security-group rules of the same name.
* **data** — the model bucket (name prefix and the ``models/`` prefix GPU nodes may read) and EKS
  (optional): private endpoint, control-plane log retention, node groups per GPU pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import netaddr

from llmcluster.plan import aws_zones
from llmcluster.plan.aws_instances import FACTS_VERSION, INSTANCE_TYPES, Interface, interface_layout
from llmcluster.plan.firewall import NLB_HEALTH, FirewallPlan, minimal_cidrs, parse_port_spec
from llmcluster.plan.ipam import IpPlan
from llmcluster.spec.models import VLAN_ROLES, Spec

#: Interface endpoints every stack gets (service name suffixes of com.amazonaws.<region>.*).
INTERFACE_ENDPOINTS = ("ecr.api", "ecr.dkr", "sts", "ssm", "ssmmessages", "ec2messages", "logs")
#: Further interface endpoints a private EKS cluster's nodes need (EKS user guide, "Deploy private
#: clusters with limited internet access": ec2 for the node bootstrap, eks-auth for Pod Identity).
EKS_ENDPOINTS = ("ec2", "eks-auth")
#: Platform flows: what a security-group rule exists for when no spec flow asks for it.
PLATFORM_FLOWS = {
    "efa": "EFA: all traffic within the GPU zone's own group (AWS EFA guide: self-referencing in and out)",
    "aws-endpoints": "hosts -> interface VPC endpoints on tcp/443 (ECR, STS, SSM, logs)",
    "aws-s3": "hosts -> S3 through the gateway endpoint (its prefix list) on tcp/443",
    NLB_HEALTH: "the internal NLB -> the gateways' port (health checks; clients' own traffic is the api flow)",
    "eks": "EKS control plane <-> nodes (tcp/443, tcp/10250)",
}
#: The AWS-managed policy SSM needs on an instance (Session Manager, the converge path).
SSM_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
#: Where GPU nodes may read the model (and nothing else of the bucket).
MODEL_PREFIX = "models/"
ENDPOINTS_SG = "endpoints"
ENTRY_SG = "entry"
EKS_SG = "eks-control-plane"


def efa_group(zone_group: str) -> str:
    """The EFA group of a GPU zone: only the pool's EFA-only interfaces are in it. They carry no IP
    address, so its self-referencing all-traffic rules (AWS's EFA guide) open RDMA between the pool's
    members and nothing else: SSH and every other port stay as the zone policy says on the primary
    interface, which is in the zone's group."""
    return f"{zone_group}-efa"

_PRIVATE = netaddr.IPSet(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"])


@dataclass(frozen=True)
class Subnet:
    name: str  # "<vlan>-<az>"
    vlan: str
    az: str
    cidr: str

    def to_dict(self) -> dict:
        return {"name": self.name, "vlan": self.vlan, "az": self.az, "cidr": self.cidr}


@dataclass(frozen=True)
class SgRule:
    """One security-group rule; ``peer_kind``: ``sg`` (a group of this plan), ``cidr`` or ``prefix-list``.

    ``flows``: every flow (spec or :data:`PLATFORM_FLOWS`) that asks for exactly this rule (AWS
    refuses two identical rules, so flows sharing one are merged)."""

    group: str
    direction: str  # ingress | egress
    protocol: str  # tcp | udp | icmp | -1 (all)
    from_port: int
    to_port: int
    peer_kind: str
    peer: str
    flows: tuple[str, ...]

    @property
    def name(self) -> str:
        ports = "all" if self.protocol == "-1" else (
            self.protocol if self.protocol == "icmp" else f"{self.protocol}{self.from_port}"
            + (f"-{self.to_port}" if self.to_port != self.from_port else ""))
        peer = self.peer.replace("/", "_").replace(".", "-")
        return f"{self.group}-{'in' if self.direction == 'ingress' else 'out'}-{ports}-{peer}"

    def to_dict(self) -> dict:
        return {"group": self.group, "direction": self.direction, "protocol": self.protocol,
                "from_port": self.from_port, "to_port": self.to_port, "peer_kind": self.peer_kind,
                "peer": self.peer, "flows": list(self.flows)}


@dataclass(frozen=True)
class PoolPlan:
    pool: str
    role: str
    instance_type: str
    zone_group: str  # security group (zone) of the pool's hosts
    interfaces: tuple[Interface, ...]
    efa: bool
    capacity: str
    capacity_reservation_id: str | None
    placement_group: str | None
    root_volume_gb: int
    ami: str | None
    eks_node_group: bool
    #: the group of the EFA-only interfaces (:func:`efa_group`); None without EFA
    efa_group: str | None = None

    def group_of(self, iface: Interface) -> str:
        """The security group of one of the pool's interfaces."""
        return self.efa_group if iface.kind == "efa-only" and self.efa_group else self.zone_group

    @property
    def efa_interfaces(self) -> int:
        return sum(1 for i in self.interfaces if i.kind == "efa-only")

    def to_dict(self) -> dict:
        return {"pool": self.pool, "role": self.role, "instance_type": self.instance_type,
                "security_group": self.zone_group, "efa_security_group": self.efa_group,
                "interfaces": [i.to_dict() for i in self.interfaces],
                "efa": self.efa, "efa_interfaces": self.efa_interfaces, "capacity": self.capacity,
                "capacity_reservation_id": self.capacity_reservation_id, "placement_group": self.placement_group,
                "root_volume_gb": self.root_volume_gb, "ami": self.ami, "eks_node_group": self.eks_node_group}


@dataclass(frozen=True)
class InstancePlan:
    host: str
    pool: str
    az: str
    #: interface index (position in the pool's interface list) -> (subnet name, private IP or None)
    interfaces: tuple[tuple[str, str | None], ...]

    @property
    def private_ip(self) -> str:
        ip = self.interfaces[0][1]
        assert ip is not None
        return ip

    def to_dict(self) -> dict:
        return {"host": self.host, "pool": self.pool, "az": self.az,
                "interfaces": [{"subnet": s, "private_ip": ip} for s, ip in self.interfaces]}


@dataclass(frozen=True)
class EntryPlan:
    """The internal NLB: TCP passthrough of the gateway port to the gateways' inference addresses.

    ``addresses``: its planned private address in each of ``subnets`` (same order; from ``IpPlan.nlb``),
    the sources of its health checks, which the gateways' host firewall admits (``nlb-health``)."""

    port: int
    subnets: tuple[str, ...]
    targets: tuple[tuple[str, str], ...]  # (host, inference address)
    source_flows: tuple[str, ...]
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.addresses) != len(self.subnets):
            raise ValueError(f"the NLB needs one planned address per subnet: {self.subnets} vs {self.addresses}")

    @property
    def subnet_mappings(self) -> tuple[tuple[str, str], ...]:
        """(subnet name, private IPv4 address) per subnet."""
        return tuple(zip(self.subnets, self.addresses, strict=True))

    def to_dict(self) -> dict:
        return {"internal": True, "protocol": "TCP", "port": self.port, "subnets": list(self.subnets),
                "subnet_mappings": [{"subnet": s, "private_ipv4_address": a} for s, a in self.subnet_mappings],
                "targets": [{"host": h, "address": a} for h, a in self.targets],
                "flows": list(self.source_flows)}


@dataclass(frozen=True)
class EksPlan:
    name: str
    version: str
    log_group: str
    log_retention_days: int
    subnets: tuple[str, ...]
    admin_principals: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "version": self.version, "log_group": self.log_group,
                "log_retention_days": self.log_retention_days, "subnets": list(self.subnets),
                "endpoint_private": True, "endpoint_public": False,
                "admin_principals": list(self.admin_principals)}


@dataclass(frozen=True)
class AwsPlan:
    region: str
    zones: tuple[str, ...]
    vpc_cidr: str
    subnets: tuple[Subnet, ...]
    security_groups: tuple[str, ...]
    rules: tuple[SgRule, ...]
    interface_endpoints: tuple[str, ...]
    endpoint_subnets: tuple[str, ...]
    pools: dict[str, PoolPlan]
    instances: tuple[InstancePlan, ...]
    entry: EntryPlan | None
    eks: EksPlan | None
    bucket_prefix: str
    #: VLANs whose route table sends 0.0.0.0/0 to the NAT gateway (empty: no NAT, no IGW)
    nat_vlans: tuple[str, ...] = ()
    public_subnet: str | None = None
    key_name: str | None = None
    warnings: tuple[str, ...] = ()
    facts_version: str = FACTS_VERSION
    zone_of_pool: dict[str, str] = field(default_factory=dict)
    node_counts: dict[str, int] = field(default_factory=dict)

    def subnet(self, name: str) -> Subnet:
        for s in self.subnets:
            if s.name == name:
                return s
        raise KeyError(name)

    def subnets_of(self, vlan: str) -> tuple[Subnet, ...]:
        return tuple(s for s in self.subnets if s.vlan == vlan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region, "zones": list(self.zones), "vpc_cidr": self.vpc_cidr,
            "facts_version": self.facts_version,
            "subnets": [s.to_dict() for s in self.subnets],
            "nat": {"vlans": list(self.nat_vlans), "public_subnet": self.public_subnet},
            "security_groups": list(self.security_groups),
            "rules": [r.to_dict() for r in self.rules],
            "endpoints": {"gateway": ["s3"], "interface": list(self.interface_endpoints),
                          "subnets": list(self.endpoint_subnets)},
            "pools": {n: p.to_dict() for n, p in self.pools.items()},
            "instances": [i.to_dict() for i in self.instances],
            "entry": self.entry.to_dict() if self.entry else None,
            "eks": self.eks.to_dict() if self.eks else None,
            "bucket_prefix": self.bucket_prefix, "model_prefix": MODEL_PREFIX,
            "key_name": self.key_name,
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- planner


def _ports(port: str) -> tuple[str, int, int]:
    proto, lo, hi = parse_port_spec(port)
    if proto == "icmp":
        return "icmp", -1, -1
    assert lo is not None and hi is not None
    return proto, lo, hi


def _public(cidrs: tuple[str, ...]) -> bool:
    return not netaddr.IPSet(cidrs).issubset(_PRIVATE)


def internet_flows(spec: Spec, fw: FirewallPlan) -> tuple[str, ...]:
    """Flows from a host zone to a zone with public (non RFC 1918) addresses: what needs NAT."""
    out = []
    for f in spec.flows:
        try:
            src, dst = fw.zone(f.from_), fw.zone(f.to)
        except KeyError:
            continue
        if src.kind == "hosts" and dst.kind == "external" and _public(dst.cidrs):
            out.append(f.name)
    return tuple(out)


def _rules(spec: Spec, fw: FirewallPlan, groups: set[str], efa_groups: set[str],
           entry_flows: set[str], gw_group: str | None, gw_port: int | None, eks: bool,
           nlb: bool = False) -> list[SgRule]:
    rules: dict[tuple, set[str]] = {}

    def add(group: str, direction: str, proto: str, lo: int, hi: int, kind: str, peer: str, flow: str) -> None:
        rules.setdefault((group, direction, proto, lo, hi, kind, peer), set()).add(flow)

    for f in spec.flows:
        try:
            src, dst = fw.zone(f.from_), fw.zone(f.to)
        except KeyError:
            continue  # refused by validation; never widen the policy
        if src.kind == "hosts" and not src.hosts:
            continue  # a zone without hosts admits nobody (as the host firewall)
        for port in f.ports:
            proto, lo, hi = _ports(port)
            if dst.kind == "hosts":
                if src.kind == "external":
                    for c in minimal_cidrs(src.cidrs):
                        add(dst.name, "ingress", proto, lo, hi, "cidr", c, f.name)
                    if f.name in entry_flows:
                        for c in minimal_cidrs(src.cidrs):
                            add(ENTRY_SG, "ingress", proto, lo, hi, "cidr", c, f.name)
                else:
                    add(dst.name, "ingress", proto, lo, hi, "sg", src.name, f.name)
                    add(src.name, "egress", proto, lo, hi, "sg", dst.name, f.name)
                    if f.name in entry_flows:
                        add(ENTRY_SG, "ingress", proto, lo, hi, "sg", src.name, f.name)
                        add(src.name, "egress", proto, lo, hi, "sg", ENTRY_SG, f.name)
                if f.name in entry_flows and gw_group is not None and gw_port is not None:
                    add(ENTRY_SG, "egress", "tcp", gw_port, gw_port, "sg", gw_group, f.name)
            elif src.kind == "hosts":  # egress to an external network
                for c in minimal_cidrs(dst.cidrs):
                    add(src.name, "egress", proto, lo, hi, "cidr", c, f.name)
    host_groups = sorted(groups)
    for g in host_groups:
        add(g, "egress", "tcp", 443, 443, "sg", ENDPOINTS_SG, "aws-endpoints")
        add(ENDPOINTS_SG, "ingress", "tcp", 443, 443, "sg", g, "aws-endpoints")
        add(g, "egress", "tcp", 443, 443, "prefix-list", "s3", "aws-s3")
    for g in sorted(efa_groups):
        add(efa_group(g), "ingress", "-1", 0, 0, "sg", efa_group(g), "efa")
        add(efa_group(g), "egress", "-1", 0, 0, "sg", efa_group(g), "efa")
    if nlb and gw_group is not None and gw_port is not None:  # the NLB exists: its health checks
        add(gw_group, "ingress", "tcp", gw_port, gw_port, "sg", ENTRY_SG, NLB_HEALTH)
        add(ENTRY_SG, "egress", "tcp", gw_port, gw_port, "sg", gw_group, NLB_HEALTH)
    if eks:
        for g in host_groups:
            for port in (443, 10250):
                add(g, "ingress", "tcp", port, port, "sg", EKS_SG, "eks")
                add(EKS_SG, "egress", "tcp", port, port, "sg", g, "eks")
            add(EKS_SG, "ingress", "tcp", 443, 443, "sg", g, "eks")
            add(g, "egress", "tcp", 443, 443, "sg", EKS_SG, "eks")
    out = [SgRule(*key, flows=tuple(sorted(flows))) for key, flows in rules.items()]
    return sorted(out, key=lambda r: (r.group, r.direction, r.protocol, r.from_port, r.to_port, r.peer_kind, r.peer))


def _bucket_prefix(spec: Spec) -> str:
    # S3 bucket_prefix: at most 37 characters, lower case; the provider appends a unique suffix.
    return f"llmc-{spec.site.name}"[:30] + "-model-"


def build_aws_plan(spec: Spec, ip: IpPlan, fw: FirewallPlan) -> AwsPlan | None:
    """The AWS plan of an ``aws`` stack (``None`` on other platforms)."""
    if spec.platform != "aws" or spec.aws is None:
        return None
    aws = spec.aws
    zones = aws_zones.zones(spec)
    warnings: list[str] = []

    subnets: list[Subnet] = []
    for role in VLAN_ROLES:
        if role not in ip.vlans:
            continue
        net = netaddr.IPNetwork(ip.vlans[role].cidr)
        for z, part in aws_zones.slices(spec, role, net).items():
            subnets.append(Subnet(f"{role}-{zones[z]}", role, zones[z], str(part.cidr)))

    zone_of_pool = {p: zname for zname, z in spec.zones.items() for p in z.pools}
    groups = {zone_of_pool.get(p, f"pool-{p}") for p in spec.pools}
    gw = spec.serving.gateway

    pools: dict[str, PoolPlan] = {}
    efa_groups: set[str] = set()
    for name, pool in spec.pools.items():
        assert pool.aws is not None  # aws.pool-instance-type
        it = INSTANCE_TYPES.get(pool.aws.instance_type)
        ip_vlans = tuple(r for r in VLAN_ROLES if r in pool.vlans and r in ip.vlans and r != "rdma")
        efa = bool(aws.efa and pool.role == "gpu" and it is not None and it.efa_interfaces > 0)
        efa_vlan = "rdma" if "rdma" in pool.vlans and "rdma" in ip.vlans else ip_vlans[0]
        if not efa and "rdma" in pool.vlans and "rdma" in ip.vlans:
            ip_vlans = ip_vlans + ("rdma",)
        layout = interface_layout(it, ip_vlans, efa=efa, efa_vlan=efa_vlan)
        group = zone_of_pool.get(name, f"pool-{name}")
        if efa:
            efa_groups.add(group)
        pg = None
        if pool.role == "gpu" and aws.placement_group and pool.count > 0:
            if pool.aws.capacity == "on-demand":
                pg = f"pg-{name}"
            else:
                warnings.append(
                    f"pools.{name}.aws.capacity: {pool.aws.capacity} carries its own placement, so the pool "
                    "gets no cluster placement group (aws.placement_group is ignored for it); EC2 fails a "
                    "placement group on a reservation with InsufficientInstanceCapacity")
        pools[name] = PoolPlan(
            pool=name, role=pool.role, instance_type=pool.aws.instance_type, zone_group=group,
            interfaces=layout, efa=efa, capacity=pool.aws.capacity,
            capacity_reservation_id=pool.aws.capacity_reservation_id, placement_group=pg,
            root_volume_gb=pool.aws.root_volume_gb, ami=pool.aws.ami,
            eks_node_group=aws.eks is not None and pool.role == "gpu", efa_group=efa_group(group) if efa else None)

    instances: list[InstancePlan] = []
    have = {(s.vlan, s.az) for s in subnets}
    for h in ip.hosts:
        pp = pools[h.pool]
        if pp.eks_node_group:
            continue
        z = aws_zones.host_zone(spec, h.pool, h.index)
        ifaces = []
        for iface in pp.interfaces:
            sub = f"{iface.vlan}-{zones[z] if (iface.vlan, zones[z]) in have else zones[0]}"
            ifaces.append((sub, h.addresses[iface.vlan] if iface.kind == "interface" else None))
        instances.append(InstancePlan(h.name, h.pool, zones[z], tuple(ifaces)))

    # The entry point: flows to the gateway zone on the gateway port (the api flow).
    entry = None
    gw_group = gw_port = None
    entry_flows: set[str] = set()
    if gw is not None and "inference" in ip.vlans:
        gw_group = zone_of_pool.get(gw.pool, f"pool-{gw.pool}")
        gw_port = gw.port
        for f in spec.flows:
            if f.to == gw_group and f.vlan == "inference" and any(
                    _ports(p)[0] == "tcp" and _ports(p)[1] <= gw.port <= _ports(p)[2] for p in f.ports):
                entry_flows.add(f.name)
        targets = tuple((h.name, h.addresses["inference"]) for h in ip.hosts
                        if h.pool == gw.pool and "inference" in h.addresses)
        # one subnet per zone holding a gateway, each with the NLB's planned address (the IP plan's)
        gw_azs = sorted(ip.nlb, key=zones.index)
        entry = EntryPlan(port=gw.port, subnets=tuple(f"inference-{az}" for az in gw_azs), targets=targets,
                          source_flows=tuple(sorted(entry_flows)), addresses=tuple(ip.nlb[az] for az in gw_azs))

    eks = None
    if aws.eks is not None:
        name = f"{spec.stack}"[:100]
        eks = EksPlan(name=name, version=aws.eks.version, log_group=f"/aws/eks/{name}/cluster",
                      log_retention_days=aws.eks.log_retention_days,
                      subnets=tuple(s.name for s in subnets if s.vlan == "mgmt"),
                      admin_principals=aws.eks.admin_principals)

    nat_flows = set(internet_flows(spec, fw))
    nat_vlans = tuple(r for r in VLAN_ROLES if any(f.vlan == r and f.name in nat_flows for f in spec.flows))
    all_groups = sorted(groups) + sorted(efa_group(g) for g in efa_groups) + [ENDPOINTS_SG] + (
        [ENTRY_SG] if entry is not None else []) + (
        [EKS_SG] if eks is not None else [])
    return AwsPlan(
        region=aws.region, zones=zones, vpc_cidr=spec.site.supernet, subnets=tuple(subnets),
        security_groups=tuple(all_groups),
        rules=tuple(_rules(spec, fw, groups, efa_groups, entry_flows, gw_group, gw_port, eks is not None,
                          nlb=entry is not None and bool(entry.addresses))),
        interface_endpoints=INTERFACE_ENDPOINTS + (EKS_ENDPOINTS if eks is not None else ()),
        endpoint_subnets=tuple(s.name for s in subnets if s.vlan == "mgmt"),
        pools=pools, instances=tuple(instances), entry=entry, eks=eks, bucket_prefix=_bucket_prefix(spec),
        nat_vlans=nat_vlans, public_subnet=aws.public_subnet if nat_vlans else None, key_name=aws.key_name,
        warnings=tuple(warnings), zone_of_pool=zone_of_pool,
        node_counts={n: p.count for n, p in spec.pools.items()},
    )
