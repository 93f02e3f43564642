"""``llmcluster bench serve`` (llmcluster.bench_serve) against a tiny streaming OpenAI stand-in on
127.0.0.1, over plain HTTP and over mTLS (a CA, server and client certificates made here)."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from llmcluster import bench_serve as B
from llmcluster.cli import main

TOKEN_DELAY_S = 0.002
FIRST_TOKEN_DELAY_S = 0.02


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):  # quiet
        pass

    def setup(self):
        super().setup()
        # as real servers do: no Nagle delay between the small SSE writes
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.lock:
            self.server.conns += 1

    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "standin-model", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        srv = self.server
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.count += 1
            n = srv.count
            srv.seen.append(req)
        if srv.fail_every and n % srv.fail_every == 0:
            body = b'{"error": "injected"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(obj):
            data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        time.sleep(FIRST_TOKEN_DELAY_S)
        prompt_tokens = len(req["messages"][0]["content"].split())
        for i in range(req["max_tokens"]):
            if i:
                time.sleep(TOKEN_DELAY_S)
            chunk({"choices": [{"index": 0, "delta": {"content": f"t{i} "}}]})
        chunk({"choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": req["max_tokens"]}})
        chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def _server(ctx: ssl.SSLContext | None = None, fail_every: int = 0):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.lock, srv.count, srv.seen, srv.fail_every, srv.conns = threading.Lock(), 0, [], fail_every, 0
    if ctx is not None:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def plain():
    srv = _server()
    yield srv
    srv.shutdown()


def _cert(subject_cn, issuer_key, issuer_name, key, *, ca=False, server=False):
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("api.test.internal")]), critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A `llmcluster pki export`-shaped folder: root-ca.pem, certs/<name>.pem, private/<name>.key."""
    d = tmp_path_factory.mktemp("pki")
    (d / "certs").mkdir()
    (d / "private").mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("test root", ca_key, None, ca_key, ca=True)
    (d / "root-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name, server in (("server", True), ("admin", False)):
        k = ec.generate_private_key(ec.SECP256R1())
        c = _cert(f"{name}.test.internal", ca_key, ca.subject, k, server=server)
        (d / "certs" / f"{name}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (d / "private" / f"{name}.key").write_bytes(k.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return d


@pytest.fixture
def mtls(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(pki / "certs" / "server.pem", pki / "private" / "server.key")
    ctx.load_verify_locations(pki / "root-ca.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    srv = _server(ctx)
    yield srv
    srv.shutdown()


def _url(srv, scheme="http"):
    return f"{scheme}://127.0.0.1:{srv.server_address[1]}"


def test_closed_loop_measures_every_request(plain) -> None:
    ep = B.endpoint_from_url(_url(plain) + "/v1")
    cfg = B.Config(model="m", isl=B.Dist.parse("uniform:8:16", "--isl"), osl=B.Dist.parse("20", "--osl"),
                   mode="closed", concurrency=4, requests=24, warmup=1, seed=7)
    rep = B.run(ep, cfg, roofline={"model": "m", "gpu": "g", "precision": "p", "replicas": 1,
                                   "concurrency_per_replica": 4, "decode_tokens_per_s_bound": 1000.0,
                                   "decode_tokens_per_s_per_user_bound": 250.0})
    s = rep.summary()
    assert (s["requests"], s["ok"], s["errors"]) == (24, 24, 0)
    assert plain.count == 25  # + the warm-up
    assert plain.conns <= 5  # keep-alive: one connection per worker, one for the warm-up
    assert s["output_tokens"] == 24 * 20 and s["output_tokens_mean"] == 20
    assert all(8 <= len(r["messages"][0]["content"].split()) <= 16 for r in plain.seen)
    # the stand-in waits 20 ms before the first token, then 2 ms per token
    assert FIRST_TOKEN_DELAY_S <= s["ttft_s"]["p50"] < s["e2e_s"]["p50"]
    assert s["tpot_s"]["p50"] >= TOKEN_DELAY_S * 0.9
    assert s["ttft_s"]["p50"] <= s["ttft_s"]["p90"] <= s["ttft_s"]["p99"]
    assert s["output_tokens_per_s"] > 0 and s["requests_per_s"] > 0
    assert s["roofline"]["ratio_output_tokens_per_s"] == pytest.approx(s["output_tokens_per_s"] / 1000, rel=1e-3)
    assert s["roofline"]["ratio_per_user_decode"] == pytest.approx(1 / s["tpot_s"]["p50"] / 250, rel=1e-3)
    assert all(r.tpot_s is not None for r in rep.results)
    # the same seed sends the same requests
    plain.seen.clear()
    B.run(ep, cfg)
    again = sorted(r["messages"][0]["content"] for r in plain.seen)  # 4 workers: any order
    plain.seen.clear()
    B.run(ep, cfg)
    assert sorted(r["messages"][0]["content"] for r in plain.seen) == again


def test_fixed_rate_and_errors_are_counted(plain) -> None:
    plain.fail_every = 4
    ep = B.endpoint_from_url(_url(plain))
    cfg = B.Config(model="m", isl=B.Dist.parse("4", "--isl"), osl=B.Dist.parse("5", "--osl"), mode="rate",
                   rate=100.0, arrival="constant", requests=20, warmup=0)
    t0 = time.perf_counter()
    s = B.run(ep, cfg).summary()
    assert time.perf_counter() - t0 >= 19 / 100  # 20 arrivals 10 ms apart
    assert s["requests"] == 20 and s["errors"] == 5 and s["ok"] == 15
    assert s["error_kinds"] == {"HTTP 500": 5}
    # without reuse every request opens its own connection
    plain.fail_every, before = 0, plain.conns
    s = B.run(ep, B.Config(model="m", isl=B.Dist.parse("4", "--isl"), osl=B.Dist.parse("2", "--osl"),
                           mode="closed", concurrency=2, requests=6, warmup=0, reuse=False)).summary()
    assert s["ok"] == 6 and plain.conns - before == 6


def test_mtls_with_pki_export_folder(mtls, pki, capsys) -> None:
    # connect to 127.0.0.1, verify the server as api.test.internal (SNI and Host)
    rc = main(["bench", "serve", "--url", f"https://api.test.internal:{mtls.server_address[1]}", "--connect",
               "127.0.0.1", "--pki-dir", str(pki), "--requests", "6", "--concurrency", "2", "--osl", "3",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["summary"]["ok"] == 6, out["summary"]
    assert out["requests"][0]["output_tokens"] == 3 and out["config"]["model"] == "standin-model"
    # no client certificate: the server refuses every handshake; counted as errors, exit 1
    rc = main(["bench", "serve", "--url", f"https://api.test.internal:{mtls.server_address[1]}", "--connect",
               "127.0.0.1", "--cacert", str(pki / "root-ca.pem"), "--model", "m", "--requests", "3",
               "--warmup", "0", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert rc == 1 and out["summary"]["ok"] == 0 and out["summary"]["errors"] == 3
    assert "no client certificate" in captured.err


def test_table_output_and_report_file(plain, tmp_path, capsys) -> None:
    report = tmp_path / "r.json"
    rc = main(["bench", "serve", "--url", _url(plain), "--model", "m", "--requests", "4", "--osl", "2",
               "--out", str(report)])
    out = capsys.readouterr().out
    assert rc == 0 and "TTFT ms p50/p90/p99" in out and "output tokens/s" in out
    assert json.loads(report.read_text())["summary"]["ok"] == 4
    # never overwritten
    before = report.read_text()
    rc = main(["bench", "serve", "--url", _url(plain), "--model", "m", "--requests", "1", "--out", str(report)])
    err = capsys.readouterr().err
    assert rc == 2 and "--out:" in err and "exists" in err and report.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--url", "ftp://x"], "--url: 'ftp://x' is not an http(s):// URL"),
    (["--url", "http://127.0.0.1:1", "--isl", "bogus"], "--isl: 'bogus' is not a length distribution"),
    (["--url", "http://127.0.0.1:1", "--osl", "uniform:9:3"], "--osl: 'uniform:9:3': the upper bound is below"),
    (["--url", "http://127.0.0.1:1", "--osl", "0"], "--osl: '0' is out of range"),
    (["--url", "http://127.0.0.1:1", "--concurrency", "0"], "--concurrency: "),
    (["--url", "http://127.0.0.1:1", "--rate", "0"], "--rate: "),
    (["--url", "http://127.0.0.1:1", "--rate", "1", "--concurrency", "2"], "not allowed with argument"),
    (["--url", "https://127.0.0.1:1", "--cert", "/nonexistent.pem", "--key", "/nonexistent.key"],
     "--cert: /nonexistent.pem: no such file"),
    (["--url", "http://127.0.0.1:1", "--pki-dir", "/nonexistent"], "--pki-dir: /nonexistent: no such folder"),
    ([], "--stack: give --stack S (its gateway) or --url URL"),
    (["--stack", "no-such-stack"], "no-such-stack"),
])
def test_bad_input_is_one_line_exit_2(argv, message, capsys) -> None:
    rc = main(["bench", "serve", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_stack_gives_gateway_endpoint_model_and_roofline(monkeypatch) -> None:
    from llmcluster.plan.build import build_plan
    from llmcluster.validate import load_stack_file
    from llmcluster.cli import stack_file, stacks_dir

    plan = build_plan(load_stack_file(stack_file("lab", stacks_dir(None)), []))
    from llmcluster.cli import _load

    args = type("A", (), {"stack": "lab", "stacks_dir": None, "url": None, "connect": None, "set": None,
                          "load_spec": staticmethod(_load)})()
    got_plan, url, connect = B._stack_endpoint(args)
    gw = plan.serving.gateway
    assert url == f"https://{gw.hostname}:{gw.port}" and connect
    r = B.roofline_of(got_plan)
    assert r["decode_tokens_per_s_bound"] == pytest.approx(
        plan.capacity.decode_tokens_per_s_bound * len(plan.serving.replicas), abs=0.1)


def test_dist_and_percentile() -> None:
    import random

    rng = random.Random(1)
    d = B.Dist.parse("normal:100:10", "--isl")
    xs = [d.sample(rng) for _ in range(2000)]
    assert 95 < sum(xs) / len(xs) < 105 and min(xs) >= 1
    assert B.percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and B.percentile([5.0], 99) == 5.0
    assert str(B.Dist.parse("uniform:1:9", "--isl")) == "uniform:1:9"
    assert Path(B.__file__).name == "bench_serve.py"
