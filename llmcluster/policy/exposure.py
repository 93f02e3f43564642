"""Nothing reachable from the internet: a private EKS endpoint, internal load balancers."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmcluster.policy.core import Context, is_true, rule
from llmcluster.policy.encryption import EKS_CLUSTER

LOAD_BALANCERS = ("aws:lb/loadBalancer:LoadBalancer", "aws:alb/loadBalancer:LoadBalancer")


@rule("eks.private-endpoint",
      "EKS cluster API endpoints are private only (endpointPrivateAccess true, endpointPublicAccess false)",
      EKS_CLUSTER)
def eks_private_endpoint(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    vpc = props.get("vpcConfig")
    if not isinstance(vpc, Mapping):
        yield "vpcConfig", f"{vpc!r}: missing or not a map: cannot judge it"
        return
    if is_true(vpc.get("endpointPrivateAccess")) is not True:
        yield "vpcConfig.endpointPrivateAccess", f"{vpc.get('endpointPrivateAccess')!r}: must be true"
    if is_true(vpc.get("endpointPublicAccess")) is not False:
        yield "vpcConfig.endpointPublicAccess", f"{vpc.get('endpointPublicAccess')!r}: must be false " \
                                                "(AWS's default is a public endpoint)"


@rule("lb.internal", "Load balancers are internal (internal true)", *LOAD_BALANCERS)
def lb_internal(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if is_true(props.get("internal")) is not True:
        yield "internal", f"{props.get('internal')!r}: must be true (AWS's default is internet-facing)"
