"""Pod rules of the Kubernetes serving layer, over the inputs pulumi-kubernetes registers.

Every pod template of a workload (Deployment, StatefulSet, DaemonSet, Job, CronJob, Pod and the
LeaderWorkerSet's leader and worker templates), every container of it, init containers included:

* ``k8s.run-as-non-root``: ``runAsNonRoot: true`` (pod or container) and no ``runAsUser: 0``;
* ``k8s.read-only-root-fs``: ``readOnlyRootFilesystem: true``;
* ``k8s.no-capabilities``: capabilities ``drop: [ALL]``, none added, not privileged, no privilege escalation;
* ``k8s.image-digest``: images by digest (``@sha256:`` and 64 hex digits), never by tag;
* ``k8s.resource-limits``: CPU and memory limits (and requests);
* ``k8s.default-deny``: a namespace's ``default-deny`` NetworkPolicy selects every pod, covers ingress
  and egress and allows nothing; that every namespace holding a workload has one is checked over the
  whole stack (:func:`default_deny_coverage`, run by :mod:`llmcluster.policy.runner`).

Values a rule cannot read (a template that is not a map, a missing container list) are violations.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from llmcluster.policy.core import Context, Violation, is_true, rule

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFULSET = "kubernetes:apps/v1:StatefulSet"
DAEMONSET = "kubernetes:apps/v1:DaemonSet"
JOB = "kubernetes:batch/v1:Job"
CRONJOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
LWS = "kubernetes:leaderworkerset.x-k8s.io/v1:LeaderWorkerSet"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
WORKLOADS = (DEPLOYMENT, STATEFULSET, DAEMONSET, JOB, CRONJOB, POD, LWS)
#: The name of the namespace-wide deny-all policy.
DEFAULT_DENY = "default-deny"
_DIGEST = re.compile(r"[^@\s]+@sha256:[0-9a-f]{64}")


def pod_specs(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """``(property path, pod spec)`` of every pod template of a workload."""
    spec = props.get("spec")
    if resource_type == POD:
        yield "spec", spec
    elif resource_type == CRONJOB:
        yield "spec.jobTemplate.spec.template.spec", _dig(spec, "jobTemplate", "spec", "template", "spec")
    elif resource_type == LWS:
        for key in ("leaderTemplate", "workerTemplate"):
            t = _dig(spec, "leaderWorkerTemplate", key)
            if t is not None or key == "workerTemplate":
                yield f"spec.leaderWorkerTemplate.{key}.spec", _dig(t, "spec")
    else:
        yield "spec.template.spec", _dig(spec, "template", "spec")


def _dig(value: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(k)
    return value


def containers(resource_type: str, props: Mapping[str, Any]) -> Iterator[tuple[str, Any, Any]]:
    """``(path, container, pod spec)`` of every container and init container; ``(path, None, None)`` for a
    pod spec that cannot be read."""
    for path, ps in pod_specs(resource_type, props):
        if not isinstance(ps, Mapping) or not isinstance(ps.get("containers"), (list, tuple)) or not ps["containers"]:
            yield path, None, None
            continue
        for kind in ("initContainers", "containers"):
            for i, c in enumerate(ps.get(kind) or ()):
                yield f"{path}.{kind}[{i}]", c, ps


def _unreadable(path: str) -> tuple[str, str]:
    return path, "no pod template with containers to judge (fails closed)"


@rule("k8s.run-as-non-root", "Every container of a workload runs as non-root (runAsNonRoot true, never runAsUser 0)",
      *WORKLOADS)
def non_root(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for path, c, ps in containers(resource_type, props):
        if c is None:
            yield _unreadable(path)
            continue
        pod_sc = ps.get("securityContext") if isinstance(ps.get("securityContext"), Mapping) else {}
        sc = c.get("securityContext") if isinstance(c, Mapping) and isinstance(c.get("securityContext"),
                                                                                Mapping) else {}
        non_root = is_true(sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")))
        if non_root is not True:
            yield f"{path}.securityContext.runAsNonRoot", "not true: set runAsNonRoot (pod or container)"
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        if uid in (0, 0.0, "0"):
            yield f"{path}.securityContext.runAsUser", "0 is root"


@rule("k8s.read-only-root-fs", "Every container of a workload has a read-only root filesystem", *WORKLOADS)
def read_only(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for path, c, _ in containers(resource_type, props):
        if c is None:
            yield _unreadable(path)
        elif is_true(_dig(c, "securityContext", "readOnlyRootFilesystem")) is not True:
            yield f"{path}.securityContext.readOnlyRootFilesystem", "not true: mount writable paths as volumes"


@rule("k8s.no-capabilities", "Every container drops ALL capabilities, adds none, is not privileged and cannot "
      "escalate privileges", *WORKLOADS)
def no_caps(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for path, c, _ in containers(resource_type, props):
        if c is None:
            yield _unreadable(path)
            continue
        sc = _dig(c, "securityContext") or {}
        drop = _dig(sc, "capabilities", "drop") or []
        add = _dig(sc, "capabilities", "add") or []
        if "ALL" not in drop:
            yield f"{path}.securityContext.capabilities.drop", f"{list(drop)!r}: must drop ALL"
        if add:
            yield f"{path}.securityContext.capabilities.add", f"{list(add)!r}: add no capability"
        if is_true(sc.get("privileged")) is True:
            yield f"{path}.securityContext.privileged", "true: never privileged"
        if is_true(sc.get("allowPrivilegeEscalation")) is not False:
            yield f"{path}.securityContext.allowPrivilegeEscalation", "not false: set it false"


@rule("k8s.image-digest", "Every container image is pinned by digest (@sha256:...), never by tag", *WORKLOADS)
def image_digest(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for path, c, _ in containers(resource_type, props):
        if c is None:
            yield _unreadable(path)
            continue
        image = c.get("image") if isinstance(c, Mapping) else None
        if not isinstance(image, str) or not _DIGEST.fullmatch(image):
            yield f"{path}.image", f"{image!r}: pin it by digest (<repository>@sha256:<64 hex>)"


@rule("k8s.resource-limits", "Every container sets CPU and memory requests and limits", *WORKLOADS)
def limits(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    for path, c, _ in containers(resource_type, props):
        if c is None:
            yield _unreadable(path)
            continue
        res = _dig(c, "resources") or {}
        for kind in ("limits", "requests"):
            have = res.get(kind) if isinstance(res.get(kind), Mapping) else {}
            missing = [r for r in ("cpu", "memory") if not have.get(r)]
            if missing:
                yield f"{path}.resources.{kind}", f"no {' or '.join(missing)} {kind[:-1]}"


def is_default_deny(props: Mapping[str, Any]) -> bool:
    spec = props.get("spec")
    return (isinstance(spec, Mapping) and spec.get("podSelector") in ({}, {"matchLabels": {}})
            and set(spec.get("policyTypes") or ()) == {"Ingress", "Egress"}
            and not spec.get("ingress") and not spec.get("egress"))


@rule("k8s.default-deny", "A namespace's default-deny NetworkPolicy selects every pod and denies all ingress and "
      "egress (and every namespace with workloads has one)", NETWORK_POLICY)
def default_deny(resource_type: str, props: Mapping[str, Any], ctx: Context) -> Iterator[tuple[str, str]]:
    if _dig(props, "metadata", "name") != DEFAULT_DENY:
        return
    if not is_default_deny(props):
        yield "spec", "must be podSelector {} with policyTypes [Ingress, Egress] and no rules (deny everything; " \
                      "other policies allow)"


def _namespace(props: Mapping[str, Any]) -> str:
    ns = _dig(props, "metadata", "namespace")
    return ns if isinstance(ns, str) and ns else "default"


def default_deny_coverage(resources: Iterable[Any]) -> list[Violation]:
    """Every namespace holding a workload has a default-deny NetworkPolicy (resources: runner.Resource)."""
    resources = list(resources)
    covered = {_namespace(r.props) for r in resources if r.type == NETWORK_POLICY and is_default_deny(r.props)}
    return [Violation("k8s.default-deny", r.urn, "metadata.namespace",
                      f"{_namespace(r.props)!r} has no default-deny NetworkPolicy (podSelector {{}}, Ingress and "
                      "Egress, no rules)")
            for r in resources if r.type in WORKLOADS and _namespace(r.props) not in covered]
