"""Encryption at rest with the stack's own KMS key (EBS, S3, CloudWatch logs, EKS secrets); keys rotate."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from llmcluster.policy.compute import INSTANCE, LAUNCH_TEMPLATE
from llmcluster.policy.core import Context, as_list, is_true, join, rule, stack_key

VOLUME = "aws:ebs/volume:Volume"
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
SSE_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
KMS_KEY = "aws:kms/key:Key"
KMS_ALIAS = "aws:kms/alias:Alias"
SSE_KMS = ("aws:kms", "aws:kms:dsse")


def _ebs(path: str, block: Any, ctx: Context) -> Iterator[tuple[str, str]]:
    if not isinstance(block, Mapping):
        yield path, f"{block!r} is not a map: cannot judge it"
        return
    if is_true(block.get("encrypted")) is not True:
        yield join(path, "encrypted"), f"{block.get('encrypted')!r}: the volume must be encrypted"
    yield from stack_key(join(path, "kmsKeyId"), block.get("kmsKeyId"), ctx, "the volume")


@rule("ebs.stack-key",
      "Every EBS volume (launch template block devices, instance root and EBS blocks, volumes) is encrypted with "
      "the stack's KMS key", LAUNCH_TEMPLATE, INSTANCE, VOLUME)
def ebs_stack_key(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if resource_type == VOLUME:
        yield from _ebs("", props, ctx)
        return
    if resource_type == LAUNCH_TEMPLATE:
        mappings = props.get("blockDeviceMappings")
        items = as_list(mappings)
        if not items:
            yield "blockDeviceMappings", "missing: without a mapping the image's root volume is not encrypted " \
                                         "with the stack's key: map the root device with ebs.encrypted and kmsKeyId"
            return
        for i, m in enumerate(items):
            path = join("blockDeviceMappings", i)
            if not isinstance(m, Mapping):
                yield path, f"{m!r} is not a map: cannot judge it"
            elif m.get("ebs") is not None:
                yield from _ebs(join(path, "ebs"), m["ebs"], ctx)
            elif not (m.get("virtualName") or m.get("noDevice")):  # instance store / suppressed: no EBS
                yield path, "neither ebs, virtualName nor noDevice: cannot tell what this device is"
        return
    root = props.get("rootBlockDevice")
    if root is None:
        yield "rootBlockDevice", "missing: set encrypted and kmsKeyId (the stack's key) on the root volume"
    else:
        yield from _ebs("rootBlockDevice", root, ctx)
    blocks = props.get("ebsBlockDevices")
    if blocks is not None:
        items = as_list(blocks)
        if items is None:
            yield "ebsBlockDevices", f"{blocks!r} is not a list: cannot judge it"
        for i, b in enumerate(items or []):
            yield from _ebs(join("ebsBlockDevices", i), b, ctx)


def _sse_rule(path: str, r: Any, ctx: Context) -> Iterator[tuple[str, str]]:
    if not isinstance(r, Mapping) or not isinstance(r.get("applyServerSideEncryptionByDefault"), Mapping):
        yield join(path, "applyServerSideEncryptionByDefault"), "missing: set sseAlgorithm 'aws:kms' and " \
                                                                "kmsMasterKeyId (the stack's key)"
        return
    d = r["applyServerSideEncryptionByDefault"]
    dpath = join(path, "applyServerSideEncryptionByDefault")
    if d.get("sseAlgorithm") not in SSE_KMS:
        yield join(dpath, "sseAlgorithm"), f"{d.get('sseAlgorithm')!r}: must be 'aws:kms' (SSE-KMS)"
    yield from stack_key(join(dpath, "kmsMasterKeyId"), d.get("kmsMasterKeyId"), ctx, "the bucket")


@rule("s3.sse-stack-key",
      "Bucket default encryption is SSE-KMS with the stack's KMS key (every bucket has it: checked over the stack)",
      *BUCKET_TYPES, *SSE_TYPES)
def s3_sse_stack_key(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if resource_type in BUCKET_TYPES:  # the inline (deprecated) block, where a bucket still uses it
        inline = props.get("serverSideEncryptionConfiguration")
        if inline is not None:
            if not isinstance(inline, Mapping):
                yield "serverSideEncryptionConfiguration", f"{inline!r} is not a map: cannot judge it"
            else:
                yield from _sse_rule("serverSideEncryptionConfiguration.rule", inline.get("rule"), ctx)
        return
    rules = as_list(props.get("rules"))
    if not rules:
        yield "rules", "missing: one rule with applyServerSideEncryptionByDefault (aws:kms, the stack's key)"
        return
    for i, r in enumerate(rules):
        yield from _sse_rule(join("rules", i), r, ctx)


@rule("logs.stack-key", "CloudWatch log groups are encrypted with the stack's KMS key", LOG_GROUP)
def logs_stack_key(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    yield from stack_key("kmsKeyId", props.get("kmsKeyId"), ctx, "the log group")


@rule("eks.secrets-stack-key", "EKS clusters encrypt Kubernetes secrets with the stack's KMS key", EKS_CLUSTER)
def eks_secrets(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    enc = props.get("encryptionConfig")
    if enc is None:
        yield "encryptionConfig", "missing: set resources ['secrets'] and provider.keyArn (the stack's key)"
        return
    if not isinstance(enc, Mapping):
        yield "encryptionConfig", f"{enc!r} is not a map: cannot judge it"
        return
    resources = as_list(enc.get("resources"))
    if not resources or "secrets" not in resources:
        yield "encryptionConfig.resources", f"{enc.get('resources')!r}: must include 'secrets'"
    provider = enc.get("provider")
    key = provider.get("keyArn") if isinstance(provider, Mapping) else None
    yield from stack_key("encryptionConfig.provider.keyArn", key, ctx, "the cluster's secrets")


@rule("kms.rotation", "KMS keys rotate automatically (enableKeyRotation true)", KMS_KEY)
def kms_rotation(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if is_true(props.get("enableKeyRotation")) is not True:
        yield "enableKeyRotation", f"{props.get('enableKeyRotation')!r}: must be true (yearly rotation)"
