"""The audit trail on AWS (docs/observability.md): a CloudWatch log group for the gateways' access log
(KMS-encrypted with the stack's key, retention >= 180 days) and an S3 archive bucket with Object Lock
(COMPLIANCE mode, default retention = the audit retention): archived lines can be neither changed nor
deleted before it ends, not even by the account's root user. The gateways' instance role may write
to the log group and put archive segments under the archive's key prefix (nothing else): exactly the
calls of their shipper (roles/audit_cloudwatch, llmcluster/monitoring/audit_ship.py)."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws

from llmcluster.plan.monitoring import AwsAuditPlan

PURPOSE_TAG = "llmcluster:purpose"


def log_writer_policy(group_arn: str, archive_arn: str, key_arn: str, plan: AwsAuditPlan) -> str:
    """The shipper's calls and no more: CreateLogStream and PutLogEvents on the group's streams; PutObject
    under the archive prefix (no delete, no retention change: Object Lock's default applies); the stack key
    for SSE-KMS only through S3."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AuditLogWrite", "Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": [group_arn, f"{group_arn}:log-stream:*"]},
        {"Sid": "AuditArchivePut", "Effect": "Allow", "Action": ["s3:PutObject"],
         "Resource": f"{archive_arn}/{plan.archive_key_prefix}*"},
        {"Sid": "AuditArchiveEncrypt", "Effect": "Allow", "Action": ["kms:GenerateDataKey"], "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{plan.region}.amazonaws.com"}}},
    ]}, sort_keys=True)


class AwsAudit(pulumi.ComponentResource):
    TYPE = "llmcluster:aws:Audit"

    def __init__(self, name: str, plan: AwsAuditPlan, stack: str, *, key_arn: Any, s3_endpoint_id: Any,
                 writer_role: Any = None, opts: pulumi.ResourceOptions | None = None):
        from llmcluster.backends.aws.components import bucket_policy

        super().__init__(self.TYPE, name, {"logGroup": plan.log_group}, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {PURPOSE_TAG: "audit", "llmcluster:stack": stack}
        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-logs", name=plan.log_group, retention_in_days=plan.retention_days, kms_key_id=key_arn,
            tags=tags, opts=child)
        self.archive = aws.s3.Bucket(f"{name}-archive", bucket_prefix=plan.archive_prefix, object_lock_enabled=True,
                                     force_destroy=False, tags=tags, opts=child)
        aws.s3.BucketPublicAccessBlock(f"{name}-archive", bucket=self.archive.id, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-archive", bucket=self.archive.id, rule={
            "object_ownership": "BucketOwnerEnforced"}, opts=child)
        # Object Lock needs versioning (S3 turns it on with the lock; stated here so nothing turns it off).
        aws.s3.BucketVersioning(f"{name}-archive", bucket=self.archive.id,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(f"{name}-archive", bucket=self.archive.id, rules=[{
            "apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key_arn},
            "bucket_key_enabled": True}], opts=child)
        aws.s3.BucketObjectLockConfiguration(f"{name}-archive", bucket=self.archive.id, rule={
            "default_retention": {"mode": plan.lock_mode, "days": plan.lock_days}}, opts=child)
        # Like the model bucket: TLS only, objects only through the stack's S3 gateway endpoint.
        aws.s3.BucketPolicy(f"{name}-archive", bucket=self.archive.id, policy=pulumi.Output.all(
            self.archive.arn, s3_endpoint_id).apply(lambda a: bucket_policy(a[0], a[1])), opts=child)
        if writer_role is not None:
            aws.iam.RolePolicy(f"{name}-writer", role=writer_role.name,
                               policy=pulumi.Output.all(self.log_group.arn, self.archive.arn, key_arn).apply(
                                   lambda a: log_writer_policy(a[0], a[1], a[2], plan)), opts=child)
        self.register_outputs({"logGroup": self.log_group.name, "archiveBucket": self.archive.bucket})
