"""Bare-metal compute (``llmcluster:baremetal:Compute``): the node pools and their hosts.

Racked servers have no API that Pulumi could create them through, so nothing here talks to
a machine: each pool is a ``llmcluster:baremetal:NodePool`` component and each host a
``llmcluster:baremetal:Host`` component (``<component>-<host>``, parent its pool) whose
inputs are its facts from the plan — addresses per VLAN, BMC address, GPUs, NVMe drives,
NICs, OS. That puts every host in the state and in ``pulumi preview`` (a host added,
renumbered or re-specified shows up as a change) without pretending to manage its
lifecycle: a dynamic resource would have to "delete" a server on ``pulumi destroy``, would
need the hosts' SSH credentials inside Pulumi, and would make every ``pulumi up`` depend on
every host answering. Checking that the racked hosts really are what the spec says is the
environment preflight's job (``llmcluster validate --preflight``: GPUs, NVMe drives and OS
release over SSH, :mod:`llmcluster.validate.hostfacts`), run before ``pulumi up``.

The component takes only what it registers (site, OS, pools, the hosts' plan entries), not the
whole plan; the program builds the inventory from the plan and the hosts this component reports
(:mod:`llmcluster.backends`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from llmcluster.plan.catalog import GPUS
from llmcluster.plan.ipam import HostPlan
from llmcluster.plan.storage import nvme_devices
from llmcluster.spec.models import Pool


@dataclass(frozen=True)
class BaremetalComputeArgs:
    site: str
    #: the hosts' OS (``baremetal.os``)
    os: str | None
    pools: Mapping[str, Pool]
    #: every host of the IP plan, in plan order
    hosts: tuple[HostPlan, ...]


def host_facts(h: HostPlan, pool: Pool, os: str | None) -> dict[str, Any]:
    """What the spec says one host is: the inputs of its ``Host`` resource."""
    facts: dict[str, Any] = {
        "name": h.name, "fqdn": h.fqdn, "pool": h.pool, "role": h.role, "mgmtAddress": h.mgmt_ip,
        "addresses": dict(h.addresses), "bmcAddress": h.bmc,
        "os": os,
        "gpu": None, "nvme": None,
        "nics": [{"name": n.name, "vendor": n.vendor, "speedGbps": n.speed_gbps, "ports": n.count,
                  "vlans": list(n.vlans)} for n in pool.nics],
    }
    if pool.gpu is not None:
        facts["gpu"] = {"model": pool.gpu.model, "name": GPUS[pool.gpu.model].display_name,
                        "count": pool.gpu.count, "nvswitch": pool.gpu.nvswitch,
                        "driverVersion": pool.gpu.driver_version}
    if pool.nvme is not None:
        facts["nvme"] = {"count": pool.nvme.count, "sizeGb": pool.nvme.size_gb, "model": pool.nvme.model or None,
                         "devices": nvme_devices(pool.nvme.count)}
    return facts


class Host(pulumi.ComponentResource):
    TYPE = "llmcluster:baremetal:Host"

    def __init__(self, name: str, facts: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, facts, opts)
        self.facts = facts
        self.register_outputs({})


class NodePool(pulumi.ComponentResource):
    TYPE = "llmcluster:baremetal:NodePool"

    def __init__(self, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, props, opts)
        self.hosts: dict[str, Host] = {}


class BaremetalCompute(pulumi.ComponentResource):
    TYPE = "llmcluster:baremetal:Compute"

    def __init__(self, name: str, args: BaremetalComputeArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"site": args.site, "os": args.os}, opts)
        self.pools: dict[str, NodePool] = {}
        self.hosts: dict[str, Host] = {}
        for pool_name, pool in args.pools.items():
            members = [h for h in args.hosts if h.pool == pool_name]
            np_ = NodePool(f"{name}-{pool_name}", {
                "pool": pool_name, "role": pool.role, "count": pool.count, "hosts": [h.name for h in members],
                "bmc": pool.bmc, "gpu": pool.gpu.model_dump(mode="json") if pool.gpu else None,
                "nvme": pool.nvme.model_dump(mode="json") if pool.nvme else None,
            }, pulumi.ResourceOptions(parent=self))
            for h in members:
                host = Host(f"{name}-{h.name}", host_facts(h, pool, args.os), pulumi.ResourceOptions(parent=np_))
                np_.hosts[h.name] = host
                self.hosts[h.name] = host
            np_.register_outputs({"hosts": [h.name for h in members]})
            self.pools[pool_name] = np_
        self.register_outputs({"pools": {n: p.count for n, p in args.pools.items()}, "hosts": len(self.hosts)})
