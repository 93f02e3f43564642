"""The serving_tls role's TLS terminator, configured by Ansible with the role's own tasks and run for
real on loopback in front of the lab stand-in upstream, with real clients (curl, openssl
s_client) — no lab needed.

The PKI is the lab stack's, exported offline (real keys, ``llmcluster.pki_export``); the CRLs are
signed here by its intermediate (an empty one, and one revoking the gateway-upstream
certificate), each followed by the export's root CRL as in ``crl.pem``. ``tasks/configure.yml``
runs on localhost with every path in a temporary folder: it assembles the bundle, copies the
CRL, renders and validates (``haproxy -c``) the configuration and writes the unit. The rendered
configuration then runs unchanged except for the process settings of a packaged install
(chroot, user/group, syslog), which a test process need not use;
the stand-in (``llmcluster/lab/upstream_standin.py``) listens where trtllm-serve would:
127.0.0.1 at the backend port. ``tasks/preflight.yml`` runs on localhost for each input it must
refuse. On a host with CAP_NET_RAW the capture helper of the ``upstream-tls`` check watches the
loopback interface while a request passes: TLS only on the terminator's port, the cleartext
request (and its marker) only on the backend port.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from llmcluster.verify import gateway as G
from llmcluster.verify import upstream as U
from tests.conftest import ROOT
from tests.helpers import role_local as R
from tests.helpers.gateway_local import STANDIN, lab_pki

ROLE = ROOT / "roles" / "serving_tls"
HEAD = "gpu-01"

def _configure_play() -> str:
    case = "{{ cases[case]"
    return R.local_play("Configure the serving_tls terminator with the role's tasks", tasks=[
        {"name": "The OS variables (Debian, as the lab)", "ansible.builtin.include_vars": f"{ROLE}/vars/Debian.yml"},
        {"name": "Configure", "ansible.builtin.include_role": {"name": str(ROLE), "tasks_from": "configure"},
         "vars": {
             "serving_tls_listen_address": "127.0.0.1",
             "llmcluster_serving_plan": f"{case}.plan }}}}",
             "llmcluster_gateway": f"{case}.gateway }}}}",
             "llmcluster_pki": f"{case}.pki }}}}",
             "serving_tls_config_path": "{{ out }}/{{ case }}/serving-tls.cfg",
             "serving_tls_bundle_path": "{{ out }}/{{ case }}/certs/serving-tls.pem",
             "serving_tls_crl_copy_path": "{{ out }}/{{ case }}/certs/serving-tls-crl.pem",
             "_serving_tls_unit_path": "{{ out }}/{{ case }}/serving-tls.service",
             "__serving_tls_crl_stat": {"stat": {"exists": f"{case}.crl_present }}}}"}},
             "__serving_tls_dpkg": {"stdout_lines": []},
             # the metrics frontend for the monitor hosts (docs/observability.md): the main case only
             "llmcluster_monitoring": f"{case}.monitoring | default({{}}) }}}}",
             "serving_tls_metrics_address": "127.0.0.1",
             "serving_tls_metrics_port": f"{case}.metrics_port | default(0) }}}}"},
         "loop": "{{ cases.keys() | list }}", "loop_control": {"loop_var": "case"}},
    ])


def _preflight_play(case_file: Path) -> str:
    """The role's preflight once per case; each case's outcome ("ok" or the failure's message) in
    ``<out>/<case>.result``."""
    case = "{{ cases[case]"
    case_file.write_text(yaml.safe_dump([{"name": "One case", "block": [
        {"name": "Preflight", "ansible.builtin.include_role": {"name": str(ROLE), "tasks_from": "preflight"},
         "vars": {"llmcluster_serving_plan": f"{case}.plan }}}}", "llmcluster_gateway": f"{case}.gateway }}}}",
                  "llmcluster_pki": f"{case}.pki }}}}", "llmcluster_addresses": f"{case}.addresses }}}}",
                  "llmcluster_pool": f"{case}.pool }}}}",
                  "serving_tls_backend_address": f"{case}.backend_address }}}}",
                  "serving_tls_require_crl": f"{case}.require_crl }}}}"}},
        {"name": "Passed", "ansible.builtin.copy": {"content": "ok", "dest": "{{ out }}/{{ case }}.result",
                                                    "mode": "0644"}},
    ], "rescue": [
        {"name": "Refused", "ansible.builtin.copy": {
            "content": "{{ ansible_failed_result.msg | default('failed') }}",
            "dest": "{{ out }}/{{ case }}.result", "mode": "0644"}},
    ]}], sort_keys=False, width=4096), encoding="utf-8")
    return R.local_play("Run the serving_tls preflight for each case", tasks=[
        {"name": "Each case", "ansible.builtin.include_tasks": str(case_file),
         "loop": "{{ cases.keys() | list }}", "loop_control": {"loop_var": "case"}}])


def _playbook(d: Path, play: str, variables: dict) -> None:
    r = R.run_playbook(d, play, variables, extra=("-e", "llmcluster_manage_services=false"), timeout=None)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The lab plan and its PKI exported offline, with two CRL files as `llmcluster pki revoke`
    writes them (the intermediate's CRL, then the root's): one revoking nothing, one revoking the
    gateway-upstream certificate."""
    d = tmp_path_factory.mktemp("serving-tls-pki")
    p = lab_pki(d)
    p.write_crl(d / "crl.pem")
    p.write_crl(d / "crl-revoked.pem", (p.serial("gateway-upstream"),))
    return {"plan": p.plan, "dir": p.dir, "crl": d / "crl.pem", "crl_revoked": d / "crl-revoked.pem"}


def _pki_vars(pki: dict, crl: Path) -> dict:
    out = pki["dir"]
    return {"cert": str(out / "certs" / f"host-{HEAD}.pem"), "key": str(out / "private" / f"host-{HEAD}.key"),
            "ca_chain": str(out / "ca-chain.pem"), "root_ca": str(out / "root-ca.pem"), "crl": str(crl)}


class SlowBackend(BaseHTTPRequestHandler):
    """A generation with a long prefill (no byte either way) and tokens streamed slowly."""

    protocol_version = "HTTP/1.1"
    prefill_s = 2.5

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/health":
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")
            return
        time.sleep(self.prefill_s)
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for i in range(2):
            if i:
                time.sleep(self.prefill_s)
            data = f"token{i}\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def terminators(pki, tmp_path_factory):
    """The role's configure tasks for four cases, then HAProxy on loopback for three of them."""
    R.need("haproxy", "curl", "openssl")
    d = tmp_path_factory.mktemp("serving-tls")
    plan = pki["plan"]
    sp, gw = plan.serving.to_vars(), plan.serving.gateway.to_dict()
    backend, slow_backend = R.free_port(), R.free_port()
    ports = {"main": R.free_port(), "revoked": R.free_port(), "slow": R.free_port(), "nocrl": R.free_port(),
             "metrics": R.free_port()}
    cases = {
        # with the metrics frontend; its backend path is /version here, so a scrape shows the rewrite
        "main": {"plan": {**sp, "port": ports["main"], "backend_port": backend}, "gateway": gw,
                 "pki": _pki_vars(pki, pki["crl"]), "crl_present": True, "metrics_port": ports["metrics"],
                 "monitoring": {"server_fqdns": [f"mon-01.{plan.spec.site.domain}"],
                                "trtllm_backend_path": "/version"}},
        "revoked": {"plan": {**sp, "port": ports["revoked"], "backend_port": backend}, "gateway": gw,
                    "pki": _pki_vars(pki, pki["crl_revoked"]), "crl_present": True},
        # A short handshake bound, a slow generation behind it.
        "slow": {"plan": {**sp, "port": ports["slow"], "backend_port": slow_backend},
                 "gateway": {**gw, "handshake_timeout_s": 1, "request_timeout_s": 30},
                 "pki": _pki_vars(pki, pki["crl"]), "crl_present": True},
        # serving_tls_require_crl false and no CRL on the host: no crl-file line.
        "nocrl": {"plan": {**sp, "port": ports["nocrl"], "backend_port": backend}, "gateway": gw,
                  "pki": _pki_vars(pki, d / "absent.pem"), "crl_present": False},
    }
    _playbook(d, _configure_play(), {"cases": cases, "out": str(d)})
    packaged = ("chroot ", "user ", "group ", "log /dev/log")
    procs: list[subprocess.Popen] = [
        subprocess.Popen([sys.executable, str(STANDIN), "127.0.0.1", str(backend), HEAD]),
    ]
    slow = ThreadingHTTPServer(("127.0.0.1", slow_backend), SlowBackend)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        for case in ("main", "revoked", "slow"):
            (d / case / "local.cfg").write_text(R.local_config((d / case / "serving-tls.cfg").read_text(), packaged))
            procs.append(R.start_haproxy(d / case / "local.cfg", ports[case]))
        R.wait_port(backend)
        yield {"dir": d, "ports": ports, "backend": backend, "pki": pki["dir"], "plan": plan,
               "fqdn": next(u["fqdn"] for u in gw["upstreams"] if u["name"] == HEAD), "cases": cases}
    finally:
        slow.shutdown()
        for p in procs:
            R.stop(p)


def _cert(t, name: str) -> G.ClientCert:
    return G.ClientCert(str(t["pki"] / "certs" / f"{name}.pem"), str(t["pki"] / "private" / f"{name}.key"))


def _curl(t, case: str = "main", client: G.ClientCert | None = None, **kw) -> G.CurlResult:
    argv = G.curl_argv(t["fqdn"], "127.0.0.1", t["ports"][case], str(t["pki"] / "root-ca.pem"), client=client, **kw)
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    return G.parse_curl(p.returncode, p.stdout, p.stderr)


def _upstream(t) -> G.ClientCert:
    return _cert(t, "gateway-upstream")


# --------------------------------------------------------------------------- what the role wrote


def test_configuration_bundle_crl_and_unit(terminators):
    d, t = terminators["dir"], terminators
    cfg = (d / "main" / "serving-tls.cfg").read_text()
    cn = t["plan"].pki.leaf("gateway-upstream").common_name
    bind = next(line.strip() for line in cfg.splitlines() if line.strip().startswith("bind "))
    assert bind.startswith(f"bind 127.0.0.1:{t['ports']['main']} ssl crt {d / 'main' / 'certs' / 'serving-tls.pem'} ")
    for needle in ("verify required", f"crl-file {d / 'main' / 'certs' / 'serving-tls-crl.pem'} ",
                   "ssl-min-ver TLSv1.3", "no-tls-tickets", "curves P-256", "alpn http/1.1"):
        assert needle in bind, needle
    # The CRL file holds the root's CRL too: no verification error is ignored.
    assert "ignore-err" not in bind, bind
    for needle in ("tune.ssl.cachesize 0", "ssl-default-bind-options ssl-min-ver TLSv1.3 no-tls-tickets",
                   f"http-request deny deny_status 403 unless {{ ssl_c_s_dn(CN) -m str {cn} }}",
                   f"server trtllm 127.0.0.1:{t['backend']} ", "timeout server 900s", "timeout client 10s",
                   "timeout http-request 10s", "timeout http-keep-alive 60s", "mode http"):
        assert needle in cfg, needle
    assert cn == "gateway.lab.llmcluster.internal"
    nocrl = (d / "nocrl" / "serving-tls.cfg").read_text()
    assert "crl-file" not in nocrl and "ca-ignore-err" not in nocrl and "verify required" in nocrl
    assert not (d / "nocrl" / "certs" / "serving-tls-crl.pem").exists()
    for case in ("main", "nocrl"):
        r = subprocess.run(["haproxy", "-c", "-q", "-f", str(d / case / "serving-tls.cfg")], capture_output=True,
                           text=True, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
    # Certificate, chain, key in one root-only file; the CRL copy is the source's.
    bundle = d / "main" / "certs" / "serving-tls.pem"
    assert (bundle.stat().st_mode & 0o777) == 0o600 and (bundle.parent.stat().st_mode & 0o777) == 0o700
    text = bundle.read_text()
    host = (t["pki"] / "certs" / f"host-{HEAD}.pem").read_text().strip()
    assert text.startswith(host) and text.count("BEGIN CERTIFICATE") == 3 and "PRIVATE KEY" in text.split("\n")[-2]
    crl_copy = d / "main" / "certs" / "serving-tls-crl.pem"
    assert crl_copy.read_bytes() == Path(t["cases"]["main"]["pki"]["crl"]).read_bytes()
    unit = (d / "main" / "serving-tls.service").read_text()
    for needle in (f"Environment=\"CONFIG={d / 'main' / 'serving-tls.cfg'}\"",
                   "ExecStart=/usr/sbin/haproxy -Ws -f $CONFIG", "ExecReload=/bin/kill -USR2 $MAINPID", "Type=notify",
                   "After=network-online.target trtllm-serve.service", "WantedBy=multi-user.target",
                   "NoNewPrivileges=yes"):
        assert needle in unit, needle
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(d / "main" / "serving-tls.service")],
                           capture_output=True, text=True, check=False)
        assert "Unknown key" not in r.stderr and "Invalid" not in r.stderr, r.stderr


# --------------------------------------------------------------------------- who gets in


def test_the_gateway_upstream_certificate_reaches_trtllm_serve(terminators):
    """200 from the stand-in behind the terminator; curl verified the server certificate against
    the head's FQDN (llmcluster_gateway.upstreams[].fqdn), as the gateway's verifyhost does."""
    res = _curl(terminators, client=_upstream(terminators))
    assert not G.expect_ok(res, "gateway-upstream"), res.describe()
    assert G.upstream_of(res) == HEAD
    health = _curl(terminators, client=_upstream(terminators), path="/health", data=None)
    assert health.status == 200 and health.body.strip() == "ok", health.describe()


@pytest.mark.parametrize("who", ["host-gpu-02", "host-gpu-01", "host-gw-01", "host-storage-01", "admin"])
def test_other_certificates_of_the_cluster_ca_get_403(terminators, who):
    """Valid client certificates of the same CA, but not the gateway-upstream identity."""
    res = _curl(terminators, client=_cert(terminators, who))
    assert res.status == 403, f"{who}: {res.describe()}"


@pytest.mark.parametrize("case", ["no client certificate", "another CA", "expired", "server-only certificate"])
def test_clients_without_a_valid_certificate_are_refused_in_the_handshake(terminators, case):
    t = terminators
    client = {"no client certificate": None,
              "another CA": G.other_ca_client(t["dir"] / "other", cn="gateway.lab.llmcluster.internal"),
              "expired": G.ClientCert(str(t["pki"] / "lab-tests" / "expired-client.crt"),
                                      str(t["pki"] / "lab-tests" / "expired-client.key")),
              "server-only certificate": _cert(t, "gateway-api")}[case]
    res = _curl(t, client=client)
    assert res.status in (0, 403) and res.status != 200, f"{case}: {res.describe()}"
    if case != "server-only certificate":
        assert not G.expect_rejected(res, case)


def test_a_revoked_gateway_upstream_certificate_is_refused(terminators):
    res = _curl(terminators, "revoked", client=_upstream(terminators))
    assert not G.expect_rejected(res, "revoked gateway-upstream"), res.describe()
    assert "revoked" in res.stderr, res.stderr
    # Another identity still gets through the TLS layer there (and only to its 403).
    assert _curl(terminators, "revoked", client=_cert(terminators, "admin")).status == 403


GATEWAY_SIDE = """\
global
    tune.ssl.cachesize 0
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout check 3s
frontend api
    bind 127.0.0.1:{front}
    default_backend inference
backend inference
    option httpchk
    http-check send meth GET uri /health ver HTTP/1.1 hdr Host {fqdn}
    http-check expect status 200
    default-server check inter 1s rise 1 fall 1
    server {name} 127.0.0.1:{port} ssl verify required ca-file {ca} crt {bundle} verifyhost {verify}
"""


@pytest.mark.parametrize(("verify", "client", "status"), [
    ("fqdn", "gateway-upstream", 200),
    ("other-head", "gateway-upstream", 503),  # the head's certificate is not gpu-02's
    ("fqdn", "admin", 503),  # health checks get 403: the server stays down
])
def test_the_gateway_side_of_the_contract(terminators, tmp_path, verify, client, status):
    """The gateway's upstream line as the contract writes it (`ssl verify required ca-file <chain>
    crt <gateway-upstream bundle> verifyhost <fqdn>`, health checks over the same TLS) against the
    terminator: the head's FQDN verifies, the gateway-upstream certificate is admitted; another
    head's name or another client certificate leaves the upstream down."""
    t = terminators
    plan, pki = t["plan"], t["pki"]
    bundle = tmp_path / "upstream.pem"
    bundle.write_text((pki / "certs" / f"{client}.pem").read_text() + (pki / "private" / f"{client}.key").read_text())
    bundle.chmod(0o600)
    other = next(u["fqdn"] for u in plan.serving.gateway.upstreams if u["name"] != HEAD)
    front = R.free_port()
    cfg = GATEWAY_SIDE.format(front=front, fqdn=t["fqdn"], name=HEAD, port=t["ports"]["main"],
                              ca=pki / "ca-chain.pem", bundle=bundle, verify=t["fqdn"] if verify == "fqdn" else other)
    (tmp_path / "gw.cfg").write_text(cfg)
    hp = R.start_haproxy(tmp_path / "gw.cfg", front)
    try:
        time.sleep(2.5)  # a few health checks
        argv = ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                "Content-Type: application/json", "--data-binary", G.CHAT_BODY,
                f"http://127.0.0.1:{front}/v1/chat/completions"]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert int(p.stdout or 0) == status, p.stdout + p.stderr
    finally:
        R.stop(hp)


# --------------------------------------------------------------------------- TLS


def test_tls12_is_refused_and_tls13_uses_ecdsa_p256(terminators):
    t = terminators
    args = (t["fqdn"], "127.0.0.1", t["ports"]["main"], str(t["pki"] / "root-ca.pem"))
    p12 = subprocess.run(G.s_client_argv(*args, "tls1_2", _upstream(t)), input="", capture_output=True, text=True,
                         timeout=20, check=False)
    assert not G.expect_handshake_fails(p12.returncode, p12.stdout + p12.stderr, "TLS 1.2")
    assert not G.expect_rejected(_curl(t, client=_upstream(t), tls_max="1.2"), "curl TLS 1.2")
    p13 = subprocess.run(G.s_client_argv(*args, "tls1_3", _upstream(t)), input="", capture_output=True, text=True,
                         timeout=20, check=False)
    assert not G.expect_tls13_p256(p13.returncode, p13.stdout + p13.stderr, "TLS 1.3")


def _session_twice(t, port: int, tmp: Path) -> str:
    """Connect, save the session, connect again offering it: s_client's 'New' or 'Reused' line."""
    sess = tmp / f"session-{port}"
    base = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", t["fqdn"], "-CAfile",
            str(t["pki"] / "root-ca.pem"), "-tls1_3", "-cert", str(t["pki"] / "certs" / "gateway-upstream.pem"),
            "-key", str(t["pki"] / "private" / "gateway-upstream.key"), "-ign_eof"]
    request = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    first = subprocess.run([*base, "-sess_out", str(sess)], input=request, capture_output=True, text=True, timeout=20,
                           check=False)
    assert first.returncode == 0 and "200 OK" in first.stdout, first.stdout[-400:] + first.stderr[-400:]
    again = subprocess.run([*base, "-sess_in", str(sess)], input=request, capture_output=True, text=True, timeout=20,
                           check=False)
    return next((line for line in again.stdout.splitlines() if line.startswith(("New,", "Reused,"))), again.stdout)


def test_no_tls_session_resumption(terminators, tmp_path):
    """Every connection presents its certificate (against the current CRL): a saved session is
    never resumed. Control: the same configuration with tickets and the session cache back on
    resumes, so the check can fail."""
    t = terminators
    assert _session_twice(t, t["ports"]["main"], tmp_path).startswith("New, TLSv1.3"), "resumed"
    cfg = (t["dir"] / "main" / "local.cfg").read_text()
    port = R.free_port()
    control = (cfg.replace("tune.ssl.cachesize 0", "").replace(" no-tls-tickets", "")
               .replace(f"127.0.0.1:{t['ports']['main']} ", f"127.0.0.1:{port} "))
    (tmp_path / "control.cfg").write_text(control)
    hp = R.start_haproxy(tmp_path / "control.cfg", port)
    try:
        assert _session_twice(t, port, tmp_path).startswith("Reused, TLSv1.3")
    finally:
        R.stop(hp)


def test_plain_http_gets_no_http_response(terminators):
    """The upstream-tls check's probe (llmcluster/verify/capture.py), here from this machine."""
    src = U.capture_source()
    r = subprocess.run([sys.executable, "-c", src, *U.probe_args("127.0.0.1", terminators["ports"]["main"])],
                       capture_output=True, text=True, timeout=30, check=False)
    doc = json.loads(r.stdout)
    assert doc["connected"] and not doc["http"], doc
    assert U.judge_probe(doc, "plain HTTP to the terminator") == []
    # The same probe against the backend's plain HTTP (loopback only) does see HTTP: the judge refuses it.
    r = subprocess.run([sys.executable, "-c", src, *U.probe_args("127.0.0.1", terminators["backend"])],
                       capture_output=True, text=True, timeout=30, check=False)
    assert U.judge_probe(json.loads(r.stdout), "plain HTTP to the backend")


def test_a_long_generation_passes_and_a_silent_connection_is_closed(terminators):
    """HAProxy 2.6 bounds the TLS handshake with `timeout client` (no `timeout client-hs`): 1 s here,
    yet a generation whose prefill and token gaps last 2.5 s each is not cut (`timeout server`)."""
    t = terminators
    start = time.monotonic()
    res = _curl(t, "slow", client=_upstream(t), path="/v1/stream", data=None, timeout=30)
    took = time.monotonic() - start
    assert res.status == 200 and res.body == "token0\ntoken1\n", res.describe()
    assert took >= 2 * SlowBackend.prefill_s
    for opening in (b"", b"\x16\x03\x01\x00\xc8"):  # nothing at all, a ClientHello that never comes
        with socket.create_connection(("127.0.0.1", t["ports"]["slow"])) as s:
            s.settimeout(10)
            start = time.monotonic()
            if opening:
                s.sendall(opening)
            assert s.recv(64) == b""
            assert time.monotonic() - start < 3, f"{opening!r}: held open {time.monotonic() - start:.1f} s"


# --------------------------------------------------------------------------- the capture on loopback


def _can_capture() -> str | None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3)).close()
    except (OSError, AttributeError) as exc:
        return f"no raw packet socket here ({exc}): needs root or CAP_NET_RAW"
    return None


def test_capture_sees_tls_on_the_terminator_port_and_cleartext_only_behind_it(terminators, tmp_path):
    """The upstream-tls check's capture, on the loopback interface: while a marked request passes
    the terminator, its port carries TLS records only; the backend port (loopback only) carries the
    cleartext request and its marker — which the judge refuses, so the check can fail."""
    reason = _can_capture()
    if reason:
        pytest.skip(reason)
    t = terminators
    marker = U.new_marker()
    src = U.capture_source()
    outs = {"front": str(tmp_path / "front.json"), "back": str(tmp_path / "back.json")}
    for which, port in (("front", t["ports"]["main"]), ("back", t["backend"])):
        r = subprocess.run([sys.executable, "-c", src, *U.capture_args("lo", "127.0.0.1", port, marker, outs[which],
                                                                       seconds=4)],
                           capture_output=True, text=True, timeout=30, check=False)
        assert json.loads(r.stdout).get("started"), r.stdout + r.stderr
    time.sleep(0.5)
    res = _curl(t, client=_upstream(t), data=U.chat_body(marker))
    assert res.status == 200 and G.upstream_of(res) == HEAD, res.describe()
    docs = {}
    for which, out in outs.items():
        r = subprocess.run([sys.executable, "-c", src, *U.result_args(out, 15)], capture_output=True, text=True,
                           timeout=30, check=False)
        docs[which] = json.loads(r.stdout)
    front, back = docs["front"], docs["back"]
    assert U.judge_capture(front, "terminator port", answered=True) == [], front
    assert front["tls"] > 0 and front["http"] == 0 and front["marker"] == 0
    assert back["http"] >= 2 and back["marker"] >= 1, back  # request and response in clear on loopback
    problems = U.judge_capture(back, "backend port")
    assert any("cleartext HTTP" in p for p in problems) and any("marker" in p for p in problems)


# --------------------------------------------------------------------------- the preflight


@pytest.fixture(scope="module")
def preflight(pki, tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("serving-tls-preflight")
    plan = pki["plan"]
    sp, gw = plan.serving.to_vars(), plan.serving.gateway.to_dict()
    good = {"plan": sp, "gateway": gw, "pki": _pki_vars(pki, pki["crl"]), "addresses": {"inference": "10.42.1.11"},
            "pool": "gpu", "backend_address": "127.0.0.1", "require_crl": True}
    missing_crl = _pki_vars(pki, d / "absent.pem")
    cases = {
        "good": good,
        "no-crl": {**good, "pki": missing_crl},
        "no-crl-allowed": {**good, "pki": missing_crl, "require_crl": False},
        "no-gateway": {**good, "gateway": {}},
        "listen-on-loopback": {**good, "addresses": {"inference": "127.0.0.1"}},
        "no-inference-address": {**good, "addresses": {}},
        "backend-on-the-network": {**good, "backend_address": "10.42.1.11"},
        "backend-port-is-the-port": {**good, "plan": {**sp, "backend_port": sp["port"]}},
        "gateway-host-same-port": {**good, "pool": gw["pool"], "plan": {**sp, "port": gw["port"]}},
        "gateway-host-other-port": {**good, "pool": gw["pool"]},
    }
    _playbook(d, _preflight_play(d / "case.yml"), {"cases": cases, "out": str(d)})
    return {name: (d / f"{name}.result").read_text() for name in cases}


@pytest.mark.parametrize(("case", "message"), [
    ("no-crl", "is missing on localhost: the mtls role installs it"),
    ("no-gateway", "admits only the gateway-upstream client certificate"),
    ("listen-on-loopback", "listens on this replica head's inference address"),
    ("no-inference-address", "listens on this replica head's inference address"),
    ("backend-on-the-network", "the backend must be a loopback address"),
    ("backend-port-is-the-port", "two different ports"),
    ("gateway-host-same-port", "is both a gateway"),
])
def test_preflight_refuses(preflight, case, message):
    assert preflight[case] != "ok" and message in preflight[case], preflight[case]


@pytest.mark.parametrize("case", ["good", "no-crl-allowed", "gateway-host-other-port"])
def test_preflight_accepts(preflight, case):
    assert preflight[case] == "ok", preflight[case]


@pytest.mark.parametrize("who, status", [("host-mon-01", 200), ("host-gpu-02", 403), ("gateway-upstream", 403)])
def test_the_metrics_frontend_admits_only_the_monitor_host(terminators, who, status):
    """mTLS on the metrics port (the mgmt address in production): only the monitor host's certificate
    reaches trtllm-serve's metrics path (rewritten: here /version of the stand-in)."""
    t = terminators
    argv = G.curl_argv(t["fqdn"], "127.0.0.1", t["ports"]["metrics"], str(t["pki"] / "root-ca.pem"),
                       client=_cert(t, who), path="/metrics", data=None)
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    res = G.parse_curl(p.returncode, p.stdout, p.stderr)
    assert res.status == status, res.describe()
    if status == 200:
        assert "lab-standin" in res.body, res.describe()


def test_the_metrics_frontend_serves_nothing_else(terminators):
    t = terminators
    argv = G.curl_argv(t["fqdn"], "127.0.0.1", t["ports"]["metrics"], str(t["pki"] / "root-ca.pem"),
                       client=_cert(t, "host-mon-01"), path="/v1/models", data=None)
    p = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert G.parse_curl(p.returncode, p.stdout, p.stderr).status == 404

