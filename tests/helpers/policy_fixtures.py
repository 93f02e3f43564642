"""Fixtures of the security-rule tests (tests/unit/test_policy.py, test_policy_pack.py): for each rule of
llmcluster.policy a compliant and a violating resource, as pulumi-aws registers its inputs."""

from __future__ import annotations

import copy
import json
from typing import Any

from llmcluster.policy import Context

KEY = "arn:aws:kms:us-east-2:111122223333:key/0b1c2d3e-stack"
VPCE = "vpce-0stack"
CTX = Context(kms_keys=frozenset({KEY, "alias/llmcluster"}), admin_cidrs=("10.0.10.0/24",),
              admin_security_groups=frozenset({"sg-admin"}), efa_security_groups=frozenset({"sg-efa"}),
              vpc_endpoints=frozenset({VPCE}))

SG = "aws:ec2/securityGroup:SecurityGroup"
SGR = "aws:ec2/securityGroupRule:SecurityGroupRule"
SGI = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
VOLUME = "aws:ebs/volume:Volume"
BUCKET = "aws:s3/bucket:Bucket"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
POLICY = "aws:s3/bucketPolicy:BucketPolicy"
LOGS = "aws:cloudwatch/logGroup:LogGroup"
EKS = "aws:eks/cluster:Cluster"
KMS = "aws:kms/key:Key"
NLB = "aws:lb/loadBalancer:LoadBalancer"


def bucket_policy(*, tls: Any = "false", vpce: Any = VPCE, extra: dict | None = None) -> str:
    res = ["arn:aws:s3:::models", "arn:aws:s3:::models/*"]
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": res}
    stmts = [{"Sid": "AllowNodes", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:role/gpu"},
              "Action": "s3:GetObject", "Resource": res[1]}]
    if tls is not None:
        stmts.append({**deny, "Sid": "TlsOnly", "Condition": {"Bool": {"aws:SecureTransport": tls}, **(extra or {})}})
    if vpce is not None:
        stmts.append({**deny, "Sid": "VpceOnly", "Condition": {"StringNotEquals": {"aws:SourceVpce": vpce}}})
    return json.dumps({"Version": "2012-10-17", "Statement": stmts})


GOOD_LT = {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1.0, "httpEndpoint": "enabled"},
           "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "kmsKeyId": KEY,
                                                                       "volumeType": "gp3", "volumeSize": 1000.0}},
                                   {"deviceName": "/dev/sdb", "virtualName": "ephemeral0"}]}
GOOD_INSTANCE = {"instanceType": "p5en.48xlarge", "launchTemplate": {"id": "lt-1", "version": "$Latest"},
                 "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1.0},
                 "rootBlockDevice": {"encrypted": True, "kmsKeyId": KEY},
                 "ebsBlockDevices": [{"deviceName": "/dev/sdf", "encrypted": True, "kmsKeyId": "alias/llmcluster"}]}
GOOD_SSE = {"bucket": "models", "rules": [{"applyServerSideEncryptionByDefault": {
    "sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY}, "bucketKeyEnabled": True}]}
GOOD_EKS = {"roleArn": "arn:aws:iam::111122223333:role/eks",
            "vpcConfig": {"subnetIds": ["subnet-1"], "endpointPrivateAccess": True, "endpointPublicAccess": False},
            "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": KEY}}}
GOOD_SG = {"vpcId": "vpc-1", "ingress": [
    {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "cidrBlocks": ["10.0.10.0/25"]},
    {"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, "securityGroups": ["sg-admin"]},
    {"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": ["10.0.0.0/12"]}],
    "egress": [{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "cidrBlocks": ["0.0.0.0/0"]}]}


def with_(props: dict, path: str, value: Any) -> dict:
    """A deep copy of ``props`` with ``path`` (dots; ``[i]`` for list items) set to ``value`` (None: removed)."""
    out = copy.deepcopy(props)
    keys: list[Any] = []
    for part in path.split("."):
        name, _, idx = part.partition("[")
        keys.append(name)
        if idx:
            keys.append(int(idx.rstrip("]")))
    node = out
    for k in keys[:-1]:
        node = node[k]
    if value is None:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return out


#: rule id -> (resource type, compliant props, violating props, the property path the violation names)
LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
GOOD_LOCK = {"bucket": "archive", "rule": {"defaultRetention": {"mode": "COMPLIANCE", "days": 180.0}}}

FIXTURES: dict[str, tuple[str, dict, dict, str]] = {
    # the audit trail (docs/observability.md)
    "audit.log-retention": (LOGS, {"name": "/llmcluster/s/audit", "retentionInDays": 180.0, "kmsKeyId": KEY},
                            {"name": "/llmcluster/s/audit", "retentionInDays": 90.0, "kmsKeyId": KEY},
                            "retentionInDays"),
    "audit.archive-object-lock": (LOCK, GOOD_LOCK, with_(GOOD_LOCK, "rule.defaultRetention.mode", "GOVERNANCE"),
                                  "rule.defaultRetention.mode"),
    "net.no-world-ingress": (SG, GOOD_SG, with_(GOOD_SG, "ingress[2].cidrBlocks", ["0.0.0.0/0"]),
                             "ingress[2].cidrBlocks[0]"),
    "net.no-ssh-outside-admin": (SGI, {"securityGroupId": "sg-gpu", "ipProtocol": "tcp", "fromPort": 22.0,
                                       "toPort": 22.0, "cidrIpv4": "10.0.10.0/24"},
                                 {"securityGroupId": "sg-gpu", "ipProtocol": "tcp", "fromPort": 22.0, "toPort": 22.0,
                                  "cidrIpv4": "10.0.0.0/12"}, "cidrIpv4"),
    "ec2.imdsv2-hop-limit-1": (LT, GOOD_LT, with_(GOOD_LT, "metadataOptions.httpPutResponseHopLimit", 2.0),
                               "metadataOptions.httpPutResponseHopLimit"),
    "ebs.stack-key": (INSTANCE, GOOD_INSTANCE,
                      with_(GOOD_INSTANCE, "ebsBlockDevices[0].kmsKeyId", "arn:aws:kms:us-east-2:999:key/other"),
                      "ebsBlockDevices[0].kmsKeyId"),
    "s3.sse-stack-key": (SSE, GOOD_SSE, with_(GOOD_SSE, "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm",
                                              "AES256"), "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm"),
    "logs.stack-key": (LOGS, {"name": "/aws/eks/x/cluster", "retentionInDays": 180.0, "kmsKeyId": KEY},
                       {"name": "/aws/eks/x/cluster", "retentionInDays": 180.0}, "kmsKeyId"),
    "eks.secrets-stack-key": (EKS, GOOD_EKS, with_(GOOD_EKS, "encryptionConfig.resources", []),
                              "encryptionConfig.resources"),
    "kms.rotation": (KMS, {"enableKeyRotation": True}, {"enableKeyRotation": False}, "enableKeyRotation"),
    "s3.public-access-blocked": (PAB, {"bucket": "models", "blockPublicAcls": True, "blockPublicPolicy": True,
                                       "ignorePublicAcls": True, "restrictPublicBuckets": True},
                                 {"bucket": "models", "blockPublicAcls": True, "blockPublicPolicy": True,
                                  "ignorePublicAcls": True, "restrictPublicBuckets": False}, "restrictPublicBuckets"),
    "s3.deny-non-tls": (POLICY, {"bucket": "models", "policy": bucket_policy()},
                        {"bucket": "models", "policy": bucket_policy(tls=None)}, "policy"),
    "s3.deny-outside-vpc-endpoint": (POLICY, {"bucket": "models", "policy": bucket_policy()},
                                     {"bucket": "models", "policy": bucket_policy(vpce=["vpce-0foreign"])},
                                     "policy.Statement[2].Condition.StringNotEquals.aws:SourceVpce"),
    "eks.private-endpoint": (EKS, GOOD_EKS, with_(GOOD_EKS, "vpcConfig.endpointPublicAccess", None),
                             "vpcConfig.endpointPublicAccess"),
    "lb.internal": (NLB, {"internal": True, "loadBalancerType": "network"},
                    {"internal": False, "loadBalancerType": "network"}, "internal"),
}

# the Kubernetes pod rules (llmcluster.policy.kubernetes)
from tests.helpers.k8s_policy_fixtures import K8S_FIXTURES  # noqa: E402

FIXTURES.update(K8S_FIXTURES)
