"""The security invariants (llmcluster.policy): each rule rejects its violating fixture (naming the resource
and the property path) and passes its compliant one; rules fail closed on values they do not understand;
the runner judges recorded resources (hand-built, registered through pulumi-aws under mocks, and every
stack's offline evaluation); ``llmcluster plan`` refuses a violating stack and writes nothing."""

from __future__ import annotations

import json

import pytest

from llmcluster.offline import Recorded, evaluate
from llmcluster.policy import RULES, Context, PublicListener, Violation, check, check_evaluation, check_records
from tests.conftest import STACK_NAMES, load_spec
from tests.helpers.policy_fixtures import (BUCKET, CTX, EKS, FIXTURES, GOOD_EKS, GOOD_INSTANCE, GOOD_LT, GOOD_SSE,
                                           INSTANCE, KMS, LOGS, LT, NLB, PAB, POLICY, SG, SGI, SGR, SSE, VOLUME,
                                           VPCE, bucket_policy, with_)

RULE = {r.id: r for r in RULES}


def test_every_rule_has_fixtures_an_id_and_a_one_line_description():
    assert sorted(FIXTURES) == sorted(RULE)
    for r in RULES:
        assert r.description and "\n" not in r.description and r.resource_types


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_rule_rejects_its_violating_fixture(rule_id):
    typ, _, bad, path = FIXTURES[rule_id]
    found = RULE[rule_id](typ, bad, CTX, resource="urn:test::bad-one")
    assert found, f"{rule_id} passed its violating fixture"
    assert all(v.rule == rule_id for v in found)
    assert any(v.path == path for v in found), [str(v) for v in found]
    line = str(next(v for v in found if v.path == path))
    assert line.startswith(f"urn:test::bad-one: {rule_id}: {path}: "), line


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_rule_passes_its_compliant_fixture(rule_id):
    typ, good, _, _ = FIXTURES[rule_id]
    assert RULE[rule_id](typ, good, CTX, resource="good") == []
    # and every other rule that judges that type passes it too (the fixtures are wholly compliant)
    assert check(typ, good, CTX) == [], [str(v) for v in check(typ, good, CTX)]


@pytest.mark.parametrize("props, path, words", [
    ({"ipProtocol": "tcp", "fromPort": 0, "toPort": 1024, "cidrIpv4": "192.0.2.0/24", "securityGroupId": "sg-g"},
     "cidrIpv4", "tcp/0-1024 (SSH)"),
    ({"ipProtocol": "-1", "cidrIpv4": "10.0.11.0/24", "securityGroupId": "sg-g"}, "cidrIpv4", "all traffic"),
    ({"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "referencedSecurityGroupId": "sg-gw",
      "securityGroupId": "sg-g"}, "referencedSecurityGroupId", "not an admin zone's group"),
    ({"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv6": "fd00::/8", "securityGroupId": "sg-g"},
     "cidrIpv6", "outside the admin zone"),
    ({"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "prefixListId": "pl-1", "securityGroupId": "sg-g"},
     "prefixListId", "prefix list"),
])
def test_ssh_from_outside_the_admin_zone_is_refused_in_every_shape(props, path, words):
    found = RULE["net.no-ssh-outside-admin"](SGI, props, CTX, resource="r")
    assert [v.path for v in found] == [path] and words in found[0].message


def test_ssh_rule_lets_other_ports_and_the_efa_self_rule_through():
    r = RULE["net.no-ssh-outside-admin"]
    assert r(SGI, {"ipProtocol": "tcp", "fromPort": 8000, "toPort": 8000, "cidrIpv4": "10.0.0.0/8"}, CTX) == []
    assert r(SGI, {"ipProtocol": "udp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.0.0.0/8"}, CTX) == []
    efa = {"type": "ingress", "protocol": "-1", "fromPort": 0, "toPort": 0, "self": True, "securityGroupId": "sg-efa"}
    assert r(SGR, efa, CTX) == []
    # the same self rule on a group not tagged for EFA, or narrower than all traffic on the EFA group: refused
    assert [v.path for v in r(SGR, {**efa, "securityGroupId": "sg-gpu"}, CTX)] == ["self"]
    assert [v.path for v in r(SGR, {**efa, "protocol": "tcp", "fromPort": 22, "toPort": 22}, CTX)] == ["self"]
    # inline self on the EFA group (the runner sets the subject to the group's identities)
    inline = {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]}
    assert r(SG, inline, Context(efa_security_groups=frozenset({"sg-efa"}), subject=frozenset({"sg-efa"}))) == []
    assert [v.path for v in r(SG, inline, CTX)] == ["ingress[0].self"]
    # egress is not ingress
    assert r(SGR, {**efa, "type": "egress", "self": False, "cidrBlocks": ["0.0.0.0/0"]}, CTX) == []


def test_world_ingress_cannot_be_split_and_only_a_declared_listener_is_exempt():
    r = RULE["net.no-world-ingress"]
    split = {"ingress": [{"protocol": "tcp", "fromPort": 443, "toPort": 443,
                          "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"]}]}
    assert [v.path for v in r(SG, split, CTX)] == ["ingress[0]"]
    public = Context(public_listeners=(PublicListener.parse("tcp/443"),))
    assert r(SG, split, public) == []
    world_ssh = {"ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6CidrBlocks": ["::/0"]}]}
    assert [v.path for v in r(SG, world_ssh, public)] == ["ingress[0].ipv6CidrBlocks[0]"]
    with pytest.raises(ValueError):
        PublicListener.parse("icmp/1")


@pytest.mark.parametrize("typ, props, rule_id, path", [
    (SGI, {"ipProtocol": "gre-ish", "cidrIpv4": "10.0.10.0/24"}, "net.no-ssh-outside-admin", "ipProtocol"),
    (SGI, {"ipProtocol": "tcp", "fromPort": "any", "toPort": 22, "cidrIpv4": "10.0.10.0/24"},
     "net.no-ssh-outside-admin", "fromPort"),
    (SGI, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "cidrIpv4": "10.0.10.0/33"},
     "net.no-ssh-outside-admin", "cidrIpv4"),
    (SGI, {"ipProtocol": "tcp", "fromPort": 443, "toPort": 443, "cidrIpv4": "everywhere"}, "net.no-world-ingress",
     "cidrIpv4"),
    (SGI, {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22}, "net.no-ssh-outside-admin", ""),
    (SG, {"ingress": "0.0.0.0/0"}, "net.no-ssh-outside-admin", "ingress"),
    (SGR, {"type": "sideways", "protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["10.0.10.0/24"]},
     "net.no-ssh-outside-admin", "type"),
    (POLICY, {"bucket": "models", "policy": "{not json"}, "s3.deny-non-tls", "policy"),
    (POLICY, {"bucket": "models", "policy": bucket_policy(extra={"StringNotEquals": {"aws:PrincipalArn": "x"}})},
     "s3.deny-non-tls", "policy"),
    (LT, {**GOOD_LT, "metadataOptions": "required"}, "ec2.imdsv2-hop-limit-1", "metadataOptions"),
    (LT, {**GOOD_LT, "blockDeviceMappings": [{"deviceName": "/dev/xvda"}]}, "ebs.stack-key", "blockDeviceMappings[0]"),
    (LT, {**GOOD_LT, "blockDeviceMappings": None}, "ebs.stack-key", "blockDeviceMappings"),
    (INSTANCE, {**GOOD_INSTANCE, "rootBlockDevice": None}, "ebs.stack-key", "rootBlockDevice"),
    (INSTANCE, {k: v for k, v in GOOD_INSTANCE.items() if k != "metadataOptions"}, "ec2.imdsv2-hop-limit-1",
     "metadataOptions"),
    (VOLUME, {"size": 100, "encrypted": True, "kmsKeyId": 42}, "ebs.stack-key", "kmsKeyId"),
    (EKS, {**GOOD_EKS, "vpcConfig": None}, "eks.private-endpoint", "vpcConfig"),
    (NLB, {"loadBalancerType": "network"}, "lb.internal", "internal"),
    (KMS, {}, "kms.rotation", "enableKeyRotation"),
])
def test_rules_fail_closed_on_what_they_do_not_understand(typ, props, rule_id, path):
    props = {k: v for k, v in props.items() if v is not None}
    found = RULE[rule_id](typ, props, CTX, resource="r")
    assert [v.path for v in found][:1] == [path], [str(v) for v in found]


def test_a_stack_without_its_own_key_or_endpoint_fails_closed():
    typ, good, _, _ = FIXTURES["logs.stack-key"]
    assert "registers no KMS key" in RULE["logs.stack-key"](typ, good, Context())[0].message
    typ, good, _, _ = FIXTURES["s3.deny-outside-vpc-endpoint"]
    assert "registers none" in RULE["s3.deny-outside-vpc-endpoint"](typ, good, Context())[0].message


@pytest.mark.parametrize(("actions", "ok"), [
    (["s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:ListBucket*"], True),
    (["s3:getobject", "s3:putobject", "s3:deleteobject", "s3:listbucket"], True),  # IAM actions ignore case
    (["s3:Get*", "s3:Put*", "s3:Delete*", "s3:List*"], True),
    (["s3:GetObject*", "s3:PutObject*", "s3:ListBucket*"], False),  # deleting from outside stays open
    (["s3:PutObject", "s3:DeleteObject", "s3:ListBucket"], False),  # reading from outside stays open
    (["s3:GetBucketPolicy"], False),
])
def test_the_endpoint_deny_may_cover_the_data_actions_only(actions, ok):
    """A deny of s3:* outside the endpoint would lock the deployer (outside the VPC) out of the bucket's
    configuration: the data actions suffice, but every one of them."""
    doc = json.loads(bucket_policy(vpce=VPCE))
    for st in doc["Statement"]:
        if st.get("Sid") == "VpceOnly":
            st["Action"] = actions
    typ = POLICY
    found = RULE["s3.deny-outside-vpc-endpoint"](typ, {"bucket": "models", "policy": json.dumps(doc)}, CTX)
    assert (found == []) is ok, [str(v) for v in found]
    if not ok:
        assert "s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket" in found[0].message
    # the non-TLS deny still wants every action
    doc2 = json.loads(bucket_policy(vpce=VPCE))
    for st in doc2["Statement"]:
        if st.get("Sid") == "TlsOnly":
            st["Action"] = actions
    assert RULE["s3.deny-non-tls"](typ, {"bucket": "models", "policy": json.dumps(doc2)}, CTX) != []


# --------------------------------------------------------------------------- the runner over recorded resources


def rec(typ: str, name: str, inputs: dict, outputs: dict | None = None, custom: bool = True) -> Recorded:
    urn = f"urn:pulumi:test::llmcluster::{typ}::{name}"
    return Recorded(urn=urn, type=typ, name=name, parent="", custom=custom, inputs=inputs, id=f"{name}-id",
                    outputs={**inputs, **(outputs or {})})


def good_graph() -> list[Recorded]:
    """A compliant AWS graph as the offline evaluation records it: references are ids (``<name>-id``) or the
    outputs a stand-in computed (the key's ARN)."""
    key_arn = "arn:aws:kms:us-east-2:123456789012:key/key-id"
    return [
        rec(KMS, "key", {"enableKeyRotation": True}, {"arn": key_arn, "keyId": "key-kid"}),
        rec("aws:kms/alias:Alias", "alias", {"name": "alias/llmcluster", "targetKeyId": "key-kid"}),
        rec("aws:ec2/vpcEndpoint:VpcEndpoint", "s3ep", {"serviceName": "com.amazonaws.us-east-2.s3",
                                                        "vpcEndpointType": "Gateway", "vpcId": "vpc-id"}),
        rec(SG, "admin", {"vpcId": "vpc-id", "tags": {"llmcluster:zone": "admin"}}),
        rec(SG, "gpu", {"vpcId": "vpc-id", "tags": {"llmcluster:zone": "gpu"}}),
        rec(SG, "efa", {"vpcId": "vpc-id", "tags": {"llmcluster:zone": "gpu", "llmcluster:efa": "true"},
                        "ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]}),
        rec(SGI, "gpu-ssh", {"securityGroupId": "gpu-id", "ipProtocol": "tcp", "fromPort": 22.0, "toPort": 22.0,
                             "referencedSecurityGroupId": "admin-id"}),
        rec(SGI, "gpu-ssh-cidr", {"securityGroupId": "gpu-id", "ipProtocol": "tcp", "fromPort": 22.0,
                                  "toPort": 22.0, "cidrIpv4": "10.0.10.0/24"}),
        rec(LT, "gpu-lt", with_(GOOD_LT, "blockDeviceMappings[0].ebs.kmsKeyId", key_arn)),
        rec(INSTANCE, "gpu-01", with_(with_(GOOD_INSTANCE, "rootBlockDevice.kmsKeyId", key_arn),
                                      "ebsBlockDevices[0].kmsKeyId", "alias/llmcluster")),
        rec(VOLUME, "scratch", {"size": 100.0, "encrypted": True, "kmsKeyId": key_arn}),
        rec(BUCKET, "models", {"bucket": "models"}),
        rec(PAB, "models-pab", {"bucket": "models-id", "blockPublicAcls": True, "blockPublicPolicy": True,
                                "ignorePublicAcls": True, "restrictPublicBuckets": True}),
        rec(SSE, "models-sse", with_({**GOOD_SSE, "bucket": "models-id"},
                                     "rules[0].applyServerSideEncryptionByDefault.kmsMasterKeyId", key_arn)),
        rec(POLICY, "models-policy", {"bucket": "models", "policy": bucket_policy(vpce="s3ep-id")}),
        rec(LOGS, "eks-logs", {"retentionInDays": 180.0, "kmsKeyId": key_arn}),
        rec(EKS, "eks", with_(GOOD_EKS, "encryptionConfig.provider.keyArn", key_arn)),
        rec(NLB, "api", {"internal": True, "loadBalancerType": "network"}),
        rec("tls:index/privateKey:PrivateKey", "root-ca-key", {"algorithm": "ECDSA"}),
    ]


def test_runner_passes_a_compliant_graph():
    spec = load_spec("prod-aws")  # admin zone 'admin' = 10.0.10.0/24
    assert check_records(good_graph(), spec) == []


@pytest.mark.parametrize("name, path, value, rule_id, where", [
    ("key", "enableKeyRotation", False, "kms.rotation", "enableKeyRotation"),
    ("scratch", "kmsKeyId", "arn:aws:kms:us-east-2:123456789012:key/someone-elses", "ebs.stack-key", "kmsKeyId"),
    ("gpu-ssh", "referencedSecurityGroupId", "efa-id", "net.no-ssh-outside-admin", "referencedSecurityGroupId"),
    ("gpu-ssh-cidr", "cidrIpv4", "10.0.0.0/12", "net.no-ssh-outside-admin", "cidrIpv4"),
    ("models-policy", "policy", bucket_policy(vpce="vpce-elsewhere"), "s3.deny-outside-vpc-endpoint",
     "policy.Statement[2].Condition.StringNotEquals.aws:SourceVpce"),
    ("gpu-01", "metadataOptions.httpTokens", "optional", "ec2.imdsv2-hop-limit-1", "metadataOptions.httpTokens"),
    ("api", "internal", False, "lb.internal", "internal"),
])
def test_runner_reports_a_violating_resource_by_urn_rule_and_path(name, path, value, rule_id, where):
    graph = good_graph()
    target = next(r for r in graph if r.name == name)
    target.inputs = with_(target.inputs, path, value)
    found = check_records(graph, load_spec("prod-aws"))
    assert [(v.resource, v.rule, v.path) for v in found] == [(target.urn, rule_id, where)], [str(v) for v in found]


def test_runner_resolves_buckets_and_groups_by_reference():
    spec = load_spec("prod-aws")
    no_policy = [r for r in good_graph() if r.name not in ("models-policy", "models-pab")]
    found = check_records(no_policy, spec)
    bucket = next(r.urn for r in no_policy if r.name == "models")
    assert sorted((v.resource, v.rule) for v in found) == [
        (bucket, "s3.deny-non-tls"), (bucket, "s3.deny-outside-vpc-endpoint"), (bucket, "s3.public-access-blocked")]
    # the EFA self rule is accepted only because the runner finds the group's llmcluster:efa tag
    untagged = good_graph()
    efa = next(r for r in untagged if r.name == "efa")
    efa.inputs = {**efa.inputs, "tags": {"llmcluster:zone": "gpu"}}
    assert [(v.resource, v.path) for v in check_records(untagged, spec)] == [(efa.urn, "ingress[0].self")]
    # without the spec, no admin networks are known: SSH from the admin CIDR and the admin group is refused
    assert {v.resource.rsplit("::", 1)[1] for v in check_records(good_graph())} == {"gpu-ssh", "gpu-ssh-cidr"}


def test_registered_through_pulumi_aws_under_mocks_the_rules_read_its_input_names():
    """The inputs as pulumi-aws registers them (camelCase, numbers as floats, references as ids)."""
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings

    from llmcluster import offline

    mocks = offline.RecordingMocks()
    mocks.providers["aws:kms/key:Key"] = lambda inputs: {"arn": "arn:aws:kms:us-east-2:123456789012:key/k",
                                                         "keyId": "k"}

    def program() -> None:
        import pulumi_aws as aws

        key = aws.kms.Key("key", enable_key_rotation=False)
        sg = aws.ec2.SecurityGroup("gw", vpc_id="vpc-1", ingress=[aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp", from_port=22, to_port=22, cidr_blocks=["0.0.0.0/0"])])
        aws.vpc.SecurityGroupIngressRule("gw-api", security_group_id=sg.id, ip_protocol="tcp", from_port=443,
                                         to_port=443, cidr_ipv4="10.0.0.0/12")
        aws.ec2.LaunchTemplate("lt", metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_tokens="optional", http_put_response_hop_limit=2), block_device_mappings=[
            aws.ec2.LaunchTemplateBlockDeviceMappingArgs(device_name="/dev/xvda", ebs=aws.ec2.
                                                         LaunchTemplateBlockDeviceMappingEbsArgs(encrypted="true",
                                                                                                 kms_key_id=key.arn))])
        aws.cloudwatch.LogGroup("logs", retention_in_days=180, kms_key_id=key.arn)
        aws.lb.LoadBalancer("api", internal=False, load_balancer_type="network")

    with offline._lock:
        pulumi.runtime.set_all_config({})
        settings.ROOT.set(None)
        pmocks.set_mocks(mocks, project="llmcluster", stack="test", preview=False,
                         monitor=offline.RecordingMonitor(mocks))
        pulumi.runtime.test(program)()
    violations = check_records(mocks.records, load_spec("prod-aws"))
    found = {(v.resource.rsplit("::", 1)[1], v.rule, v.path) for v in violations}
    assert found == {
        ("key", "kms.rotation", "enableKeyRotation"),
        ("gw", "net.no-world-ingress", "ingress[0].cidrBlocks[0]"),
        ("gw", "net.no-ssh-outside-admin", "ingress[0].cidrBlocks[0]"),
        ("lt", "ec2.imdsv2-hop-limit-1", "metadataOptions.httpTokens"),
        ("lt", "ec2.imdsv2-hop-limit-1", "metadataOptions.httpPutResponseHopLimit"),
        ("api", "lb.internal", "internal"),
    }


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_stack_offline_evaluation_passes_the_rules(stack):
    ev = evaluate(load_spec(stack))
    assert check_evaluation(ev) == [], "\n".join(str(v) for v in check_evaluation(ev))
    # the runner judged this very list: one violating resource added to it is found
    ev.resources.append(Recorded(urn="urn:x::aws:kms/key:Key::k", type=KMS, name="k", parent="", custom=True,
                                 inputs={}))
    assert [v.rule for v in check_evaluation(ev)] == ["kms.rotation"]


def test_violation_lines():
    v = Violation("lb.internal", "urn:a", "internal", "False: must be true")
    assert str(v) == "urn:a: lb.internal: internal: False: must be true"


def test_plan_refuses_a_violating_stack_one_line_each_and_writes_nothing(monkeypatch, tmp_path, capsys):
    """A backend that registers a world-open SSH group: ``llmcluster plan`` exits non-zero, prints
    ``<stack>: <urn>: <rule id>: <message>`` per violation and writes no artifact."""
    from llmcluster import backends, cli
    from tests.conftest import ROOT

    real = backends.BACKENDS["aws"]

    def leaky(name, plan, inputs, opts):
        import pulumi_aws as aws

        aws.ec2.SecurityGroup("leaky", vpc_id="vpc-1", ingress=[aws.ec2.SecurityGroupIngressArgs(
            protocol="tcp", from_port=22, to_port=22, cidr_blocks=["0.0.0.0/0"])])
        return real(name, plan, inputs, opts)

    monkeypatch.setitem(backends.BACKENDS, "aws", leaky)
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out"
    code = cli.main(["plan", "--stack", "dev-aws", "--out", str(out)])
    err = capsys.readouterr().err
    urn = "urn:pulumi:dev-aws::llmcluster::pulumi:pulumi:Stack$aws:ec2/securityGroup:SecurityGroup::leaky"
    assert code == 2
    assert err.splitlines() == [
        f"dev-aws: {urn}: net.no-ssh-outside-admin: ingress[0].cidrBlocks[0]: tcp/22 (SSH) from 0.0.0.0/0, outside "
        "the admin zone (10.0.10.0/24)",
        f"dev-aws: {urn}: net.no-world-ingress: ingress[0].cidrBlocks[0]: ingress from 0.0.0.0/0 or ::/0 (the whole "
        "internet): not a listener the stack declares public (none declared)",
    ]
    assert "Traceback" not in err and not out.exists()
    monkeypatch.setitem(backends.BACKENDS, "aws", real)
    assert cli.main(["plan", "--stack", "dev-aws", "--json"]) == 0
