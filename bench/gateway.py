#!/usr/bin/env python3
"""Benchmark: what the API gateway (the gateway role's real HAProxy configuration, mTLS) costs,
against the same upstream reached directly -- all in one run, so the ratios are comparable.

Setup (as tests/roles/test_gateway_access_local.py runs the gateway on loopback): the lab stack's
PKI exported offline (real keys), the role's haproxy.cfg rendered by Ansible with its production
security settings (TLS 1.3 only, client certificates checked against the CRL, no session
resumption, per-source connection caps, per-client rate limit, path allow-list, timeouts), HAProxy
2.6 in master-worker mode on 127.0.0.1, and one upstream: a trivial local server (this script's
``--upstream`` mode, a separate process) speaking TLS with a GPU node's host certificate and
requiring the gateway-upstream client certificate, as a node's TLS terminator does. It answers
``/health``, ``/v1/models`` and ``/v1/chat/completions`` -- a small JSON answer, or with
``"stream": true`` an SSE stream of ``max_tokens`` chunks ``--token-ms`` apart.

Measured paths, each with the same client code (Python threads, ``http.client``):

* ``direct``: the client presents the gateway-upstream certificate to the upstream (one TLS hop);
* ``gateway``: the client presents a named client certificate (``chat-frontend``) to the gateway,
  which checks it, applies the access policy and forwards over its own mTLS connection.

Scenarios: closed-loop requests/s and latency p50/p99 at ``--concurrency`` with connection reuse
(keep-alive) and without (a new TCP + TLS 1.3 handshake per request: each connection from its own
loopback source address, since the gateway caps new connections per source); the added latency
at concurrency 1 (gateway p50/p99 minus direct); and streaming: TTFT and the largest gap between
two chunks through the gateway vs direct (SSE must pass unbuffered: TTFT stays near the upstream's
first-token time, and chunks arrive ``--token-ms`` apart, not at the end).

The per-client rate limit is set to 100000/s for the run (a plan input, not a template setting;
the bench measures capacity, not throttling); every other setting is the plan's/role's default.

    python bench/gateway.py [--seconds 4] [--concurrency 8] [--tokens 64] [--token-ms 5]
                            [--workdir DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import os
import platform
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOSTNAME = "api.lab.llmcluster.internal"
MODEL = "deepseek-r1"
CLIENT = "chat-frontend"


# --------------------------------------------------------------------------- the trivial upstream


def serve_upstream(port: int, cert: str, key: str, client_ca: str, token_ms: float) -> None:
    """TLS server requiring a client certificate from ``client_ca`` (the GPU node terminator's role)."""

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def setup(self):
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _json(self, obj, status=200):
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._json({"status": "ok"})
            elif self.path == "/v1/models":
                self._json({"object": "list", "data": [{"id": MODEL}]})
            else:
                self._json({"error": "not found"}, 404)

        def do_POST(self):
            req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            n = int(req.get("max_tokens", 4))
            if not req.get("stream"):
                self._json({"object": "chat.completion", "model": MODEL,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                         "finish_reason": "stop"}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()

            def chunk(text: str) -> None:
                data = f"data: {text}\n\n".encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            for i in range(n):
                time.sleep(token_ms / 1000)
                chunk(json.dumps({"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}))
            chunk(json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": n}}))
            chunk("[DONE]")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(client_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    class Quiet(ThreadingHTTPServer):
        def handle_error(self, request, client_address):  # health checks close without a TLS close_notify
            pass

    srv = Quiet(("127.0.0.1", port), H)
    srv.daemon_threads = True
    srv.request_queue_size = 512
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.serve_forever()


# --------------------------------------------------------------------------- client


_SOURCES = (f"127.0.{b}.{c}" for b in itertools.cycle(range(100, 250)) for c in range(1, 255))
_SRC_LOCK = threading.Lock()


def next_source() -> str:
    with _SRC_LOCK:
        return next(_SOURCES)


class Target:
    def __init__(self, name: str, port: int, sni: str, cacert: str, cert: str, key: str):
        self.name, self.port, self.sni = name, port, sni
        self.ctx = ssl.create_default_context(cafile=cacert)
        self.ctx.load_cert_chain(cert, key)

    def connect(self, source: str | None = None) -> http.client.HTTPSConnection:
        conn = http.client.HTTPSConnection(self.sni, self.port, timeout=30, context=self.ctx)

        def _connect() -> None:
            sock = socket.create_connection(("127.0.0.1", self.port), 30,
                                            source_address=(source, 0) if source else None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.sock = self.ctx.wrap_socket(sock, server_hostname=self.sni)

        conn.connect = _connect  # type: ignore[method-assign]
        return conn


BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 4}).encode()


def _request(conn: http.client.HTTPSConnection, body: bytes, reuse: bool) -> int:
    headers = {"Content-Type": "application/json", "Host": HOSTNAME}
    if not reuse:
        headers["Connection"] = "close"
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp.status


def closed_loop(t: Target, concurrency: int, seconds: float, reuse: bool) -> dict:
    lat: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    end = time.perf_counter() + seconds

    def worker() -> None:
        source = next_source()
        conn = t.connect(source) if reuse else None
        while time.perf_counter() < end:
            c = conn if reuse else t.connect(next_source())
            t0 = time.perf_counter()
            try:
                status = _request(c, BODY, reuse)
                dt_ = time.perf_counter() - t0
                with lock:
                    if status == 200:
                        lat.append(dt_)
                    else:
                        errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[exc.__class__.__name__] = errors.get(exc.__class__.__name__, 0) + 1
                c.close()
                if reuse:
                    conn = c = t.connect(source)
            if not reuse:
                c.close()
        if conn is not None:
            conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    lat.sort()
    from llmcluster.bench_serve import percentile

    return {"requests": len(lat), "errors": errors, "wall_s": round(wall, 3), "rps": round(len(lat) / wall, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None}


def streaming(t: Target, n: int, tokens: int) -> dict:
    """n sequential streams: TTFT and the largest gap between chunks (reused connection)."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "ping"}], "max_tokens": tokens,
                       "stream": True}).encode()
    conn = t.connect(next_source())
    ttfts, gaps, totals = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json",
                                                                          "Host": HOSTNAME})
        resp = conn.getresponse()
        assert resp.status == 200, resp.status
        stamps = []
        while True:
            line = resp.readline()
            if not line:
                break
            if line.startswith(b"data:") and b'"content"' in line:
                stamps.append(time.perf_counter())
            if line.strip() == b"data: [DONE]":
                break
        resp.read()
        totals.append(time.perf_counter() - t0)
        ttfts.append(stamps[0] - t0)
        gaps.append(max(b - a for a, b in itertools.pairwise(stamps)))
    conn.close()
    from llmcluster.bench_serve import percentile

    ttfts.sort()
    gaps.sort()
    return {"streams": n, "tokens": tokens, "ttft_p50_ms": round(percentile(ttfts, 50) * 1000, 2),
            "ttft_p99_ms": round(percentile(ttfts, 99) * 1000, 2),
            "max_gap_p50_ms": round(percentile(gaps, 50) * 1000, 2),
            "max_gap_max_ms": round(gaps[-1] * 1000, 2),
            "total_p50_ms": round(percentile(sorted(totals), 50) * 1000, 2)}


# --------------------------------------------------------------------------- setup and run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--token-ms", type=float, default=5.0)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--workdir")
    ap.add_argument("--out", help="write the JSON results here")
    ap.add_argument("--serve", type=int, default=0, metavar="N",
                    help="also run `llmcluster bench serve`'s harness through the gateway: N streamed requests "
                         "(closed loop at --concurrency, ISL normal:256:64, OSL uniform:16:64), printed as its table")
    ap.add_argument("--only-serve", action="store_true", help="with --serve: skip the other scenarios")
    ap.add_argument("--upstream", nargs=5, metavar=("PORT", "CERT", "KEY", "CLIENT_CA", "TOKEN_MS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.upstream:
        port, cert, key, ca, token_ms = args.upstream
        serve_upstream(int(port), cert, key, ca, float(token_ms))
        return 0

    from tests.helpers import gateway_local as GL
    from tests.helpers.role_local import bundle, free_port, wait_port

    work = Path(args.workdir or tempfile.mkdtemp(prefix="llmcluster-bench-gw-"))
    work.mkdir(parents=True, exist_ok=True)
    t_setup = time.perf_counter()
    pki = GL.lab_pki(work)
    procs: list[subprocess.Popen] = []

    def start_upstream(pki_, d, u, client_cn):  # replaces the helper's stand-in: this one streams
        leaf = pki_.leaf(u.cert)
        cert = bundle(d / f"bench-{u.name}.pem", Path(leaf.cert), pki_.dir / "ca-chain.pem")
        u.proc = subprocess.Popen([sys.executable, __file__, "--upstream", str(u.port), str(cert), leaf.key,
                                   str(pki_.dir / "ca-chain.pem"), str(args.token_ms)])
        procs.append(u.proc)
        return u.proc

    GL.start_standin = start_upstream
    up = GL.Upstream("gpu-01", free_port(), f"gpu-01.{pki.domain}", "host-gpu-01")
    gw = GL.start_gateway(work, pki, [up], rate_limit_rps=100000, max_conn_per_source=64,
                          max_conn_rate_per_source=200, handshake_timeout_s=10, idle_timeout_s=60,
                          max_body_bytes=65536)
    try:
        wait_port(up.port)
        setup_s = time.perf_counter() - t_setup
        cacert = str(pki.dir / "root-ca.pem")
        upstream_client = pki.leaf("gateway-upstream")
        direct = Target("direct", up.port, up.fqdn, cacert, upstream_client.cert, upstream_client.key)
        client = gw.clients[CLIENT]
        via = Target("gateway", gw.port, HOSTNAME, cacert, client.cert, client.key)
        results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_before": os.getloadavg(),
                                     "python": platform.python_version(),
                                     "haproxy": subprocess.run(["haproxy", "-v"], capture_output=True, text=True,
                                                               check=False).stdout.splitlines()[0]},
                         "setup_s": round(setup_s, 1), "params": vars(args) | {"upstream": None}}
        if args.serve:
            from llmcluster import bench_serve as BS

            ep = BS.endpoint_from_url(f"https://{HOSTNAME}:{gw.port}", connect="127.0.0.1", cacert=cacert,
                                      cert=client.cert, key=client.key)
            cfg = BS.Config(model=MODEL, isl=BS.Dist.parse("normal:256:64", "--isl"),
                            osl=BS.Dist.parse("uniform:16:64", "--osl"), mode="closed",
                            concurrency=args.concurrency, requests=args.serve, warmup=2)
            rep = BS.run(ep, cfg)
            results["serve"] = rep.summary()
            width = max(len(k) for k, _ in BS.table_rows(rep))
            for k, v in BS.table_rows(rep):
                print(f"| {k:<{width}} | {v} |")
            if args.only_serve:
                args.out and Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
                return 0
        for t in (direct, via):  # warm up both paths
            closed_loop(t, 2, 0.5, True)
        for reuse in (True, False):
            key = "reuse" if reuse else "no_reuse"
            for t in (direct, via):
                results.setdefault(key, {})[t.name] = closed_loop(t, args.concurrency, args.seconds, reuse)
                print(key, t.name, results[key][t.name], flush=True)
        for t in (direct, via):
            results.setdefault("sequential", {})[t.name] = closed_loop(t, 1, args.seconds, True)
            print("sequential", t.name, results["sequential"][t.name], flush=True)
        for t in (direct, via):
            results.setdefault("streaming", {})[t.name] = streaming(t, args.streams, args.tokens)
            print("streaming", t.name, results["streaming"][t.name], flush=True)
        results["loadavg_after"] = os.getloadavg()
        r = results
        results["ratios"] = {
            "rps_gateway_over_direct_reuse": round(r["reuse"]["gateway"]["rps"] / r["reuse"]["direct"]["rps"], 3),
            "rps_gateway_over_direct_no_reuse": round(r["no_reuse"]["gateway"]["rps"]
                                                      / r["no_reuse"]["direct"]["rps"], 3),
            "added_p50_ms_sequential": round(r["sequential"]["gateway"]["p50_ms"]
                                             - r["sequential"]["direct"]["p50_ms"], 3),
            "added_p99_ms_sequential": round(r["sequential"]["gateway"]["p99_ms"]
                                             - r["sequential"]["direct"]["p99_ms"], 3),
            "added_ttft_p50_ms": round(r["streaming"]["gateway"]["ttft_p50_ms"]
                                       - r["streaming"]["direct"]["ttft_p50_ms"], 2),
        }
        print(json.dumps(results["ratios"], indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2, default=str) + "\n")
    finally:
        gw.stop()
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=10)
        if args.workdir is None:  # the temporary folder this run made (lab PKI keys included)
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
