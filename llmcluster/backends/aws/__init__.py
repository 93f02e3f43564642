"""The AWS backend: the AWS plan (:mod:`llmcluster.plan.aws`) as pulumi-aws resources.

Components, in dependency order (all under one ``llmcluster:aws:Compute`` named ``name``, whose
explicit provider takes the region from the spec):

``<name>-network``  VPC, subnets per VLAN and zone, route tables, S3 gateway endpoint, NAT if needed
``<name>-security`` one security group per zone (+ endpoints, entry, EKS), rules from the zone policy
``<name>-endpoints`` interface endpoints (ECR, STS, SSM, logs) in the mgmt subnets
``<name>-data``     the stack's KMS key, the model bucket, IAM roles and instance profiles per pool
``<name>-<pool>``   per pool: placement group, per host a launch template and its instance
``<name>-entry``    the internal NLB (TCP passthrough to the gateways)
``<name>-eks``      optional: EKS (private endpoint), log group, access entries, node groups

Hosts: every instance is reported at its private IP (an Output, equal to the planned mgmt address
the launch template pins) with the SSM connection variables, so the inventory has bare metal's
shape and the same roles converge it: Ansible's SSH goes through an SSM session
(``AWS-StartSSHSession``) to the instance id, over the SSM VPC endpoints; no SSH port is opened
to any network and no bastion exists. Pools that are EKS node groups have no instance to report
(their hosts stay at the planned addresses in the inventory; the Kubernetes serving layer, the
next issue, runs them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws

from llmcluster import outputs
from llmcluster.backends.base import BackendInputs, ComputeHost, ComputeResult, planned_hosts

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.plan.build import Plan

#: The token of the backend's top component.
COMPUTE_TYPE = "llmcluster:aws:Compute"


def ssm_proxy_command(region: str) -> str:
    """``ansible_ssh_common_args`` that tunnel SSH through an SSM session to the host's instance id."""
    return ("-o ProxyCommand=\"aws ssm start-session --region " + region
            + " --target {{ llmcluster_aws_instance_id }} --document-name AWS-StartSSHSession"
            " --parameters portNumber=%p\"")


class AwsCompute(pulumi.ComponentResource):
    TYPE = COMPUTE_TYPE

    def __init__(self, name: str, plan: Plan, opts: pulumi.ResourceOptions | None = None):
        from llmcluster.backends.aws.components import (
            AwsData,
            AwsEks,
            AwsEndpoints,
            AwsEntry,
            AwsNetwork,
            AwsNodePool,
            AwsSecurity,
            HostFacts,
        )
        from llmcluster.plan.aws import ENDPOINTS_SG, ENTRY_SG

        ap = plan.aws
        assert ap is not None
        spec = plan.spec
        stack = spec.stack
        super().__init__(self.TYPE, name, {"region": ap.region, "zones": list(ap.zones),
                                           "factsVersion": ap.facts_version}, opts)
        self.provider = aws.Provider(f"{name}-aws", region=ap.region,
                                     default_tags={"tags": {"llmcluster:stack": stack}},
                                     opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, providers={"aws": self.provider})
        for w in ap.warnings:
            pulumi.log.warn(w, resource=self)
        net = AwsNetwork(f"{name}-network", ap, stack, child)
        sec = AwsSecurity(f"{name}-security", ap, net.vpc.id, net.s3_endpoint.prefix_list_id, stack, child)
        subnet_ids = {n: s.id for n, s in net.subnets.items()}
        AwsEndpoints(f"{name}-endpoints", ap, net.vpc.id, [subnet_ids[s] for s in ap.endpoint_subnets],
                     sec.groups[ENDPOINTS_SG].id, child)
        data = AwsData(f"{name}-data", ap, stack, net.s3_endpoint.id, child)
        # The audit trail (docs/observability.md): CloudWatch log group >= 180 days, S3 archive with Object Lock.
        from llmcluster.backends.aws.audit import AwsAudit
        from llmcluster.plan.monitoring import aws_audit_plan

        audit_plan = aws_audit_plan(spec)
        self.audit_bucket: Any = None
        if audit_plan is not None:
            gw_pool = spec.serving.gateway.pool
            audit = AwsAudit(f"{name}-audit", audit_plan, stack, key_arn=data.key.arn,
                             s3_endpoint_id=net.s3_endpoint.id, writer_role=data.roles.get(gw_pool), opts=child)
            self.audit_bucket = audit.archive.bucket
        self.key_arn = data.key.arn
        self.bucket = data.bucket.bucket
        facts = {h.name: HostFacts(h.fqdn, (spec.pools[h.pool].nvme.count if spec.pools[h.pool].nvme else 0))
                 for h in plan.ip.hosts}
        self.instances: dict[str, aws.ec2.Instance] = {}
        self.pools: dict[str, AwsNodePool] = {}
        for pool, pp in ap.pools.items():
            if pp.eks_node_group:
                continue
            members = [i for i in ap.instances if i.pool == pool]
            np_ = AwsNodePool(f"{name}-{pool}", pp, members, facts, plan=ap, stack=stack, subnets=subnet_ids,
                              groups={g: sg.id for g, sg in sec.groups.items()}, key_arn=data.key.arn,
                              profile_arn=data.profiles[pool].arn, opts=child)
            self.pools[pool] = np_
            self.instances.update(np_.instances)
        self.nlb_dns: Any = None
        if ap.entry is not None:
            gw_pool = spec.serving.gateway.pool if spec.serving.gateway else None
            entry = AwsEntry(f"{name}-entry", ap, stack, net.vpc.id, subnet_ids, sec.groups[ENTRY_SG].id,
                             [i for h, i in self.instances.items() if plan.ip.host(h).pool == gw_pool], child)
            self.nlb_dns = entry.dns_name
        self.kubeconfig: Any = None
        self.eks_cluster: Any = None
        if ap.eks is not None:
            eks = AwsEks(f"{name}-eks", ap, subnets=subnet_ids, groups={g: sg.id for g, sg in sec.groups.items()},
                         key_arn=data.key.arn, roles=data.roles, profiles=data.profiles, opts=child)
            self.kubeconfig = eks.kubeconfig
            self.eks_cluster = eks.cluster.name
        self.vpc_id = net.vpc.id
        self.security_groups = {g: sg.id for g, sg in sec.groups.items()}
        self.register_outputs({"vpcId": net.vpc.id, "instances": len(self.instances)})


def build(name: str, plan: Plan, inputs: BackendInputs, opts: pulumi.ResourceOptions | None = None) -> ComputeResult:
    ap = plan.aws
    assert ap is not None  # platform aws: aws.sections guarantees the section
    compute = AwsCompute(name, plan, opts)
    hosts: dict[str, ComputeHost] = planned_hosts(plan)
    proxy = ssm_proxy_command(ap.region)
    gw_pool = plan.spec.serving.gateway.pool if plan.spec.serving.gateway else None
    for host, inst in compute.instances.items():
        extra = {}
        if compute.audit_bucket is not None and plan.ip.host(host).pool == gw_pool:
            # The archive bucket's name (AWS completes the plan's prefix): the gateways' audit shipper puts there.
            extra["llmcluster_aws_audit_archive_bucket"] = compute.audit_bucket
        hosts[host] = ComputeHost(host, inst.private_ip, hostvars={
            "llmcluster_aws_instance_id": inst.id, "ansible_ssh_common_args": proxy, **extra})
    exports: dict[str, Any] = {
        outputs.SWITCH_CONFIGS: {}, outputs.SWITCH_APPLIED: {},
        outputs.AWS: pulumi.Output.all(
            vpc=compute.vpc_id, keyArn=compute.key_arn, modelBucket=compute.bucket, nlbDnsName=compute.nlb_dns,
            securityGroups=compute.security_groups, eksCluster=compute.eks_cluster,
            instances={h: i.id for h, i in compute.instances.items()},
        ).apply(lambda a: {**a, "region": ap.region, "zones": list(ap.zones), "warnings": list(ap.warnings)}),
    }
    if compute.kubeconfig is not None:
        exports[outputs.KUBECONFIG] = compute.kubeconfig
    return ComputeResult(hosts=hosts, exports=exports, kubeconfig=compute.kubeconfig)
