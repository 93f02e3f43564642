"""Stand-in for the pulumi-aws provider in the offline evaluation: what AWS would compute for the
resources the AWS backend registers (ids, ARNs, names, a bucket name from its prefix, the private IP an
instance gets from its launch template, the S3 endpoint's prefix list, the NLB's DNS name, the EKS
endpoint), and the one invoke the backend calls (``aws.getCallerIdentity``).

A simulation: the values have AWS's shapes (``arn:aws:...``, ``pl-...``) but nothing is contacted.
The instance's private IP is the primary interface's (network card 0, device 0) address of the
launch template it was launched from, as EC2 assigns it; so the inventory's ``ansible_host`` comes
through the same Output path as on AWS.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

#: The account the stand-in reports (AWS's documentation example account).
ACCOUNT = "123456789012"
CALLER_IDENTITY = "aws:index/getCallerIdentity:getCallerIdentity"


def _hex(name: str, n: int = 17) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:n]


class AwsStandin:
    """Outputs per resource type; methods take ``(name, inputs)`` (``with_name``)."""

    def __init__(self, region: str = "us-east-1"):
        self.region = region
        #: launch template id -> its primary interface's private IP
        self._lt_primary: dict[str, str | None] = {}

    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:aws:{service}:{self.region if region else ''}:{ACCOUNT}:{resource}"

    def provider(self, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(inputs.get("region"), str):
            self.region = inputs["region"]
        return {}

    def kms_key(self, name, inputs):
        h = _hex(name, 32)
        kid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        return {"keyId": kid, "arn": self._arn("kms", f"key/{kid}")}

    def bucket(self, name, inputs):
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix') or name}{_hex(name, 12)}"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "bucketDomainName": f"{bucket}.s3.amazonaws.com"}

    def role(self, name, inputs):
        rname = inputs.get("name") or f"{name}-{_hex(name, 7)}"
        return {"name": rname, "arn": f"arn:aws:iam::{ACCOUNT}:role/{rname}", "uniqueId": "AROA" + _hex(name, 17)}

    def instance_profile(self, name, inputs):
        pname = inputs.get("name") or f"{name}-{_hex(name, 7)}"
        return {"name": pname, "arn": f"arn:aws:iam::{ACCOUNT}:instance-profile/{pname}"}

    def launch_template(self, name, inputs):
        primary = None
        for iface in inputs.get("networkInterfaces") or []:
            if (iface.get("networkCardIndex") or 0) == 0 and (iface.get("deviceIndex") or 0) == 0:
                primary = iface.get("privateIpAddress")
        lt_id = f"{name}-id"
        self._lt_primary[lt_id] = primary
        return {"latestVersion": 1, "defaultVersion": 1, "arn": self._arn("ec2", f"launch-template/lt-{_hex(name)}")}

    def instance(self, name, inputs):
        lt = inputs.get("launchTemplate") or {}
        ip = inputs.get("privateIp") or self._lt_primary.get(lt.get("id"))
        return {"privateIp": ip, "arn": self._arn("ec2", f"instance/i-{_hex(name)}"),
                "primaryNetworkInterfaceId": f"eni-{_hex(name)}", "instanceState": "running"}

    def vpc_endpoint(self, name, inputs):
        out: dict[str, Any] = {"arn": self._arn("ec2", f"vpc-endpoint/vpce-{_hex(name)}")}
        if inputs.get("vpcEndpointType") == "Gateway":
            out["prefixListId"] = f"pl-{_hex(name, 8)}"
        return out

    def load_balancer(self, name, inputs):
        lname = inputs.get("name") or name
        return {"arn": self._arn("elasticloadbalancing", f"loadbalancer/net/{lname}/{_hex(name, 16)}"),
                "dnsName": f"internal-{lname}-{_hex(name, 10)}.elb.{self.region}.amazonaws.com"}

    def target_group(self, name, inputs):
        return {"arn": self._arn("elasticloadbalancing", f"targetgroup/{inputs.get('name') or name}/{_hex(name, 16)}")}

    def eks_cluster(self, name, inputs):
        return {"arn": self._arn("eks", f"cluster/{inputs.get('name') or name}"),
                "endpoint": f"https://{_hex(name, 32).upper()}.gr7.{self.region}.eks.amazonaws.com",
                "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}}

    def generic_arn(self, service: str, kind: str):
        def compute(name, inputs):
            return {"arn": self._arn(service, f"{kind}/{_hex(name)}")}
        compute.with_name = True  # type: ignore[attr-defined]
        return compute

    def providers(self) -> dict[str, Any]:
        table = {
            "pulumi:providers:aws": self.provider,
            "aws:kms/key:Key": self.kms_key,
            "aws:s3/bucket:Bucket": self.bucket,
            "aws:iam/role:Role": self.role,
            "aws:iam/instanceProfile:InstanceProfile": self.instance_profile,
            "aws:ec2/launchTemplate:LaunchTemplate": self.launch_template,
            "aws:ec2/instance:Instance": self.instance,
            "aws:ec2/vpcEndpoint:VpcEndpoint": self.vpc_endpoint,
            "aws:lb/loadBalancer:LoadBalancer": self.load_balancer,
            "aws:lb/targetGroup:TargetGroup": self.target_group,
            "aws:eks/cluster:Cluster": self.eks_cluster,
        }
        for f in table.values():
            f.__func__.with_name = True  # bound methods share their function's attribute
        table.update({
            "aws:ec2/vpc:Vpc": self.generic_arn("ec2", "vpc"),
            "aws:ec2/subnet:Subnet": self.generic_arn("ec2", "subnet"),
            "aws:ec2/securityGroup:SecurityGroup": self.generic_arn("ec2", "security-group"),
            "aws:ec2/placementGroup:PlacementGroup": self.generic_arn("ec2", "placement-group"),
            "aws:cloudwatch/logGroup:LogGroup": self.generic_arn("logs", "log-group"),
        })
        return table


def caller_identity(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/offline", "userId": "AIDAOFFLINE",
            "id": ACCOUNT}


def invokes() -> dict[str, Any]:
    return {CALLER_IDENTITY: caller_identity}
