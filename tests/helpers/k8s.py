"""Stack overlays that turn the shipped stacks into Kubernetes-runtime stacks (no stack file changes)."""

from __future__ import annotations

import json

D1 = "1" * 64
D2 = "2" * 64
IMAGE1 = "nvcr.io/nvidia/tensorrt-llm/release@sha256:" + "a" * 64
IMAGE2 = "nvcr.io/nvidia/tensorrt-llm/release@sha256:" + "b" * 64
HAPROXY = "registry.example.internal/haproxy@sha256:" + "c" * 64


def pin(revision: str, manifest: str, image: str, model: str = "deepseek-r1") -> dict:
    return {"model": model, "revision": revision, "manifest_sha256": manifest, "image": image}


def section(**extra) -> dict:
    k = {"namespace": "llm", "version": "1.33", "gateway_image": HAPROXY,
         "pins": [pin("0123abcd", D2, IMAGE2), pin("00aa11bb", D1, IMAGE1)]}
    k.update(extra)
    return k


def overrides(*sets: str, **extra) -> tuple[str, ...]:
    return ("serving.runtime=kubernetes", f"kubernetes={json.dumps(section(**extra))}") + tuple(sets)


#: Bare metal, single-node replicas (8x H200 per node): a Deployment.
BAREMETAL = overrides(**{"kubeconfig_secret": "llmcluster-k8s:kubeconfig"})
#: Bare metal, 2-node replicas (8x H100: DeepSeek-R1 FP8 needs 16 GPUs): a LeaderWorkerSet.
BAREMETAL_LWS = overrides('pools.gpu.gpu={"model": "h100", "count": 8, "nvswitch": true, '
                          '"driver_version": "580.95.05"}', "serving.replicas=2",
                          **{"kubeconfig_secret": "llmcluster-k8s:kubeconfig"})
#: prod-aws on its EKS cluster (the GPU pool becomes a node group); the model on an EBS-backed PVC.
AWS_EKS = overrides('aws.eks={"admin_principals": ["arn:aws:iam::123456789012:role/platform-admin"]}',
                    model_volume="pvc", storage_class="gp3")


def stack_text(pins: list[dict], extra: str = "") -> str:
    """prod-baremetal's stack file as a Kubernetes-runtime stack (block style, as a person writes it)."""
    from tests.conftest import STACKS

    base = (STACKS / "Pulumi.prod-baremetal.yaml").read_text()
    anchor = "\n    pool: gpu\n    gateway:\n"
    assert anchor in base
    text = base.replace(anchor, "\n    pool: gpu\n    runtime: kubernetes\n    gateway:\n", 1)
    lines = ["  llmcluster:kubernetes:", "    # the cluster and its pins (newest first)", "    namespace: llm",
             '    version: "1.33"', "    kubeconfig_secret: llmcluster-k8s:kubeconfig",
             f"    gateway_image: {HAPROXY}", "    pins:"]
    for p in pins:
        lines += [f"      - model: {p['model']}", f"        revision: \"{p['revision']}\"",
                  f"        manifest_sha256: \"{p['manifest_sha256']}\"", f"        image: {p['image']}"]
    return text.rstrip("\n") + "\n" + "\n".join(lines) + "\n" + extra
