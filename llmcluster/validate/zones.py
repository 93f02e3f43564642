"""Zone and flow rules: every pool in exactly one zone, flows between known zones on shared VLANs, admin zones
no wider than site.admin_min_prefix, external zones outside the cluster's own addresses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import netaddr

from llmcluster.errors import PlanError, Problem
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import PLAN, rule
from llmcluster.validate.runner import PlanFacts


def _zone_of(spec: Spec) -> dict[str, str]:
    """Known pool -> the first zone that lists it."""
    member: dict[str, str] = {}
    for zname, zone in spec.zones.items():
        for p in zone.pools:
            if p in spec.pools:
                member.setdefault(p, zname)
    return member


@rule("zones.pools-known")
def pools_known(spec: Spec) -> Iterator[Problem]:
    """A zone lists only declared pools."""
    for zname, zone in spec.zones.items():
        for i, p in enumerate(zone.pools):
            if p not in spec.pools:
                yield Problem(f"zones.{zname}.pools.{i}", f"unknown pool '{p}'{did_you_mean(p, spec.pools)}")


@rule("zones.pool-in-one-zone")
def pool_in_one_zone(spec: Spec) -> Iterator[Problem]:
    """A pool belongs to one zone."""
    member: dict[str, str] = {}
    for zname, zone in spec.zones.items():
        for i, p in enumerate(zone.pools):
            if p not in spec.pools:
                continue
            if p in member:
                yield Problem(f"zones.{zname}.pools.{i}",
                              f"pool '{p}' is already in zone '{member[p]}': a pool belongs to one zone")
            else:
                member[p] = zname


@rule("zones.every-pool-zoned")
def every_pool_zoned(spec: Spec) -> Iterator[Problem]:
    """Every pool is in a zone (the firewall derives its policy from it)."""
    member = _zone_of(spec)
    for p in spec.pools:
        if p not in member:
            yield Problem(f"pools.{p}",
                          "is in no zone: add it to one of zones.*.pools so the firewall knows its policy")


@rule("zones.flow-names-unique")
def flow_names_unique(spec: Spec) -> Iterator[Problem]:
    """Flow names are unique."""
    names = Counter(f.name for f in spec.flows)
    for i, f in enumerate(spec.flows):
        if names[f.name] > 1:
            yield Problem(f"flows.{i}.name", f"flow name '{f.name}' is used more than once")


@rule("zones.flow-zones-known")
def flow_zones_known(spec: Spec) -> Iterator[Problem]:
    """A flow's from and to are declared zones."""
    for i, f in enumerate(spec.flows):
        for attr, key in (("from_", "from"), ("to", "to")):
            z = getattr(f, attr)
            if z not in spec.zones:
                yield Problem(f"flows.{i}.{key}", f"unknown zone '{z}'{did_you_mean(z, spec.zones)}")


@rule("zones.flow-ends-on-cluster")
def flow_ends_on_cluster(spec: Spec) -> Iterator[Problem]:
    """A flow ends on cluster hosts, or leaves them: a flow to an external (cidrs) zone starts at a zone of
    cluster hosts (an egress flow, e.g. the gateway's audit log to its collector); never external to external."""
    for i, f in enumerate(spec.flows):
        if f.to in spec.zones and spec.zones[f.to].cidrs and f.from_ in spec.zones and spec.zones[f.from_].cidrs:
            yield Problem(f"flows.{i}.to",
                          f"zone '{f.to}' is an external network and so is '{f.from_}': a flow starts or ends on "
                          "cluster hosts")


@rule("zones.flow-vlan-declared")
def flow_vlan_declared(spec: Spec) -> Iterator[Problem]:
    """A flow's VLAN is declared in fabric.vlans."""
    for i, f in enumerate(spec.flows):
        if spec.fabric.vlans.get(f.vlan) is None:
            yield Problem(f"flows.{i}.vlan", f"VLAN '{f.vlan}' is not declared in fabric.vlans")


@rule("zones.flow-pools-on-vlan")
def flow_pools_on_vlan(spec: Spec) -> Iterator[Problem]:
    """The pools at both ends of a flow are on the flow's (declared) VLAN."""
    for i, f in enumerate(spec.flows):
        if spec.fabric.vlans.get(f.vlan) is None:
            continue  # zones.flow-vlan-declared
        for attr in ("from_", "to"):
            z = spec.zones.get(getattr(f, attr))
            if z is None:
                continue
            for p in z.pools:
                if p in spec.pools and f.vlan not in spec.pools[p].vlans:
                    yield Problem(f"flows.{i}.vlan",
                                  f"pool '{p}' (zone '{getattr(f, attr)}') is not on VLAN "
                                  f"'{f.vlan}': add it to pools.{p}.vlans or change the flow")


#: Flows into the cluster that make their source an admin zone: SSH, or anything on a management VLAN.
ADMIN_VLANS = ("mgmt", "oob")
SSH = 22


def _is_admin_flow(f) -> bool:
    if f.vlan in ADMIN_VLANS:
        return True
    for p in f.ports:
        proto, _, rng = p.partition("/")
        lo, _, hi = rng.partition("-")
        if proto == "tcp" and int(lo) <= SSH <= int(hi or lo):
            return True
    return False


def admin_zone_names(spec: Spec) -> dict[str, str]:
    """The admin zones: external (cidrs) zones that a flow gives SSH or a management VLAN, each with the
    first such flow (``flows.<i> '<name>'``). The policy rules (llmcluster.policy) admit SSH only from these."""
    admin: dict[str, str] = {}
    for i, f in enumerate(spec.flows):
        zone = spec.zones.get(f.from_)
        if zone is not None and zone.cidrs and _is_admin_flow(f):
            admin.setdefault(f.from_, f"flows.{i} '{f.name}'")
    return admin


@rule("zones.admin-cidr-width")
def admin_cidr_width(spec: Spec) -> Iterator[Problem]:
    """An admin zone (an external zone that flows give SSH or the mgmt/oob VLAN) and aws.admin_cidrs are no wider
    than site.admin_min_prefix (/16 by default; 0 is the explicit opt-in for any width, 0.0.0.0/0 included)."""
    least = spec.site.admin_min_prefix
    for zname, why in admin_zone_names(spec).items():
        for i, cidr in enumerate(spec.zones[zname].cidrs):
            prefix = netaddr.IPNetwork(cidr).prefixlen
            if prefix < least:
                yield Problem(f"zones.{zname}.cidrs.{i}",
                              f"{cidr} is wider than /{least}: an admin zone ({why} gives it SSH or a management "
                              f"VLAN) would open management to {2 ** (32 - prefix):,} addresses; narrow it to the "
                              "operators' networks, or set site.admin_min_prefix lower (0 allows any)")
    if spec.aws is not None:
        for i, cidr in enumerate(spec.aws.admin_cidrs):
            prefix = netaddr.IPNetwork(cidr).prefixlen
            if prefix < least:
                yield Problem(f"aws.admin_cidrs.{i}",
                              f"{cidr} is wider than /{least}: SSH would be open to {2 ** (32 - prefix):,} addresses; "
                              "narrow it, or set site.admin_min_prefix lower (0 allows any)")


@rule("zones.external-outside-cluster", layer=PLAN, unless=("fabric.vlans", "site.supernet", "pools"))
def external_outside_cluster(facts: PlanFacts) -> list[Problem]:
    """An external zone (cidrs) does not overlap the cluster's own addresses: each CIDR lies outside
    site.supernet, or inside the reserved range of one VLAN (its network address up to the last reserved
    address, where no host is numbered; the lab puts its operators and API clients there)."""
    spec = facts.spec
    try:
        ip = facts.ip_plan()
    except PlanError:
        return []  # addresses.ip-plan reports it
    supernet = netaddr.IPNetwork(spec.site.supernet)
    reserved = {role: netaddr.IPRange(netaddr.IPNetwork(v.cidr).first, netaddr.IPAddress(v.reserved_last))
                for role, v in ip.vlans.items()}
    out: list[Problem] = []
    for zname, zone in spec.zones.items():
        for i, cidr in enumerate(zone.cidrs):
            net = netaddr.IPNetwork(cidr)
            if net.last < supernet.first or net.first > supernet.last:
                continue
            if any(net.first >= r.first and net.last <= r.last for r in reserved.values()):
                continue
            hit = next(((role, v) for role, v in ip.vlans.items()
                        if net.first <= netaddr.IPNetwork(v.cidr).last and netaddr.IPNetwork(v.cidr).first <= net.last),
                       None)
            where = (f"VLAN {hit[0]} {hit[1].cidr}, whose hosts are {hit[1].first_host}-{hit[1].last_host}"
                     if hit else f"site.supernet {supernet}")
            out.append(Problem(f"zones.{zname}.cidrs.{i}",
                               f"{cidr} overlaps the cluster's own addresses ({where}): an external zone lies outside "
                               f"site.supernet {supernet}, or inside one VLAN's reserved range (network address to "
                               "its last reserved address)"))
    return out
