"""The gateway role's HAProxy configuration run for real on loopback: material and processes.

Shared by ``tests/roles/test_mtls_gateway_local.py`` (the TLS layer: mTLS, CRL, resumption,
handshake bounds, connection caps, throttle, upstream mTLS) and
``tests/roles/test_gateway_access_local.py`` (identity and access policies, API paths, headers).

* The PKI is the lab stack's, exported offline (real keys, :mod:`llmcluster.pki_export`); the
  offline material keeps the intermediate CA's key in memory, which issues the named client
  certificates (CN ``<name>.clients.<domain>``, OU = role) and signs the CRLs made here.
  TODO once the PKI plan issues ``client-*`` leaves (branch access): use the exported ones.
* The variables are inventory-shaped (``llmcluster_gateway`` as ``GatewayPlan.to_dict()`` gives
  it, ``llmcluster_pki``, ``llmcluster_addresses``): the role's defaults derive everything else.
* Upstreams are LAB STAND-INS (``llmcluster/lab/upstream_standin.py``) speaking TLS with a
  GPU node's host certificate and requiring the gateway-upstream client certificate.
* HAProxy runs in master-worker mode (``haproxy -W``): ``reload()`` is what ``systemctl reload``
  does (SIGUSR2 to the master). Only the process settings of a packaged install that an
  unprivileged foreground test process cannot use (chroot, user/group, daemon) are dropped; the
  log goes to the process's stdout (a file here).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcluster import pki_crl as C
from llmcluster.verify import gateway as G
from tests.helpers.role_local import (bundle, export_lab_pki, free_port, haproxy_check, local_config, local_play,
                                      need, run_playbook, start_haproxy, stop, wait_port)
from tests.helpers.tools import ROOT

HOSTNAME = "api.lab.llmcluster.internal"
STANDIN = ROOT / "llmcluster" / "lab" / "upstream_standin.py"
ROLE = ROOT / "roles" / "gateway"
API_PATHS = ["/v1/chat/completions", "/v1/completions", "/v1/models"]

def _render_play() -> str:
    return local_play("Render the gateway role's HAProxy configuration and clients map", role=ROLE, tasks=[
        {"name": "Render the configuration", "ansible.builtin.template": {
            "src": f"{ROLE}/templates/haproxy.cfg.j2", "dest": "{{ out }}", "mode": "0600"}},
        {"name": "Render the clients map", "ansible.builtin.template": {
            "src": f"{ROLE}/templates/clients.map.j2", "dest": "{{ gateway_clients_map_path }}", "mode": "0644"}},
    ])


def _preflight_play() -> str:
    return local_play("Run the gateway role's preflight", role=ROLE, tasks=[
        {"name": "Preflight", "ansible.builtin.import_tasks": f"{ROLE}/tasks/preflight.yml"}])


_SOURCES = iter(f"127.0.{b}.{c}" for b in range(10, 250) for c in range(1, 255))


def new_source() -> str:
    """A loopback source address of its own (127.0.0.0/8 is all local on Linux): per-source
    connection counters of one check never touch another's."""
    return next(_SOURCES)


# --------------------------------------------------------------------------- PKI material


@dataclass
class Pki:
    dir: Path
    domain: str
    organization: str
    intermediate_key_pem: str
    chain_pem: str
    plan: Any = None  # the lab plan the PKI was issued for

    def leaf(self, name: str) -> G.ClientCert:
        return G.ClientCert(str(self.dir / "certs" / f"{name}.pem"), str(self.dir / "private" / f"{name}.key"))

    def _ca(self):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        key = serialization.load_pem_private_key(self.intermediate_key_pem.encode(), password=None)
        inter = x509.load_pem_x509_certificate(self.chain_pem.split("-----END CERTIFICATE-----")[0].encode()
                                               + b"-----END CERTIFICATE-----\n")
        return key, inter

    def client_cn(self, name: str) -> str:
        return f"{name}.clients.{self.domain}"

    def issue_client(self, directory: Path, name: str, role: str, cn: str | None = None) -> tuple[G.ClientCert, int]:
        """A named client's certificate as the PKI plan will issue it (CN ``<name>.clients.<domain>``,
        OU = role, client auth), signed by the real intermediate. Returns it and its serial."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        ca_key, inter = self._ca()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization),
                             x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                             x509.NameAttribute(NameOID.COMMON_NAME, cn or self.client_cn(name))])
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(inter.subject).public_key(key.public_key())
                .serial_number(serial).not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False),
                               critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        directory.mkdir(parents=True, exist_ok=True)
        crt, k = directory / f"{name}.crt", directory / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
        k.chmod(0o600)
        return G.ClientCert(str(crt), str(k)), serial

    def root_crl(self) -> str:
        """The root CA's CRL of the export (the second CRL of its ``crl.pem``, signed by the program)."""
        return C.split_crls((self.dir / C.CRL_FILE).read_text())[1]

    def serial(self, name: str) -> int:
        """The serial number of the exported leaf ``name``."""
        from cryptography import x509

        return x509.load_pem_x509_certificate(Path(self.leaf(name).cert).read_bytes()).serial_number

    def write_crl(self, path: Path, revoked: tuple[int, ...] = (), *,
                  next_update_in: dt.timedelta = dt.timedelta(days=1),
                  this_update_ago: dt.timedelta = dt.timedelta(hours=1), with_root_crl: bool = True) -> None:
        """The CRL file as ``llmcluster pki revoke`` writes it, atomically: the intermediate's CRL
        (signed here, revoking ``revoked``), then the root's (``with_root_crl=False``: the
        intermediate's alone, as crl.pem was before it carried the root's)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization

        ca_key, inter = self._ca()
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        b = (x509.CertificateRevocationListBuilder().issuer_name(inter.subject)
             .last_update(now - this_update_ago).next_update(now + next_update_in)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
             .add_extension(x509.CRLNumber(int(time.time())), critical=False))
        for serial in revoked:
            b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                          .revocation_date(now - dt.timedelta(minutes=1)).build())
        text = b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()
        if with_root_crl:
            text = text.strip() + "\n" + self.root_crl().strip() + "\n"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


def lab_pki(directory: Path) -> Pki:
    plan, material, out = export_lab_pki(directory)
    assert material.intermediate_key_pem
    return Pki(out, plan.spec.site.domain, plan.spec.site.organization, material.intermediate_key_pem,
               material.chain_pem, plan)


# --------------------------------------------------------------------------- processes


@dataclass
class Upstream:
    name: str
    port: int
    fqdn: str
    cert: str  # the PKI leaf it serves
    proc: subprocess.Popen | None = None


def start_standin(pki: Pki, d: Path, u: Upstream, client_cn: str) -> subprocess.Popen:
    """A LAB STAND-IN upstream speaking TLS with a host certificate, requiring the gateway's client certificate."""
    leaf = pki.leaf(u.cert)
    cert = bundle(d / f"standin-{u.name}.pem", Path(leaf.cert), pki.dir / "ca-chain.pem")
    u.proc = subprocess.Popen([sys.executable, str(STANDIN), "127.0.0.1", str(u.port), u.name,
                               "--tls-cert", str(cert), "--tls-key", leaf.key,
                               "--tls-client-ca", str(pki.dir / "ca-chain.pem"), "--tls-client-cn", client_cn])
    return u.proc


@dataclass
class Gateway:
    port: int
    pki: Pki
    dir: Path
    vars: dict[str, Any]
    rendered: str
    clients_map: str
    upstreams: list[Upstream]
    clients: dict[str, G.ClientCert]
    serials: dict[str, int]
    crl: Path
    log: Path
    proc: subprocess.Popen | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ---- HAProxy
    def reload(self) -> None:
        """What ``systemctl reload haproxy`` does to the master (Debian's unit: ExecReload sends SIGUSR2)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR2)

    def log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines()

    def log_for(self, marker: str, timeout: float = 5) -> str:
        end = time.monotonic() + timeout
        while True:
            hits = [line for line in self.log_lines() if marker in line]
            if hits or time.monotonic() > end:
                assert hits, f"no access log line with {marker!r}; last lines: {self.log_lines()[-5:]}"
                return hits[-1]
            time.sleep(0.1)

    # ---- clients
    def curl(self, client: G.ClientCert | None, path: str = "/v1/chat/completions", data: str | None = G.CHAT_BODY,
             *, source: str | None = None, extra: tuple[str, ...] = (), timeout: float = 10) -> Reply:
        argv = G.curl_argv(HOSTNAME, "127.0.0.1", self.port, str(self.pki.dir / "root-ca.pem"), client=client,
                           path=path, data=data, timeout=timeout)
        argv = [*argv[:-1], "-i", "--noproxy", "*", "--interface", source or new_source(), *extra, argv[-1]]
        p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=timeout + 20)
        return Reply.of(G.parse_curl(p.returncode, p.stdout, p.stderr))

    def wait_ok(self, client: G.ClientCert, timeout: float = 20) -> Reply:
        end = time.monotonic() + timeout
        while True:
            res = self.curl(client)
            if res.status == 200 or time.monotonic() > end:
                return res
            time.sleep(0.3)

    def stop(self) -> None:
        stop(self.proc)
        for u in self.upstreams:
            stop(u.proc)


@dataclass
class Reply:
    rc: int
    status: int
    headers: dict[str, str]
    body: str
    raw: G.CurlResult

    @classmethod
    def of(cls, res: G.CurlResult) -> Reply:
        text = res.body
        headers: dict[str, str] = {}
        # curl -i: the header block(s), then the body (a 100-continue adds a block first).
        while text.startswith("HTTP/"):
            head, _, text = text.replace("\r\n", "\n").partition("\n\n")
            headers = {}
            for line in head.split("\n")[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return cls(res.rc, res.status, headers, text, res)

    def json(self) -> Any:
        return json.loads(self.body)

    def describe(self) -> str:
        return self.raw.describe() if not self.status else f"HTTP {self.status} {self.headers} {self.body[:160]!r}"


def render(d: Path, variables: dict[str, Any]) -> tuple[str, str]:
    """Render the role's templates with ``variables`` (plus the role's defaults and vars), check
    the configuration with ``haproxy -c``; return (haproxy.cfg, clients map)."""
    r = run_playbook(d, _render_play(), variables, name="render")
    assert r.returncode == 0, r.stdout + r.stderr
    return (Path(variables["out"]).read_text(), Path(variables["gateway_clients_map_path"]).read_text())


def preflight(d: Path, variables: dict[str, Any]) -> subprocess.CompletedProcess:
    return run_playbook(d, _preflight_play(), variables, name="preflight", timeout=None)


# --------------------------------------------------------------------------- the gateway


def _hhmm(hour: int) -> int:
    return (hour % 24) * 100


def access_plan(pki: Pki) -> dict[str, Any]:
    """``llmcluster_gateway.access`` in the contract's shape, with policies around *now* (UTC)."""
    now = dt.datetime.now(dt.UTC)
    today = now.isoweekday()
    tomorrow = today % 7 + 1
    h = now.hour
    clients = {"chat-frontend": "app", "burst": "app", "revokee": "app", "batch-runner": "batch",
               "partner": "partner", "night": "nightly", "daytime": "daytime", "offday": "offday"}
    cn = pki.client_cn
    loopback = ["127.0.0.0/16"]
    return {
        "api_paths": list(API_PATHS),
        "clients": [{"name": n, "role": r, "common_name": cn(n), "cert": f"client-{n}"} for n, r in clients.items()],
        "policies": [
            {"name": "apps", "roles": ["app"], "clients": [], "models": ["deepseek-r1"],
             "paths": ["/v1/chat/completions", "/v1/models"], "sources": loopback,
             "days": [1, 2, 3, 4, 5, 6, 7], "hours": [0, 2400]},
            {"name": "batch-by-name", "roles": [], "clients": [cn("batch-runner")], "models": ["deepseek-r1"],
             "paths": ["/v1/completions"], "sources": ["127.0.0.0/8"], "days": [1, 2, 3, 4, 5, 6, 7],
             "hours": [0, 2400]},
            # Elsewhere: a zone the loopback sources are not in.
            {"name": "partners", "roles": ["partner"], "clients": [], "models": ["deepseek-r1"],
             "paths": list(API_PATHS), "sources": ["192.0.2.0/24", "2001:db8::/32"], "days": [1, 2, 3, 4, 5, 6, 7],
             "hours": [0, 2400]},
            # Another time of day: a one-hour window two hours from now.
            {"name": "night-shift", "roles": ["nightly"], "clients": [], "models": ["deepseek-r1"],
             "paths": list(API_PATHS), "sources": loopback, "days": [1, 2, 3, 4, 5, 6, 7],
             "hours": [_hhmm(h + 2), _hhmm(h + 3 - 1) + 100]},
            # Now (an hour either side; past midnight it is a wrapped window).
            {"name": "daytime", "roles": ["daytime"], "clients": [], "models": ["deepseek-r1"],
             "paths": list(API_PATHS), "sources": loopback, "days": sorted({today, tomorrow}),
             "hours": [_hhmm(h - 1), _hhmm(h + 2 - 1) + 100]},
            # Other days: neither today nor tomorrow.
            {"name": "offdays", "roles": ["offday"], "clients": [], "models": ["deepseek-r1"],
             "paths": list(API_PATHS), "sources": loopback,
             "days": [d for d in range(1, 8) if d not in (today, tomorrow)], "hours": [0, 2400]},
        ],
    }


def gateway_plan(pki: Pki, port: int, upstreams: list[Upstream], **overrides) -> dict[str, Any]:
    """``llmcluster_gateway`` as the inventory gives it (``GatewayPlan.to_dict()``, the contract's keys)."""
    plan = {
        "pool": "gateway", "port": port, "hostname": HOSTNAME, "vip": None,
        "upstreams": [{"name": u.name, "address": "127.0.0.1", "port": u.port, "fqdn": u.fqdn} for u in upstreams],
        "rate_limit_rps": 5, "request_timeout_s": 900, "handshake_timeout_s": 3, "idle_timeout_s": 5,
        "max_conn_per_source": 4, "max_conn_rate_per_source": 12, "max_body_bytes": 4096,
        "upstream_client_cn": f"gateway.{pki.domain}",
        "access": access_plan(pki),
        "audit": {"retention_days": 180, "max_use": "1G", "forward_to": []},
    }
    plan.update(overrides)
    return plan


def healthy_upstreams(pki: Pki) -> list[Upstream]:
    """Two replica heads, each serving its own host certificate."""
    return [Upstream("gpu-01", free_port(), f"gpu-01.{pki.domain}", "host-gpu-01"),
            Upstream("gpu-02", free_port(), f"gpu-02.{pki.domain}", "host-gpu-02")]


def start_gateway(d: Path, pki: Pki, upstreams: list[Upstream] | None = None, *, wait_for: str = "chat-frontend",
                  **overrides) -> Gateway:
    need("haproxy", "curl", "openssl")
    upstreams = upstreams if upstreams is not None else healthy_upstreams(pki)
    port = free_port()
    gw_plan = gateway_plan(pki, port, upstreams, **overrides)
    clients, serials = {}, {}
    for c in gw_plan["access"]["clients"]:
        clients[c["name"]], serials[c["name"]] = pki.issue_client(d / "clients", c["name"], c["role"])
    # Right CN, wrong OU: a certificate the CA issued for another role.
    clients["imposter"], serials["imposter"] = pki.issue_client(d / "clients", "imposter", "app",
                                                                cn=pki.client_cn("batch-runner"))
    crl = d / "crl.pem"
    pki.write_crl(crl)
    ca_chain = pki.dir / "ca-chain.pem"
    variables = {
        "out": str(d / "haproxy.cfg"),
        "llmcluster_gateway": gw_plan,
        "llmcluster_addresses": {"inference": "127.0.0.1"},
        "llmcluster_pki": {"ca_chain": str(ca_chain), "root_ca": str(pki.dir / "root-ca.pem"), "crl": str(crl)},
        # Where a packaged install keeps its files (root-owned under /etc/haproxy) -> here.
        "gateway_bundle_path": str(bundle(d / "api.pem", pki.dir / "certs" / "gateway-api.pem", ca_chain,
                                          pki.dir / "private" / "gateway-api.key")),
        "gateway_upstream_bundle_path": str(bundle(d / "upstream.pem", pki.dir / "certs" / "gateway-upstream.pem",
                                                   ca_chain, pki.dir / "private" / "gateway-upstream.key")),
        "gateway_crl_install_path": str(crl),
        "gateway_clients_map_path": str(d / "llmcluster-clients.map"),
        "gateway_log_target": "stdout format raw",
        "_gateway_stats_socket": str(d / "admin.sock"),
        "gateway_health_interval_s": 1,
        "ansible_check_mode": False, "__gateway_dpkg": {"stdout_lines": []},
    }
    rendered, clients_map = render(d, variables)
    haproxy_check(d / "haproxy.cfg")
    (d / "local.cfg").write_text(local_config(rendered))
    log = d / "haproxy.log"
    gw = Gateway(port, pki, d, variables, rendered, clients_map, upstreams, clients, serials, crl, log)
    try:
        for u in upstreams:
            start_standin(pki, d, u, gw_plan["upstream_client_cn"])
        for u in upstreams:
            wait_port(u.port)
        gw.proc = start_haproxy(d / "local.cfg", port, log, master_worker=True)
        res = gw.wait_ok(clients[wait_for])
        assert res.status == 200, res.describe()
    except BaseException:
        gw.stop()
        raise
    return gw


@contextmanager
def running_gateway(d: Path, pki: Pki, **overrides) -> Iterator[Gateway]:
    """:func:`start_gateway`, stopped on the way out (a module fixture's body)."""
    gw = start_gateway(d, pki, **overrides)
    try:
        yield gw
    finally:
        gw.stop()


# --------------------------------------------------------------------------- scratch HAProxy

SCRATCH = """\
global
    maxconn 100
{global_}
defaults
    mode http
    timeout connect 5s
    timeout client {client}
    timeout http-request {http_request}
    timeout server 30s
frontend scratch
    bind 127.0.0.1:{port} ssl crt {crt} ca-file {ca} verify required ssl-min-ver TLSv1.3 alpn http/1.1 {bind}
    http-request return status 200 content-type text/plain string ok
"""


def scratch_haproxy(d: Path, pki: Pki, name: str, *, bind: str = "", global_: str = "", client: str = "30s",
                    http_request: str = "30s") -> tuple[subprocess.Popen, int]:
    """A minimal HAProxy 2.6 with the gateway's certificate and client verification, to measure one
    HAProxy behaviour in isolation (the rendered configuration is tested on its own)."""
    port = free_port()
    crt = bundle(d / f"{name}-api.pem", pki.dir / "certs" / "gateway-api.pem", pki.dir / "ca-chain.pem",
                 pki.dir / "private" / "gateway-api.key")
    cfg = d / f"{name}.cfg"
    cfg.write_text(SCRATCH.format(global_=global_, client=client, http_request=http_request, port=port, crt=crt,
                                  ca=pki.dir / "ca-chain.pem", bind=bind))
    haproxy_check(cfg)
    return start_haproxy(cfg, port, d / f"{name}.log", master_worker=True), port


# --------------------------------------------------------------------------- raw probes


def until_closed(sock: socket.socket, limit: float) -> tuple[float, bytes]:
    """Seconds until the peer closes ``sock`` (reading whatever it sends), or ``limit``."""
    t0 = time.monotonic()
    got = b""
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            continue
        except (ConnectionResetError, ssl.SSLError, OSError):
            break
        if not data:
            break
        got += data
    return time.monotonic() - t0, got


def raw_connect(port: int, source: str) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def refused(sock: socket.socket, within: float = 0.5) -> bool:
    """The gateway closed (or reset) a connection that sent nothing, within ``within`` seconds."""
    elapsed, _ = until_closed(sock, within)
    return elapsed < within


def tls_client(pki: Pki, client: G.ClientCert) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.dir / "root-ca.pem"))
    ctx.load_cert_chain(client.cert, client.key)
    return ctx


#: One request that the server answers and then closes the connection on.
ONE_REQUEST = f"GET /v1/models HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n\r\n"


def s_client(port: int, pki: Pki, client: G.ClientCert, *extra: str) -> str:
    """``openssl s_client`` (TLS 1.3) sending one request and reading until the server closes."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOSTNAME,
            "-CAfile", str(pki.dir / "root-ca.pem"), "-cert", client.cert, "-key", client.key, "-tls1_3",
            "-ign_eof", *extra]
    p = subprocess.run(argv, input=ONE_REQUEST, capture_output=True, text=True, timeout=30, check=False)
    return p.stdout + p.stderr


def resumption(port: int, pki: Pki, client: G.ClientCert, d: Path) -> tuple[str, str]:
    """Two connections with ``openssl s_client``: the first saves its session (a TLS 1.3 ticket
    arrives after the handshake: one request is read to the end), the second offers it.
    Returns the 'New'/'Reused' lines of each."""
    sess = d / f"session-{time.monotonic_ns()}.pem"
    first = s_client(port, pki, client, "-sess_out", str(sess))
    second = s_client(port, pki, client, "-sess_in", str(sess)) if sess.exists() else "no session saved"

    def line(out: str) -> str:
        m = re.search(r"^(New|Reused), .*$", out, re.M)
        return m.group(0) if m else out.strip()[-300:]

    return line(first), line(second)

