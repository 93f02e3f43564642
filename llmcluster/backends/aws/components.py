"""The AWS backend's components: each turns one part of the AWS plan (:mod:`llmcluster.plan.aws`)
into pulumi-aws primitives (never remote components, so every resource is visible under mocks).

Component tokens are ``llmcluster:aws:<Part>``, children ``parent=self`` and named after the
component (``<component>-<what>``), so URNs stay stable as pools grow. Nothing here derives a
fact: subnets, rules, interface lists, zones and addresses all come from the plan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from llmcluster.plan.aws import (
    MODEL_PREFIX,
    SSM_POLICY_ARN,
    AwsPlan,
    InstancePlan,
    PoolPlan,
    SgRule,
)

#: The Ubuntu 24.04 AMI as Canonical publishes it in SSM (resolved by EC2 at launch: no invoke).
UBUNTU_AMI = "resolve:ssm:/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
#: The root device of Canonical's Ubuntu AMIs, and of the EKS-optimised AL2023 AMIs (node groups).
ROOT_DEVICE = "/dev/sda1"
EKS_ROOT_DEVICE = "/dev/xvda"
#: EKS-managed policies a node group's role needs (EKS user guide, "Amazon EKS node IAM role").
EKS_NODE_POLICIES = (
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
)
EKS_CLUSTER_POLICY = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
EKS_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
EKS_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")


def _child(parent: pulumi.Resource, **kw: Any) -> pulumi.ResourceOptions:
    return pulumi.ResourceOptions(parent=parent, **kw)


def _assume(service: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]})


# --------------------------------------------------------------------------- network


class AwsNetwork(pulumi.ComponentResource):
    """VPC, one subnet per VLAN and zone, a private route table per VLAN, the S3 gateway endpoint,
    and (only for flows to public addresses) the NAT gateway with its internet gateway."""

    TYPE = "llmcluster:aws:Network"

    def __init__(self, name: str, plan: AwsPlan, stack: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"vpcCidr": plan.vpc_cidr, "zones": list(plan.zones)}, opts)
        self.vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=plan.vpc_cidr, enable_dns_support=True,
                               enable_dns_hostnames=True, tags={"Name": stack}, opts=_child(self))
        self.subnets: dict[str, aws.ec2.Subnet] = {}
        for s in plan.subnets:
            self.subnets[s.name] = aws.ec2.Subnet(
                f"{name}-{s.name}", vpc_id=self.vpc.id, cidr_block=s.cidr, availability_zone=s.az,
                map_public_ip_on_launch=False, tags={"Name": f"{stack}-{s.name}", "llmcluster:vlan": s.vlan},
                opts=_child(self))
        vlans = list(dict.fromkeys(s.vlan for s in plan.subnets))
        self.route_tables: dict[str, aws.ec2.RouteTable] = {}
        for vlan in vlans:
            rt = aws.ec2.RouteTable(f"{name}-rt-{vlan}", vpc_id=self.vpc.id, tags={"Name": f"{stack}-{vlan}"},
                                    opts=_child(self))
            self.route_tables[vlan] = rt
            for s in plan.subnets_of(vlan):
                aws.ec2.RouteTableAssociation(f"{name}-rta-{s.name}", route_table_id=rt.id,
                                              subnet_id=self.subnets[s.name].id, opts=_child(self))
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3", vpc_id=self.vpc.id, service_name=f"com.amazonaws.{plan.region}.s3",
            vpc_endpoint_type="Gateway", route_table_ids=[rt.id for rt in self.route_tables.values()],
            tags={"Name": f"{stack}-s3"}, opts=_child(self))
        self.nat: aws.ec2.NatGateway | None = None
        if plan.nat_vlans:
            assert plan.public_subnet is not None  # aws.nat-public-subnet
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, opts=_child(self))
            public = aws.ec2.Subnet(f"{name}-public", vpc_id=self.vpc.id, cidr_block=plan.public_subnet,
                                    availability_zone=plan.zones[0], map_public_ip_on_launch=False,
                                    tags={"Name": f"{stack}-public"}, opts=_child(self))
            public_rt = aws.ec2.RouteTable(f"{name}-rt-public", vpc_id=self.vpc.id, routes=[
                aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)], opts=_child(self))
            aws.ec2.RouteTableAssociation(f"{name}-rta-public", route_table_id=public_rt.id, subnet_id=public.id,
                                          opts=_child(self))
            eip = aws.ec2.Eip(f"{name}-nat", domain="vpc", opts=_child(self))
            self.nat = aws.ec2.NatGateway(f"{name}-nat", allocation_id=eip.id, subnet_id=public.id,
                                          connectivity_type="public", opts=_child(self, depends_on=[igw]))
            for vlan in plan.nat_vlans:
                aws.ec2.Route(f"{name}-nat-{vlan}", route_table_id=self.route_tables[vlan].id,
                              destination_cidr_block="0.0.0.0/0", nat_gateway_id=self.nat.id, opts=_child(self))
        self.register_outputs({"vpcId": self.vpc.id})


class AwsSecurity(pulumi.ComponentResource):
    """One security group per zone (and for the endpoints, the NLB, the EKS control plane); one
    rule resource per plan rule, referencing groups; the description names its flows."""

    TYPE = "llmcluster:aws:Security"

    def __init__(self, name: str, plan: AwsPlan, vpc_id: pulumi.Input[str], s3_prefix_list: pulumi.Input[str],
                 stack: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"groups": list(plan.security_groups)}, opts)
        self.groups: dict[str, aws.ec2.SecurityGroup] = {}
        efa = {pp.efa_group: pp.zone_group for pp in plan.pools.values() if pp.efa_group}
        for g in plan.security_groups:
            # No inline rules: the provider removes the default allow-all egress, every rule below is a flow.
            # An EFA group is no zone: it holds only the EFA-only interfaces of its zone's GPU pool.
            tags = ({"llmcluster:efa": "true", "llmcluster:efa-of": efa[g]} if g in efa else {"llmcluster:zone": g})
            what = f"EFA interfaces of zone {efa[g]}" if g in efa else f"zone {g}"
            self.groups[g] = aws.ec2.SecurityGroup(
                f"{name}-{g}", vpc_id=vpc_id, name=f"{stack}-{g}", description=f"llmcluster {stack}: {what}",
                revoke_rules_on_delete=True, tags={"Name": f"{stack}-{g}", **tags}, opts=_child(self))
        for r in plan.rules:
            self._rule(name, r, s3_prefix_list)
        self.register_outputs({"groups": {g: sg.id for g, sg in self.groups.items()}})

    def _rule(self, name: str, r: SgRule, s3_prefix_list: pulumi.Input[str]) -> None:
        args: dict[str, Any] = {"security_group_id": self.groups[r.group].id, "ip_protocol": r.protocol,
                                "description": "flows: " + ", ".join(r.flows),
                                "tags": {"llmcluster:flows": ",".join(r.flows)}}
        if r.protocol != "-1":
            args.update(from_port=r.from_port, to_port=r.to_port)
        if r.peer_kind == "sg":
            args["referenced_security_group_id"] = self.groups[r.peer].id
        elif r.peer_kind == "cidr":
            args["cidr_ipv4"] = r.peer
        else:
            args["prefix_list_id"] = s3_prefix_list
        cls = aws.vpc.SecurityGroupIngressRule if r.direction == "ingress" else aws.vpc.SecurityGroupEgressRule
        cls(f"{name}-{r.name}", **args, opts=_child(self))


class AwsEndpoints(pulumi.ComponentResource):
    """Interface VPC endpoints (private DNS) in the mgmt subnets, behind the ``endpoints`` group."""

    TYPE = "llmcluster:aws:Endpoints"

    def __init__(self, name: str, plan: AwsPlan, vpc_id: pulumi.Input[str], subnet_ids: list[pulumi.Input[str]],
                 group_id: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"services": list(plan.interface_endpoints)}, opts)
        for svc in plan.interface_endpoints:
            aws.ec2.VpcEndpoint(f"{name}-{svc.replace('.', '-')}", vpc_id=vpc_id,
                                service_name=f"com.amazonaws.{plan.region}.{svc}", vpc_endpoint_type="Interface",
                                private_dns_enabled=True, subnet_ids=subnet_ids, security_group_ids=[group_id],
                                opts=_child(self))
        self.register_outputs({})


# --------------------------------------------------------------------------- data: key, bucket, roles


def key_policy(account: str, region: str) -> str:
    """The stack key's policy: the account administers it; CloudWatch Logs may use it for this
    account's log groups (log-group encryption needs that grant); EBS and S3 use it through the
    callers' own IAM permissions (kms:ViaService)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Account", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchLogs", "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": f"arn:aws:logs:{region}:{account}:*"}}},
    ]}, sort_keys=True)


def bucket_policy(bucket_arn: str, endpoint_id: str) -> str:
    """Deny any request without TLS; deny object and listing requests that do not come through the
    VPC's S3 gateway endpoint (bucket configuration stays manageable by the account's IAM)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": [bucket_arn, f"{bucket_arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        {"Sid": "DenyOutsideVpcEndpoint", "Effect": "Deny", "Principal": "*",
         "Action": ["s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:ListBucket*",
                    "s3:RestoreObject", "s3:AbortMultipartUpload"],
         "Resource": [bucket_arn, f"{bucket_arn}/*"],
         "Condition": {"StringNotEquals": {"aws:SourceVpce": endpoint_id}}},
    ]}, sort_keys=True)


def model_read_policy(bucket_arn: str, key_arn: str, region: str) -> str:
    """GPU nodes: read the model prefix, decrypt through S3; nothing else, no write anywhere."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "ReadModel", "Effect": "Allow", "Action": ["s3:GetObject"],
         "Resource": f"{bucket_arn}/{MODEL_PREFIX}*"},
        {"Sid": "ListModel", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn,
         "Condition": {"StringLike": {"s3:prefix": [f"{MODEL_PREFIX}*"]}}},
        {"Sid": "DecryptViaS3", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}}},
    ]}, sort_keys=True)


class AwsData(pulumi.ComponentResource):
    """The stack's one KMS key (rotation on), the model bucket, and an IAM role per pool."""

    TYPE = "llmcluster:aws:Data"

    def __init__(self, name: str, plan: AwsPlan, stack: str, s3_endpoint_id: pulumi.Input[str],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"bucketPrefix": plan.bucket_prefix}, opts)
        ident = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.key = aws.kms.Key(
            f"{name}-key", description=f"llmcluster {stack}: EBS, S3, logs, EKS secrets", enable_key_rotation=True,
            deletion_window_in_days=30, policy=ident.account_id.apply(lambda a: key_policy(a, plan.region)),
            opts=_child(self))
        aws.kms.Alias(f"{name}-key", name=f"alias/llmcluster-{stack}", target_key_id=self.key.key_id,
                      opts=_child(self))
        self.bucket = aws.s3.Bucket(f"{name}-models", bucket_prefix=plan.bucket_prefix, force_destroy=False,
                                    opts=_child(self))
        aws.s3.BucketPublicAccessBlock(f"{name}-models", bucket=self.bucket.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=_child(self))
        aws.s3.BucketOwnershipControls(f"{name}-models", bucket=self.bucket.id, rule={
            "object_ownership": "BucketOwnerEnforced"}, opts=_child(self))
        aws.s3.BucketVersioning(f"{name}-models", bucket=self.bucket.id,
                                versioning_configuration={"status": "Enabled"}, opts=_child(self))
        aws.s3.BucketServerSideEncryptionConfiguration(f"{name}-models", bucket=self.bucket.id, rules=[{
            "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms",
                                                        "kms_master_key_id": self.key.arn},
            "bucket_key_enabled": True}], opts=_child(self))
        aws.s3.BucketPolicy(f"{name}-models", bucket=self.bucket.id, policy=pulumi.Output.all(
            self.bucket.arn, s3_endpoint_id).apply(lambda a: bucket_policy(a[0], a[1])), opts=_child(self))
        self.profiles: dict[str, aws.iam.InstanceProfile] = {}
        self.roles: dict[str, aws.iam.Role] = {}
        for pool, pp in plan.pools.items():
            role = aws.iam.Role(f"{name}-{pool}", assume_role_policy=_assume("ec2.amazonaws.com"),
                                description=f"llmcluster {stack}: pool {pool}", opts=_child(self))
            self.roles[pool] = role
            aws.iam.RolePolicyAttachment(f"{name}-{pool}-ssm", role=role.name, policy_arn=SSM_POLICY_ARN,
                                         opts=_child(self))
            if pp.role == "gpu":
                aws.iam.RolePolicy(f"{name}-{pool}-model", role=role.name, policy=pulumi.Output.all(
                    self.bucket.arn, self.key.arn).apply(lambda a: model_read_policy(a[0], a[1], plan.region)),
                    opts=_child(self))
            if pp.eks_node_group:
                for i, arn in enumerate(EKS_NODE_POLICIES):
                    aws.iam.RolePolicyAttachment(f"{name}-{pool}-eks{i}", role=role.name, policy_arn=arn,
                                                 opts=_child(self))
            self.profiles[pool] = aws.iam.InstanceProfile(f"{name}-{pool}", role=role.name, opts=_child(self))
        self.register_outputs({"keyArn": self.key.arn, "bucket": self.bucket.bucket})


# --------------------------------------------------------------------------- instances


def user_data(stack: str, host: str, fqdn: str, pool: str, role: str, nvme: int) -> str:
    """cloud-init for one host (base64): name the host, leave a marker, make sure the SSM agent runs.

    It does NOT partition disks, build the instance-store RAID, install drivers or open ports: the
    roles do that on the first converge (``nvme_raid`` builds the RAID 0 on the instance-store NVMe
    drives, as the storage plan says), over the SSM session this agent serves."""
    marker = json.dumps({"stack": stack, "host": host, "pool": pool, "role": role, "instance_store_nvme": nvme,
                         "converged_by": "ansible over ssm"}, sort_keys=True)
    text = "\n".join([
        "#cloud-config",
        f"hostname: {host}",
        f"fqdn: {fqdn}",
        "manage_etc_hosts: true",
        "write_files:",
        "  - path: /etc/llmcluster/node.json",
        "    permissions: '0644'",
        f"    content: '{marker}'",
        "runcmd:",
        "  - [systemctl, enable, --now, snap.amazon-ssm-agent.amazon-ssm-agent.service]",
        "",
    ])
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class HostFacts:
    fqdn: str
    nvme: int


def _interfaces(pp: PoolPlan, inst: InstancePlan | None, subnets: Mapping[str, Any], groups: Mapping[str, Any],
                pool_subnet: Any = None) -> list[aws.ec2.LaunchTemplateNetworkInterfaceArgs]:
    out = []
    for n, iface in enumerate(pp.interfaces):
        args: dict[str, Any] = {"network_card_index": iface.card, "device_index": iface.device,
                                "interface_type": iface.kind, "security_groups": [groups[pp.group_of(iface)]],
                                "delete_on_termination": "true", "associate_public_ip_address": "false"}
        if inst is not None:
            subnet, ip = inst.interfaces[n]
            args["subnet_id"] = subnets[subnet]
            if ip is not None:
                args["private_ip_address"] = ip
        out.append(aws.ec2.LaunchTemplateNetworkInterfaceArgs(**args))
    return out


#: IMDSv2 only, one hop: a container on the node cannot reach the instance's credentials.
METADATA_OPTIONS = {"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1,
                    "instance_metadata_tags": "disabled"}


def _capacity(pp: PoolPlan) -> dict[str, Any]:
    if pp.capacity == "on-demand":
        return {}
    out: dict[str, Any] = {"capacity_reservation_specification": {
        "capacity_reservation_target": {"capacity_reservation_id": pp.capacity_reservation_id}}}
    if pp.capacity == "capacity-block":
        out["instance_market_options"] = {"market_type": "capacity-block"}
    return out


def launch_template_args(pp: PoolPlan, *, key_arn: Any, profile_arn: Any, groups: Mapping[str, Any], az: str,
                         placement_group: Any, key_name: str | None, data: str | None,
                         inst: InstancePlan | None = None, subnets: Mapping[str, Any] | None = None,
                         image: bool = True) -> dict[str, Any]:
    args: dict[str, Any] = {
        "instance_type": pp.instance_type,
        **({"iam_instance_profile": {"arn": profile_arn}} if profile_arn is not None else {}),
        "metadata_options": dict(METADATA_OPTIONS),
        "block_device_mappings": [{"device_name": ROOT_DEVICE if image else EKS_ROOT_DEVICE, "ebs": {
            "volume_size": pp.root_volume_gb, "volume_type": "gp3", "encrypted": "true", "kms_key_id": key_arn,
            "delete_on_termination": "true"}}],
        "network_interfaces": _interfaces(pp, inst, subnets or {}, groups),
        "placement": {"availability_zone": az, **({"group_name": placement_group} if placement_group else {})},
        "ebs_optimized": "true",
        "monitoring": {"enabled": True},
        **_capacity(pp),
    }
    if image:
        args["image_id"] = pp.ami or UBUNTU_AMI
    if key_name:
        args["key_name"] = key_name
    if data is not None:
        args["user_data"] = data
    return args


class AwsNodePool(pulumi.ComponentResource):
    """One pool: its placement group, and per host a launch template (the exact interface list with
    the host's planned addresses) and the instance launched from it."""

    TYPE = "llmcluster:aws:NodePool"

    def __init__(self, name: str, pp: PoolPlan, hosts: list[InstancePlan], facts: Mapping[str, HostFacts], *,
                 plan: AwsPlan, stack: str, subnets: Mapping[str, Any], groups: Mapping[str, Any], key_arn: Any,
                 profile_arn: Any, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.TYPE, name, {"pool": pp.pool, "instanceType": pp.instance_type,
                                           "capacity": pp.capacity, "hosts": [h.host for h in hosts]}, opts)
        self.placement_group: aws.ec2.PlacementGroup | None = None
        if pp.placement_group:
            self.placement_group = aws.ec2.PlacementGroup(
                f"{name}-pg", name=f"{stack}-{pp.placement_group}", strategy="cluster", opts=_child(self))
        pg_name = self.placement_group.name if self.placement_group else None
        self.instances: dict[str, aws.ec2.Instance] = {}
        for h in hosts:
            f = facts[h.host]
            lt = aws.ec2.LaunchTemplate(f"{name}-{h.host}", **launch_template_args(
                pp, key_arn=key_arn, profile_arn=profile_arn, groups=groups, az=h.az, placement_group=pg_name,
                key_name=plan.key_name, data=user_data(stack, h.host, f.fqdn, pp.pool, pp.role, f.nvme),
                inst=h, subnets=subnets), tag_specifications=[
                {"resource_type": "instance", "tags": {"Name": h.host}},
                {"resource_type": "volume", "tags": {"Name": h.host}}], opts=_child(self))
            # The instance repeats what matters of its template (the metadata options, the encrypted root
            # volume): instance arguments win over the template's, so a policy reads them here.
            self.instances[h.host] = aws.ec2.Instance(
                f"{name}-{h.host}", launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
                metadata_options=dict(METADATA_OPTIONS),
                root_block_device={"volume_size": pp.root_volume_gb, "volume_type": "gp3", "encrypted": True,
                                   "kms_key_id": key_arn, "delete_on_termination": True},
                tags={"Name": h.host, "llmcluster:pool": pp.pool}, opts=_child(self))
        self.register_outputs({"instances": {n: i.id for n, i in self.instances.items()}})


# --------------------------------------------------------------------------- entry point


class AwsEntry(pulumi.ComponentResource):
    """The internal NLB: a TCP listener on the gateway port (TLS passthrough) to the gateways'
    inference addresses, client addresses preserved; mTLS terminates at HAProxy, never at AWS. Its
    private address in each subnet is the plan's (subnet mappings), so the gateways' host firewall can
    admit its health checks from exactly those addresses."""

    TYPE = "llmcluster:aws:Entry"

    def __init__(self, name: str, plan: AwsPlan, stack: str, vpc_id: Any, subnets: Mapping[str, Any],
                 group_id: Any, instances: list[Any], opts: pulumi.ResourceOptions | None = None):
        entry = plan.entry
        assert entry is not None
        super().__init__(self.TYPE, name, {"port": entry.port}, opts)
        self.nlb = aws.lb.LoadBalancer(
            f"{name}-nlb", name=f"{stack}-api"[:32], internal=True, load_balancer_type="network",
            # each subnet with the planned address the gateways' host firewall admits (nlb-health)
            subnet_mappings=[aws.lb.LoadBalancerSubnetMappingArgs(subnet_id=subnets[s], private_ipv4_address=a)
                             for s, a in entry.subnet_mappings], security_groups=[group_id],
            enable_cross_zone_load_balancing=True, enable_deletion_protection=False, opts=_child(self))
        tg = aws.lb.TargetGroup(
            f"{name}-gateways", name=f"{stack}-gw"[:32], port=entry.port, protocol="TCP", target_type="ip",
            vpc_id=vpc_id, preserve_client_ip="true",
            health_check={"protocol": "TCP", "port": str(entry.port), "interval": 10, "healthy_threshold": 3,
                          "unhealthy_threshold": 3}, opts=_child(self))
        for (host, address) in entry.targets:
            aws.lb.TargetGroupAttachment(f"{name}-{host}", target_group_arn=tg.arn, target_id=address,
                                         port=entry.port, opts=_child(self, depends_on=instances))
        aws.lb.Listener(f"{name}-tcp{entry.port}", load_balancer_arn=self.nlb.arn, port=entry.port, protocol="TCP",
                        default_actions=[{"type": "forward", "target_group_arn": tg.arn}], opts=_child(self))
        self.dns_name = self.nlb.dns_name
        self.register_outputs({"dnsName": self.nlb.dns_name})


# --------------------------------------------------------------------------- EKS


def kubeconfig(name: str, endpoint: str, ca: str, region: str) -> str:
    """A kubeconfig for the private endpoint (exec: aws eks get-token): the seam the Kubernetes
    serving layer takes its provider from. Holds no credential."""
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": endpoint, "certificate-authority-data": ca}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "users": [{"name": name, "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", name, "--region", region]}}}],
    }, sort_keys=True)


class AwsEks(pulumi.ComponentResource):
    """EKS with a private endpoint only: the control-plane log group first (retention, the stack key),
    secrets encrypted with the stack key, access entries, a node group per GPU pool on its launch template."""

    TYPE = "llmcluster:aws:Eks"

    def __init__(self, name: str, plan: AwsPlan, *, subnets: Mapping[str, Any], groups: Mapping[str, Any],
                 key_arn: Any, roles: Mapping[str, aws.iam.Role], profiles: Mapping[str, Any],
                 opts: pulumi.ResourceOptions | None = None):
        eks = plan.eks
        assert eks is not None
        super().__init__(self.TYPE, name, {"name": eks.name, "version": eks.version}, opts)
        logs = aws.cloudwatch.LogGroup(f"{name}-logs", name=eks.log_group, retention_in_days=eks.log_retention_days,
                                       kms_key_id=key_arn, opts=_child(self))
        role = aws.iam.Role(f"{name}-cluster", assume_role_policy=_assume("eks.amazonaws.com"), opts=_child(self))
        attach = aws.iam.RolePolicyAttachment(f"{name}-cluster", role=role.name, policy_arn=EKS_CLUSTER_POLICY,
                                              opts=_child(self))
        self.cluster = aws.eks.Cluster(
            f"{name}-cluster", name=eks.name, version=eks.version, role_arn=role.arn,
            vpc_config={"subnet_ids": [subnets[s] for s in eks.subnets], "endpoint_private_access": True,
                        "endpoint_public_access": False, "security_group_ids": [groups["eks-control-plane"]]},
            encryption_config={"resources": ["secrets"], "provider": {"key_arn": key_arn}},
            enabled_cluster_log_types=list(EKS_LOG_TYPES),
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": False},
            opts=_child(self, depends_on=[logs, attach]))
        for i, principal in enumerate(eks.admin_principals):
            entry = aws.eks.AccessEntry(f"{name}-admin{i}", cluster_name=self.cluster.name, principal_arn=principal,
                                        type="STANDARD", opts=_child(self))
            aws.eks.AccessPolicyAssociation(f"{name}-admin{i}", cluster_name=self.cluster.name,
                                            principal_arn=principal, policy_arn=EKS_ADMIN_POLICY,
                                            access_scope={"type": "cluster"}, opts=_child(self, depends_on=[entry]))
        for pool, pp in plan.pools.items():
            if not pp.eks_node_group:
                continue
            pg = aws.ec2.PlacementGroup(f"{name}-{pool}-pg", name=f"{eks.name}-{pp.placement_group}",
                                        strategy="cluster", opts=_child(self)) if pp.placement_group else None
            lt = aws.ec2.LaunchTemplate(f"{name}-{pool}", **launch_template_args(
                pp, key_arn=key_arn, profile_arn=None, groups=groups, az=plan.zones[0],
                placement_group=pg.name if pg else None, key_name=plan.key_name, data=None, image=False),
                opts=_child(self))
            # EKS sets the instance profile of a managed node group itself: none in the template.
            count = plan.node_counts[pool]
            aws.eks.NodeGroup(
                f"{name}-{pool}", cluster_name=self.cluster.name, node_group_name=pool, node_role_arn=roles[pool].arn,
                subnet_ids=[subnets[f"{pp.interfaces[0].vlan}-{plan.zones[0]}"]],
                scaling_config={"desired_size": count, "min_size": count, "max_size": count},
                launch_template={"id": lt.id, "version": lt.latest_version.apply(str)},
                ami_type="AL2023_x86_64_NVIDIA",
                capacity_type="CAPACITY_BLOCK" if pp.capacity == "capacity-block" else "ON_DEMAND",
                labels={"llmcluster/pool": pool}, opts=_child(self))
        self.kubeconfig = pulumi.Output.all(self.cluster.name, self.cluster.endpoint,
                                            self.cluster.certificate_authority).apply(
            lambda a: kubeconfig(a[0], a[1], (a[2] or {}).get("data", ""), plan.region))
        self.register_outputs({"name": self.cluster.name})
