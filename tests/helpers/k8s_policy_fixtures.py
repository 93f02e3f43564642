"""Fixtures of the Kubernetes pod rules (llmcluster.policy.kubernetes): a compliant and a violating resource
each, as pulumi-kubernetes registers their inputs; merged into tests.helpers.policy_fixtures.FIXTURES."""

from __future__ import annotations

import copy
from typing import Any

from llmcluster.policy.kubernetes import DEPLOYMENT, LWS, NETWORK_POLICY

IMAGE = "nvcr.io/nvidia/tensorrt-llm/release@sha256:" + "a" * 64
C = "spec.template.spec.containers[0]"


def container(**over: Any) -> dict:
    c = {"name": "app", "image": IMAGE,
         "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "readOnlyRootFilesystem": True,
                             "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
         "resources": {"limits": {"cpu": "2", "memory": "1Gi"}, "requests": {"cpu": "2", "memory": "1Gi"}}}
    c.update(over)
    return c


def deployment(c: dict | None = None) -> dict:
    return {"metadata": {"name": "serving", "namespace": "llm"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "x"}},
                     "template": {"metadata": {"labels": {"app": "x"}},
                                  "spec": {"securityContext": {"runAsNonRoot": True,
                                                               "seccompProfile": {"type": "RuntimeDefault"}},
                                           "containers": [c or container()]}}}}


def with_sc(**sc: Any) -> dict:
    c = container()
    c["securityContext"] = {**c["securityContext"], **sc}
    d = deployment(c)
    d["spec"]["template"]["spec"]["securityContext"] = {"seccompProfile": {"type": "RuntimeDefault"}}
    return d


GOOD = deployment()
DENY = {"metadata": {"name": "default-deny", "namespace": "llm"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
GOOD_LWS = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
            "metadata": {"name": "serving", "namespace": "llm"},
            "spec": {"leaderWorkerTemplate": {"size": 2, "leaderTemplate": copy.deepcopy(GOOD["spec"]["template"]),
                                              "workerTemplate": copy.deepcopy(GOOD["spec"]["template"])}}}
BAD_LWS = copy.deepcopy(GOOD_LWS)
BAD_LWS["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]["image"] = "x/y:latest"

K8S_FIXTURES: dict[str, tuple[str, dict, dict, str]] = {
    "k8s.run-as-non-root": (DEPLOYMENT, GOOD, with_sc(runAsNonRoot=False), f"{C}.securityContext.runAsNonRoot"),
    "k8s.read-only-root-fs": (DEPLOYMENT, GOOD, with_sc(readOnlyRootFilesystem=False),
                              f"{C}.securityContext.readOnlyRootFilesystem"),
    "k8s.no-capabilities": (DEPLOYMENT, GOOD, with_sc(capabilities={"drop": ["NET_RAW"]}),
                            f"{C}.securityContext.capabilities.drop"),
    "k8s.image-digest": (LWS, GOOD_LWS, BAD_LWS, "spec.leaderWorkerTemplate.workerTemplate.spec.containers[0].image"),
    "k8s.resource-limits": (DEPLOYMENT, GOOD, deployment(container(resources={"requests": {"cpu": "1",
                                                                                           "memory": "1Gi"}})),
                            f"{C}.resources.limits"),
    "k8s.default-deny": (NETWORK_POLICY, DENY, {**DENY, "spec": {**DENY["spec"], "ingress": [{}]}}, "spec"),
}
