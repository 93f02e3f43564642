"""Zone and flow rules: every pool in exactly one zone, flows between known zones on shared VLANs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule


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
    """A flow ends on cluster hosts, never on an external (cidrs) zone."""
    for i, f in enumerate(spec.flows):
        if f.to in spec.zones and spec.zones[f.to].cidrs:
            yield Problem(f"flows.{i}.to",
                          f"zone '{f.to}' is an external network: flows may only end on cluster hosts")


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
