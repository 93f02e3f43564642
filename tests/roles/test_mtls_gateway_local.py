"""The gateway role's HAProxy configuration, rendered by Ansible from the role's template and
run for real on loopback, with real clients (curl, openssl s_client) — no lab needed.

The PKI is the lab stack's, exported offline (real keys, ``llmcluster.pki_export``); two lab
stand-in upstreams (``llmcluster/lab/upstream_standin.py``) listen on 127.0.0.1. The rendered
configuration runs unchanged except for the process settings of a packaged install (chroot,
user/group, daemon, stats socket, syslog), which an unprivileged foreground test process cannot
use. Also here: ``llmcluster pki export`` refuses a certificate whose SANs the plan does not
give it, and the mtls role's preflight stops before pushing anything.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmcluster.verify import gateway as G
from tests.conftest import ROOT, load_spec
from tests.helpers.tools import tool, tool_env

HOSTNAME = "api.lab.llmcluster.internal"
STANDIN = ROOT / "llmcluster" / "lab" / "upstream_standin.py"

RENDER = """\
- name: Render the gateway role's HAProxy configuration
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
    - {role}/vars/Debian.yml
  tasks:
    - name: Render
      ansible.builtin.template:
        src: {role}/templates/haproxy.cfg.j2
        dest: "{{{{ out }}}}"
        mode: "0600"
"""


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


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed here: {', '.join(missing)} (apt-get install haproxy curl openssl)")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    from llmcluster.pki_export import export, from_offline

    plan, material = from_offline(load_spec("lab"))
    out = tmp_path_factory.mktemp("pki") / "pki"
    export(plan, material, out, lab_tests=True)
    return out


@pytest.fixture(scope="module")
def gateway(pki, tmp_path_factory):
    """HAProxy with the rendered configuration on 127.0.0.1, two stand-in upstreams behind it."""
    _need("haproxy", "curl", "openssl")
    d = tmp_path_factory.mktemp("gateway")
    ups = {f"standin-{i}": _free_port() for i in (1, 2)}
    procs = {n: subprocess.Popen([sys.executable, str(STANDIN), "127.0.0.1", str(p), n]) for n, p in ups.items()}
    port = _free_port()
    bundle = d / "api.pem"
    bundle.write_text((pki / "certs" / "gateway-api.pem").read_text() + (pki / "ca-chain.pem").read_text()
                      + (pki / "private" / "gateway-api.key").read_text())
    bundle.chmod(0o600)
    variables = {
        "out": str(d / "haproxy.cfg"), "llmcluster_gateway": {"hostname": HOSTNAME},
        "gateway_listen_addresses": ["127.0.0.1"], "gateway_port": port,
        "gateway_upstreams": [{"name": n, "address": "127.0.0.1", "port": p} for n, p in ups.items()],
        "gateway_rate_limit_rps": 5, "gateway_max_body_bytes": 4096, "gateway_health_interval_s": 1,
        "gateway_bundle_path": str(bundle), "gateway_client_ca_path": str(pki / "ca-chain.pem"),
        "ansible_check_mode": False, "__gateway_dpkg": {"stdout_lines": []},
    }
    (d / "render.yml").write_text(RENDER.format(role=ROOT / "roles" / "gateway"))
    (d / "vars.json").write_text(json.dumps(variables))
    r = subprocess.run([tool("ansible-playbook") or "ansible-playbook", "-i", "localhost,", str(d / "render.yml"),
                        "-e", f"@{d / 'vars.json'}"], cwd=d, env=tool_env(), capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    rendered = (d / "haproxy.cfg").read_text()
    v = subprocess.run(["haproxy", "-c", "-f", str(d / "haproxy.cfg")], capture_output=True, text=True, check=False)
    assert v.returncode == 0, v.stdout + v.stderr
    packaged = ("chroot ", "user ", "group ", "daemon", "stats socket", "stats timeout", "log /dev/log")
    local = "\n".join(line for line in rendered.splitlines() if not line.strip().startswith(packaged))
    (d / "local.cfg").write_text(local + "\n")
    hp = subprocess.Popen(["haproxy", "-db", "-f", str(d / "local.cfg")], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    try:
        _wait_port(port)
        for p in ups.values():
            _wait_port(p)
        yield {"port": port, "pki": pki, "dir": d, "procs": procs, "ups": ups, "rendered": rendered}
    finally:
        hp.terminate()
        hp.wait(10)
        for p in procs.values():
            p.terminate()
            p.wait(10)


def _curl(gw, **kw) -> G.CurlResult:
    argv = G.curl_argv(HOSTNAME, "127.0.0.1", gw["port"], str(gw["pki"] / "root-ca.pem"), **kw)
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)
    return G.parse_curl(p.returncode, p.stdout, p.stderr)


def _admin(gw) -> G.ClientCert:
    return G.ClientCert(str(gw["pki"] / "certs" / "admin.pem"), str(gw["pki"] / "private" / "admin.key"))


def _wait_ok(gw, timeout: float = 15) -> G.CurlResult:
    end = time.monotonic() + timeout
    while True:
        res = _curl(gw, client=_admin(gw))
        if res.status == 200 or time.monotonic() > end:
            return res
        time.sleep(0.3)


def test_rendered_config_has_the_policy(gateway):
    cfg = gateway["rendered"]
    for needle in ("ssl-min-ver TLSv1.3", "verify required", "balance leastconn", "http-reuse safe",
                   "uri /health", "timeout check 3s", "timeout server 900s", "track-sc0 ssl_c_s_dn",
                   "curves P-256", "client=\\\"%[ssl_c_s_dn]\\\""):
        assert needle in cfg, needle


def test_valid_client_certificate_reaches_an_upstream(gateway):
    res = _wait_ok(gateway)
    assert not G.expect_ok(res, "admin"), res.describe()
    assert G.upstream_of(res) in gateway["ups"]
    assert "CN=admin.lab.llmcluster.internal" in json.loads(res.body)["client_dn"]


@pytest.mark.parametrize("case", ["no client certificate", "certificate from another CA", "expired certificate"])
def test_bad_clients_are_rejected(gateway, case):
    pki = gateway["pki"]
    client = {"no client certificate": None,
              "certificate from another CA": G.other_ca_client(gateway["dir"] / "other"),
              "expired certificate": G.ClientCert(str(pki / "lab-tests" / "expired-client.crt"),
                                                  str(pki / "lab-tests" / "expired-client.key"))}[case]
    problems = G.expect_rejected(_curl(gateway, client=client), case)
    assert not problems


def test_tls12_is_refused_and_tls13_uses_ecdsa_p256(gateway):
    pki = gateway["pki"]
    args = (HOSTNAME, "127.0.0.1", gateway["port"], str(pki / "root-ca.pem"))
    p12 = subprocess.run(G.s_client_argv(*args, "tls1_2", _admin(gateway)), input="", capture_output=True,
                         text=True, timeout=20, check=False)
    assert not G.expect_handshake_fails(p12.returncode, p12.stdout + p12.stderr, "TLS 1.2")
    assert not G.expect_rejected(_curl(gateway, client=_admin(gateway), tls_max="1.2"), "curl TLS 1.2")
    p13 = subprocess.run(G.s_client_argv(*args, "tls1_3", _admin(gateway)), input="", capture_output=True,
                         text=True, timeout=20, check=False)
    assert not G.expect_tls13_p256(p13.returncode, p13.stdout + p13.stderr, "TLS 1.3")


def test_request_size_and_rate_limit_per_certificate(gateway):
    _wait_ok(gateway)
    time.sleep(1.1)
    big = _curl(gateway, client=_admin(gateway), data="x" * 5000)
    assert big.status == 413, big.describe()
    time.sleep(1.1)
    statuses = [_curl(gateway, client=_admin(gateway)).status for _ in range(12)]
    assert 429 in statuses and 200 in statuses, statuses


def test_upstream_down_is_taken_out_by_health_checks(gateway):
    _wait_ok(gateway)
    name, proc = sorted(gateway["procs"].items())[0]
    proc.terminate()
    proc.wait(10)
    time.sleep(2 * 1 + 3 + 0.5)  # fall x interval + check timeout
    seen = []
    for _ in range(4):
        time.sleep(0.3)  # under the rate limit
        res = _curl(gateway, client=_admin(gateway))
        assert res.status == 200, res.describe()
        seen.append(G.upstream_of(res))
    assert name not in seen, seen


def _with_extra_san(material, name: str, dns: str, ip: str):
    """``name`` re-issued by the real intermediate with one DNS and one IP SAN the plan does not give it."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    ca_key = serialization.load_pem_private_key(material.intermediate_key_pem.encode(), password=None)
    old = x509.load_pem_x509_certificate(material.certs[name].encode())
    sans = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    b = (x509.CertificateBuilder().subject_name(old.subject).issuer_name(old.issuer).public_key(old.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(old.not_valid_before_utc)
         .not_valid_after(old.not_valid_after_utc)
         .add_extension(x509.SubjectAlternativeName([*sans, x509.DNSName(dns),
                                                     x509.IPAddress(ipaddress.ip_address(ip))]), critical=False))
    pem = b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
    return type(material)(material.source, material.root_pem, material.chain_pem, dict(material.certs, **{name: pem}),
                          material.keys, material.intermediate_key_pem)


def test_export_refuses_a_san_outside_the_plan(tmp_path):
    """A certificate with a SAN the plan does not give it never leaves the controller."""
    from llmcluster.errors import SpecError
    from llmcluster.pki_export import export, from_offline

    plan, material = from_offline(load_spec("lab"))
    bad = _with_extra_san(material, "gateway-api", "api.attacker.example", "192.0.2.10")
    with pytest.raises(SpecError) as exc:
        export(plan, bad, tmp_path / "pki")
    lines = str(exc.value).splitlines()
    assert any("pki.certificates.gateway-api.dns_names: api.attacker.example is not a SAN the plan gives" in x
               for x in lines), lines
    assert any("pki.certificates.gateway-api.ip_addresses: 192.0.2.10 is not an address the plan gives" in x
               for x in lines), lines
    assert len(lines) == 2, lines
    assert not (tmp_path / "pki").exists()
