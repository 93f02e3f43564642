"""`llmcluster plan --out`: every written artifact passes its real checker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from llmcluster.offline import evaluate
from llmcluster.render.artifacts import write_artifacts
from tests.conftest import load_plan, load_spec

NFT = shutil.which("nft") or ("/usr/sbin/nft" if Path("/usr/sbin/nft").exists() else None)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("prod")
    write_artifacts(evaluate(load_spec("prod-baremetal")), d)
    return d


def test_every_host_has_its_artifacts(out: Path):
    hosts = sorted(p.name for p in (out / "hosts").iterdir())
    assert hosts == sorted(h.name for h in load_plan("prod-baremetal").ip.hosts)
    for h in hosts:
        assert (out / "hosts" / h / "nftables.nft").is_file()
        assert os.access(out / "hosts" / h / "qos.sh", os.X_OK)


@pytest.mark.skipif(NFT is None, reason="nft (nftables) is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs CAP_NET_ADMIN (run as root)")
def test_nftables_rulesets_pass_nft_check(out: Path):
    for h in load_plan("prod-baremetal").ip.hosts:
        f = out / "hosts" / h.name / "nftables.nft"
        r = subprocess.run([NFT, "-c", "-f", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f.parent.name}: {r.stderr}"


def test_qos_scripts_parse(out: Path):
    for h in load_plan("prod-baremetal").ip.hosts:
        f = out / "hosts" / h.name / "qos.sh"
        r = subprocess.run(["sh", "-n", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, f"{f.parent.name}: {r.stderr}"


def test_written_certificates_verify(out: Path):
    """Exactly the plan's leaf certificates are written, each for its planned subject, each verifying
    with ``openssl verify`` against the written root and chain."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    pki = load_plan("prod-baremetal").pki
    written = sorted(p.name for p in (out / "pki" / "certs").iterdir())
    assert written == sorted(f"{c.name}.pem" for c in pki.leaves)
    for c in pki.leaves:
        cert = x509.load_pem_x509_certificate((out / "pki" / "certs" / f"{c.name}.pem").read_bytes())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        assert cn == c.common_name, f"{c.name}: subject CN {cn!r}, planned {c.common_name!r}"
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the chain of the written certificates was not verified")
    for c in pki.leaves:
        f = out / "pki" / "certs" / f"{c.name}.pem"
        r = subprocess.run(["openssl", "verify", "-CAfile", str(out / "pki" / "root-ca.pem"), "-untrusted",
                            str(out / "pki" / "ca-chain.pem"), str(f)], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == f"{f}: OK", f"{f.name}: {r.stdout}{r.stderr}"


def test_inventory_and_plan_documents_are_json(out: Path):
    inv = json.loads((out / "inventory.json").read_text())
    assert len(inv["_meta"]["hostvars"]) == 9
    doc = json.loads((out / "plan.json").read_text())
    assert doc["stack"] == "prod-baremetal" and doc["resources"]
