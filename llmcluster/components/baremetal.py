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

The component's :attr:`BaremetalCompute.inventory` is the structured inventory (groups ->
hosts -> hostvars) from :func:`llmcluster.inventory.build_inventory`, which the program
exports as ``inventory`` and which ``llmcluster inventory`` and
``ansible/inventory/llmcluster.py`` serve from the same plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from llmcluster.inventory import build_inventory
from llmcluster.plan.build import Plan


@dataclass(frozen=True)
class BaremetalComputeArgs:
    plan: Plan


def host_facts(plan: Plan, host_name: str) -> dict[str, Any]:
    """What the spec says one host is: the inputs of its ``Host`` resource."""
    from llmcluster.plan.catalog import GPUS

    spec = plan.spec
    h = plan.ip.host(host_name)
    pool = spec.pools[h.pool]
    facts: dict[str, Any] = {
        "name": h.name, "fqdn": h.fqdn, "pool": h.pool, "role": h.role, "mgmtAddress": h.mgmt_ip,
        "addresses": dict(h.addresses), "bmcAddress": h.bmc,
        "os": spec.baremetal.os if spec.baremetal else None,
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
                         "devices": [f"/dev/nvme{i}n1" for i in range(pool.nvme.count)]}
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
        plan = args.plan
        spec = plan.spec
        super().__init__(self.TYPE, name, {"site": spec.site.name, "os": spec.baremetal.os if spec.baremetal else None},
                         opts)
        self.pools: dict[str, NodePool] = {}
        self.hosts: dict[str, Host] = {}
        for pool_name, pool in spec.pools.items():
            members = plan.ip.hosts_in_pool(pool_name)
            np_ = NodePool(f"{name}-{pool_name}", {
                "pool": pool_name, "role": pool.role, "count": pool.count, "hosts": [h.name for h in members],
                "bmc": pool.bmc, "gpu": pool.gpu.model_dump(mode="json") if pool.gpu else None,
                "nvme": pool.nvme.model_dump(mode="json") if pool.nvme else None,
            }, pulumi.ResourceOptions(parent=self))
            for h in members:
                host = Host(f"{name}-{h.name}", host_facts(plan, h.name), pulumi.ResourceOptions(parent=np_))
                np_.hosts[h.name] = host
                self.hosts[h.name] = host
            np_.register_outputs({"hosts": [h.name for h in members]})
            self.pools[pool_name] = np_
        #: groups -> hosts -> hostvars, exactly as ``llmcluster inventory --list`` prints it
        self.inventory: dict[str, Any] = build_inventory(plan)
        self.register_outputs({"pools": {n: p.count for n, p in spec.pools.items()}, "hosts": len(self.hosts)})
