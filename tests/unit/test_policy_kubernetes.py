"""The Kubernetes pod rules beyond their fixtures (tests/unit/test_policy.py runs those): every shape of a
violation, failing closed, and the stack-wide default-deny coverage."""

from __future__ import annotations

import copy

import pytest

from llmcluster.policy import check, check_resources
from llmcluster.policy.kubernetes import DEPLOYMENT, LWS, NETWORK_POLICY, POD
from llmcluster.policy.runner import Resource
from tests.helpers.k8s_policy_fixtures import DENY, GOOD, GOOD_LWS, container, deployment, with_sc


def rules_hit(typ, props):
    return sorted({v.rule for v in check(typ, props)})


@pytest.mark.parametrize("props, rule_id", [
    (with_sc(runAsUser=0), "k8s.run-as-non-root"),
    (with_sc(privileged=True), "k8s.no-capabilities"),
    (with_sc(allowPrivilegeEscalation=True), "k8s.no-capabilities"),
    (with_sc(capabilities={"drop": ["ALL"], "add": ["NET_ADMIN"]}), "k8s.no-capabilities"),
    (deployment(container(image="nvcr.io/x/y:1.0@sha256:abc")), "k8s.image-digest"),
    (deployment(container(resources={})), "k8s.resource-limits"),
])
def test_each_violation_shape_is_caught(props, rule_id):
    assert rule_id in rules_hit(DEPLOYMENT, props)


def test_init_containers_are_judged_too():
    d = copy.deepcopy(GOOD)
    d["spec"]["template"]["spec"]["initContainers"] = [container(image="busybox:latest")]
    found = check(DEPLOYMENT, d)
    assert [v.path for v in found] == ["spec.template.spec.initContainers[0].image"]


@pytest.mark.parametrize("typ, props", [
    (DEPLOYMENT, {"metadata": {"name": "x"}, "spec": {"template": {"spec": {"containers": []}}}}),
    (DEPLOYMENT, {"metadata": {"name": "x"}, "spec": "nonsense"}),
    (POD, {"metadata": {"name": "x"}}),
    (LWS, {"metadata": {"name": "x"}, "spec": {"leaderWorkerTemplate": {}}}),
])
def test_rules_fail_closed_on_unreadable_templates(typ, props):
    assert {"k8s.run-as-non-root", "k8s.read-only-root-fs", "k8s.no-capabilities", "k8s.image-digest",
            "k8s.resource-limits"} <= set(rules_hit(typ, props))


def test_a_namespace_without_default_deny_is_refused_over_the_stack():
    dep = Resource("urn:dep", DEPLOYMENT, GOOD)
    lws = Resource("urn:lws", LWS, GOOD_LWS)
    assert [v.rule for v in check_resources([dep, lws])] == ["k8s.default-deny", "k8s.default-deny"]
    deny = Resource("urn:deny", NETWORK_POLICY, DENY)
    assert check_resources([dep, lws, deny]) == []
    other = Resource("urn:deny-other", NETWORK_POLICY, {**DENY, "metadata": {"name": "default-deny",
                                                                               "namespace": "other"}})
    assert [v.resource for v in check_resources([dep, other])] == ["urn:dep"]
    allowing = Resource("urn:allow", NETWORK_POLICY, {**DENY, "spec": {**DENY["spec"], "egress": [{}]}})
    assert {v.rule for v in check_resources([dep, allowing])} == {"k8s.default-deny"}
