"""LAB STAND-IN for trtllm-serve (a simulation, never deployed by the production roles).

Where a lab serving node runs no trtllm-serve unit (a namespace host without systemd), the
verification suite starts this script there instead, where trtllm-serve would listen: 127.0.0.1
at ``serving.backend_port``, behind the node's TLS terminator (the ``serving_tls`` role's HAProxy
configuration, which the suite then starts by hand). Local tests run it on 127.0.0.1 behind the
rendered gateway and terminator configurations. It answers deterministically:

* ``GET /health`` -> 200 (the gateway's active health check, the path trtllm-serve answers);
* ``GET /v1/models`` -> 200, the one model it "serves";
* ``GET /metrics`` and ``GET /version`` -> 200 (trtllm-serve answers these too: a gateway that
  let them through would show it);
* ``POST /v1/chat/completions`` / ``/v1/completions`` -> 200, an OpenAI-shaped JSON body whose
  ``model`` names the stand-in and whose ``llmcluster_upstream`` names the node that answered
  (a body field ``llmcluster_delay_s``, at most 30, delays the answer: a slow generation);
* anything else -> 404.

Plain HTTP by default. With ``--tls-cert/--tls-key`` it speaks TLS the way a GPU node's TLS
terminator does: it serves that (host) certificate and, with ``--tls-client-ca``, requires a
client certificate from that CA (with ``--tls-client-cn``, that CN only: the gateway's).

It uses the standard library only (lab hosts have python3 and nothing else). Run as
``python3 upstream_standin.py ADDRESS PORT NAME [PIDFILE] [--tls-cert F --tls-key F
[--tls-client-ca F [--tls-client-cn CN]]]``; with a pid file it detaches (double fork) and
writes its pid there, so the suite can stop it with ``kill``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import ssl
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STANDIN_MODEL = "llmcluster-lab-standin"
#: How long a TLS client may take for its handshake.
HANDSHAKE_TIMEOUT_S = 10


def make_handler(name: str, client_cn: str | None = None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llmcluster-lab-standin"

        def setup(self):
            if isinstance(self.request, ssl.SSLSocket):
                self.request.settimeout(HANDSHAKE_TIMEOUT_S)
                self.request.do_handshake()
                if client_cn is not None:
                    subject = dict(x[0] for x in (self.request.getpeercert() or {}).get("subject", ()))
                    if subject.get("commonName") != client_cn:
                        raise ConnectionAbortedError(f"client CN {subject.get('commonName')!r} is not {client_cn!r}")
                self.request.settimeout(None)
            super().setup()

        def log_message(self, fmt, *args):  # quiet: the gateway logs requests
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Powered-By", "llmcluster-lab-standin")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200, b"ok\n", "text/plain")
            elif path == "/v1/models":
                body = {"object": "list", "data": [{"id": STANDIN_MODEL, "object": "model", "owned_by": name}],
                        "llmcluster_upstream": name}
                self._send(200, (json.dumps(body) + "\n").encode())
            elif path == "/metrics":
                self._send(200, b"# lab stand-in\nllmcluster_standin_up 1\n", "text/plain")
            elif path == "/version":
                self._send(200, (json.dumps({"version": "lab-standin", "llmcluster_upstream": name}) + "\n").encode())
            else:
                self._send(404, b'{"error": "not found"}\n')

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.split("?", 1)[0] not in ("/v1/chat/completions", "/v1/completions"):
                self._send(404, b'{"error": "not found"}\n')
                return
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b'{"error": "invalid JSON"}\n')
                return
            delay = req.get("llmcluster_delay_s") if isinstance(req, dict) else None
            if isinstance(delay, (int, float)) and 0 < delay <= 30:
                time.sleep(delay)
            body = {
                "id": "standin-0", "object": "chat.completion", "model": STANDIN_MODEL,
                "llmcluster_upstream": name, "client_dn": self.headers.get("X-Client-DN", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"stand-in reply to {len(raw)} bytes"}}],
                "usage": {"prompt_tokens": len(json.dumps(req.get("messages", ""))) // 4, "completion_tokens": 4},
            }
            self._send(200, (json.dumps(body) + "\n").encode())

    return Handler


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address, handler, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        if self.tls is None:
            return sock, addr
        # The handshake runs in the request's thread (Handler.setup), never in the accept loop.
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request, client_address):  # refused handshakes are expected: stay quiet
        if not isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)):
            super().handle_error(request, client_address)


def tls_context(cert: str, key: str, client_ca: str | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def make_server(address: str, port: int, name: str, tls: ssl.SSLContext | None = None,
                client_cn: str | None = None) -> ThreadingHTTPServer:
    return _Server((address, port), make_handler(name, client_cn), tls)


def serve(address: str, port: int, name: str, tls: ssl.SSLContext | None = None, client_cn: str | None = None) -> None:
    make_server(address, port, name, tls, client_cn).serve_forever()


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="LAB STAND-IN for trtllm-serve (plain HTTP, or TLS like a GPU node's "
                                            "terminator)")
    p.add_argument("address")
    p.add_argument("port", type=int)
    p.add_argument("name")
    p.add_argument("pidfile", nargs="?")
    p.add_argument("--tls-cert", help="serve TLS with this certificate (PEM, with its chain)")
    p.add_argument("--tls-key", help="its private key")
    p.add_argument("--tls-client-ca", help="require a client certificate from this CA")
    p.add_argument("--tls-client-cn", help="require this client certificate CN (the gateway's)")
    a = p.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if (a.tls_client_ca or a.tls_client_cn) and not a.tls_cert:
        p.error("--tls-client-ca/--tls-client-cn need --tls-cert")
    if a.tls_client_cn and not a.tls_client_ca:
        p.error("--tls-client-cn needs --tls-client-ca")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    tls = tls_context(a.tls_cert, a.tls_key, a.tls_client_ca) if a.tls_cert else None
    server = make_server(a.address, a.port, a.name, tls, a.tls_client_cn)  # bind before detaching: errors show
    if a.pidfile is None:
        server.serve_forever()
        return 0
    if os.fork():
        return 0
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(a.pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
