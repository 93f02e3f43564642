"""The lab's SIMULATED dcgm-exporter (llmcluster/lab/nvidia_sim) on 127.0.0.1 with the web configuration the
dcgm role writes (exporter-toolkit's ``tls_server_config``, ``--web-config-file``), the lab stack's PKI issued
offline (real keys), real TLS clients (no lab):

* the monitor host's certificate (what the lab Prometheus presents) gets the metrics over TLS 1.3;
* no client certificate, an expired one, or TLS 1.2 are refused;
* without the web configuration the stand-in speaks plain HTTP, and keys it does not simulate are errors.

The certificates sit where the mtls role installs them (/etc/llmcluster/pki) under the simulation root.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from llmcluster.lab.nvidia_sim.hardware import hardware_doc, write_hardware
from llmcluster.pki_export import EXPIRED_CLIENT, LAB_TESTS
from tests.helpers.role_local import export_lab_pki, free_port, stop, wait_port

ROOT = Path(__file__).resolve().parents[2]
RUN_SIM = "import sys; from llmcluster.lab.nvidia_sim.tools import dcgm_exporter as d; sys.exit(d.main(sys.argv[1:]))"
GPU_HOST, MONITOR = "gpu-01", "mon-01"
PKI = "/etc/llmcluster/pki"
WEB_CONFIG = "/etc/dcgm-exporter/llmcluster-web-config.yml"


def _render_web_config() -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROOT / "roles" / "dcgm" / "templates")),
                             undefined=jinja2.StrictUndefined)
    return env.get_template("web-config.yml.j2").render(
        ansible_managed="Ansible managed", dcgm_exporter_cert_path=f"{PKI}/host.crt",
        dcgm_exporter_key_path=f"{PKI}/host.key", dcgm_exporter_ca_path=f"{PKI}/ca-chain.pem")


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("dcgm-tls")
    plan, _, pki = export_lab_pki(d)
    root = d / "root"
    write_hardware(root, hardware_doc(plan.spec.pools["gpu"], GPU_HOST))
    (root / "usr/share/llmcluster-sim").mkdir(parents=True)
    (root / "usr/share/llmcluster-sim/driver-version").write_text("570.172.08\n")
    (root / "etc/llmcluster-sim/faults.json").write_text("{}")
    host_pki = root / PKI.lstrip("/")
    host_pki.mkdir(parents=True)
    shutil.copy(pki / "certs" / f"host-{GPU_HOST}.pem", host_pki / "host.crt")
    shutil.copy(pki / "private" / f"host-{GPU_HOST}.key", host_pki / "host.key")
    shutil.copy(pki / "ca-chain.pem", host_pki / "ca-chain.pem")
    (root / "etc/dcgm-exporter").mkdir(parents=True)
    (root / WEB_CONFIG.lstrip("/")).write_text(_render_web_config())
    fqdn = next(h.fqdn for h in plan.ip.hosts if h.name == GPU_HOST)
    return {"root": root, "pki": pki, "fqdn": fqdn, "dir": d}


def _start(sim, *argv: str, env_extra: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "LLMCLUSTER_SIM_ROOT": str(sim["root"]), "PYTHONPATH": str(ROOT), **(env_extra or {})}
    env = {k: v for k, v in env.items() if not (k.startswith("DCGM_") and k not in (env_extra or {}))}
    proc = subprocess.Popen([sys.executable, "-c", RUN_SIM, "-a", f"127.0.0.1:{port}", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


@pytest.fixture(scope="module")
def tls_sim(sim):
    proc, port = _start(sim, "--web-config-file", WEB_CONFIG)
    try:
        wait_port(port, 20, proc)
        yield port
    finally:
        stop(proc)


def _client(sim, cert: str | None = None, key: str | None = None,
            version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(sim["pki"] / "ca-chain.pem"))
    ctx.minimum_version = ctx.maximum_version = version
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _get(sim, port: int, ctx: ssl.SSLContext, path: str = "/metrics") -> tuple[str, str]:
    """(TLS version, response) of one GET; raises what the handshake or the first read raises."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sim["fqdn"]) as s:
            version = s.version()
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: {sim['fqdn']}\r\nConnection: close\r\n\r\n".encode())
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
            return version, b"".join(chunks).decode()


def _monitor(sim) -> tuple[str, str]:
    return str(sim["pki"] / "certs" / f"host-{MONITOR}.pem"), str(sim["pki"] / "private" / f"host-{MONITOR}.key")


def test_monitor_certificate_gets_metrics_over_tls13(sim, tls_sim):
    version, resp = _get(sim, tls_sim, _client(sim, *_monitor(sim)))
    assert version == "TLSv1.3"
    assert resp.startswith("HTTP/1.0 200") or resp.startswith("HTTP/1.1 200"), resp[:200]
    assert 'DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-' in resp


def _refused(sim, port: int, ctx: ssl.SSLContext) -> str:
    """Why the server refused the client after the handshake (TLS 1.3: the client learns it at its first read:
    the alert, a reset, or an end of stream without a response); fails when a response came."""
    try:
        _, resp = _get(sim, port, ctx)
    except (ssl.SSLError, ConnectionError) as exc:
        return str(exc) or type(exc).__name__
    assert resp == "", f"answered without a valid client certificate: {resp[:200]}"
    return "closed without a response"


def test_no_client_certificate_is_refused(sim, tls_sim):
    _refused(sim, tls_sim, _client(sim))


def test_expired_client_certificate_is_refused(sim, tls_sim):
    expired = sim["pki"] / LAB_TESTS
    _refused(sim, tls_sim, _client(sim, str(expired / f"{EXPIRED_CLIENT}.crt"), str(expired / f"{EXPIRED_CLIENT}.key")))


def test_tls12_is_refused(sim, tls_sim):
    with pytest.raises(ssl.SSLError) as err:
        _get(sim, tls_sim, _client(sim, *_monitor(sim), version=ssl.TLSVersion.TLSv1_2))
    assert "version" in str(err.value).lower(), err.value
    # plain HTTP to the TLS port gets no metrics
    with socket.create_connection(("127.0.0.1", tls_sim), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        s.settimeout(10)
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            data = b""
    assert b"DCGM_FI_" not in data


def test_environment_variable_and_plain_http(sim):
    proc, port = _start(sim, env_extra={"DCGM_EXPORTER_WEB_CONFIG_FILE": WEB_CONFIG})
    try:
        wait_port(port, 20, proc)
        assert _get(sim, port, _client(sim, *_monitor(sim)))[0] == "TLSv1.3"
    finally:
        stop(proc)
    proc, port = _start(sim)  # no web configuration: plain HTTP, as the real exporter
    try:
        wait_port(port, 20, proc)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            assert b" 200 " in s.recv(65536)
    finally:
        stop(proc)


@pytest.mark.parametrize("text, error", [
    ("tls_server_config:\n  cert_file: /etc/llmcluster/pki/host.crt\n", "missing key_file"),
    ("tls_server_config:\n  cert_file: /etc/llmcluster/pki/host.crt\n  key_file: /etc/llmcluster/pki/host.key\n"
     "  min_version: TLS14\n", "unknown TLS version"),
    ("tls_server_config:\n  cert_file: /etc/llmcluster/pki/host.crt\n  key_file: /etc/llmcluster/pki/host.key\n"
     "  client_auth_type: Sometimes\n", "invalid ClientAuth"),
    ("tls_server_config:\n  certfile: /x\n", "field certfile not found"),
    ("tls_server_config:\n  cert_file: /etc/llmcluster/pki/host.crt\n  key_file: /etc/llmcluster/pki/missing.key\n",
     "loading the TLS material"),
    ("basic_auth_users:\n  a: b\n", "not simulated"),
])
def test_bad_web_configuration_fails_at_start(sim, text, error):
    path = sim["root"] / "etc/dcgm-exporter/bad.yml"
    path.write_text(text)
    proc, _ = _start(sim, "--web-config-file", "/etc/dcgm-exporter/bad.yml")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1 and error in out, out
