"""The gateway role's HAProxy configuration, rendered by Ansible from the role's template and
run for real on loopback, with real clients (curl, openssl s_client, Python's ssl) — no lab needed
(tests/helpers/gateway_local.py says how it is set up: the lab PKI exported offline, named client
certificates issued by its intermediate, LAB STAND-IN upstreams speaking mTLS, HAProxy in
master-worker mode).

The TLS layer and the bounds: mTLS refusals, TLS 1.3/P-256, no session resumption, the CRL (and
a revocation taking effect through a reload while another client keeps being served), what bounds
a connection that never starts TLS or never sends a request (measured here: the numbers the
role's README gives), per-source connection caps, the per-client throttle, and the hop to the
upstreams (mTLS, their host certificate checked for their FQDN). Also here: ``llmcluster pki
export`` refuses a certificate whose SANs the plan does not give it.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmcluster.verify import gateway as G
from tests.conftest import load_spec
from tests.helpers import gateway_local as L

HOSTNAME = L.HOSTNAME


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> L.Pki:
    return L.lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def gateway(pki, tmp_path_factory):
    with L.running_gateway(tmp_path_factory.mktemp("gateway"), pki) as gw:
        yield gw


def _plan(gw) -> dict:
    return gw.vars["llmcluster_gateway"]


def test_rendered_config_has_the_policy(gateway):
    cfg = gateway.rendered
    plan = _plan(gateway)
    hs = plan["handshake_timeout_s"]
    for needle in ("ssl-min-ver TLSv1.3", "verify required", "no-tls-tickets", "tune.ssl.cachesize 0",
                   f"crl-file {gateway.crl} no-tls-tickets", "balance leastconn", "http-reuse always",
                   "uri /health", "timeout check 3s", "timeout server 900s", f"timeout client {hs}s",
                   f"timeout http-request {hs}s", f"timeout http-keep-alive {plan['idle_timeout_s']}s",
                   "curves P-256", "client=\\\"%[ssl_c_s_dn]\\\"", "decision=%[var(txn.decision)]",
                   "tcp-request connection track-sc0 src table st_source",
                   "http-request track-sc1 var(txn.cn) table st_client",
                   'http-after-response set-header Strict-Transport-Security "max-age=63072000"',
                   "http-after-response del-header server", "option httpchk"):
        assert needle in cfg, needle
    # The CRL file holds the root's CRL too: no verification error is ignored.
    assert "ca-ignore-err" not in cfg and "crt-ignore-err" not in cfg
    for u in gateway.upstreams:
        assert (f"server {u.name} 127.0.0.1:{u.port} sni str({u.fqdn}) verifyhost {u.fqdn} check-sni {u.fqdn}"
                in cfg), u
    assert "default-server ssl verify required ca-file" in cfg and "check check-ssl" in cfg


def test_named_client_reaches_an_upstream_over_mtls(gateway):
    res = gateway.wait_ok(gateway.clients["chat-frontend"])
    assert res.status == 200, res.describe()
    body = res.json()
    assert body["llmcluster_upstream"] in ("gpu-01", "gpu-02")
    assert f"CN={gateway.pki.client_cn('chat-frontend')}" in body["client_dn"]


@pytest.mark.parametrize("case", ["no client certificate", "certificate from another CA", "expired certificate"])
def test_bad_clients_are_rejected(gateway, case):
    pki = gateway.pki
    client = {"no client certificate": None,
              "certificate from another CA": G.other_ca_client(gateway.dir / "other"),
              "expired certificate": G.ClientCert(str(pki.dir / "lab-tests" / "expired-client.crt"),
                                                  str(pki.dir / "lab-tests" / "expired-client.key"))}[case]
    problems = G.expect_rejected(gateway.curl(client).raw, case)
    assert not problems


def test_tls12_is_refused_and_tls13_uses_ecdsa_p256(gateway):
    pki, client = gateway.pki, gateway.clients["chat-frontend"]
    args = (HOSTNAME, "127.0.0.1", gateway.port, str(pki.dir / "root-ca.pem"))
    p12 = subprocess.run(G.s_client_argv(*args, "tls1_2", client), input="", capture_output=True, text=True,
                         timeout=20, check=False)
    assert not G.expect_handshake_fails(p12.returncode, p12.stdout + p12.stderr, "TLS 1.2")
    assert not G.expect_rejected(gateway.curl(client, extra=("--tls-max", "1.2")).raw, "curl TLS 1.2")
    p13 = subprocess.run(G.s_client_argv(*args, "tls1_3", client), input="", capture_output=True, text=True,
                         timeout=20, check=False)
    assert not G.expect_tls13_p256(p13.returncode, p13.stdout + p13.stderr, "TLS 1.3")


# --------------------------------------------------------------------------- no resumption


def test_tls_sessions_are_not_resumed(gateway, tmp_path):
    """A client offering its saved session gets a full handshake (and presents its certificate,
    checked against the current CRL) every time."""
    first, second = L.resumption(gateway.port, gateway.pki, gateway.clients["chat-frontend"], tmp_path)
    assert first.startswith("New, TLSv1.3"), first
    assert second.startswith("New, TLSv1.3"), f"the saved session was resumed: {second}"


def test_the_resumption_check_sees_a_resumption(gateway, tmp_path):
    """Control: HAProxy's defaults (tickets, session cache) do resume, and the check above says so."""
    proc, port = L.scratch_haproxy(tmp_path, gateway.pki, "tickets")
    try:
        first, second = L.resumption(port, gateway.pki, gateway.clients["chat-frontend"], tmp_path)
    finally:
        L.stop(proc)
    assert first.startswith("New, TLSv1.3") and second.startswith("Reused, TLSv1.3"), (first, second)


# --------------------------------------------------------------------------- bounds (measured)


def _silent_tcp(port: int, limit: float) -> float:
    with L.raw_connect(port, L.new_source()) as s:
        elapsed, got = L.until_closed(s, limit)
    assert got == b"", got
    return elapsed


def _silent_after_tls(pki: L.Pki, client: G.ClientCert, port: int, limit: float) -> tuple[float, bytes]:
    ctx = L.tls_client(pki, client)
    with L.raw_connect(port, L.new_source()) as raw, ctx.wrap_socket(raw, server_hostname=HOSTNAME) as s:
        return L.until_closed(s, limit)


def test_a_connection_that_never_starts_tls_is_closed_at_the_handshake_timeout(gateway):
    hs = _plan(gateway)["handshake_timeout_s"]
    elapsed = _silent_tcp(gateway.port, hs + 10)
    assert hs - 0.5 <= elapsed <= hs + 1.5, f"closed after {elapsed:.2f} s, handshake_timeout_s is {hs}"


def test_a_connection_that_never_sends_a_request_is_closed_at_the_handshake_timeout(gateway):
    hs = _plan(gateway)["handshake_timeout_s"]
    elapsed, got = _silent_after_tls(gateway.pki, gateway.clients["chat-frontend"], gateway.port, hs + 10)
    assert hs - 0.5 <= elapsed <= hs + 1.5, f"closed after {elapsed:.2f} s, handshake_timeout_s is {hs}"
    # HAProxy's HTTP parser answers this one itself, before any rule: its stock 408 (no HSTS; the
    # client has sent nothing to be answered with a policy).
    assert got.startswith(b"HTTP/1.1 408"), got
    # Worst case from the accept: a handshake finished just before its deadline, then T again.
    done, closed = _late_handshake_then_silent(gateway.pki, gateway.clients["chat-frontend"], gateway.port,
                                               hs - 0.6, 2 * hs + 10)
    assert hs - 0.6 <= done < hs and hs - 0.5 <= closed - done <= hs + 1.5, (done, closed)
    assert closed <= 2 * hs + 1.0, f"closed {closed:.2f} s after the accept, 2 x handshake_timeout_s is {2 * hs}"


def test_what_bounds_a_silent_connection_in_haproxy_26(gateway, tmp_path):
    """HAProxy 2.6 has no `timeout client-hs`. Measured: before TLS completes only `timeout client`
    applies (a fixed deadline from the accept: a ClientHello trickled a byte at a time does not
    extend it); after it, `timeout http-request` bounds the wait for the request. So the role sets
    both to handshake_timeout_s."""
    bad = tmp_path / "client-hs.cfg"
    bad.write_text("defaults\n    mode http\n    timeout client-hs 1s\n")
    assert subprocess.run(["haproxy", "-c", "-f", str(bad)], capture_output=True, check=False).returncode != 0
    client = gateway.clients["chat-frontend"]
    proc, port = L.scratch_haproxy(tmp_path, gateway.pki, "timers", client="3s", http_request="1s")
    try:
        pre_tls = _silent_tcp(port, 15)
        trickled = _trickled_client_hello(gateway.pki, client, port, 15)
        post_tls, _ = _silent_after_tls(gateway.pki, client, port, 15)
        late_done, late_closed = _late_handshake_then_silent(gateway.pki, client, port, 2.4, 15)
    finally:
        L.stop(proc)
    assert 2.5 <= pre_tls <= 4.0, f"no TLS: closed after {pre_tls:.2f} s (timeout client 3s, http-request 1s)"
    assert 2.5 <= trickled <= 4.0, f"trickled ClientHello: closed after {trickled:.2f} s (timeout client 3s)"
    assert 0.5 <= post_tls <= 2.0, f"TLS, no request: closed after {post_tls:.2f} s (timeout http-request 1s)"
    # A handshake finished just before its deadline gets the whole request timeout after it: from
    # the accept, the worst case is timeout client + timeout http-request.
    assert late_done < 3.0 and 0.5 <= late_closed - late_done <= 2.0, (late_done, late_closed)
    assert late_closed > 3.0, f"closed {late_closed:.2f} s after the accept"


def _late_handshake_then_silent(pki: L.Pki, client: G.ClientCert, port: int, delay: float,
                                limit: float) -> tuple[float, float]:
    """Connect, wait ``delay`` s, complete the TLS handshake, send nothing. Returns the seconds
    from the accept to the end of the handshake and to the server closing the connection."""
    ctx = L.tls_client(pki, client)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    with L.raw_connect(port, L.new_source()) as s:
        t0 = time.monotonic()
        time.sleep(delay)
        s.settimeout(5)
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                s.sendall(outgoing.read())
                data = s.recv(65536)
                assert data, "closed during the handshake"
                incoming.write(data)
        s.sendall(outgoing.read())  # the client's certificate and Finished
        done = time.monotonic() - t0
        L.until_closed(s, limit)
        return done, time.monotonic() - t0


def _trickled_client_hello(pki: L.Pki, client: G.ClientCert, port: int, limit: float) -> float:
    """Send a real ClientHello one byte every 0.4 s; seconds until the server closes."""
    ctx = L.tls_client(pki, client)
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=HOSTNAME)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    hello = outgoing.read()
    with L.raw_connect(port, L.new_source()) as s:
        t0 = time.monotonic()
        s.settimeout(0.4)
        for i in range(len(hello) - 1):
            if time.monotonic() - t0 > limit:
                break
            try:
                s.sendall(hello[i:i + 1])
                if s.recv(100) == b"":
                    break
            except TimeoutError:
                continue
            except OSError:
                break
        return time.monotonic() - t0


def test_a_slow_generation_outlives_the_handshake_timeout(gateway):
    """`timeout client` is not armed while the upstream works on the answer: a reply slower than
    handshake_timeout_s still arrives (timeout server, request_timeout_s, bounds that wait)."""
    hs = _plan(gateway)["handshake_timeout_s"]
    body = G.CHAT_BODY[:-1] + f', "llmcluster_delay_s": {hs + 1.5}}}'
    t0 = time.monotonic()
    res = gateway.curl(gateway.clients["chat-frontend"], data=body, timeout=hs + 20)
    assert res.status == 200, res.describe()
    assert time.monotonic() - t0 >= hs + 1.5


def test_per_source_concurrent_connection_cap(gateway):
    """Before TLS: the (N+1)th concurrent connection from one source is closed at once; the first
    N stay open; one closed makes room again; another source is not affected."""
    cap = _plan(gateway)["max_conn_per_source"]
    source = L.new_source()
    held = [L.raw_connect(gateway.port, source) for _ in range(cap)]
    try:
        time.sleep(0.2)
        with L.raw_connect(gateway.port, source) as extra:
            assert L.refused(extra), f"connection {cap + 1} from {source} was accepted"
        with L.raw_connect(gateway.port, L.new_source()) as other:
            assert not L.refused(other, 0.3), "another source was refused"
        for s in held:
            assert not L.refused(s, 0.05), "a connection under the cap was closed"
        held.pop().close()
        time.sleep(0.3)
        with L.raw_connect(gateway.port, source) as again:
            assert not L.refused(again, 0.3), "no room after a connection closed"
    finally:
        for s in held:
            s.close()


def test_per_source_connection_rate_cap(gateway):
    """Before TLS: more than max_conn_rate_per_source new connections in 10 s from one source are
    refused; another source is not affected."""
    rate = _plan(gateway)["max_conn_rate_per_source"]
    source = L.new_source()
    for i in range(rate):
        with L.raw_connect(gateway.port, source) as s:
            if i == rate - 1:
                assert not L.refused(s, 0.3), f"connection {i + 1} of {rate} was refused"
        time.sleep(0.05)  # closed before the next: the concurrency cap stays out of it
    with L.raw_connect(gateway.port, source) as s:
        assert L.refused(s), f"connection {rate + 1} within 10 s was accepted"
    with L.raw_connect(gateway.port, L.new_source()) as s:
        assert not L.refused(s, 0.3), "another source was refused"


def test_rate_limit_throttles_without_locking_out(gateway):
    """At twice the limit for 4 s a client gets about the limit served (refused requests do not
    count), 429s carry Retry-After, and it is served again as soon as it slows down."""
    rps, seconds = _plan(gateway)["rate_limit_rps"], 4
    ctx = L.tls_client(gateway.pki, gateway.clients["burst"])
    ctx.check_hostname = False  # connected by address; the chain is still verified
    conn = http.client.HTTPSConnection("127.0.0.1", gateway.port, context=ctx, source_address=(L.new_source(), 0),
                                       timeout=10)
    headers = {"Host": HOSTNAME, "Content-Type": "application/json"}
    statuses, retry_after = [], set()
    t0 = time.monotonic()
    for i in range(2 * rps * seconds):
        time.sleep(max(0.0, t0 + i / (2 * rps) - time.monotonic()))
        conn.request("POST", "/v1/chat/completions", body=G.CHAT_BODY, headers=headers)
        r = conn.getresponse()
        r.read()
        statuses.append(r.status)
        if r.status == 429:
            retry_after.add(r.getheader("Retry-After"))
    elapsed = time.monotonic() - t0
    served = statuses.count(200)
    assert set(statuses) <= {200, 429}, statuses
    assert rps * seconds * 0.75 <= served <= rps * (elapsed + 1) * 1.1, (served, elapsed, statuses)
    assert retry_after == {"1"}, retry_after
    time.sleep(1.5)
    conn.request("POST", "/v1/chat/completions", body=G.CHAT_BODY, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, f"locked out after slowing down: {r.status}"
    conn.close()


# --------------------------------------------------------------------------- revocation


def test_revoked_client_is_refused_after_a_reload_others_keep_working(gateway):
    """A CRL revoking one client's serial takes effect at the reload (master-worker, as
    `systemctl reload` does it); another client is served throughout: no request fails."""
    revokee, other = gateway.clients["revokee"], gateway.clients["chat-frontend"]
    assert gateway.curl(revokee).status == 200
    stop, results = threading.Event(), []

    def loop():  # under the per-client rate limit
        while not stop.is_set():
            t = time.monotonic()
            results.append((t, gateway.curl(other)))
            time.sleep(max(0.0, t + 1.5 / _plan(gateway)["rate_limit_rps"] - time.monotonic()))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        time.sleep(1.5)
        gateway.pki.write_crl(gateway.crl, (gateway.serials["revokee"],))
        reloaded = time.monotonic()
        gateway.reload()
        end = reloaded + 15
        while time.monotonic() < end:
            res = gateway.curl(revokee)
            if res.status == 0:
                break
            time.sleep(0.2)
        refused_at = time.monotonic()
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(30)
    assert not G.expect_rejected(res.raw, "revoked client"), res.describe()
    assert "certificate revoked" in res.raw.stderr or res.raw.rc in (35, 56), res.raw.stderr
    failed = [r.describe() for _, r in results if r.status != 200]
    assert not failed, failed
    before = [t for t, _ in results if t < reloaded]
    after = [t for t, _ in results if t > refused_at]
    assert len(before) >= 3 and len(after) >= 3, (len(before), len(after))
    assert any("Reloading HAProxy" in x or "reload" in x.lower() for x in gateway.log_lines()), "no reload logged"


def test_crl_requirements_of_haproxy(gateway, tmp_path):
    """The role's bind (`crl-file`, no error ignored) with the CRL file as `llmcluster pki revoke`
    writes it (the intermediate's CRL, then the root's) admits a valid client; OpenSSL wants a CRL
    for every CA of the chain, so the intermediate's CRL alone refuses every client (error 3,
    unable to get the root's CRL for the intermediate: "unknown ca"), and so does a CRL past its
    nextUpdate. The bind is the rendered one, only the CRL file differs."""
    client = gateway.clients["chat-frontend"]
    crls = {"as-exported": tmp_path / "crl.pem", "intermediate-only": tmp_path / "intermediate-only.pem",
            "expired": tmp_path / "expired.pem"}
    gateway.pki.write_crl(crls["as-exported"])
    gateway.pki.write_crl(crls["intermediate-only"], with_root_crl=False)
    gateway.pki.write_crl(crls["expired"], next_update_in=-dt.timedelta(hours=1), this_update_ago=dt.timedelta(hours=2))
    bind = next(line.strip() for line in gateway.rendered.splitlines() if line.strip().startswith("bind "))
    options = bind.split(f"crl-file {gateway.crl} ", 1)[1]
    assert "ignore-err" not in options, bind
    outcomes = {}
    for name, crl in crls.items():
        proc, port = L.scratch_haproxy(tmp_path, gateway.pki, name, bind=f"crl-file {crl} {options}")
        try:
            outcomes[name] = L.s_client(port, gateway.pki, client)
        finally:
            L.stop(proc)
    assert "HTTP/1.1 200" in outcomes["as-exported"], outcomes["as-exported"][-400:]
    assert ("HTTP/1.1 200" not in outcomes["intermediate-only"]
            and "unknown ca" in outcomes["intermediate-only"]), outcomes["intermediate-only"][-400:]
    assert ("HTTP/1.1 200" not in outcomes["expired"]
            and "certificate expired" in outcomes["expired"]), outcomes["expired"][-400:]


# --------------------------------------------------------------------------- upstreams


def test_upstream_down_is_taken_out_by_health_checks(gateway):
    client = gateway.clients["chat-frontend"]
    gateway.wait_ok(client)
    down = gateway.upstreams[0]
    down.proc.terminate()
    down.proc.wait(10)
    try:
        time.sleep(2 * 1 + 3 + 0.5)  # fall x interval + check timeout
        seen = []
        for _ in range(4):
            res = gateway.curl(client)
            assert res.status == 200, res.describe()
            seen.append(res.json()["llmcluster_upstream"])
        assert down.name not in seen, seen
    finally:
        L.start_standin(gateway.pki, gateway.dir, down, _plan(gateway)["upstream_client_cn"])
        L.wait_port(down.port)
        time.sleep(2 * 1 + 0.5)  # rise x interval: back in the pool


class _Answers503:
    """An upstream whose engine is not serving, as its TLS terminator answers then: the head's own
    certificate, the gateway's client certificate required, and 503 to every request (health
    checks included). Runs in a thread on the stopped upstream's port."""

    def __init__(self, gateway, u):
        leaf = gateway.pki.leaf(u.cert)
        cert = L.bundle(gateway.dir / f"answers503-{u.name}.pem", Path(leaf.cert), gateway.pki.dir / "ca-chain.pem")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(str(cert), leaf.key)
        self.ctx.load_verify_locations(str(gateway.pki.dir / "ca-chain.pem"))
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sock = socket.create_server(("127.0.0.1", u.port))
        self.sock.settimeout(0.2)
        self.requests = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._one, args=(raw,), daemon=True).start()

    def _one(self, raw) -> None:
        try:
            raw.settimeout(5)
            with self.ctx.wrap_socket(raw, server_side=True) as c:
                buf = b""
                while True:  # keep-alive: answer each request head (and its body) with a 503
                    while b"\r\n\r\n" not in buf:
                        chunk = c.recv(65536)
                        if not chunk:
                            return
                        buf += chunk
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = next((int(h.split(b":", 1)[1]) for h in head.split(b"\r\n")
                                   if h.lower().startswith(b"content-length:")), 0)
                    while len(buf) < length:
                        buf += c.recv(65536)
                    buf = buf[length:]
                    if not head.startswith(b"GET /health"):
                        self.requests += 1
                    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                              b"content-length: 2\r\n\r\n{}")
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


def test_a_503_from_a_stopped_engine_is_retried_on_another_upstream(gateway):
    """In the seconds before the health checks mark an upstream down, its terminator answers 503
    (the engine behind it stopped): the gateway retries the request on another upstream (L7 retry:
    nothing was processed) instead of handing the client the 503."""
    client = gateway.clients["chat-frontend"]
    gateway.wait_ok(client)
    down = gateway.upstreams[0]
    down.proc.terminate()
    down.proc.wait(10)
    fake = _Answers503(gateway, down)
    try:
        seen = []
        for _ in range(6):  # at once: before two failed checks (fall 2) can have marked it down
            time.sleep(0.25)  # under the per-client rate limit (5/s)
            res = gateway.curl(client)
            assert res.status == 200, res.describe()
            seen.append(res.json()["llmcluster_upstream"])
        assert down.name not in seen, seen
        assert fake.requests >= 1, "no request reached the upstream answering 503: the test proved nothing"
    finally:
        fake.close()
        L.start_standin(gateway.pki, gateway.dir, down, _plan(gateway)["upstream_client_cn"])
        L.wait_port(down.port)
        time.sleep(2 * 1 + 0.5)  # rise x interval: back in the pool


def test_lab_standin_requires_the_gateway_client_certificate(gateway):
    """The hop is mTLS: the (stand-in) upstream refuses a client without the gateway's certificate,
    or with another certificate of the same CA."""
    u = gateway.upstreams[1]
    pki = gateway.pki

    def fetch(client: G.ClientCert | None) -> int:
        ctx = ssl.create_default_context(cafile=str(pki.dir / "root-ca.pem"))
        if client is not None:
            ctx.load_cert_chain(client.cert, client.key)
        try:
            with socket.create_connection(("127.0.0.1", u.port), timeout=5) as raw, \
                    ctx.wrap_socket(raw, server_hostname=u.fqdn) as s:
                s.sendall(f"GET /health HTTP/1.1\r\nHost: {u.fqdn}\r\nConnection: close\r\n\r\n".encode())
                r = http.client.HTTPResponse(s)
                r.begin()
                return r.status
        except (ssl.SSLError, OSError):
            return 0

    assert fetch(pki.leaf("gateway-upstream")) == 200
    assert fetch(None) == 0
    assert fetch(pki.leaf("admin")) == 0


def test_lab_standin_plain_mode_still_answers(tmp_path):
    """Without the TLS flags the stand-in speaks plain HTTP, as the verification suite starts it
    (``python3 -c <script> ADDRESS PORT NAME PIDFILE``, detached with a pid file)."""
    port, pidfile = L.free_port(), tmp_path / "standin.pid"
    r = subprocess.run([sys.executable, "-c", L.STANDIN.read_text(), "127.0.0.1", str(port), "plain-1", str(pidfile)],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    try:
        L.wait_port(port)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("POST", "/v1/chat/completions", body=G.CHAT_BODY, headers={"Content-Type": "application/json"})
        r2 = conn.getresponse()
        assert r2.status == 200 and b'"llmcluster_upstream": "plain-1"' in r2.read()
        conn.close()
    finally:
        for _ in range(50):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            time.sleep(0.1)
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_an_upstream_with_another_hosts_certificate_is_kept_out(pki, tmp_path):
    """verifyhost: an upstream answering with a certificate of the cluster CA that is not its own
    (here the storage node's) fails its health checks and never serves a request."""
    ups = [L.Upstream("gpu-01", L.free_port(), f"gpu-01.{pki.domain}", "host-gpu-01"),
           L.Upstream("gpu-02", L.free_port(), f"gpu-02.{pki.domain}", "host-storage-01")]
    gw = L.start_gateway(tmp_path, pki, ups)
    try:
        line = gw.log_for("Server inference/gpu-02 is DOWN", timeout=10)
        assert "SSL certificate different from the expected one" in line, line
        seen = set()
        for _ in range(4):
            res = gw.curl(gw.clients["chat-frontend"])
            assert res.status == 200, res.describe()
            seen.add(res.json()["llmcluster_upstream"])
        assert seen == {"gpu-01"}, seen
    finally:
        gw.stop()


# --------------------------------------------------------------------------- PKI export


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
