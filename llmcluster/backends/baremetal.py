"""The bare-metal backend: node pools and hosts (:mod:`llmcluster.components.baremetal`) and the
switch fabric (:mod:`llmcluster.components.fabric`: render-only, or push over SSH).

Racked servers have no API: the hosts' addresses are the plan's management addresses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmcluster import outputs
from llmcluster.backends.base import BackendInputs, ComputeResult, planned_hosts

if TYPE_CHECKING:  # pragma: no cover
    import pulumi

    from llmcluster.plan.build import Plan


def build(name: str, plan: Plan, inputs: BackendInputs, opts: pulumi.ResourceOptions | None = None) -> ComputeResult:
    from llmcluster.components.baremetal import BaremetalCompute, BaremetalComputeArgs
    from llmcluster.components.fabric import Fabric, FabricArgs

    spec = plan.spec
    compute = BaremetalCompute(name, BaremetalComputeArgs(
        site=spec.site.name, os=spec.baremetal.os if spec.baremetal else None, pools=dict(spec.pools),
        hosts=tuple(plan.ip.hosts)), opts)
    switch_configs: dict[str, str] = {}
    switch_applied: object = {}
    if plan.switches is not None and spec.baremetal is not None:
        bm = spec.baremetal
        fabric = Fabric("fabric", FabricArgs(plan=plan.switches, apply=bm.switch_apply,
                                             addresses=dict(bm.switch_mgmt), access=bm.switch_access,
                                             credentials=inputs.switch_credentials), opts)
        switch_configs, switch_applied = fabric.configs, fabric.applied
    hosts = planned_hosts(plan)
    assert set(hosts) == set(compute.hosts)
    return ComputeResult(hosts=hosts, exports={outputs.SWITCH_CONFIGS: switch_configs,
                                               outputs.SWITCH_APPLIED: switch_applied})
