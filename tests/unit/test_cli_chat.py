"""``llmcluster chat`` against a loopback mTLS server started here: a real TLS 1.3 handshake with the
lab stack's PKI (exported offline, real keys), the gateway's certificate on the server, the client's
certificate required; the answer streamed as SSE. Then the failures a user meets: no export, the
gateway unreachable, TLS refused (a client of another CA), an HTTP error: one keyed line, no traceback."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmcluster.cli import main
from tests.helpers.role_local import export_lab_pki

PIECES = ["The", " lab", " answers", "."]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        peer = dict(x[0] for x in self.connection.getpeercert()["subject"])
        self.server.seen.append({"path": self.path, "host": self.headers["Host"], "body": req,
                                 "client_cn": peer.get("commonName")})
        if req["model"] != "deepseek-r1":
            body = b'{"error": "model not admitted"}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        time.sleep(0.02)
        for piece in PIECES:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        usage = {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(PIECES)}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()
        self.close_connection = True


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, ctx: ssl.SSLContext):
        self.ctx, self.seen = ctx, []
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True), addr

    def handle_error(self, request, client_address):  # refused handshakes are what some tests want
        pass


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    return export_lab_pki(tmp_path_factory.mktemp("chat"))[2]


@pytest.fixture(scope="module")
def gateway(pki):
    """A loopback mTLS server with the lab gateway's certificate, requiring a client of the lab CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki / "certs" / "gateway-api.pem", pki / "private" / "gateway-api.key")
    ctx.load_verify_locations(pki / "ca-chain.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = _TlsServer(ctx)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def lab_stacks(directory: Path, port: int) -> Path:
    """The lab stack with its gateway (and the api flow to it) on ``port``: a loopback server here."""
    from tests.conftest import STACKS

    text = (STACKS / "Pulumi.lab.yaml").read_text()
    assert text.count("ports: [tcp/443], vlan: inference") == 1 and text.count("port: 443\n") == 1
    text = text.replace("ports: [tcp/443], vlan: inference", f"ports: [tcp/{port}], vlan: inference")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Pulumi.lab.yaml").write_text(text.replace("port: 443\n", f"port: {port}\n"))
    return directory


@pytest.fixture(scope="module")
def stacks(gateway, tmp_path_factory) -> str:
    return str(lab_stacks(tmp_path_factory.mktemp("stacks"), gateway.server_address[1]))


def _chat(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["chat", "--stack", "lab", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_chat_streams_the_answer_through_mtls_and_prints_latency(stacks, gateway, pki, capsys):
    port = gateway.server_address[1]
    rc, out, err = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                         "--cert-dir", str(pki), "Say hello")
    assert rc == 0, err
    assert out == "".join(PIECES) + "\n"
    seen = gateway.seen[-1]
    # the plan's facts: the path, the model, the gateway's hostname as Host (and SNI: the certificate verified)
    assert seen["path"] == "/v1/chat/completions" and seen["body"]["model"] == "deepseek-r1"
    assert seen["body"]["stream"] is True and seen["body"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert seen["host"] == f"api.lab.llmcluster.internal:{port}"
    # the identity: the first API client the lab's policies admit to chat (AccessPlan.caller_of)
    assert seen["client_cn"] == "lab-analyst.clients.lab.llmcluster.internal"
    assert "TTFT " in err and " ms, total " in err and "4 token(s)" in err and "as client-lab-analyst" in err


def test_chat_with_another_client_and_model(stacks, gateway, pki, capsys):
    port = gateway.server_address[1]
    rc, out, err = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                         "--cert-dir", str(pki), "--client", "admin", "--model", "other", "hi")
    assert rc == 2
    assert gateway.seen[-1]["client_cn"].startswith("admin")
    assert err.startswith(f"serving.gateway: https://api.lab.llmcluster.internal:{port} (connecting to 127.0.0.1:"
                          f"{port}): HTTP 403 (this client is not admitted")


def test_chat_lab_export_is_the_default_cert_dir(stacks, gateway, pki, tmp_path, capsys):
    (tmp_path / "pki").symlink_to(pki)
    rc, out, _ = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                       "--state-dir", str(tmp_path), "hi")
    assert rc == 0 and out.startswith("The lab")


def test_chat_without_an_export_is_one_keyed_line(tmp_path, capsys):
    rc, out, err = _chat(capsys, "--state-dir", str(tmp_path), "hi")
    assert rc == 2 and out == ""
    assert err == (f"--cert-dir: no PKI export given, and no lab of stack lab in {tmp_path}: give the "
                   "`llmcluster pki export` folder\n")
    rc, _, err = _chat(capsys, "--cert-dir", str(tmp_path / "nope"), "hi")
    assert rc == 2 and err == f"--cert-dir: {tmp_path / 'nope'}: no such folder (run `llmcluster pki export`)\n"
    rc, _, err = _chat(capsys, "--cert-dir", str(tmp_path), "--client", "nobody", "hi")
    assert rc == 2 and err.startswith(f"--cert-dir: {tmp_path / 'root-ca.pem'} is missing")


def test_chat_gateway_unreachable(pki, tmp_path, capsys):
    port = _free_port()
    stacks = str(lab_stacks(tmp_path, port))
    rc, _, err = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                       "--cert-dir", str(pki), "hi")
    assert rc == 2
    assert err.startswith(f"serving.gateway: https://api.lab.llmcluster.internal:{port} (connecting to "
                          f"127.0.0.1:{port}): connection refused"), err
    assert len(err.splitlines()) == 1


def test_chat_tls_refused_for_a_client_of_another_ca(stacks, gateway, pki, tmp_path, capsys):
    """A client certificate the gateway does not trust: the handshake is refused; and a server the
    client does not trust (another root): the certificate does not verify."""
    from llmcluster.verify.gateway import other_ca_client

    other = other_ca_client(tmp_path)
    d = tmp_path / "export"
    (d / "certs").mkdir(parents=True)
    (d / "private").mkdir()
    (d / "root-ca.pem").write_text((pki / "root-ca.pem").read_text())
    (d / "certs" / "intruder.pem").write_text(Path(other.cert).read_text())
    (d / "private" / "intruder.key").write_text(Path(other.key).read_text())
    port = gateway.server_address[1]
    rc, out, err = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                         "--cert-dir", str(d), "--client", "intruder", "hi")
    assert rc == 2 and out == ""
    assert err.startswith(f"serving.gateway: https://api.lab.llmcluster.internal:{port}"), err
    assert "TLS refused" in err or "closed the connection" in err, err
    assert len(err.splitlines()) == 1

    (d / "root-ca.pem").write_text(Path(other.cert).read_text())  # not the gateway's root
    rc, _, err = _chat(capsys, "--stacks-dir", stacks, "--connect", "127.0.0.1",
                       "--cert-dir", str(d), "--client", "intruder", "hi")
    assert rc == 2 and "the gateway's certificate does not verify" in err, err
