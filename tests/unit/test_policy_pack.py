"""The CrossGuard pack in policy/: it imports, lists one mandatory policy per rule (plus the stack policy),
and its callbacks, called with arguments of the shape pulumi-policy passes, report violations."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
from pulumi_policy import (EnforcementLevel, PolicyResource, PolicyResourceOptions, ResourceValidationArgs,
                           ResourceValidationPolicy, StackValidationArgs, StackValidationPolicy)

from llmcluster.policy import RULES
from tests.conftest import ROOT
from tests.helpers.policy_fixtures import CTX, FIXTURES, bucket_policy


@pytest.fixture(scope="module")
def pack():
    spec = importlib.util.spec_from_file_location("llmcluster_policy_pack", ROOT / "policy" / "pack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _opts() -> PolicyResourceOptions:
    return PolicyResourceOptions(protect=False, ignore_changes=[], delete_before_replace=None, aliases=[],
                                 custom_timeouts=None, additional_secret_outputs=[], parent=None)


def _args(typ: str, props: dict, name: str = "bad-one", config: dict | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(resource_type=typ, props=props, urn=f"urn:pulumi:s::p::{typ}::{name}", name=name,
                                  opts=_opts(), provider=None, config=config or {})


def test_pack_files_and_one_mandatory_policy_per_rule(pack):
    assert (ROOT / "policy" / "PulumiPolicy.yaml").read_text().count("runtime:") == 1
    assert "--policy-pack policy/" in (ROOT / "policy" / "README.md").read_text()
    policies = pack.policies()
    resource = [p for p in policies if isinstance(p, ResourceValidationPolicy)]
    assert sorted(p.name for p in resource) == sorted(r.id for r in RULES)
    assert [p.name for p in policies if isinstance(p, StackValidationPolicy)] == [pack.STACK_POLICY]
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in policies)


@pytest.mark.parametrize("rule_id", sorted(FIXTURES))
def test_pack_callback_reports_the_violating_fixture_and_passes_the_compliant_one(pack, rule_id, monkeypatch,
                                                                                  tmp_path):
    ctx = tmp_path / "context.json"  # what the rule needs to know about the stack (docs: policy/README.md)
    ctx.write_text(json.dumps({"adminCidrs": ["10.0.10.0/24"], "adminSecurityGroups": ["sg-admin"],
                               "efaSecurityGroups": ["sg-efa"], "vpcEndpoints": ["vpce-0stack"],
                               "kmsKeys": sorted(CTX.kms_keys)}))
    monkeypatch.setenv(pack.CONTEXT_ENV, str(ctx))
    typ, good, bad, path = FIXTURES[rule_id]
    policy = next(p for p in pack.policies() if p.name == rule_id)
    reported: list[tuple[str, str | None]] = []
    policy.validate(_args(typ, bad), lambda message, urn=None: reported.append((message, urn)))
    assert reported and any(m.startswith(f"bad-one: {path}: ") for m, _ in reported), reported
    reported.clear()
    policy.validate(_args(typ, good, name="good"), lambda message, urn=None: reported.append((message, urn)))
    assert reported == []


def test_pack_without_a_key_in_its_context_leaves_the_identity_to_the_stack_policy(pack, monkeypatch):
    monkeypatch.delenv(pack.CONTEXT_ENV, raising=False)
    typ, _, bad, _ = FIXTURES["ebs.stack-key"]  # a foreign key: passes per resource, the stack policy judges it
    policy = next(p for p in pack.policies() if p.name == "ebs.stack-key")
    reported: list[str] = []
    policy.validate(_args(typ, bad), lambda message, urn=None: reported.append(message))
    assert reported == []
    unset = {**bad, "rootBlockDevice": {"encrypted": True}}  # no key at all: refused anyway
    policy.validate(_args(typ, unset), lambda message, urn=None: reported.append(message))
    assert [m.split(": ")[1] for m in reported] == ["rootBlockDevice.kmsKeyId"]


def test_pack_stack_policy_checks_the_stack_key_and_every_bucket(pack, monkeypatch):
    monkeypatch.delenv(pack.CONTEXT_ENV, raising=False)
    key = "arn:aws:kms:us-east-2:111122223333:key/k"

    def res(typ, name, props):
        return PolicyResource(resource_type=typ, props=props, urn=f"urn:x::{typ}::{name}", name=name, opts=_opts(),
                              provider=None, parent=None, dependencies=[], property_dependencies={})

    resources = [
        res("aws:kms/key:Key", "key", {"arn": key, "keyId": "k", "enableKeyRotation": True}),
        res("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"id": "vpce-1", "serviceName": "com.amazonaws.us-east-2.s3"}),
        res("aws:cloudwatch/logGroup:LogGroup", "ok", {"kmsKeyId": key}),
        res("aws:cloudwatch/logGroup:LogGroup", "foreign", {"kmsKeyId": "arn:aws:kms:us-east-2:9:key/other"}),
        res("aws:s3/bucket:Bucket", "models", {"id": "models", "bucket": "models"}),
        res("aws:s3/bucketPolicy:BucketPolicy", "p", {"bucket": "models", "policy": bucket_policy(vpce="vpce-1")}),
    ]
    reported: list[tuple[str, str | None]] = []
    policy = next(p for p in pack.policies() if p.name == pack.STACK_POLICY)
    policy.validate(StackValidationArgs(resources, {}), lambda message, urn=None: reported.append((message, urn)))
    assert sorted(reported) == sorted([
        ("logs.stack-key: kmsKeyId: 'arn:aws:kms:us-east-2:9:key/other' is not the stack's KMS key: the log group "
         "must use the stack's key", "urn:x::aws:cloudwatch/logGroup:LogGroup::foreign"),
        ("s3.public-access-blocked: no aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock names this bucket",
         "urn:x::aws:s3/bucket:Bucket::models"),
        ("s3.sse-stack-key: no aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration "
         "names this bucket (SSE-KMS with the stack's key)", "urn:x::aws:s3/bucket:Bucket::models"),
    ])


def test_pack_refuses_a_bad_context_file_with_one_line(pack, monkeypatch, tmp_path):
    bad = tmp_path / "context.json"
    bad.write_text(json.dumps({"adminCidr": ["10.0.0.0/8"]}))
    monkeypatch.setenv(pack.CONTEXT_ENV, str(bad))
    with pytest.raises(ValueError, match=r"context.json.adminCidr: unknown key"):
        pack.base_context()
