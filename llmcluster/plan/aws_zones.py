"""Which availability zone each AWS host and VLAN slice lives in (pure; shared by the IP plan and
:mod:`llmcluster.plan.aws`, so addresses and subnets agree).

* The zones are ``aws.availability_zone`` then ``aws.secondary_availability_zones``, in that order.
* GPU and storage pools stay in the first zone (their cluster placement group and EFA subnet are
  there); gateway and control pools go round robin over all zones (host 1 in zone 0, host 2 in
  zone 1, ...), so two gateways never share a zone when two zones are declared.
* A VLAN that carries hosts of several zones (or the EKS control plane, which needs two) is split
  into equal slices, one subnet per zone: slice ``i`` (of the next power of two) is zone ``i``'s.
  A host takes its addresses from its zone's slice; single-zone VLANs are one subnet, as before.
* AWS reserves the first four addresses (network, VPC router, DNS, future use) and the last one of
  every subnet (:func:`aws_reserved`): no planned address may be one of them.
* The internal NLB gets one planned private address in the inference subnet of every zone that holds
  a gateway (:func:`entry_zones`, :func:`nlb_address`): the last address of the VLAN's ``reserved``
  range in that zone's slice, so it never moves when hosts are added and never meets a host.
"""

from __future__ import annotations

import netaddr

from llmcluster.spec.models import Spec

#: Pool roles pinned to the first zone (placement group, EFA subnet, instance-store data).
PINNED_ROLES = ("gpu", "storage")
#: AWS reserves this many addresses at the start of every subnet (network, router, DNS, future use)
#: and its last address ("Subnet CIDR blocks", Amazon VPC user guide).
AWS_RESERVED_FIRST = 4
#: The smallest ``reserved`` of an AWS VLAN: hosts are numbered from ``.(1 + reserved)`` and must
#: start after AWS's reserved ``.0``-``.3``.
MIN_RESERVED = AWS_RESERVED_FIRST - 1
#: The inference VLAN of a stack with an entry point also holds the NLB's address at ``.reserved``.
MIN_RESERVED_ENTRY = AWS_RESERVED_FIRST


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


def aws_reserved(net: netaddr.IPNetwork) -> netaddr.IPSet:
    """The addresses AWS reserves in subnet ``net``: its first four and its last."""
    return netaddr.IPSet([netaddr.IPRange(net.first, net.first + AWS_RESERVED_FIRST - 1),
                          netaddr.IPRange(net.last, net.last)])


def entry_zones(spec: Spec) -> tuple[int, ...]:
    """Zone indexes of the internal NLB: those of the gateways on the inference VLAN (AWS only)."""
    gw = spec.serving.gateway
    if spec.platform != "aws" or spec.aws is None or gw is None or gw.pool not in spec.pools:
        return ()
    pool = spec.pools[gw.pool]
    if "inference" not in pool.vlans:
        return ()
    return tuple(sorted({host_zone(spec, gw.pool, i) for i in range(1, pool.count + 1)}))


def nlb_address(part: netaddr.IPNetwork, reserved: int) -> netaddr.IPAddress:
    """The NLB's address in ``part`` (a zone's inference subnet): the last of the VLAN's reserved
    addresses there. Hosts start right after it; AWS's reserved addresses lie before it as long as
    ``reserved >= MIN_RESERVED_ENTRY`` (rule ``aws.reserved-addresses``)."""
    return netaddr.IPAddress(part.first + reserved)
