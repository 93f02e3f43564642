"""The AWS backend: NOT BUILT YET (the AWS backend issue).

Today it registers no AWS resource and reports the hosts at the plan's addresses, exactly what
the program did for ``platform: aws`` before the backend seam: ``pulumi up`` on an AWS stack
creates only the shared layers (the PKI). The network from the plan (VPC, subnets, endpoints),
security groups from the zone policy, instances with EFA and placement, and their stand-ins for
the offline evaluation (``llmcluster/standins/aws.py``) plug in here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmcluster import outputs
from llmcluster.backends.base import BackendInputs, ComputeResult, planned_hosts

if TYPE_CHECKING:  # pragma: no cover
    import pulumi

    from llmcluster.plan.build import Plan


def build(name: str, plan: Plan, inputs: BackendInputs, opts: pulumi.ResourceOptions | None = None) -> ComputeResult:
    return ComputeResult(hosts=planned_hosts(plan), exports={outputs.SWITCH_CONFIGS: {}, outputs.SWITCH_APPLIED: {}})
