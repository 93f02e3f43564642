"""The CRL on its way to the hosts, no lab needed:

* the mtls role's CRL preflight (``roles/mtls/tasks/preflight_crl.yml``), run by Ansible on
  localhost against real exports: a current CRL passes; an expired one, one signed by another key,
  one without the root's CRL, and a missing one stop the run with what to do
  (``llmcluster pki crl``);
* the export's ``crl.pem`` as HAProxy (a tool nobody here wrote) loads it with ``crl-file`` on a
  loopback listener: the revoked client is refused, the others pass; and without the root's CRL
  every client is refused — HAProxy checks the CRL of every CA in the chain, which is why
  ``crl.pem`` carries both.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from llmcluster import pki_crl as C
from llmcluster.cli import main
from tests.conftest import ROOT, load_spec
from tests.helpers import role_local as R

ROLE = ROOT / "roles" / "mtls"
PLAYBOOK = R.local_play("The mtls role's CRL preflight", role=ROLE, vars_files=("defaults/main.yml", "vars/main.yml"),
                        tasks=[{"name": "Preflight",
                                "ansible.builtin.import_tasks": f"{ROLE}/tasks/preflight_crl.yml"}])


@pytest.fixture(scope="module")
def lab_pki():
    from llmcluster.pki_export import from_offline

    return from_offline(load_spec("lab"))


@pytest.fixture
def export_dir(lab_pki, tmp_path) -> Path:
    return R.export_lab_pki(tmp_path, lab_pki)[2]


def _preflight(pki: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    return R.run_playbook(tmp_path, PLAYBOOK, {"mtls_pki_dir": str(pki)}, name="preflight")


def _resign(pki: Path, *, this_update: dt.datetime, days: int, key=None) -> None:
    """Replace the intermediate's CRL of ``pki`` (keep the root's)."""
    inter = x509.load_pem_x509_certificate((pki / "ca-chain.pem").read_bytes())
    key = key or serialization.load_pem_private_key((pki / C.LAB_INTERMEDIATE_KEY).read_bytes(), None)
    root_crl = C.split_crls((pki / "crl.pem").read_text())[1]
    (pki / "crl.pem").write_text(C.crl_file(inter, key, [], number=9, now=this_update, days=days, root_crl=root_crl))


def test_a_current_crl_passes_the_preflight(export_dir, tmp_path):
    assert main(["pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin"]) == 0
    r = _preflight(export_dir, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(("breakage", "expect"), [
    ("expired", "has passed or is within 1 h"),
    ("expiring", "has passed or is within 1 h"),
    ("other-key", "is not signed by a CA of"),
    ("no-root-crl", "must hold the intermediate CA's CRL and the root CA's"),
    ("missing", "crl.pem is missing (an export from before revocation existed)"),
])
def test_a_crl_that_must_not_be_pushed_stops_the_preflight(export_dir, tmp_path, breakage, expect):
    now = dt.datetime.now(dt.UTC)
    if breakage == "expired":
        _resign(export_dir, this_update=now - dt.timedelta(days=8), days=7)
    elif breakage == "expiring":
        _resign(export_dir, this_update=now - dt.timedelta(days=1) + dt.timedelta(minutes=30), days=1)
    elif breakage == "other-key":
        _resign(export_dir, this_update=now, days=7, key=ec.generate_private_key(ec.SECP256R1()))
    elif breakage == "no-root-crl":
        (export_dir / "crl.pem").write_text(C.split_crls((export_dir / "crl.pem").read_text())[0])
    else:
        (export_dir / "crl.pem").unlink()
    r = _preflight(export_dir, tmp_path)
    out = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0, out
    assert expect in out, out
    assert "nothing was pushed" in out
    if breakage != "missing":
        assert "llmcluster pki crl" in out


# --------------------------------------------------------------------------- HAProxy as the judge


HAPROXY = """\
global
    tune.ssl.cachesize 0
    ssl-default-bind-options no-tls-tickets
defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend api
    bind 127.0.0.1:{port} ssl crt {bundle} ca-file {chain} verify required crl-file {crl}
    http-request return status 200 content-type text/plain string "ok"
"""


def _serve(pki: Path, crl: Path, d: Path):
    bundle = R.bundle(d / "api.pem", pki / "certs" / "gateway-api.pem", pki / "ca-chain.pem",
                      pki / "private" / "gateway-api.key")
    port = R.free_port()
    cfg = d / "haproxy.cfg"
    cfg.write_text(HAPROXY.format(port=port, bundle=bundle, chain=pki / "ca-chain.pem", crl=crl))
    R.haproxy_check(cfg)
    return R.start_haproxy(cfg, port), port


def _curl(pki: Path, port: int, leaf: str) -> str:
    host = "api.lab.llmcluster.internal"
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "--cacert", str(pki / "root-ca.pem"),
                        "--resolve", f"{host}:{port}:127.0.0.1", "--cert", str(pki / "certs" / f"{leaf}.pem"),
                        "--key", str(pki / "private" / f"{leaf}.key"), f"https://{host}:{port}/"],
                       capture_output=True, text=True, check=False, timeout=30)
    return r.stdout + r.stderr


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("haproxy", "curl")), reason="haproxy or curl missing")
def test_haproxy_refuses_the_revoked_client_with_the_exported_crl(export_dir, tmp_path):
    assert main(["pki", "revoke", "--pki-dir", str(export_dir), "--name", "admin"]) == 0
    proc, port = _serve(export_dir, export_dir / "crl.pem", tmp_path)
    try:
        assert "certificate revoked" in _curl(export_dir, port, "admin")
        for leaf in ("host-gpu-02", "host-gw-01", "host-gpu-02"):
            assert _curl(export_dir, port, leaf) == "ok", leaf
    finally:
        R.stop(proc)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("haproxy", "curl")), reason="haproxy or curl missing")
def test_haproxy_needs_the_roots_crl_too(export_dir, tmp_path):
    only = tmp_path / "intermediate-only.pem"
    only.write_text(C.split_crls((export_dir / "crl.pem").read_text())[0])
    proc, port = _serve(export_dir, only, tmp_path)
    try:
        out = _curl(export_dir, port, "host-gpu-02")
        assert out != "ok" and "unknown ca" in out, out
    finally:
        R.stop(proc)

