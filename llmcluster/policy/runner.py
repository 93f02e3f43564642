"""Run every rule over the resources of a stack: recorded by the offline evaluation, or given by CrossGuard.

What a single resource cannot show is derived here, once, from the whole list:

* the context (:class:`~llmcluster.policy.core.Context`): the stack's KMS key (every identity of
  each ``aws:kms/key:Key`` and of the aliases that target it), the admin zones' and EFA security
  groups (by their ``llmcluster:zone`` / ``llmcluster:efa`` tags), the S3 VPC endpoints; the admin
  CIDRs come from the spec (:func:`context_from_spec`);
* references: a bucket's public-access block, encryption configuration and policy name it by its
  id, so each bucket is checked to have all three (:func:`bucket_coverage`); a security-group rule
  names its group by id, which is how the admin and EFA groups are recognised.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmcluster.policy import audit, compute, encryption, exposure, kubernetes, network, s3  # noqa: F401  (registers the rules)
from llmcluster.policy.core import EFA_TAG, RULES, ZONE_TAG, Context, PublicListener, Violation, is_true

if TYPE_CHECKING:  # pragma: no cover
    from llmcluster.offline import Evaluation, Recorded
    from llmcluster.spec.models import Spec

#: Outputs by which other resources reference a resource.
_REFERENCE_OUTPUTS = ("id", "arn", "keyId", "bucket", "name")
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"


@dataclass(frozen=True)
class Resource:
    """One resource as the rules see it: its URN, type token, inputs, and every string it is referenced by."""

    urn: str
    type: str
    props: Mapping[str, Any]
    identities: frozenset[str] = field(default_factory=frozenset)


def from_recorded(rec: Recorded) -> Resource:
    """A resource of the offline evaluation: its id (the mocks' ``<name>-id``) and what its stand-in computed."""
    outputs = getattr(rec, "outputs", None) or {}
    ids = {getattr(rec, "id", "") or ""}
    ids.update(str(outputs[k]) for k in _REFERENCE_OUTPUTS if isinstance(outputs.get(k), str))
    if rec.type == encryption.KMS_ALIAS and isinstance(rec.inputs.get("name"), str):
        ids.add(rec.inputs["name"])  # referenced as "alias/<name>"
    if rec.type in encryption.BUCKET_TYPES and isinstance(rec.inputs.get("bucket"), str):
        ids.add(rec.inputs["bucket"])  # a bucket's id is its name
    ids.discard("")
    return Resource(rec.urn, rec.type, rec.inputs, frozenset(ids))


def _tags(props: Mapping[str, Any]) -> Mapping[str, Any]:
    tags = props.get("tags")
    return tags if isinstance(tags, Mapping) else {}


def admin_zones(spec: Spec) -> dict[str, tuple[str, ...]]:
    """The admin zones (zones that flows give SSH or a management VLAN) and their CIDRs."""
    from llmcluster.validate.zones import admin_zone_names

    return {z: spec.zones[z].cidrs for z in admin_zone_names(spec)}


def context_from_spec(spec: Spec) -> Context:
    """Admin networks from the spec: ``aws.admin_cidrs`` and the cidrs of the admin zones."""
    zones = admin_zones(spec)
    cidrs = [c for cs in zones.values() for c in cs]
    if spec.aws is not None:
        cidrs.extend(spec.aws.admin_cidrs)
    return Context(admin_cidrs=tuple(dict.fromkeys(cidrs)), public_listeners=())


def context_from_resources(resources: Iterable[Resource], base: Context | None = None,
                           admin_zone_names: Iterable[str] = ()) -> Context:
    """``base`` plus what the resources themselves say: the stack key, the admin and EFA groups, the endpoints."""
    base = base or Context()
    resources = list(resources)
    keys: set[str] = set()
    for r in resources:
        if r.type == encryption.KMS_KEY:
            keys |= r.identities
    for r in resources:
        if r.type == encryption.KMS_ALIAS and r.props.get("targetKeyId") in keys:
            keys |= r.identities
    admin_names = set(admin_zone_names)
    admin_sgs: set[str] = set()
    efa_sgs: set[str] = set()
    endpoints: set[str] = set()
    for r in resources:
        if r.type in (network.SECURITY_GROUP, network.DEFAULT_SECURITY_GROUP):
            tags = _tags(r.props)
            if tags.get(ZONE_TAG) in admin_names:
                admin_sgs |= r.identities
            if is_true(tags.get(EFA_TAG)) is True:
                efa_sgs |= r.identities
        elif r.type == VPC_ENDPOINT and str(r.props.get("serviceName", "")).endswith(".s3"):
            endpoints |= r.identities
    return dataclasses.replace(
        base, kms_keys=base.kms_keys | keys, admin_security_groups=base.admin_security_groups | admin_sgs,
        efa_security_groups=base.efa_security_groups | efa_sgs, vpc_endpoints=base.vpc_endpoints | endpoints)


def check_resource(resource: Resource, ctx: Context) -> list[Violation]:
    """Every rule over one resource (``ctx.subject`` set to the resource's identities)."""
    own = dataclasses.replace(ctx, subject=resource.identities)
    return [v for r in RULES for v in r(resource.type, resource.props, own, resource=resource.urn)]


def bucket_coverage(resources: Iterable[Resource]) -> list[Violation]:
    """Every bucket has a public-access block, SSE-KMS default encryption and a policy that name it."""
    resources = list(resources)
    named: dict[str, set[str]] = {}
    for r in resources:
        bucket = r.props.get("bucket")
        if isinstance(bucket, str) and r.type not in encryption.BUCKET_TYPES:
            named.setdefault(r.type, set()).add(bucket)
    found: list[Violation] = []
    for b in resources:
        if b.type not in encryption.BUCKET_TYPES:
            continue

        def has(*types: str, b: Resource = b) -> bool:
            return any(b.identities & named.get(t, set()) for t in types)

        if not has(s3.PUBLIC_ACCESS_BLOCK):
            found.append(Violation("s3.public-access-blocked", b.urn, "",
                                   f"no {s3.PUBLIC_ACCESS_BLOCK} names this bucket"))
        if not has(*encryption.SSE_TYPES) and b.props.get("serverSideEncryptionConfiguration") is None:
            found.append(Violation("s3.sse-stack-key", b.urn, "",
                                   f"no {encryption.SSE_TYPES[0]} names this bucket (SSE-KMS with the stack's key)"))
        if not has(s3.BUCKET_POLICY):
            for rule_id in ("s3.deny-non-tls", "s3.deny-outside-vpc-endpoint"):
                found.append(Violation(rule_id, b.urn, "", f"no {s3.BUCKET_POLICY} names this bucket"))
    return found


def check_resources(resources: Iterable[Resource], ctx: Context | None = None,
                    admin_zone_names: Iterable[str] = ()) -> list[Violation]:
    """Every rule over every resource, plus the checks over the whole stack; sorted, by URN then rule."""
    resources = list(resources)
    ctx = context_from_resources(resources, ctx, admin_zone_names)
    found = [v for r in resources for v in check_resource(r, ctx)]
    found.extend(bucket_coverage(resources))
    found.extend(kubernetes.default_deny_coverage(resources))
    return sorted(set(found), key=lambda v: (v.resource, v.rule, v.path, v.message))


def check_records(records: Iterable[Recorded], spec: Spec | None = None, *,
                  public_listeners: Iterable[PublicListener] = ()) -> list[Violation]:
    """Every rule over the recorded resources of an offline evaluation (the spec gives the admin networks)."""
    base = context_from_spec(spec) if spec is not None else Context()
    base = dataclasses.replace(base, public_listeners=tuple(public_listeners))
    zones = admin_zones(spec) if spec is not None else {}
    return check_resources([from_recorded(r) for r in records], base, zones)


def check_evaluation(ev: Evaluation) -> list[Violation]:
    """Every rule over what the program registered for one stack."""
    return check_records(ev.resources, ev.plan.spec)
