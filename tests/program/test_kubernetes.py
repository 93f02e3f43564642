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


def _without_cert_annotation(value):
    """``value`` without the program's certificate-digest annotation (and an annotations map it leaves empty)."""
    from llmcluster.plan.kubernetes import CERT_ANNOTATION

    if isinstance(value, dict):
        out = {k: _without_cert_annotation(v) for k, v in value.items() if k != CERT_ANNOTATION}
        if "annotations" in value and not out["annotations"] and CERT_ANNOTATION in value["annotations"]:
            del out["annotations"]
        return out
    if isinstance(value, list):
        return [_without_cert_annotation(v) for v in value]
    return value


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
            if key in o:  # the program adds only the certificate digest to pod templates (tested below)
                assert _without_cert_annotation(r.inputs[key]) == o[key], f"{r.urn}: {key}"
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


def _templates(e) -> dict[str, dict]:
    """Every registered pod template by ``<kind>-<name>[/leader|/worker]``."""
    out = {}
    for r in k8s_resources(e):
        spec = r.inputs.get("spec", {})
        if r.type.endswith(":Deployment"):
            out[r.name.removeprefix("k8s-")] = spec["template"]
        elif r.type.endswith(":LeaderWorkerSet"):
            for t in ("leaderTemplate", "workerTemplate"):
                out[f"{r.name.removeprefix('k8s-')}/{t}"] = spec["leaderWorkerTemplate"][t]
    return out


def _cert_annotations(e) -> dict[str, str | None]:
    from llmcluster.plan.kubernetes import CERT_ANNOTATION

    return {n: t["metadata"].get("annotations", {}).get(CERT_ANNOTATION) for n, t in _templates(e).items()}


def _pem_blocks(text: str, kind: str = "CERTIFICATE") -> list[str]:
    import re

    return re.findall(rf"-----BEGIN {kind}-----\n.*?-----END {kind}-----\n?", text, re.S)


@pytest.mark.parametrize("case", sorted(CASES))
def test_pod_templates_carry_the_digest_of_the_certificates_they_mount(case):
    """Every pod template that mounts a certificate Secret carries sha256 over that Secret's certificates (leaf,
    then the chain; no key), computed here from the registered Secret's own data; a plain public value (no secret
    wrapper), redacted to a stable placeholder in the plan document; templates that mount none carry none."""
    from llmcluster.offline import _is_secret
    from llmcluster.plan.kubernetes import (CERT_ANNOTATION, CERT_SECRETS, certificate_digest, combined_digest,
                                            template_secrets)

    e = ev(case)
    serving = _secret_data(e, "k8s-secret-serving-tls")
    gateway = _secret_data(e, "k8s-secret-gateway-tls")
    assert serving["ca-chain.pem"] == gateway["ca-chain.pem"]
    chain = serving["ca-chain.pem"]
    expected = {
        # the bundle: leaf, chain, key; the digest covers the certificates only
        "serving-tls": certificate_digest(_pem_blocks(serving["serving-tls.pem"])[0], chain),
        "gateway-tls": certificate_digest(_pem_blocks(gateway["api.pem"])[0], _pem_blocks(gateway["upstream.pem"])[0],
                                          chain),
    }
    assert expected["serving-tls"] != expected["gateway-tls"]
    templates = _templates(e)
    assert {"deployment-gateway"} <= set(templates)
    annotated = 0
    for n, t in templates.items():
        mounted = [s for s in template_secrets(t) if s in CERT_SECRETS]
        got = t["metadata"].get("annotations", {}).get(CERT_ANNOTATION)
        if not mounted:
            assert got is None, n
            continue
        annotated += 1
        assert not _is_secret(got) and isinstance(got, str) and len(got) == 64, (n, got)
        assert got == combined_digest({s: expected[s] for s in mounted}), n
    assert annotated == len(templates) == (3 if "lws" in case else 2)
    # the plan document stays deterministic: the digest is run-dependent (fresh keys each evaluation)
    doc = e.document()
    text = str(doc)
    assert "<sha256:certificates>" in text and expected["serving-tls"] not in text
    # the Secrets stay secret whole
    for x in doc["resources"]:
        if x["type"] == "kubernetes:core/v1:Secret":
            assert x["inputs"]["stringData"] == "<secret>", x["name"]


def test_certificate_digest_refuses_key_material():
    from llmcluster.plan.kubernetes import certificate_digest, combined_digest

    with pytest.raises(ValueError, match="private key"):
        certificate_digest("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
    a, b = certificate_digest("A"), certificate_digest("B")
    assert a != b and certificate_digest("A\n") == a
    assert combined_digest({"x": a}) == a
    assert combined_digest({"x": a, "y": b}) == combined_digest({"y": b, "x": a}) != combined_digest({"x": b, "y": a})


def _reissued(first, *names: str):
    """The next update after forcing a re-issue of ``names`` (a new key, CSR and certificate each, as a replaced
    or renewed leaf gets): the prior state without those resources; everything else keeps its state."""
    import dataclasses

    drop = {n for name in names for n in (name, f"{name}-key", f"{name}-csr")}
    assert drop & {k[1] for k in first.state}, names
    return dataclasses.replace(first, state={k: v for k, v in first.state.items() if k[1] not in drop})


@pytest.mark.parametrize("case", ["baremetal", "baremetal-lws"])
def test_a_reissued_leaf_rolls_exactly_the_pods_that_mount_it(case):
    """Under mocks, keeping the first run's state as `pulumi up` does: the same keys give byte-identical workload
    inputs (no roll); a re-issued serving certificate changes the serving templates only, a re-issued gateway
    leaf the gateway template only, a re-issued leaf no pod mounts (admin) neither."""
    from llmcluster.offline import _unsecret

    stack, over = CASES[case]
    spec = load_spec(stack, over)
    first = ev(case)
    before = _cert_annotations(first)
    serving_t = {n for n in before if "serving" in n}
    assert before and all(before.values()) and serving_t and "deployment-gateway" in before

    def workloads(e):
        return {r.name: _unsecret(r.inputs) for r in k8s_resources(e)
                if r.type.endswith((":Deployment", ":LeaderWorkerSet"))}

    same = evaluate(spec, prior=first)
    assert _cert_annotations(same) == before
    assert workloads(same) == workloads(first)  # an unchanged stack: unchanged templates, nothing rolls

    serving = evaluate(spec, prior=_reissued(first, "k8s-serving-tls"))
    assert _pem_blocks(_secret_data(serving, "k8s-secret-serving-tls")["serving-tls.pem"])[0] != \
        _pem_blocks(_secret_data(first, "k8s-secret-serving-tls")["serving-tls.pem"])[0]
    after = _cert_annotations(serving)
    assert {n for n in before if after[n] != before[n]} == serving_t, (before, after)
    assert len({after[n] for n in serving_t}) == 1  # leader and worker roll together

    gateway = evaluate(spec, prior=_reissued(first, "pki-gateway-api"))
    assert gateway.outputs[outputs.PKI_CERTS]["gateway-api"] != first.outputs[outputs.PKI_CERTS]["gateway-api"]
    after = _cert_annotations(gateway)
    assert {n for n in before if after[n] != before[n]} == {"deployment-gateway"}, (before, after)

    admin = evaluate(spec, prior=_reissued(first, "pki-admin"))
    assert admin.outputs[outputs.PKI_CERTS]["admin"] != first.outputs[outputs.PKI_CERTS]["admin"]
    assert _cert_annotations(admin) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_certificate_of_the_layer_is_renewed_before_it_lapses(case):
    """The layer's own certificates (the serving Service's, the scraper's) follow the PKI leaves' rule:
    ``pulumi up`` re-issues them once ``1 - pki.renew_at_fraction`` of their life is left, not after expiry."""
    from llmcluster.plan.pki import early_renewal_hours

    stack, over = CASES[case]
    spec = load_spec(stack, over)
    hours = spec.pki.leaf_validity_days * 24
    want = early_renewal_hours(hours, spec.pki.renew_at_fraction)
    assert 0 < want < hours
    mine = [r for r in ev(case).resources if r.type == "tls:index/locallySignedCert:LocallySignedCert"
            and r.name.startswith("k8s-")]
    assert {r.name for r in mine} >= {"k8s-serving-tls"}, [r.name for r in mine]
    for r in mine:
        assert r.inputs.get("validityPeriodHours") == hours, r.name
        assert r.inputs.get("earlyRenewalHours") == want, (r.name, r.inputs.get("earlyRenewalHours"))
