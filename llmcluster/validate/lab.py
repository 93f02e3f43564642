"""Lab rules: the lab section stands in for bare-metal racks and names real pools and hosts."""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.plan.ipam import hostname
from llmcluster.spec.loader import did_you_mean
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule

TAGGED_NEEDS_VM = "'tagged' needs kind 'vm': only a VM has 802.1Q subinterfaces in the lab"


def lab_host_names(spec: Spec) -> dict[str, str]:
    """Host name -> pool name, as the IP plan names them (``<prefix>-<index>``)."""
    return {
        hostname(spec.hostname_prefix(pool_name), i, pool.count): pool_name
        for pool_name, pool in spec.pools.items()
        for i in range(1, pool.count + 1)
    }


@rule("lab.baremetal-only")
def baremetal_only(spec: Spec) -> Iterator[Problem]:
    """llmcluster:lab only on platform 'baremetal' (the lab stands in for bare-metal racks)."""
    if spec.lab is not None and spec.platform != "baremetal":
        yield Problem("lab", f"only valid with platform 'baremetal' (this stack is '{spec.platform}'): "
                             "the lab stands in for bare-metal racks")


@rule("lab.pools-known", requires=("lab.baremetal-only",))
def pools_known(spec: Spec) -> Iterator[Problem]:
    """lab.pools names declared pools."""
    for pool_name in spec.lab.pools if spec.lab is not None else ():
        if pool_name not in spec.pools:
            yield Problem(f"lab.pools.{pool_name}",
                          f"unknown pool{did_you_mean(pool_name, spec.pools)} (known: {', '.join(spec.pools)})")


@rule("lab.hosts-known", requires=("lab.baremetal-only",))
def hosts_known(spec: Spec) -> Iterator[Problem]:
    """lab.hosts names planned hosts (``<prefix>-<index>``)."""
    if spec.lab is None or not spec.lab.hosts:
        return
    names = lab_host_names(spec)
    for host in spec.lab.hosts:
        if host not in names:
            known = ", ".join(sorted(names)[:12]) + (", ..." if len(names) > 12 else "")
            yield Problem(f"lab.hosts.{host}", f"unknown host{did_you_mean(host, names)} (known: {known})")


@rule("lab.tagged-needs-vm", requires=("lab.baremetal-only",))
def tagged_needs_vm(spec: Spec) -> Iterator[Problem]:
    """A pool or host with network 'tagged' (802.1Q subinterfaces) is a VM."""
    lab = spec.lab
    if lab is None:
        return
    for pool_name, entry in lab.pools.items():
        if pool_name in spec.pools and entry.network == "tagged" and entry.kind != "vm":
            yield Problem(f"lab.pools.{pool_name}.network", TAGGED_NEEDS_VM)
    names = lab_host_names(spec) if lab.hosts else {}
    for host, entry in lab.hosts.items():
        if host in names and entry.network == "tagged" and entry.kind != "vm":
            yield Problem(f"lab.hosts.{host}.network", TAGGED_NEEDS_VM)
