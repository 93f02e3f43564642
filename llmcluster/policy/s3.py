"""S3: public access blocked (all four flags), bucket policies that deny non-TLS access and access from
outside the stack's VPC endpoint. That every bucket has each of these is checked over the whole stack
(:mod:`llmcluster.policy.runner`)."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from typing import Any

from llmcluster.policy.core import ANY, Context, as_list, is_true, join, rule

PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ACCOUNT_PUBLIC_ACCESS_BLOCK = "aws:s3/accountPublicAccessBlock:AccountPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


@rule("s3.public-access-blocked",
      "S3 public access is blocked: all four public-access-block flags true, for every bucket",
      PUBLIC_ACCESS_BLOCK, ACCOUNT_PUBLIC_ACCESS_BLOCK)
def public_access_blocked(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for flag in FLAGS:
        if is_true(props.get(flag)) is not True:
            yield flag, f"{props.get(flag)!r}: must be true"


def policy_document(props: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]] | None, str]:
    """The statements of a bucket policy's ``policy`` input (a JSON string or a map), or why not."""
    doc = props.get("policy")
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except ValueError as exc:
            return None, f"not JSON ({exc.msg}): cannot judge it"
    if not isinstance(doc, Mapping):
        return None, "missing or not a policy document: cannot judge it"
    stmts = doc.get("Statement")
    if isinstance(stmts, Mapping):
        stmts = [stmts]
    items = as_list(stmts)
    if items is None or not all(isinstance(s, Mapping) for s in items):
        return None, "Statement is not a list of statements: cannot judge it"
    return items, ""


def _strings(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    items = as_list(value)
    if items is None or not all(isinstance(v, str) for v in items):
        return None
    return items


#: The data actions a deny outside the VPC endpoint must cover at least: read, write, delete and list
#: the objects. A deny of ``s3:*`` from outside the endpoint also locks the deployer's own
#: ``pulumi up`` (run outside the VPC) out of the bucket's configuration, so a deny of the data
#: actions alone is accepted for that rule; the non-TLS rule still wants ``s3:*``.
DATA_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket")


def _covers(actions: list[str], action: str) -> bool:
    """IAM action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in actions)


def _denies_everything_on_the_bucket(s: Mapping[str, Any], required: tuple[str, ...] | None = None) -> bool:
    """Deny, for every principal, every S3 action (or every action in ``required``), on the bucket and
    its objects."""
    if s.get("Effect") != "Deny" or "NotPrincipal" in s or "NotAction" in s or "NotResource" in s:
        return False
    principal = s.get("Principal")
    if principal != "*" and not (isinstance(principal, Mapping) and set(principal) == {"AWS"}
                                 and _strings(principal["AWS"]) == ["*"]):
        return False
    actions = _strings(s.get("Action")) or []
    if required is None:
        if "s3:*" not in actions and "*" not in actions:
            return False
    elif not all(_covers(actions, a) for a in required):
        return False
    resources = _strings(s.get("Resource")) or []
    if "*" in resources or "arn:aws:s3:::*" in resources:
        return True
    buckets = {r for r in resources if r.startswith("arn:") and "/" not in r}
    return any(f"{b}/*" in resources for b in buckets)


def _condition(s: Mapping[str, Any]) -> tuple[str, str, list[str]] | None:
    """The one condition of a statement as (operator, key in lower case, values); None if not exactly one."""
    cond = s.get("Condition")
    if not isinstance(cond, Mapping) or len(cond) != 1:
        return None
    (op, body), = cond.items()
    if not isinstance(body, Mapping) or len(body) != 1:
        return None
    (key, value), = body.items()
    if isinstance(value, bool):
        value = str(value).lower()
    values = _strings(value)
    return (op, str(key).lower(), values) if values is not None else None


def _statements(props: Mapping[str, Any], required: tuple[str, ...] | None = None
                ) -> Iterator[tuple[int, tuple[str, str, list[str]]]]:
    stmts, _ = policy_document(props)
    for i, s in enumerate(stmts or []):
        c = _condition(s)
        if c is not None and _denies_everything_on_the_bucket(s, required):
            yield i, c


@rule("s3.deny-non-tls",
      "Every bucket policy denies every principal all S3 actions on the bucket and its objects when "
      "aws:SecureTransport is false (every bucket has a policy: checked over the stack)", BUCKET_POLICY)
def deny_non_tls(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    stmts, why = policy_document(props)
    if stmts is None:
        yield "policy", why
        return
    if not any(op == "Bool" and key == "aws:securetransport" and values == ["false"]
               for _, (op, key, values) in _statements(props)):
        yield "policy", "no statement denies non-TLS access: add Effect Deny, Principal *, Action s3:*, Resource " \
                        "the bucket and bucket/*, Condition {Bool: {aws:SecureTransport: false}} (and no other " \
                        "condition)"


@rule("s3.deny-outside-vpc-endpoint",
      "Every bucket policy denies every principal reading, writing, deleting and listing the bucket's objects "
      "(s3:*, or at least " + ", ".join(DATA_ACTIONS) + ") unless the request comes through the stack's VPC "
      "endpoint (aws:SourceVpce)", BUCKET_POLICY)
def deny_outside_vpce(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    stmts, why = policy_document(props)
    if stmts is None:
        yield "policy", why
        return
    found = False
    for i, (op, key, values) in _statements(props, DATA_ACTIONS):
        if op in ("StringNotEquals", "StringNotEqualsIfExists") and key == "aws:sourcevpce":
            found = True
            foreign = [v for v in values if v not in ctx.vpc_endpoints and ANY not in ctx.vpc_endpoints]
            if foreign:
                where = join(join("policy.Statement", i), f"Condition.{op}.aws:SourceVpce")
                yield where, f"{', '.join(foreign)}: not the stack's VPC endpoint " \
                             f"({', '.join(sorted(ctx.vpc_endpoints)) or 'the stack registers none'})"
    if not found:
        yield "policy", ("no statement denies access from outside the stack's VPC endpoint: add Effect Deny, "
                         f"Principal *, Action s3:* (or at least {', '.join(DATA_ACTIONS)}), Resource the bucket "
                         "and bucket/*, Condition {StringNotEquals: {aws:SourceVpce: <the endpoint's id>}} (and no "
                         "other condition)")
