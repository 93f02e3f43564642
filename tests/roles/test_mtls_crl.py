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
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from llmcluster import pki_crl as C
from llmcluster.cli import main
from tests.conftest import ROOT, load_spec
from tests.helpers.tools import tool, tool_env

PLAYBOOK = """\
- name: The mtls role's CRL preflight
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  tasks:
    - name: Preflight
      ansible.builtin.import_tasks: {role}/tasks/preflight_crl.yml
"""


@pytest.fixture(scope="module")
def lab_pki():
    from llmcluster.pki_export import from_offline

    return from_offline(load_spec("lab"))


@pytest.fixture
def export_dir(lab_pki, tmp_path) -> Path:
    from llmcluster.pki_export import export

    plan, m = lab_pki
    export(plan, m, tmp_path / "pki", lab_tests=True)
    return tmp_path / "pki"


def _preflight(pki: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    book = tmp_path / "preflight.yml"
    book.write_text(PLAYBOOK.format(role=ROOT / "roles" / "mtls"))
    return subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(book),
                           "-e", json.dumps({"mtls_pki_dir": str(pki)})],
                          cwd=tmp_path, env=tool_env(), capture_output=True, text=True, check=False, timeout=300)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


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
    bundle = d / "api.pem"
    bundle.write_text((pki / "certs" / "gateway-api.pem").read_text() + (pki / "ca-chain.pem").read_text()
                      + (pki / "private" / "gateway-api.key").read_text())
    bundle.chmod(0o600)
    port = _free_port()
    cfg = d / "haproxy.cfg"
    cfg.write_text(HAPROXY.format(port=port, bundle=bundle, chain=pki / "ca-chain.pem", crl=crl))
    check = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port)
    return proc, port


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
        proc.terminate()
        proc.wait(10)


@pytest.mark.skipif(any(shutil.which(t) is None for t in ("haproxy", "curl")), reason="haproxy or curl missing")
def test_haproxy_needs_the_roots_crl_too(export_dir, tmp_path):
    only = tmp_path / "intermediate-only.pem"
    only.write_text(C.split_crls((export_dir / "crl.pem").read_text())[0])
    proc, port = _serve(export_dir, only, tmp_path)
    try:
        out = _curl(export_dir, port, "host-gpu-02")
        assert out != "ok" and "unknown ca" in out, out
    finally:
        proc.terminate()
        proc.wait(10)

