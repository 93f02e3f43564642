"""Kubernetes serving layer rules (serving.runtime: kubernetes; llmcluster.plan.kubernetes).

What a later stage would refuse is refused here, by key path: a cluster to target (EKS from the AWS
backend, or a kubeconfig secret on bare metal), a target version the manifests can be validated for,
pins that render the served model, a model volume that exists, autoscaling bounds that keep at least
one replica, and a gateway image when the stack has a gateway.
"""

from __future__ import annotations

from collections.abc import Iterator

from llmcluster.errors import Problem
from llmcluster.spec.models import Spec
from llmcluster.validate.registry import rule

#: Target versions the manifests are validated for (the schemas kubernetes-validate ships).
SUPPORTED_VERSIONS = tuple(f"1.{m}" for m in range(25, 38))


@rule("kubernetes.section")
def section(spec: Spec) -> Iterator[Problem]:
    """serving.runtime kubernetes needs the kubernetes section, and the section needs that runtime."""
    if spec.serving.runtime == "kubernetes" and spec.kubernetes is None:
        yield Problem("kubernetes", "missing: serving.runtime is 'kubernetes'; add the kubernetes section "
                                    "(namespace, version, pins)")
    elif spec.serving.runtime != "kubernetes" and spec.kubernetes is not None:
        yield Problem("serving.runtime", f"'{spec.serving.runtime}' but a kubernetes section is set: set "
                                         "serving.runtime: kubernetes or remove the section")


@rule("kubernetes.cluster", requires=("kubernetes.section",))
def cluster(spec: Spec) -> Iterator[Problem]:
    """The cluster exists: EKS (aws.eks) on AWS; on bare metal an existing cluster named by kubeconfig_secret."""
    k = spec.kubernetes
    if k is None or spec.serving.runtime != "kubernetes":
        return
    if spec.platform == "aws":
        if spec.aws is None or spec.aws.eks is None:
            yield Problem("aws.eks", "missing: serving.runtime kubernetes on AWS runs on the stack's EKS cluster; "
                                     "add aws.eks")
        if k.kubeconfig_secret is not None:
            yield Problem("kubernetes.kubeconfig_secret", "not used on AWS (the provider comes from the stack's EKS "
                                                          "cluster): remove it")
    elif k.kubeconfig_secret is None:
        yield Problem("kubernetes.kubeconfig_secret", "missing: on bare metal name the Pulumi config secret that holds "
                                                      "the existing cluster's kubeconfig (e.g. "
                                                      "'llmcluster-k8s:kubeconfig')")


@rule("kubernetes.version", requires=("kubernetes.section",))
def version(spec: Spec) -> Iterator[Problem]:
    """kubernetes.version is one the manifests can be validated for (1.25-1.37) and, on EKS, the cluster's."""
    k = spec.kubernetes
    if k is None:
        return
    if k.version not in SUPPORTED_VERSIONS:
        yield Problem("kubernetes.version", f"'{k.version}' is outside {SUPPORTED_VERSIONS[0]}-"
                                            f"{SUPPORTED_VERSIONS[-1]} (the versions the manifests are validated "
                                            "for)")
    elif spec.aws is not None and spec.aws.eks is not None and spec.aws.eks.version != k.version:
        yield Problem("kubernetes.version", f"'{k.version}' differs from aws.eks.version '{spec.aws.eks.version}': "
                                            "target the cluster's version")


@rule("kubernetes.pins", requires=("kubernetes.section",))
def pins(spec: Spec) -> Iterator[Problem]:
    """Every pin serves serving.model; at most keep_pins pins; active indexes a pin; no pin twice."""
    k = spec.kubernetes
    if k is None:
        return
    for i, p in enumerate(k.pins):
        if p.model != spec.serving.model:
            yield Problem(f"kubernetes.pins.{i}.model", f"'{p.model}' is not serving.model "
                                                         f"'{spec.serving.model}': a pin changes the revision, "
                                                         "manifest and image, not the model (sized by the planner)")
    if len(k.pins) > k.keep_pins:
        yield Problem("kubernetes.pins", f"{len(k.pins)} pins but keep_pins is {k.keep_pins}: drop the oldest")
    if k.active >= len(k.pins):
        yield Problem("kubernetes.active", f"{k.active} but there are {len(k.pins)} pins (0 is the newest)")
    seen: dict[tuple, int] = {}
    for i, p in enumerate(k.pins):
        key = (p.revision, p.manifest_sha256, p.image)
        if key in seen:
            yield Problem(f"kubernetes.pins.{i}", f"the same pin as pins.{seen[key]}: list each version once")
        seen.setdefault(key, i)


@rule("kubernetes.model-volume", requires=("kubernetes.section",))
def model_volume(spec: Spec) -> Iterator[Problem]:
    """The model volume exists: host needs storage.raid on the serving pool; pvc needs a storage_class."""
    k = spec.kubernetes
    if k is None:
        return
    if k.model_volume == "host":
        raid = spec.storage.raid
        if raid is None or raid.pool != spec.serving.pool:
            yield Problem("kubernetes.model_volume", f"'host' reads the model from the NVMe RAID of pool "
                                                     f"'{spec.serving.pool}', but storage.raid is not on it: use "
                                                     "'pvc' with a storage_class or add storage.raid")
    elif k.storage_class is None:
        yield Problem("kubernetes.storage_class", "missing: model_volume 'pvc' needs the StorageClass of the claim "
                                                  "(Ceph RBD, EBS gp3)")


@rule("kubernetes.autoscaling", requires=("kubernetes.section",))
def autoscaling(spec: Spec) -> Iterator[Problem]:
    """min_replicas <= max_replicas; the gateway_queue metric needs a gateway."""
    k = spec.kubernetes
    if k is None:
        return
    a = k.autoscaling
    lo = a.min_replicas if a.min_replicas is not None else spec.serving.replicas
    if a.max_replicas is not None and a.max_replicas < lo:
        yield Problem("kubernetes.autoscaling.max_replicas", f"{a.max_replicas} is below min_replicas {lo}")
    if a.metric == "gateway_queue" and spec.serving.gateway is None:
        yield Problem("kubernetes.autoscaling.metric", "'gateway_queue' needs serving.gateway")
        return
    if a.metric == "kv_cache_utilization" and a.target > 100:
        yield Problem("kubernetes.autoscaling.target", f"{a.target}: kv_cache_utilization is a percent (1-100)")
    # a metric the pinned exporter does not serve leaves the autoscaler blind (it never scales)
    from llmcluster.plan.kubernetes import autoscaling_metric, autoscaling_metric_gaps

    missing = autoscaling_metric_gaps(spec)
    if missing:
        fix = ("use gateway_queue (HAProxy's exporter)" if spec.serving.gateway is not None
               else "add serving.gateway and use gateway_queue")
        yield Problem("kubernetes.autoscaling.metric",
                      f"{autoscaling_metric(spec)}{'' if a.metric else ' (the default without a gateway)'}: "
                      f"{missing[0]}: the autoscaler would never see it; {fix}, or pin a tensorrt_llm that exports it")


@rule("kubernetes.gateway-image", requires=("kubernetes.section",))
def gateway_image(spec: Spec) -> Iterator[Problem]:
    """With serving.gateway the gateway Deployment needs kubernetes.gateway_image (by digest)."""
    k = spec.kubernetes
    if k is not None and spec.serving.gateway is not None and k.gateway_image is None:
        yield Problem("kubernetes.gateway_image", "missing: the gateway runs as a Deployment; give its HAProxy image "
                                                  "by digest ('<registry>/<repository>@sha256:<64 hex>')")
