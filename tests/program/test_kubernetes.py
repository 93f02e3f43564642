"""The Kubernetes serving layer under Pulumi mocks: prod-aws on its EKS cluster and bare metal with a
kubeconfig secret (test overlays: the shipped stacks themselves keep serving.runtime systemd)."""

from __future__ import annotations

import functools

import pytest

from llmcluster import outputs
from llmcluster.offline import evaluate
from llmcluster.render.kubernetes import kubernetes_plan
from tests.conftest import load_spec
from tests.helpers import k8s

CASES = {"aws-eks": ("prod-aws", k8s.AWS_EKS), "baremetal": ("prod-baremetal", k8s.BAREMETAL),
         "baremetal-lws": ("prod-baremetal", k8s.BAREMETAL_LWS)}
PROVIDER = "pulumi:providers:kubernetes"


@functools.cache
def ev(case: str):
    stack, over = CASES[case]
    return evaluate(load_spec(stack, over))


def k8s_resources(e):
    return [r for r in e.resources if r.type.startswith("kubernetes:")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_manifest_object_is_registered_as_its_typed_resource_with_exact_fields(case):
    e = ev(case)
    kp = kubernetes_plan(e.plan)
    reg = {(r.type, r.name): r for r in k8s_resources(e)}
    for o in kp.objects:
        group, _, version = o["apiVersion"].rpartition("/")
        typ = f"kubernetes:{group or 'core'}/{version}:{o['kind']}"
        r = reg.get((typ, f"k8s-{o['kind'].lower()}-{o['metadata']['name']}"))
        assert r is not None, (typ, o["metadata"]["name"])
        assert r.inputs["metadata"] == o["metadata"], r.urn
        for key in ("spec", "data"):
            if key in o:
                assert r.inputs[key] == o[key], f"{r.urn}: {key}"
        assert r.parent.endswith("llmcluster:kubernetes:Serving::k8s"), r.urn


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_kubernetes_resource_uses_the_explicit_provider(case):
    e = ev(case)
    provs = [r for r in e.resources if r.type == PROVIDER]
    assert len(provs) == 1
    for r in k8s_resources(e):
        assert r.provider.startswith(provs[0].urn + "::"), r.urn


def test_eks_provider_takes_the_clusters_kubeconfig():
    e = ev("aws-eks")
    prov = next(r for r in e.resources if r.type == PROVIDER)
    assert e.outputs[outputs.KUBECONFIG] is not None
    kc = prov.inputs["kubeconfig"]
    assert kc and "<offline" not in str(kc)


def test_bare_metal_provider_takes_the_kubeconfig_secret():
    e = ev("baremetal")
    prov = next(r for r in e.resources if r.type == PROVIDER)
    doc = e.document()
    entry = next(x for x in doc["resources"] if x["type"] == PROVIDER)
    assert entry["inputs"]["kubeconfig"] == "<secret>"  # a secret, never in the plan document
    assert prov.inputs["kubeconfig"]


@pytest.mark.parametrize("case, lws", [("aws-eks", False), ("baremetal", False), ("baremetal-lws", True)])
def test_pinned_helm_releases(case, lws):
    e = ev(case)
    spec = e.plan.spec.kubernetes
    rel = {r.inputs["chart"]: r for r in e.resources if r.type == "kubernetes:helm.sh/v3:Release"}
    op = rel["gpu-operator"]
    assert op.inputs["version"] == spec.gpu_operator.chart_version
    eks = e.plan.spec.platform == "aws"
    assert op.inputs["values"]["driver"]["enabled"] is eks and op.inputs["values"]["toolkit"]["enabled"] is eks
    assert op.inputs["values"]["dcgmExporter"]["enabled"] is True
    lws_rel = [r for c, r in rel.items() if c.endswith("/lws")]
    assert bool(lws_rel) is lws
    if lws:
        assert lws_rel[0].inputs["version"] == spec.lws_chart_version


def test_secrets_come_from_the_pki_and_stay_secret():
    e = ev("baremetal-lws")
    doc = e.document()
    secrets = {x["name"]: x for x in doc["resources"] if x["type"] == "kubernetes:core/v1:Secret"}
    assert set(secrets) == {"k8s-secret-serving-tls", "k8s-secret-gateway-tls", "k8s-secret-mpi-ssh"}
    for x in secrets.values():  # registered as secrets: redacted whole in the plan document
        assert x["inputs"]["stringData"] == "<secret>", x["name"]
    # the gateway's bundle is the PKI's gateway-api certificate, the chain and its key (real material offline)
    from llmcluster.offline import _unsecret

    raw = _unsecret(next(r for r in e.resources if r.name == "k8s-secret-gateway-tls").inputs["stringData"])
    cert = e.outputs[outputs.PKI_CERTS]["gateway-api"]
    assert raw["api.pem"].startswith(cert) and raw["api.pem"].rstrip().endswith("PRIVATE KEY-----")
    assert raw["ca-chain.pem"] == e.outputs[outputs.PKI_CHAIN]


def test_systemd_stacks_register_no_kubernetes_resource():
    e = evaluate(load_spec("prod-baremetal"))
    assert not [r for r in e.resources if r.type.startswith(("kubernetes:", PROVIDER))]
    assert e.outputs[outputs.KUBERNETES_SERVING] is None


def test_the_layer_passes_the_security_rules():
    from llmcluster.policy import check_evaluation

    for case in CASES:
        assert check_evaluation(ev(case)) == [], case


def test_the_pod_rules_read_the_registered_inputs():
    """The rules judge what pulumi-kubernetes registers: a weakened copy of a registered workload is caught."""
    import copy

    from llmcluster.policy import check
    from llmcluster.policy.runner import Resource, check_resources

    e = ev("baremetal-lws")
    lws = next(r for r in e.resources if r.type.endswith(":LeaderWorkerSet"))
    props = copy.deepcopy(lws.inputs)
    assert check(lws.type, props) == []
    c = props["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]["containers"][0]
    c["securityContext"]["readOnlyRootFilesystem"] = False
    assert [v.rule for v in check(lws.type, props)] == ["k8s.read-only-root-fs"]
    # without its default-deny policy the namespace is refused
    rest = [Resource(r.urn, r.type, r.inputs) for r in e.resources
            if not (r.type.endswith(":NetworkPolicy") and r.inputs["metadata"]["name"] == "default-deny")]
    assert {v.rule for v in check_resources(rest)} >= {"k8s.default-deny"}
