"""The audit trail on AWS (docs/observability.md): log groups keep >= 180 days, and a bucket marked as an
audit archive has Object Lock on with a COMPLIANCE default retention of >= 180 days."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmcluster.policy.core import Context, is_true, join, rule

LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
BUCKET = "aws:s3/bucket:Bucket"
OBJECT_LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
PURPOSE_TAG = "llmcluster:purpose"
MIN_DAYS = 180


@rule("audit.log-retention", "CloudWatch log groups keep their events at least 180 days (or never expire them)",
      LOG_GROUP)
def log_retention(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    days = props.get("retentionInDays")
    if days is None or days == 0:
        return  # CloudWatch keeps events forever
    if not isinstance(days, (int, float)) or isinstance(days, bool):
        yield "retentionInDays", f"{days!r} is not a number of days: cannot judge it"
    elif days < MIN_DAYS:
        yield "retentionInDays", f"{days:g} days: the audit trail is kept at least {MIN_DAYS} days"


@rule("audit.archive-object-lock", "An audit archive bucket has Object Lock on, with a COMPLIANCE default retention "
      "of at least 180 days", BUCKET, OBJECT_LOCK)
def archive_object_lock(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if resource_type == BUCKET:
        tags = props.get("tags") if isinstance(props.get("tags"), Mapping) else {}
        if tags.get(PURPOSE_TAG) == "audit" and is_true(props.get("objectLockEnabled")) is not True:
            yield "objectLockEnabled", f"{props.get('objectLockEnabled')!r}: an audit archive must have Object Lock " \
                                       "(it can only be enabled when the bucket is created)"
        return
    ret = ((props.get("rule") or {}).get("defaultRetention") if isinstance(props.get("rule"), Mapping) else None)
    path = join(join("rule", "defaultRetention"), "mode")
    if not isinstance(ret, Mapping):
        yield join("rule", "defaultRetention"), "missing: set mode COMPLIANCE and days (>= 180)"
        return
    if ret.get("mode") != "COMPLIANCE":
        yield path, f"{ret.get('mode')!r}: GOVERNANCE lets privileged users shorten or remove the lock; use COMPLIANCE"
    days = (ret.get("days") or 0) + 365 * (ret.get("years") or 0)
    if days < MIN_DAYS:
        yield join(join("rule", "defaultRetention"), "days"), f"{days} days: at least {MIN_DAYS}"
