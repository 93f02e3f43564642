"""Which availability zone each AWS host and VLAN slice lives in (pure; shared by the IP plan and
:mod:`llmcluster.plan.aws`, so addresses and subnets agree).

* The zones are ``aws.availability_zone`` then ``aws.secondary_availability_zones``, in that order.
* GPU and storage pools stay in the first zone (their cluster placement group and EFA subnet are
  there); gateway and control pools go round robin over all zones (host 1 in zone 0, host 2 in
  zone 1, ...), so two gateways never share a zone when two zones are declared.
* A VLAN that carries hosts of several zones (or the EKS control plane, which needs two) is split
  into equal slices, one subnet per zone: slice ``i`` (of the next power of two) is zone ``i``'s.
  A host takes its addresses from its zone's slice; single-zone VLANs are one subnet, as before.
"""

from __future__ import annotations

import netaddr

from llmcluster.spec.models import Spec

#: Pool roles pinned to the first zone (placement group, EFA subnet, instance-store data).
PINNED_ROLES = ("gpu", "storage")


def zones(spec: Spec) -> tuple[str, ...]:
    if spec.aws is None:
        return ()
    return (spec.aws.availability_zone, *spec.aws.secondary_availability_zones)


def host_zone(spec: Spec, pool_name: str, index: int) -> int:
    """Zone index of host ``index`` (1-based) of ``pool_name``."""
    n = len(zones(spec))
    if n <= 1 or spec.pools[pool_name].role in PINNED_ROLES:
        return 0
    return (index - 1) % n


def vlan_zones(spec: Spec, role: str) -> tuple[int, ...]:
    """Zone indexes VLAN ``role`` needs a subnet in (always includes zone 0)."""
    if spec.platform != "aws" or spec.aws is None:
        return (0,)
    used = {0}
    for name, pool in spec.pools.items():
        if role in pool.vlans:
            used.update(host_zone(spec, name, i) for i in range(1, pool.count + 1))
    if spec.aws.eks is not None and role == "mgmt":
        used.update(range(len(zones(spec))))
    return tuple(sorted(used))


def slices(spec: Spec, role: str, net: netaddr.IPNetwork) -> dict[int, netaddr.IPNetwork]:
    """Zone index -> the part of ``net`` (the VLAN's CIDR) that is its subnet in that zone."""
    used = vlan_zones(spec, role)
    if len(used) == 1:
        return {0: net}
    bits = (max(used) + 1 - 1).bit_length()
    parts = list(net.subnet(net.prefixlen + bits))
    return {z: parts[z] for z in used}
