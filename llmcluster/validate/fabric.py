"""Fabric rules: VLAN ids, MTUs and subnets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import netaddr

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule


@rule("fabric.vlan-ids-unique")
def vlan_ids_unique(spec: Spec) -> Iterator[Problem]:
    """No two VLAN roles share a VLAN id."""
    vlans = spec.fabric.vlans
    ids = Counter(v.id for _, v in vlans.items())
    for role, vlan in vlans.items():
        if ids[vlan.id] > 1:
            others = [r for r, v in vlans.items() if v.id == vlan.id and r != role]
            yield Problem(f"fabric.vlans.{role}.id",
                          f"VLAN id {vlan.id} is also used by {', '.join(others)}: VLAN ids must be unique")


@rule("fabric.vlan-mtu-within-fabric")
def vlan_mtu_within_fabric(spec: Spec) -> Iterator[Problem]:
    """A VLAN's MTU fits the fabric port MTU."""
    for role, vlan in spec.fabric.vlans.items():
        if vlan.mtu > spec.fabric.mtu:
            yield Problem(f"fabric.vlans.{role}.mtu",
                          f"{vlan.mtu} exceeds the fabric port MTU {spec.fabric.mtu} (fabric.mtu)")


@rule("fabric.vlan-subnet-in-supernet")
def vlan_subnet_in_supernet(spec: Spec) -> Iterator[Problem]:
    """An explicit VLAN subnet lies inside site.supernet."""
    for role, vlan in spec.fabric.vlans.items():
        if vlan.subnet is not None and netaddr.IPNetwork(vlan.subnet) not in netaddr.IPNetwork(spec.site.supernet):
            yield Problem(f"fabric.vlans.{role}.subnet", f"{vlan.subnet} is outside site.supernet {spec.site.supernet}")


@rule("fabric.rdma-mtu")
def rdma_mtu(spec: Spec) -> Iterator[Problem]:
    """The rdma VLAN carries a 4096-byte RoCEv2 MTU plus headers (at least 4200)."""
    rdma = spec.fabric.vlans.rdma
    if rdma is not None and rdma.mtu < 4200:
        yield Problem("fabric.vlans.rdma.mtu",
                      f"{rdma.mtu} is below 4200: RoCEv2 needs a 4096-byte RDMA MTU plus headers")


@rule("fabric.storage-jumbo-frames")
def storage_jumbo_frames(spec: Spec) -> Iterator[Problem]:
    """On bare metal the storage VLANs run jumbo frames (MTU 9000)."""
    for role in ("storage_public", "storage_cluster"):
        v = spec.fabric.vlans.get(role)
        if v is not None and v.mtu < 9000 and spec.platform == "baremetal":
            yield Problem(f"fabric.vlans.{role}.mtu",
                          f"{v.mtu}: storage VLANs run jumbo frames (9000) to load model weights at line rate")
