"""Security invariants as code: each rule once, a plain function over one resource's inputs.

``check(resource_type, props, ctx)`` runs every rule over one resource;
:func:`~llmcluster.policy.runner.check_records` runs them over the resources an offline evaluation
recorded (``llmcluster plan`` refuses a stack that violates one); the CrossGuard pack in ``policy/``
at the repository root wraps the same rules for ``pulumi preview --policy-pack policy/``.
The rules, what each checks and why: docs/policy.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llmcluster.policy import audit, compute, encryption, exposure, kubernetes, network, s3  # noqa: F401  (registers the rules)
from llmcluster.policy.core import EFA_TAG, RULES, ZONE_TAG, Context, PublicListener, Rule, Violation
from llmcluster.policy.runner import (Resource, bucket_coverage, check_evaluation, check_records, check_resources,
                                      context_from_resources, context_from_spec)

__all__ = ["EFA_TAG", "RULES", "ZONE_TAG", "Context", "PublicListener", "Resource", "Rule", "Violation",
           "bucket_coverage", "check", "check_evaluation", "check_records", "check_resources",
           "context_from_resources", "context_from_spec", "rule_ids"]


def check(resource_type: str, props: Mapping[str, Any], ctx: Context | None = None, *,
          resource: str = "") -> list[Violation]:
    """Every rule over one resource's inputs (``resource``: its URN or name, for the messages)."""
    return [v for r in RULES for v in r(resource_type, props, ctx, resource=resource)]


def rule_ids() -> list[str]:
    return [r.id for r in RULES]
