"""LAB STAND-IN for trtllm-serve (a simulation, never deployed by the production roles).

Where a lab serving node runs no trtllm-serve unit (a namespace host without systemd), the
verification suite starts this script there instead, where trtllm-serve would listen: 127.0.0.1
at ``serving.backend_port``, behind the node's TLS terminator (the ``serving_tls`` role's HAProxy
configuration, which the suite then starts by hand). Local tests run it on 127.0.0.1 behind the
rendered gateway and terminator configurations. It answers deterministically:

* ``GET /health`` -> 200 (the gateway's active health check, the path trtllm-serve answers);
* ``POST /v1/chat/completions`` / ``/v1/completions`` -> 200, an OpenAI-shaped JSON body whose
  ``model`` names the stand-in and whose ``llmcluster_upstream`` names the node that answered;
* anything else -> 404.

It uses the standard library only (lab hosts have python3 and nothing else). Run as
``python3 upstream_standin.py ADDRESS PORT NAME [PIDFILE]``; with a pid file it detaches
(double fork) and writes its pid there, so the suite can stop it with ``kill``.
"""

from __future__ import annotations

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STANDIN_MODEL = "llmcluster-lab-standin"


def make_handler(name: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "llmcluster-lab-standin"

        def log_message(self, fmt, *args):  # quiet: the gateway logs requests
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._send(200, b"ok\n", "text/plain")
            else:
                self._send(404, b'{"error": "not found"}\n')

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path not in ("/v1/chat/completions", "/v1/completions"):
                self._send(404, b'{"error": "not found"}\n')
                return
            try:
                req = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b'{"error": "invalid JSON"}\n')
                return
            body = {
                "id": "standin-0", "object": "chat.completion", "model": STANDIN_MODEL,
                "llmcluster_upstream": name, "client_dn": self.headers.get("X-Client-DN", ""),
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": f"stand-in reply to {len(raw)} bytes"}}],
                "usage": {"prompt_tokens": len(json.dumps(req.get("messages", ""))) // 4, "completion_tokens": 4},
            }
            self._send(200, (json.dumps(body) + "\n").encode())

    return Handler


def serve(address: str, port: int, name: str) -> None:
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer((address, port), make_handler(name)).serve_forever()


def main(argv: list[str]) -> int:
    address, port, name = argv[0], int(argv[1]), argv[2]
    pidfile = argv[3] if len(argv) > 3 else None
    if pidfile is None:
        serve(address, port, name)
        return 0
    server = ThreadingHTTPServer((address, port), make_handler(name))  # bind before detaching: errors show
    if os.fork():
        return 0
    os.setsid()
    if os.fork():
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    with open(pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
