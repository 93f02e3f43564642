"""The real Pulumi program, evaluated under Pulumi's mock runtime for every stack.

Assertion messages carry the URN of the offending resource.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from llmcluster import outputs
from llmcluster.offline import evaluate
from tests.conftest import STACK_NAMES, load_spec

TLS = "tls:index/"


@functools.cache
def ev(stack: str):
    return evaluate(load_spec(stack))


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_every_stack_evaluates_and_registers_the_pki(stack):
    e = ev(stack)
    counts = e.by_type()
    leaves = len(e.plan.pki.leaves)
    assert counts["llmcluster:pki:Pki"] == 1
    assert counts[f"{TLS}selfSignedCert:SelfSignedCert"] == 1
    # intermediate + one per leaf, each a key + CSR + signed certificate; root has its own key.
    assert counts[f"{TLS}locallySignedCert:LocallySignedCert"] == leaves + 1
    assert counts[f"{TLS}certRequest:CertRequest"] == leaves + 1
    assert counts[f"{TLS}privateKey:PrivateKey"] == leaves + 2
    assert set(e.outputs) == set(outputs.ALL)


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_children_are_parented_to_their_component_and_named_after_it(stack):
    e = ev(stack)
    comp = next(r for r in e.resources if r.type == "llmcluster:pki:Pki")
    for r in e.resources:
        if r.type.startswith(TLS):
            assert r.parent == comp.urn, f"{r.urn}: parent {r.parent!r}, expected the Pki component"
            assert r.name.startswith(comp.name + "-"), f"{r.urn}: child name not derived from component"


@pytest.mark.parametrize("stack", STACK_NAMES)
def test_keys_are_ecdsa_p256_and_never_plain(stack):
    e = ev(stack)
    for r in e.resources:
        if r.type == f"{TLS}privateKey:PrivateKey":
            assert (r.inputs.get("algorithm"), r.inputs.get("ecdsaCurve")) == ("ECDSA", "P256"), r.urn
        if r.type in (f"{TLS}certRequest:CertRequest", f"{TLS}selfSignedCert:SelfSignedCert"):
            doc = e.document()
            rec = next(x for x in doc["resources"] if x["urn"] == r.urn)
            assert rec["inputs"]["privateKeyPem"] == "<secret>", f"{r.urn}: private key input is not a secret"
        if r.type == f"{TLS}locallySignedCert:LocallySignedCert":
            rec = next(x for x in e.document()["resources"] if x["urn"] == r.urn)
            assert rec["inputs"]["caPrivateKeyPem"] == "<secret>", f"{r.urn}: CA key input is not a secret"


def test_private_keys_never_appear_in_plain_outputs_or_the_document():
    e = ev("lab")
    doc = json.dumps(e.document())
    assert "PRIVATE KEY" not in doc
    assert outputs.PKI_KEYS not in e.document()["outputs"]
    for key in outputs.ALL:
        if key not in outputs.SECRET:
            assert "PRIVATE KEY" not in json.dumps(e.outputs[key], default=str), key


def test_secret_outputs_are_registered_as_secrets_and_nothing_else_is():
    """outputs.SECRET is what the program marks secret (pulumi shows them only with --show-secrets);
    every other output is plain, and no plain output carries key material."""
    import pulumi
    from pulumi.runtime import mocks as pmocks
    from pulumi.runtime import settings

    from llmcluster import program
    from llmcluster.offline import RecordingMocks, RecordingMonitor

    mocks = RecordingMocks()
    settings.ROOT.set(None)
    pmocks.set_mocks(mocks, project="llmcluster", stack="lab", monitor=RecordingMonitor(mocks))
    found: dict[str, bool] = {}

    def run():
        _, exports = program.build(load_spec("lab"))
        keys = sorted(exports)
        flags = [pulumi.Output.from_input(exports[k]).is_secret() for k in keys]
        return pulumi.Output.all(*[pulumi.Output.from_input(f) for f in flags]).apply(
            lambda values: found.update(zip(keys, values, strict=True)))

    pulumi.runtime.test(run)()
    assert set(found) == set(outputs.ALL)
    assert {k for k, secret in found.items() if secret} == set(outputs.SECRET)
    assert {outputs.PKI_KEYS, outputs.PKI_INTERMEDIATE_KEY} <= set(outputs.SECRET)
    assert outputs.PKI_ROOT_CRL not in outputs.SECRET, "a CRL is public: the gateway's crl-file"


def test_the_intermediate_key_output_is_the_intermediates_and_the_root_crl_the_roots():
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from llmcluster import pki_crl

    e = ev("lab")
    inter = x509.load_pem_x509_certificate(e.outputs[outputs.PKI_CHAIN].encode())
    root = x509.load_pem_x509_certificate(e.outputs[outputs.PKI_ROOT_CERT].encode())
    key = serialization.load_pem_private_key(e.outputs[outputs.PKI_INTERMEDIATE_KEY].encode(), None)
    assert pki_crl.key_matches(key, inter)
    crl = x509.load_pem_x509_crl(e.outputs[outputs.PKI_ROOT_CRL].encode())
    assert pki_crl.issued_by(crl, root) and len(list(crl)) == 0
    doc = e.document()["outputs"]
    assert outputs.PKI_INTERMEDIATE_KEY not in doc and doc[outputs.PKI_ROOT_CRL] == "<pem:x509 crl>"


def test_early_renewal_and_lifetimes_follow_the_plan():
    e = ev("prod-baremetal")
    by_name = {r.name: r for r in e.resources}
    leaf = by_name["pki-host-gpu-01"]
    assert leaf.inputs["validityPeriodHours"] == 90 * 24, leaf.urn
    assert leaf.inputs["earlyRenewalHours"] == 720, leaf.urn  # 1/3 of 2160 h
    assert sorted(leaf.inputs["allowedUses"]) == ["client_auth", "digital_signature", "server_auth"], leaf.urn
    inter = by_name["pki-intermediate"]
    assert inter.inputs["isCaCertificate"] is True and inter.inputs["maxPathLength"] == 0, inter.urn


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
@pytest.mark.parametrize("stack", ["lab", "prod-baremetal"])
def test_chain_verifies_with_openssl(stack, tmp_path: Path):
    e = ev(stack)
    root = tmp_path / "root.pem"
    chain = tmp_path / "chain.pem"
    root.write_text(e.outputs[outputs.PKI_ROOT_CERT])
    chain.write_text(e.outputs[outputs.PKI_CHAIN])
    certs = e.outputs[outputs.PKI_CERTS]
    assert set(certs) == {c.name for c in e.plan.pki.leaves}
    for name, pem in certs.items():
        leaf = tmp_path / f"{name}.pem"
        leaf.write_text(pem)
        purpose = "sslclient" if e.plan.pki.leaf(name).kind == "client" else "sslserver"
        r = subprocess.run(["openssl", "verify", "-purpose", purpose, "-CAfile", str(root),
                            "-untrusted", str(chain), str(leaf)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip().endswith(": OK"), f"{name}: {r.stdout}{r.stderr}"
    # A leaf checked against the wrong root must fail: the check can fail.
    other = evaluate(load_spec("dev-aws"))
    wrong = tmp_path / "wrong-root.pem"
    wrong.write_text(other.outputs[outputs.PKI_ROOT_CERT])
    leaf = tmp_path / "host-gpu-01.pem"
    r = subprocess.run(["openssl", "verify", "-CAfile", str(wrong), "-untrusted", str(chain), str(leaf)],
                       capture_output=True, text=True)
    assert r.returncode != 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_leaf_sans_and_key_are_what_the_plan_says(tmp_path: Path):
    e = ev("lab")
    pem = tmp_path / "c.pem"
    pem.write_text(e.outputs[outputs.PKI_CERTS]["host-gpu-02"])
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "NIST CURVE: P-256" in text
    h = e.plan.ip.host("gpu-02")
    for addr in h.addresses.values():
        assert f"IP Address:{addr}" in text
    assert "DNS:gpu-02.lab.llmcluster.internal" in text


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_client_certificates_carry_the_client_identity_and_serve_no_tls(tmp_path: Path):
    """A named API client's certificate: CN <name>.clients.<domain>, OU its role, client auth only."""
    e = ev("lab")
    root, chain, pem = tmp_path / "root.pem", tmp_path / "chain.pem", tmp_path / "c.pem"
    root.write_text(e.outputs[outputs.PKI_ROOT_CERT])
    chain.write_text(e.outputs[outputs.PKI_CHAIN])
    pem.write_text(e.outputs[outputs.PKI_CERTS]["client-lab-analyst"])
    subject = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-subject", "-nameopt", "RFC2253"],
                             capture_output=True, text=True, check=True).stdout
    assert "CN=lab-analyst.clients.lab.llmcluster.internal" in subject and "OU=analyst" in subject, subject
    text = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "TLS Web Client Authentication" in text and "TLS Web Server Authentication" not in text
    assert "Subject Alternative Name" not in text
    r = subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile", str(root), "-untrusted", str(chain),
                        str(pem)], capture_output=True, text=True)
    assert r.returncode != 0, "a client certificate must not serve TLS"


def test_plan_document_is_deterministic():
    a = json.dumps(evaluate(load_spec("lab")).document(), sort_keys=True)
    b = json.dumps(evaluate(load_spec("lab")).document(), sort_keys=True)
    assert a == b


def test_inventory_output_matches_the_plan():
    e = ev("lab")
    inv = e.outputs[outputs.INVENTORY]
    assert sorted(inv["_meta"]["hostvars"]) == sorted(h.name for h in e.plan.ip.hosts)
    assert inv["gpu"]["hosts"] == ["gpu-01", "gpu-02"]
    assert inv["_meta"]["hostvars"]["gw-01"]["ansible_host"] == e.plan.ip.host("gw-01").mgmt_ip


def test_invalid_config_registers_nothing_and_fails_cleanly(monkeypatch):
    """Under the real entry point, a bad config raises RunError before any resource exists."""
    import pulumi
    from pulumi.runtime import mocks as pmocks

    from llmcluster import program
    from llmcluster.offline import RecordingMocks, RecordingMonitor

    mocks = RecordingMocks()
    pulumi.runtime.set_all_config({
        "llmcluster:platform": "gcp",
        "llmcluster:site": json.dumps({"name": "x", "domain": "x.example.internal", "supernet": "8.8.0.0/16"}),
    })
    from pulumi.runtime import settings

    settings.ROOT.set(None)
    pmocks.set_mocks(mocks, project="llmcluster", stack="broken", monitor=RecordingMonitor(mocks))
    with pytest.raises(pulumi.RunError) as ei:
        program.main()
    msg = str(ei.value)
    assert "platform: 'gcp' is not allowed" in msg
    assert "site.supernet: 8.8.0.0/16 is not a private" in msg and "fabric: missing" in msg
    assert mocks.records == []
    pulumi.runtime.set_all_config({})


def test_program_reads_config_from_the_pulumi_runtime():
    """The same stack file, fed through Pulumi's config (as `pulumi up` does), gives the same spec."""
    import pulumi
    import yaml

    from llmcluster.validate import load_from_pulumi
    from tests.conftest import STACKS

    doc = yaml.safe_load((STACKS / "Pulumi.prod-aws.yaml").read_text())
    cfg = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in doc["config"].items()}
    pulumi.runtime.set_all_config(cfg)
    try:
        from pulumi.runtime import settings

        settings._set_stack("prod-aws")
        spec = load_from_pulumi()
    finally:
        pulumi.runtime.set_all_config({})
    assert spec == load_spec("prod-aws")


def test_thousand_node_plan_completes_with_a_certificate_per_node():
    """1024 GPU nodes plan; timing lives in bench/plan_scaling.py. (Ten NIC ports per node do not fit the
    L2 leaf-spine fabric at this size (switches.port-capacity): one data port each, on 18 leaves.)"""
    e = evaluate(load_spec("prod-baremetal", ("pools.gpu.count=1024", "pools.gpu.nics=[]",
                                              "baremetal.leaf_switches=18")))
    hosts = 1024 + 3 + 2
    clients = len(e.plan.spec.access.clients)  # one client certificate per named API client
    # + gateway x2, admin, CA, the clients
    assert e.by_type()[f"{TLS}locallySignedCert:LocallySignedCert"] == hosts + 3 + 1 + clients
    assert len(e.outputs[outputs.INVENTORY]["_meta"]["hostvars"]) == hosts
