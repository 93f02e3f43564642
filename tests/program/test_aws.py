"""The AWS backend under Pulumi's mocks: prod-aws and dev-aws register the whole graph, and its wiring
holds: instances in the placement group, the exact EFA interface list per type, security-group rules
equal to the zone policy flow by flow, every encryption key the stack key, IMDSv2 with hop limit 1,
no internet gateway, the bucket's blocks and policy, the internal NLB passing TLS through to the
gateways. Assertion messages carry the URN.
"""

from __future__ import annotations

import base64
import functools
import json

import netaddr
import pytest

from llmcluster import outputs
from llmcluster.offline import evaluate
from llmcluster.plan.aws import PLATFORM_FLOWS
from llmcluster.plan.aws_instances import INSTANCE_TYPES
from llmcluster.plan.firewall import minimal_cidrs, parse_port_spec
from tests.conftest import load_spec

EKS_ON = ('aws.eks={"admin_principals": ["arn:aws:iam::123456789012:role/platform-admin"]}',)
ODCR = ("pools.gpu.aws.capacity=odcr", "pools.gpu.aws.capacity_reservation_id=cr-0123456789abcdef0")
STACKS = ["prod-aws", "dev-aws"]


@functools.cache
def ev(stack: str, overrides: tuple[str, ...] = ()):
    return evaluate(load_spec(stack, overrides))


def of(e, type_):
    return [r for r in e.resources if r.type == type_]


def one(e, type_):
    found = of(e, type_)
    assert len(found) == 1, [r.urn for r in found]
    return found[0]


def _named(e, type_, name):
    found = [r for r in of(e, type_) if r.name == name]
    assert len(found) == 1, [r.urn for r in of(e, type_)]
    return found[0]


def by_urn(e):
    return {r.urn: r for r in e.resources}


def _id(r) -> str:
    """The id the mocks give a custom resource (what other resources' inputs reference)."""
    return f"{r.name}-id"


@pytest.mark.parametrize("stack", STACKS)
def test_the_full_graph_is_registered(stack):
    e = ev(stack)
    counts = e.by_type()
    for t in ("aws:ec2/vpc:Vpc", "aws:ec2/subnet:Subnet", "aws:ec2/routeTable:RouteTable",
              "aws:ec2/securityGroup:SecurityGroup", "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
              "aws:ec2/launchTemplate:LaunchTemplate", "aws:ec2/instance:Instance", "aws:ec2/vpcEndpoint:VpcEndpoint",
              "aws:kms/key:Key", "aws:s3/bucket:Bucket", "aws:iam/role:Role", "aws:lb/loadBalancer:LoadBalancer",
              "aws:lb/listener:Listener"):
        assert counts.get(t, 0) >= 1, f"{stack}: no {t}"
    assert counts["aws:ec2/instance:Instance"] == len(e.plan.ip.hosts)
    # every AWS resource hangs below the backend's component (stable URNs)
    compute = one(e, "llmcluster:aws:Compute")
    urns = by_urn(e)
    for r in e.resources:
        if r.type.startswith("aws:"):
            p = r.parent
            while p and p != compute.urn:
                p = urns[p].parent
            assert p == compute.urn, f"{r.urn}: not below {compute.urn}"


@pytest.mark.parametrize("stack", STACKS)
def test_inventory_addresses_are_the_instances_private_ips_with_ssm_connection(stack):
    e = ev(stack)
    inv = e.outputs[outputs.INVENTORY]
    insts = {r.inputs["tags"]["Name"]: r for r in of(e, "aws:ec2/instance:Instance")}
    for h in e.plan.ip.hosts:
        hv = inv["_meta"]["hostvars"][h.name]
        assert hv["ansible_host"] == h.mgmt_ip, h.name  # the instance's private IP == the planned address
        assert hv["llmcluster_aws_instance_id"] == _id(insts[h.name]), insts[h.name].urn
        assert "AWS-StartSSHSession" in hv["ansible_ssh_common_args"]
        assert "{{ llmcluster_aws_instance_id }}" in hv["ansible_ssh_common_args"]


def test_gpu_instances_are_in_the_pools_cluster_placement_group_in_the_gpu_zone():
    e = ev("prod-aws")
    pg = one(e, "aws:ec2/placementGroup:PlacementGroup")
    assert pg.inputs["strategy"] == "cluster", pg.urn
    lts = {r.name: r for r in of(e, "aws:ec2/launchTemplate:LaunchTemplate")}
    for h in e.plan.ip.hosts_in_pool("gpu"):
        lt = lts[f"compute-gpu-{h.name}"]
        assert lt.inputs["placement"]["groupName"] == pg.inputs["name"], lt.urn
        assert lt.inputs["placement"]["availabilityZone"] == "us-east-2b", lt.urn
    for h in e.plan.ip.hosts_in_pool("gateway"):
        assert "groupName" not in lts[f"compute-gateway-{h.name}"].inputs["placement"]
    # the gateways span both zones
    gw_zones = {lts[f"compute-gateway-{h.name}"].inputs["placement"]["availabilityZone"]
                for h in e.plan.ip.hosts_in_pool("gateway")}
    assert gw_zones == {"us-east-2b", "us-east-2c"}


def test_a_capacity_reservation_drops_the_placement_group_with_a_warning():
    e = ev("prod-aws", ODCR)
    assert not of(e, "aws:ec2/placementGroup:PlacementGroup")
    assert any("capacity" in w and "placement group" in w for w in e.outputs[outputs.AWS]["warnings"])
    for lt in of(e, "aws:ec2/launchTemplate:LaunchTemplate"):
        if lt.name.startswith("compute-gpu-"):
            spec = lt.inputs["capacityReservationSpecification"]
            assert spec["capacityReservationTarget"]["capacityReservationId"] == "cr-0123456789abcdef0", lt.urn
    e2 = ev("prod-aws", ("pools.gpu.aws.capacity=capacity-block",
                         "pools.gpu.aws.capacity_reservation_id=cr-0123456789abcdef0"))
    lt = next(r for r in of(e2, "aws:ec2/launchTemplate:LaunchTemplate") if r.name == "compute-gpu-gpu-01")
    assert lt.inputs["instanceMarketOptions"]["marketType"] == "capacity-block", lt.urn


def expected_efa_layout(itype: str):
    """The interface list AWS's EFA guide prescribes, written out independently of the planner."""
    it = INSTANCE_TYPES[itype]
    out = [(0, 0, "interface")]
    efa = [(0, 1, "efa-only")] + [(c, 0, "efa-only") for c in range(1, it.efa_interfaces)]
    return out + efa + [(1, 1, "interface")]


@pytest.mark.parametrize("itype,efa", [("p5en.48xlarge", 16), ("p5.48xlarge", 32), ("p5e.48xlarge", 32)])
def test_the_launch_template_lists_the_exact_efa_interfaces_of_the_type(itype, efa):
    gpu = INSTANCE_TYPES[itype].gpu
    e = ev("prod-aws", (f"pools.gpu.aws.instance_type={itype}", f"pools.gpu.gpu.model={gpu}", "serving.replicas=1"))
    subnets = {r.name: r for r in of(e, "aws:ec2/subnet:Subnet")}
    for lt in of(e, "aws:ec2/launchTemplate:LaunchTemplate"):
        if not lt.name.startswith("compute-gpu-"):
            continue
        ifaces = lt.inputs["networkInterfaces"]
        got = [(i.get("networkCardIndex", 0), i.get("deviceIndex", 0), i["interfaceType"]) for i in ifaces]
        assert got == expected_efa_layout(itype), lt.urn
        assert sum(1 for i in ifaces if i["interfaceType"] == "efa-only") == efa, lt.urn
        host = e.plan.ip.host(lt.name.removeprefix("compute-gpu-"))
        primary, inference = ifaces[0], ifaces[-1]
        assert primary["privateIpAddress"] == host.addresses["mgmt"], lt.urn
        assert inference["privateIpAddress"] == host.addresses["inference"], lt.urn
        for i in ifaces:
            if i["interfaceType"] == "efa-only":
                assert "privateIpAddress" not in i and i["subnetId"] == _id(subnets["compute-network-rdma-us-east-2b"])


def test_without_efa_every_interface_is_ena_on_card_0():
    e = ev("dev-aws")
    lt = next(r for r in of(e, "aws:ec2/launchTemplate:LaunchTemplate") if r.name == "compute-gpu-gpu-01")
    assert [(i.get("networkCardIndex", 0), i["deviceIndex"], i["interfaceType"])
            for i in lt.inputs["networkInterfaces"]] == [(0, 0, "interface"), (0, 1, "interface")], lt.urn


def _zone_policy(e) -> set[tuple]:
    """What the zone policy (spec flows, via the firewall plan's zones) says each group must hold."""
    fw = e.plan.firewall
    want = set()
    for f in e.plan.spec.flows:
        src, dst = fw.zone(f.from_), fw.zone(f.to)
        for port in f.ports:
            proto, lo, hi = parse_port_spec(port)
            lo, hi = (-1, -1) if proto == "icmp" else (lo, hi)
            if dst.kind == "hosts" and src.kind == "external":
                want |= {(dst.name, "ingress", proto, lo, hi, c, f.name) for c in minimal_cidrs(src.cidrs)}
            elif dst.kind == "hosts":
                want |= {(dst.name, "ingress", proto, lo, hi, src.name, f.name),
                         (src.name, "egress", proto, lo, hi, dst.name, f.name)}
            else:
                want |= {(src.name, "egress", proto, lo, hi, c, f.name) for c in minimal_cidrs(dst.cidrs)}
    return want


@pytest.mark.parametrize("stack", STACKS)
def test_security_group_rules_are_the_zone_policy_flow_by_flow(stack):
    e = ev(stack)
    groups = {_id(r): r.inputs["tags"].get("llmcluster:zone") or r.inputs["tags"]["llmcluster:efa-of"] + "-efa"
              for r in of(e, "aws:ec2/securityGroup:SecurityGroup")}
    got = set()
    platform = []
    for t, direction in (("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", "ingress"),
                         ("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule", "egress")):
        for r in of(e, t):
            flows = r.inputs["tags"]["llmcluster:flows"].split(",")
            assert flows and all(f in {x.name for x in e.plan.spec.flows} | set(PLATFORM_FLOWS) for f in flows), \
                f"{r.urn}: rule not traceable to a flow: {flows}"
            peer = (groups[r.inputs["referencedSecurityGroupId"]] if "referencedSecurityGroupId" in r.inputs
                    else r.inputs.get("cidrIpv4") or "prefix-list")
            assert peer != "0.0.0.0/0", f"{r.urn}: open to the world"
            for f in flows:
                row = (groups[r.inputs["securityGroupId"]], direction, r.inputs["ipProtocol"],
                       r.inputs.get("fromPort", 0), r.inputs.get("toPort", 0), peer, f)
                if f in PLATFORM_FLOWS:
                    platform.append(row)
                elif row[0] != "entry" and peer != "entry":
                    got.add(row)
    assert got == _zone_policy(e)
    # the platform flows that exist: endpoints and S3 for every host zone, NLB health checks
    assert {p[-1] for p in platform} >= {"aws-endpoints", "aws-s3", "nlb-health"}
    # SSH only from the admin zone
    for g, d, proto, lo, hi, peer, f in got:
        if d == "ingress" and proto == "tcp" and lo <= 22 <= hi:
            assert peer in e.plan.spec.zones["admin"].cidrs, (g, peer, f)


def test_the_efa_interfaces_have_their_own_group_with_the_self_referencing_all_traffic_rules():
    """AWS's EFA guide wants all traffic in and out within the EFA's group. The EFA-only interfaces
    (no IP address) are alone in a group of their own, so that rule opens RDMA between the GPU nodes and
    nothing else: the primary and inference interfaces stay in the zone's group (SSH only from admin)."""
    e = ev("prod-aws")
    sgs = of(e, "aws:ec2/securityGroup:SecurityGroup")
    efa_sg = [r for r in sgs if r.inputs["tags"].get("llmcluster:efa") == "true"]
    assert len(efa_sg) == 1 and efa_sg[0].inputs["tags"]["llmcluster:efa-of"] == "gpu", [r.urn for r in efa_sg]
    efa_sg = efa_sg[0]
    zone_sg = next(r for r in sgs if r.inputs["tags"].get("llmcluster:zone") == "gpu")
    for t in ("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
              "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"):
        efa = [r for r in of(e, t) if r.inputs["tags"]["llmcluster:flows"] == "efa"]
        assert len(efa) == 1, [r.urn for r in efa]
        r = efa[0]
        assert r.inputs["ipProtocol"] == "-1" and r.inputs["securityGroupId"] == _id(efa_sg), r.urn
        assert r.inputs["referencedSecurityGroupId"] == _id(efa_sg), r.urn
        # the zone's group has no all-traffic rule at all
        assert not [r for r in of(e, t) if r.inputs["securityGroupId"] == _id(zone_sg)
                    and r.inputs["ipProtocol"] == "-1"]
    for lt in of(e, "aws:ec2/launchTemplate:LaunchTemplate"):
        if not lt.name.startswith("compute-gpu-"):
            continue
        for i in lt.inputs["networkInterfaces"]:
            want = efa_sg if i["interfaceType"] == "efa-only" else zone_sg
            assert i["securityGroups"] == [_id(want)], (lt.urn, i)
    dev = ev("dev-aws")  # no EFA: no such group or rule
    assert not [r for r in of(dev, "aws:ec2/securityGroup:SecurityGroup") if "llmcluster:efa" in r.inputs["tags"]]
    assert not [r for r in of(dev, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
                if r.inputs["tags"]["llmcluster:flows"] == "efa"]


def test_instances_repeat_the_metadata_options_and_the_encrypted_root_of_their_template():
    for stack in STACKS:
        e = ev(stack)
        key = _key_arn(e)
        for i in of(e, "aws:ec2/instance:Instance"):
            m = i.inputs["metadataOptions"]
            assert (m["httpTokens"], m["httpPutResponseHopLimit"]) == ("required", 1), i.urn
            root = i.inputs["rootBlockDevice"]
            assert root["encrypted"] is True and root["kmsKeyId"] == key, i.urn


def _key_arn(e) -> str:
    return e.outputs[outputs.AWS]["keyArn"]


@pytest.mark.parametrize("stack,overrides", [("prod-aws", ()), ("dev-aws", ()), ("prod-aws", EKS_ON)])
def test_every_encryption_key_is_the_stack_key(stack, overrides):
    e = ev(stack, overrides)
    key = _key_arn(e)
    assert len(of(e, "aws:kms/key:Key")) == 1
    k = one(e, "aws:kms/key:Key")
    assert k.inputs["enableKeyRotation"] is True, k.urn
    seen = 0
    for lt in of(e, "aws:ec2/launchTemplate:LaunchTemplate"):
        for bd in lt.inputs["blockDeviceMappings"]:
            assert bd["ebs"]["encrypted"] == "true" and bd["ebs"]["kmsKeyId"] == key, lt.urn
            assert bd["ebs"]["volumeType"] == "gp3", lt.urn
            seen += 1
    # the model bucket and the audit archive (docs/observability.md)
    for sse in of(e, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"):
        rule = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]
        assert rule == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key}, sse.urn
    for lg in of(e, "aws:cloudwatch/logGroup:LogGroup"):
        assert lg.inputs["kmsKeyId"] == key, lg.urn
        seen += 1
    for c in of(e, "aws:eks/cluster:Cluster"):
        assert c.inputs["encryptionConfig"] == {"provider": {"keyArn": key}, "resources": ["secrets"]}, c.urn
    assert seen >= len(of(e, "aws:ec2/launchTemplate:LaunchTemplate"))


@pytest.mark.parametrize("stack,overrides", [("prod-aws", ()), ("prod-aws", EKS_ON)])
def test_launch_templates_require_imdsv2_with_hop_limit_1(stack, overrides):
    e = ev(stack, overrides)
    lts = of(e, "aws:ec2/launchTemplate:LaunchTemplate")
    assert lts
    for lt in lts:
        md = lt.inputs["metadataOptions"]
        assert md["httpTokens"] == "required" and md["httpPutResponseHopLimit"] == 1, lt.urn


@pytest.mark.parametrize("stack", STACKS)
def test_no_internet_gateway_and_no_public_addresses(stack):
    e = ev(stack)
    assert not of(e, "aws:ec2/internetGateway:InternetGateway")
    assert not of(e, "aws:ec2/natGateway:NatGateway")
    for s in of(e, "aws:ec2/subnet:Subnet"):
        assert s.inputs["mapPublicIpOnLaunch"] is False, s.urn
    for rt in of(e, "aws:ec2/routeTable:RouteTable"):
        assert not rt.inputs.get("routes"), rt.urn
    for lt in of(e, "aws:ec2/launchTemplate:LaunchTemplate"):
        assert all(i["associatePublicIpAddress"] == "false" for i in lt.inputs["networkInterfaces"]), lt.urn
    eps = {r.inputs["serviceName"].rsplit(".", 1)[-1] if "ecr" not in r.inputs["serviceName"]
           else ".".join(r.inputs["serviceName"].split(".")[-2:]) for r in of(e, "aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert eps >= {"s3", "ecr.api", "ecr.dkr", "sts", "ssm", "ssmmessages", "ec2messages", "logs"}


def test_nat_only_for_a_flow_to_public_addresses_and_never_on_gpu_vlans():
    sets = ("aws.public_subnet=10.80.200.0/28",
            'zones.updates={"cidrs": ["52.94.0.0/16"]}',
            'flows=[{"name": "api", "from": "clients", "to": "gateway", "ports": ["tcp/443"], "vlan": "inference"},'
            ' {"name": "serve", "from": "gateway", "to": "gpu", "ports": ["tcp/8000"], "vlan": "inference"},'
            ' {"name": "ssh-gpu", "from": "admin", "to": "gpu", "ports": ["tcp/22"], "vlan": "mgmt"},'
            ' {"name": "updates", "from": "gateway", "to": "updates", "ports": ["tcp/443"], "vlan": "inference"}]')
    e = ev("dev-aws", sets)
    igw = one(e, "aws:ec2/internetGateway:InternetGateway")
    nat = one(e, "aws:ec2/natGateway:NatGateway")
    routes = of(e, "aws:ec2/route:Route")
    assert [r.name for r in routes] == ["compute-network-nat-inference"]
    assert routes[0].inputs["natGatewayId"] == _id(nat)
    public = next(r for r in of(e, "aws:ec2/subnet:Subnet") if r.name == "compute-network-public")
    assert public.inputs["cidrBlock"] == "10.80.200.0/28", public.urn
    # the internet gateway is routed from the public subnet only
    for rt in of(e, "aws:ec2/routeTable:RouteTable"):
        gws = [x.get("gatewayId") for x in rt.inputs.get("routes") or []]
        assert (_id(igw) in gws) == (rt.name == "compute-network-rt-public"), rt.urn
    egress = [r for r in of(e, "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
              if r.inputs.get("cidrIpv4") == "52.94.0.0/16"]
    assert len(egress) == 1 and egress[0].inputs["tags"]["llmcluster:flows"] == "updates"


def test_the_model_bucket_blocks_public_access_and_denies_plain_http_and_other_paths():
    e = ev("prod-aws")
    pab = _named(e, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "compute-data-models")
    for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert pab.inputs[k] is True, f"{pab.urn}: {k}"
    v = _named(e, "aws:s3/bucketVersioning:BucketVersioning", "compute-data-models")
    assert v.inputs["versioningConfiguration"]["status"] == "Enabled", v.urn
    pol = _named(e, "aws:s3/bucketPolicy:BucketPolicy", "compute-data-models")
    doc = json.loads(pol.inputs["policy"])
    s3ep = next(r for r in of(e, "aws:ec2/vpcEndpoint:VpcEndpoint") if r.inputs["vpcEndpointType"] == "Gateway")
    st = {s["Sid"]: s for s in doc["Statement"]}
    assert st["DenyInsecureTransport"]["Effect"] == "Deny"
    assert st["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert st["DenyOutsideVpcEndpoint"]["Condition"] == {"StringNotEquals": {"aws:SourceVpce": _id(s3ep)}}
    assert "s3:GetObject*" in st["DenyOutsideVpcEndpoint"]["Action"]


def test_gpu_nodes_may_read_the_model_prefix_and_write_nothing():
    e = ev("prod-aws")
    pols = [p for p in of(e, "aws:iam/rolePolicy:RolePolicy") if p.name != "compute-audit-writer"]
    assert [p.name for p in pols] == ["compute-data-gpu-model"]
    doc = json.loads(pols[0].inputs["policy"])
    actions = [a for s in doc["Statement"] for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])]
    assert set(actions) == {"s3:GetObject", "s3:ListBucket", "kms:Decrypt"}
    bucket = e.outputs[outputs.AWS]["modelBucket"]
    read = next(s for s in doc["Statement"] if s["Sid"] == "ReadModel")
    assert read["Resource"] == f"arn:aws:s3:::{bucket}/models/*"
    assert all(s["Effect"] == "Allow" for s in doc["Statement"])


def test_the_entry_point_is_an_internal_nlb_passing_tls_through_to_the_gateways():
    e = ev("prod-aws")
    nlb = one(e, "aws:lb/loadBalancer:LoadBalancer")
    assert nlb.inputs["internal"] is True and nlb.inputs["loadBalancerType"] == "network", nlb.urn
    lst = one(e, "aws:lb/listener:Listener")
    assert lst.inputs["protocol"] == "TCP" and lst.inputs["port"] == 443, f"{lst.urn}: TLS must pass through"
    assert "certificateArn" not in lst.inputs, lst.urn
    tg = one(e, "aws:lb/targetGroup:TargetGroup")
    assert tg.inputs["protocol"] == "TCP" and tg.inputs["port"] == 443 and tg.inputs["targetType"] == "ip", tg.urn
    assert tg.inputs["preserveClientIp"] == "true", tg.urn
    targets = {a.inputs["targetId"] for a in of(e, "aws:lb/targetGroupAttachment:TargetGroupAttachment")}
    assert targets == {h.addresses["inference"] for h in e.plan.ip.hosts_in_pool("gateway")}
    subnets = {r.name: r for r in of(e, "aws:ec2/subnet:Subnet")}
    # subnet mappings with the planned addresses (what the gateways' host firewall admits), no bare subnets
    assert "subnets" not in nlb.inputs, f"{nlb.urn}: use subnetMappings (planned addresses), not subnets"
    mappings = nlb.inputs["subnetMappings"]
    assert mappings == [
        {"subnetId": _id(subnets["compute-network-inference-us-east-2b"]), "privateIpv4Address": "10.96.4.10"},
        {"subnetId": _id(subnets["compute-network-inference-us-east-2c"]), "privateIpv4Address": "10.96.6.10"},
    ], nlb.urn
    assert [m["privateIpv4Address"] for m in mappings] == [e.plan.ip.nlb[az] for az in ("us-east-2b", "us-east-2c")]
    for m in mappings:  # each address lies in its own subnet's CIDR (the mapped subnet's input)
        cidr = next(s.inputs["cidrBlock"] for s in subnets.values() if _id(s) == m["subnetId"])
        assert netaddr.IPAddress(m["privateIpv4Address"]) in netaddr.IPNetwork(cidr), (nlb.urn, m, cidr)


@pytest.mark.parametrize("stack", STACKS)
def test_the_nlb_addresses_are_what_the_gateways_firewall_admits_for_health_checks(stack):
    e = ev(stack)
    nlb = one(e, "aws:lb/loadBalancer:LoadBalancer")
    addresses = [m["privateIpv4Address"] for m in nlb.inputs["subnetMappings"]]
    assert len(addresses) == len(set(addresses)) == len(e.plan.aws.entry.subnets), nlb.urn
    port = e.plan.spec.serving.gateway.port
    for h in e.plan.ip.hosts_in_pool(e.plan.spec.serving.gateway.pool):
        for a in addresses:
            assert e.plan.firewall.host(h.name).allows(a, h.addresses["inference"], "tcp", port) == ("nlb-health",), \
                (nlb.urn, h.name, a)


def test_eks_variant_private_endpoint_log_group_first_node_groups_and_kubeconfig_seam():
    e = ev("prod-aws", EKS_ON)
    c = one(e, "aws:eks/cluster:Cluster")
    vc = c.inputs["vpcConfig"]
    assert vc["endpointPrivateAccess"] is True and vc["endpointPublicAccess"] is False, c.urn
    lg = _named(e, "aws:cloudwatch/logGroup:LogGroup", "compute-eks-logs")
    assert lg.inputs["retentionInDays"] >= 180 and lg.inputs["name"] == f"/aws/eks/{c.inputs['name']}/cluster"
    order = [r.urn for r in e.resources]
    assert order.index(lg.urn) < order.index(c.urn), "the log group exists before the cluster"
    ng = one(e, "aws:eks/nodeGroup:NodeGroup")
    assert ng.inputs["scalingConfig"]["desiredSize"] == 2 and ng.inputs["launchTemplate"]["id"], ng.urn
    assert one(e, "aws:eks/accessEntry:AccessEntry").inputs["principalArn"].endswith("role/platform-admin")
    # the GPU pool runs as a node group: no standalone GPU instances; gateways stay instances
    names = {r.inputs["tags"]["Name"] for r in of(e, "aws:ec2/instance:Instance")}
    assert names == {h.name for h in e.plan.ip.hosts_in_pool("gateway")}
    kc = json.loads(e.outputs[outputs.KUBECONFIG])
    assert kc["clusters"][0]["cluster"]["server"].startswith("https://")
    assert "token" not in json.dumps(kc["users"]).replace("get-token", "")


def test_user_data_hands_the_node_to_the_roles():
    e = ev("prod-aws")
    lt = next(r for r in of(e, "aws:ec2/launchTemplate:LaunchTemplate") if r.name == "compute-gpu-gpu-01")
    text = base64.b64decode(lt.inputs["userData"]).decode()
    assert text.startswith("#cloud-config\n") and "hostname: gpu-01" in text
    assert "amazon-ssm-agent" in text and "mdadm" not in text


def test_resources_per_gpu_node_are_constant():
    small = ev("prod-aws", ("pools.gpu.count=2",))
    big = ev("prod-aws", ("pools.gpu.count=6", "serving.replicas=6"))
    per_node = (len(big.resources) - len(small.resources)) / 4
    assert per_node <= 8, per_node


# --------------------------------------------------------------------------- audit trail (docs/observability.md)


def test_audit_log_group_kept_180_days_and_archive_locked():
    e = ev("prod-aws")
    key = _key_arn(e)
    lg = _named(e, "aws:cloudwatch/logGroup:LogGroup", "compute-audit-logs")
    assert lg.inputs["retentionInDays"] >= 180 and lg.inputs["kmsKeyId"] == key, lg.urn
    assert lg.inputs["name"] == "/llmcluster/prod-aws/audit"
    b = _named(e, "aws:s3/bucket:Bucket", "compute-audit-archive")
    assert b.inputs["objectLockEnabled"] is True and b.inputs["forceDestroy"] is False, b.urn
    lock = _named(e, "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration", "compute-audit-archive")
    ret = lock.inputs["rule"]["defaultRetention"]
    assert ret["mode"] == "COMPLIANCE" and ret["days"] >= 180, lock.urn
    w = _named(e, "aws:iam/rolePolicy:RolePolicy", "compute-audit-writer")
    doc = json.loads(w.inputs["policy"])
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    # exactly the shipper's calls (llmcluster/monitoring/audit_ship.py): no delete, no retention change
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents", "s3:PutObject", "kms:GenerateDataKey"}, w.urn
    put = next(s for s in doc["Statement"] if s["Action"] == ["s3:PutObject"])
    assert put["Resource"].endswith("/audit/*") and "-audit-" in put["Resource"], put
    kms = next(s for s in doc["Statement"] if s["Action"] == ["kms:GenerateDataKey"])
    assert kms["Resource"] == key and kms["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3."), kms


def test_gateways_learn_where_to_ship_the_audit_log():
    """The inventory (plan) says where; the program adds the archive bucket's name to the gateways only."""
    e = ev("prod-aws")
    inv = e.outputs["inventory"]
    audit = inv["all"]["vars"]["llmcluster_aws_audit"]
    assert audit["log_group"] == "/llmcluster/prod-aws/audit" and audit["region"]
    assert audit["logs_endpoint"] == f"https://logs.{audit['region']}.amazonaws.com"
    assert audit["s3_endpoint"] == f"https://s3.{audit['region']}.amazonaws.com"
    gws = set(inv["gateway"]["hosts"])
    for host, hv in inv["_meta"]["hostvars"].items():
        assert ("llmcluster_aws_audit_archive_bucket" in hv) == (host in gws), host

