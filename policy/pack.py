"""The CrossGuard policies: one mandatory ResourceValidationPolicy per rule of llmcluster.policy, and one
StackValidationPolicy that runs the same rules over the whole stack (the stack's KMS key, security groups
and VPC endpoints recognised from the resources, every bucket's public-access block, encryption and policy).

Per-resource context (what one resource cannot show) comes from the file named by
``LLMCLUSTER_POLICY_CONTEXT`` (JSON: ``adminCidrs``, ``adminSecurityGroups``, ``efaSecurityGroups``,
``kmsKeys``, ``vpcEndpoints``, ``publicListeners``, each a list of strings) and each policy's Pulumi
policy config (the same keys). Without ``kmsKeys`` / ``vpcEndpoints`` the per-resource policies accept any
key or endpoint reference and leave the identity to the stack policy.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import llmcluster  # noqa: F401
except ImportError:  # run from the repository: pulumi starts the pack in policy/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi_policy import (EnforcementLevel, PolicyConfigSchema, ReportViolation, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)

from llmcluster.policy import RULES, Resource, Rule, check_resources
from llmcluster.policy.core import ANY, CONTEXT_KEYS, Context, context_from_data
from llmcluster.policy.runner import _REFERENCE_OUTPUTS

PACK_NAME = "llmcluster-security"
STACK_POLICY = "llmcluster-stack"
CONTEXT_ENV = "LLMCLUSTER_POLICY_CONTEXT"

CONFIG_SCHEMA = PolicyConfigSchema(properties={k: {"type": "array", "items": {"type": "string"}}
                                               for k in CONTEXT_KEYS})


def plain(value: Any) -> Any:
    """Props as plain dicts and lists; reading an unknown value (preview) raises pulumi-policy's
    UnknownValueError, which the pack reports as "can't run during preview" instead of judging it."""
    if isinstance(value, Mapping):
        return {k: plain(value[k]) for k in value}
    if isinstance(value, (list, tuple)):
        return [plain(value[i]) for i in range(len(value))]
    return value


def base_context(config: Mapping[str, Any] | None = None) -> Context:
    data: dict[str, Any] = {}
    path = os.environ.get(CONTEXT_ENV)
    if path:
        data.update(json.loads(Path(path).read_text()))
    data.update({k: v for k, v in (config or {}).items() if v is not None})
    return context_from_data(data, where=path or "policy config")


def resource_context(config: Mapping[str, Any] | None = None) -> Context:
    ctx = base_context(config)
    return dataclasses.replace(ctx, kms_keys=ctx.kms_keys or frozenset({ANY}),
                               vpc_endpoints=ctx.vpc_endpoints or frozenset({ANY}))


def _validate(rule: Rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type not in rule.resource_types:
            return
        ctx = resource_context(args.get_config())
        for v in rule(args.resource_type, plain(args.props), ctx, resource=args.urn):
            report_violation(f"{args.name}: {v.text}", None)
    return validate


def validate_stack(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = []
    for r in args.resources:
        props = plain(r.props)
        ids = {str(props[k]) for k in _REFERENCE_OUTPUTS if isinstance(props.get(k), str)}
        resources.append(Resource(r.urn, r.resource_type, props, frozenset(ids)))
    ctx = base_context(args.get_config())
    for v in check_resources(resources, ctx, admin_zone_names=()):
        report_violation(f"{v.rule}: {v.text}", v.resource)


def policies() -> list:
    found: list = [ResourceValidationPolicy(name=r.id, description=r.description, validate=_validate(r),
                                            enforcement_level=EnforcementLevel.MANDATORY, config_schema=CONFIG_SCHEMA)
                   for r in RULES]
    found.append(StackValidationPolicy(name=STACK_POLICY, description="Every rule over the whole stack: the stack's "
                                       "own KMS key, admin and EFA groups, VPC endpoints; every bucket complete",
                                       validate=validate_stack, enforcement_level=EnforcementLevel.MANDATORY,
                                       config_schema=CONFIG_SCHEMA))
    return found
