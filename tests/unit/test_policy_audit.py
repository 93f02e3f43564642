"""The audit-trail policy rules (llmcluster/policy/audit.py) beyond their fixtures: every shape they refuse."""

from __future__ import annotations

import pytest

from llmcluster.policy import RULES
from tests.helpers.policy_fixtures import CTX

RULE = {r.id: r for r in RULES}
BUCKET = "aws:s3/bucket:Bucket"
LOCK = "aws:s3/bucketObjectLockConfiguration:BucketObjectLockConfiguration"
LOGS = "aws:cloudwatch/logGroup:LogGroup"


@pytest.mark.parametrize("props, path", [
    ({"tags": {"llmcluster:purpose": "audit"}}, "objectLockEnabled"),
    ({"tags": {"llmcluster:purpose": "audit"}, "objectLockEnabled": False}, "objectLockEnabled"),
])
def test_an_audit_bucket_without_object_lock_is_refused(props, path):
    found = RULE["audit.archive-object-lock"](BUCKET, props, CTX, resource="urn:b")
    assert [v.path for v in found] == [path]


def test_other_buckets_and_a_locked_archive_pass():
    rule = RULE["audit.archive-object-lock"]
    assert rule(BUCKET, {"tags": {"llmcluster:purpose": "models"}}, CTX, resource="urn:b") == []
    assert rule(BUCKET, {"tags": {"llmcluster:purpose": "audit"}, "objectLockEnabled": True}, CTX, resource="u") == []


@pytest.mark.parametrize("retention, path", [
    (None, "rule.defaultRetention"),
    ({"mode": "COMPLIANCE", "days": 30}, "rule.defaultRetention.days"),
    ({"mode": "COMPLIANCE"}, "rule.defaultRetention.days"),
])
def test_a_short_or_missing_lock_retention_is_refused(retention, path):
    props = {"bucket": "a", "rule": {"defaultRetention": retention} if retention is not None else {}}
    found = RULE["audit.archive-object-lock"](LOCK, props, CTX, resource="urn:l")
    assert path in [v.path for v in found]


def test_lock_in_years_counts():
    props = {"bucket": "a", "rule": {"defaultRetention": {"mode": "COMPLIANCE", "years": 1}}}
    assert RULE["audit.archive-object-lock"](LOCK, props, CTX, resource="urn:l") == []


@pytest.mark.parametrize("days, ok", [(None, True), (0, True), (180, True), (3653, True), (179, False), (1, False),
                                      ("x", False)])
def test_log_retention(days, ok):
    props = {"name": "/g", "kmsKeyId": "k"} | ({} if days is None else {"retentionInDays": days})
    assert (RULE["audit.log-retention"](LOGS, props, CTX, resource="urn:g") == []) is ok
