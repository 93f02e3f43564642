"""The whole plan: every planner run once over a validated spec.

Every other layer (components, renderers, inventory, verification) reads this object;
none re-derives it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmcluster.plan.access import AccessPlan, build_access_plan
from llmcluster.plan.ipam import IpPlan, build_ip_plan
from llmcluster.plan.pki import PkiPlan, build_pki_plan
from llmcluster.spec.models import Spec

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.aws import AwsPlan
    from llmcluster.plan.capacity import CapacityPlan
    from llmcluster.plan.firewall import FirewallPlan
    from llmcluster.plan.hostnet import HostNetPlan
    from llmcluster.plan.qos import QosPlan
    from llmcluster.plan.serving import ServingPlan
    from llmcluster.plan.storage import StoragePlan
    from llmcluster.plan.switches import SwitchPlan


@dataclass(frozen=True)
class Plan:
    spec: Spec
    ip: IpPlan
    capacity: CapacityPlan
    pki: PkiPlan
    firewall: FirewallPlan
    qos: QosPlan
    storage: StoragePlan
    #: replica layout, model facts and engine cache key fields (plan.serving)
    serving: ServingPlan
    #: who owns the links, network mode and interface names per host, host OS (plan.hostnet)
    hostnet: HostNetPlan
    #: leaf/spine switches, port map, fabric ACL and QoS (bare metal only; see plan.switches)
    switches: SwitchPlan | None = None
    #: who may call the API behind the gateway: named clients and normalised policies (plan.access)
    access: AccessPlan = AccessPlan()
    #: VPC, subnets, security groups from the zone policy, instances, entry point (platform aws only)
    aws: AwsPlan | None = None

    def in_lab(self) -> Plan:
        """This plan with the hosts as ``llmcluster lab`` realises them (:mod:`llmcluster.plan.hostnet`)."""
        from llmcluster.plan.hostnet import build_hostnet_plan

        return dataclasses.replace(self, hostnet=build_hostnet_plan(self.spec, self.ip, in_lab=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stack": self.spec.stack,
            "platform": self.spec.platform,
            "site": self.spec.site.model_dump(mode="json"),
            "ip": self.ip.to_dict(),
            "capacity": self.capacity.to_dict(),
            "pki": self.pki.to_dict(),
            "firewall": self.firewall.to_dict(),
            "qos": self.qos.to_dict(),
            "storage": self.storage.to_dict(),
            "serving": self.serving.to_dict(),
            "hostnet": self.hostnet.to_dict(),
            "switches": self.switches.to_dict() if self.switches is not None else None,
            "access": self.access.to_dict(),
            "aws": self.aws.to_dict() if self.aws is not None else None,
        }


def build_plan(spec: Spec) -> Plan:
    from llmcluster.plan.aws import build_aws_plan
    from llmcluster.plan.capacity import size_deployment
    from llmcluster.plan.firewall import build_firewall_plan
    from llmcluster.plan.hostnet import build_hostnet_plan
    from llmcluster.plan.qos import build_qos_plan
    from llmcluster.plan.serving import build_serving_plan
    from llmcluster.plan.storage import build_storage_plan, engine_cache_bytes_per_node
    from llmcluster.plan.switches import build_switch_plan

    ip = build_ip_plan(spec)
    s = spec.serving
    pool = spec.pools[s.pool]
    assert pool.gpu is not None  # guaranteed by whole-spec validation
    capacity = size_deployment(model=s.model, gpu=pool.gpu.model, precision=s.precision, context=s.context,
                               concurrency=s.concurrency, gpus_per_node=pool.gpu.count, kv_dtype=s.kv_dtype)
    per_node = capacity.weights_bytes // max(1, capacity.nodes)
    firewall = build_firewall_plan(spec, ip)
    qos = build_qos_plan(spec)
    access = build_access_plan(spec, ip)
    return Plan(
        spec=spec,
        ip=ip,
        capacity=capacity,
        pki=build_pki_plan(spec, ip),
        firewall=firewall,
        qos=qos,
        storage=build_storage_plan(
            spec, ip, weights_bytes_per_node=per_node, checkpoint_bytes=capacity.weights_bytes,
            engine_cache_bytes=engine_cache_bytes_per_node(capacity.backend, capacity.weights_bytes_per_gpu,
                                                           capacity.gpus_per_node)),
        serving=build_serving_plan(spec, ip, capacity, access),
        hostnet=build_hostnet_plan(spec, ip),
        switches=build_switch_plan(spec, ip, qos, firewall),
        aws=build_aws_plan(spec, ip, firewall),
        access=access,
    )
