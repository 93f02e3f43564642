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
    assert set(secrets) == {"k8s-secret-serving-tls", "k8s-secret-gateway-tls", "k8s-secret-mpi-ssh",
                            "k8s-secret-metrics-client-tls"}
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


def _openssl_verify(tmp_path, chain: str, crl: str, cert: str) -> tuple[int, str]:
    import subprocess

    (tmp_path / "chain.pem").write_text(chain)
    (tmp_path / "crl.pem").write_text(crl)
    (tmp_path / "leaf.pem").write_text(cert)
    p = subprocess.run(["openssl", "verify", "-crl_check_all", "-CAfile", str(tmp_path / "chain.pem"),
                        "-CRLfile", str(tmp_path / "crl.pem"), str(tmp_path / "leaf.pem")],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("secret", ["k8s-secret-gateway-tls", "k8s-secret-serving-tls"])
def test_secret_crl_covers_every_ca_of_the_chain(tmp_path, secret):
    """openssl (as HAProxy's crl-file: every CA of the chain) admits the PKI's client certificate with the
    Secret's chain and crl.pem; with the root's CRL alone (the earlier content) it refuses every client."""
    from llmcluster import pki_crl as C
    from llmcluster.offline import _unsecret

    e = ev("baremetal")
    raw = _unsecret(next(r for r in e.resources if r.name == secret).inputs["stringData"])
    chain, crl = raw["ca-chain.pem"], raw["crl.pem"]
    client = e.outputs[outputs.PKI_CERTS]["gateway-upstream"]
    crls = [C.load_crl(p) for p in C.split_crls(crl)]
    assert len(crls) == 2
    from cryptography import x509

    inter_cert, root_cert = (x509.load_pem_x509_certificate(p.encode()) for p in
                             (e.outputs[outputs.PKI_CHAIN].split("-----END CERTIFICATE-----")[0]
                              + "-----END CERTIFICATE-----\n", e.outputs[outputs.PKI_ROOT_CERT]))
    assert C.issued_by(crls[0], inter_cert) and C.issued_by(crls[1], root_cert)
    rc, out = _openssl_verify(tmp_path, chain, crl, client)
    assert rc == 0 and "OK" in out, out
    rc, out = _openssl_verify(tmp_path, chain, e.outputs[outputs.PKI_ROOT_CRL], client)
    assert rc != 0 and "unable to get certificate CRL" in out, out


def test_program_crl_file_refuses_a_revoked_client(tmp_path):
    """The same builder with a revocation (signed by the intermediate's key from the stack outputs): the revoked
    client is refused, the other admitted."""
    import datetime as dt

    from cryptography import x509

    from llmcluster import pki_crl as C

    e = ev("baremetal")
    certs = e.outputs[outputs.PKI_CERTS]
    from llmcluster.offline import _unsecret

    key = _unsecret(e.outputs[outputs.PKI_INTERMEDIATE_KEY])
    chain = e.outputs[outputs.PKI_CHAIN]
    inter = chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    victim = x509.load_pem_x509_certificate(certs["gateway-upstream"].encode())
    rev = C.Revocation(victim.serial_number, "gateway-upstream", "keyCompromise",
                       dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    crl = C.program_crl_file(key, inter, e.outputs[outputs.PKI_ROOT_CRL], [rev])
    assert crl == C.program_crl_file(key, inter, e.outputs[outputs.PKI_ROOT_CRL], [rev])  # deterministic
    rc, out = _openssl_verify(tmp_path, chain, crl, certs["gateway-upstream"])
    assert rc != 0 and "certificate revoked" in out, out
    rc, out = _openssl_verify(tmp_path, chain, crl, certs["gateway-api"])
    assert rc == 0, out
    # a key that is not the intermediate's cannot sign its CRL
    root_key_like = _unsecret(e.outputs[outputs.PKI_KEYS])["gateway-api"]
    with pytest.raises(ValueError, match="does not match the CA"):
        C.program_crl_file(root_key_like, inter, e.outputs[outputs.PKI_ROOT_CRL])


def test_the_scrapers_client_certificate_is_admitted_by_the_metrics_frontends(tmp_path):
    """The metrics-client-tls Secret holds a client certificate of the PKI's intermediate whose CN is the one the
    metrics frontends admit, and it verifies against the Secret's chain and the gateway Secret's CRLs."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from llmcluster.offline import _unsecret
    from llmcluster.plan.kubernetes import metrics_client_cn

    e = ev("baremetal")
    raw = _unsecret(next(r for r in e.resources if r.name == "k8s-secret-metrics-client-tls").inputs["stringData"])
    gw = _unsecret(next(r for r in e.resources if r.name == "k8s-secret-gateway-tls").inputs["stringData"])
    cert = x509.load_pem_x509_certificate(raw["tls.crt"].encode())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == metrics_client_cn("llm")
    assert raw["tls.key"].rstrip().endswith("PRIVATE KEY-----")
    rc, out = _openssl_verify(tmp_path, raw["ca-chain.pem"], gw["crl.pem"], raw["tls.crt"])
    assert rc == 0, out


def _secret_data(e, name: str) -> dict:
    from llmcluster.offline import _unsecret

    return _unsecret(next(r for r in e.resources if r.name == name).inputs["stringData"])


def _pod_annotations(e, kind_name: str) -> list[dict]:
    r = next(r for r in k8s_resources(e) if r.name == f"k8s-{kind_name}")
    spec = r.inputs["spec"]
    if "template" in spec:
        return [spec["template"]["metadata"].get("annotations", {})]
    lwt = spec["leaderWorkerTemplate"]
    return [lwt[t]["metadata"].get("annotations", {}) for t in ("leaderTemplate", "workerTemplate")]


@pytest.mark.parametrize("case", ["baremetal", "baremetal-lws"])
def test_pki_revoke_reaches_the_secrets_at_the_next_pulumi_up(tmp_path, case):
    """`llmcluster pki revoke` on the export folder, then the next update (the program under mocks, keeping the
    first run's keys and certificates as `pulumi up` does, reading $LLMCLUSTER_PKI_DIR): both CRL Secrets list the
    revoked serial, openssl -crl_check_all refuses that client and admits another, and the pod templates that load
    the CRL get a new annotation (a rollout: HAProxy reads crl-file only at start)."""
    from cryptography import x509

    from llmcluster import pki_crl as C
    from llmcluster.cli import main
    from llmcluster.offline import _unsecret
    from llmcluster.pki_export import Material, export
    from llmcluster.plan.kubernetes import CRL_ANNOTATION

    stack, over = CASES[case]
    spec = load_spec(stack, over)
    first = ev(case)
    o = first.outputs
    folder = tmp_path / "pki"
    export(first.plan, Material("offline", o[outputs.PKI_ROOT_CERT], o[outputs.PKI_CHAIN], dict(o[outputs.PKI_CERTS]),
                                dict(_unsecret(o[outputs.PKI_KEYS])), _unsecret(o[outputs.PKI_INTERMEDIATE_KEY]),
                                o[outputs.PKI_ROOT_CRL]), folder, lab_tests=True)
    # nothing revoked yet: the same CRL and no annotation
    same = evaluate(spec, pki_dir=str(folder), prior=first)
    assert same.outputs[outputs.PKI_CERTS] == o[outputs.PKI_CERTS]  # the same hierarchy (the stack's state)
    assert _secret_data(same, "k8s-secret-gateway-tls")["crl.pem"] == _secret_data(first, "k8s-secret-gateway-tls")[
        "crl.pem"]
    assert all(CRL_ANNOTATION not in a for a in _pod_annotations(same, "deployment-gateway"))

    assert main(["pki", "revoke", "--pki-dir", str(folder), "--name", "gateway-upstream",
                 "--reason", "keyCompromise"]) == 0
    victim = x509.load_pem_x509_certificate(o[outputs.PKI_CERTS]["gateway-upstream"].encode())
    after = evaluate(spec, pki_dir=str(folder), prior=first)
    assert after.outputs[outputs.PKI_CERTS] == o[outputs.PKI_CERTS]
    digest = C.program_revocations(folder).digest
    for secret in ("k8s-secret-gateway-tls", "k8s-secret-serving-tls"):
        raw = _secret_data(after, secret)
        inter_crl = C.load_crl(C.split_crls(raw["crl.pem"])[0])
        assert [e.serial_number for e in inter_crl] == [victim.serial_number], secret
        certs = o[outputs.PKI_CERTS]
        rc, out = _openssl_verify(tmp_path, raw["ca-chain.pem"], raw["crl.pem"], certs["gateway-upstream"])
        assert rc != 0 and "certificate revoked" in out, out
        rc, out = _openssl_verify(tmp_path, raw["ca-chain.pem"], raw["crl.pem"], certs["gateway-api"])
        assert rc == 0 and "OK" in out, out
    workload = "deployment-serving" if case == "baremetal" else "leaderworkerset-serving"
    for kind_name in ("deployment-gateway", workload):
        anns = _pod_annotations(after, kind_name)
        assert anns and all(a.get(CRL_ANNOTATION) == digest for a in anns), (kind_name, anns)
    # the rest of every object is the plan's, unchanged
    kp = kubernetes_plan(after.plan)
    reg = {r.name: r for r in k8s_resources(after)}
    gw = reg["k8s-deployment-gateway"].inputs["spec"]
    planned = kp.get("Deployment", "gateway")["spec"]
    assert {**gw["template"]["metadata"], "annotations": {}} == {**planned["template"]["metadata"], "annotations": {}}
    assert gw["template"]["spec"] == planned["template"]["spec"]


def test_an_export_of_another_hierarchy_is_refused(tmp_path):
    """$LLMCLUSTER_PKI_DIR naming an export whose intermediate is not the stack's: no CRL is signed from it."""
    from llmcluster import pki_crl as C
    from llmcluster.errors import SpecError

    e = ev("baremetal")
    from llmcluster.offline import _unsecret

    chain = e.outputs[outputs.PKI_CHAIN]
    inter = chain.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    other = C.ProgramRevocations("x", e.outputs[outputs.PKI_ROOT_CERT], ())
    with pytest.raises(C.RevocationError, match="not this stack's"):
        other.for_intermediate(inter)
    assert C.ProgramRevocations("x", inter, ()).for_intermediate(inter) == []
    assert _unsecret(e.outputs[outputs.PKI_INTERMEDIATE_KEY])  # the key that signs it stays in the stack
    with pytest.raises(SpecError) as exc:  # a folder that is no export: a key-path error, never "no revocations"
        C.program_revocations(tmp_path / "missing")
    assert "LLMCLUSTER_PKI_DIR=" in str(exc.value)
