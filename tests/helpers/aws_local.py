"""AWS on 127.0.0.1 for the audit shipper's tests (no AWS reached): a moto server that checks SigV4
signatures (``INITIAL_NO_AUTH_ACTION_COUNT``: after the IAM user is made, every request must be signed
with its keys), a pass-through proxy in front of it that counts requests and can answer throttling,
and real journal files written by ``systemd-journal-remote`` from journal export format."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.helpers.role_local import free_port, wait_port

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"


class MotoAws:
    """moto_server (subprocess) on 127.0.0.1 that authenticates every request after the first three (the
    IAM user, its key, its policy): SigV4 signatures are checked as AWS does. The user ``user`` may do
    ``action`` (everything by default); its keys in ``access_key``/``secret_key``."""

    def __init__(self, tmp: Path, user: str = "gateway", action: str = "*", policy_name: str = "all"):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        exe = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
        self.log = open(tmp / "moto.log", "w")  # closed in close()
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=self.log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"})
        wait_port(self.port, 30, self.proc)
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="bootstrap",
                           aws_secret_access_key="bootstrap")
        iam.create_user(UserName=user)
        key = iam.create_access_key(UserName=user)["AccessKey"]
        iam.put_user_policy(UserName=user, PolicyName=policy_name, PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
        self.access_key, self.secret_key = key["AccessKeyId"], key["SecretAccessKey"]

    def client(self, service: str):
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


class Proxy:
    """Forwards every request to ``upstream`` unchanged (the Host header too: signatures stay valid);
    records (method, X-Amz-Target or path, body size); answers the next ``throttle`` PutLogEvents with
    CloudWatch's ThrottlingException instead of forwarding them."""

    def __init__(self, upstream_port: int):
        self.calls: list[tuple[str, str, int]] = []
        self.throttle = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "").rsplit(".", 1)[-1] or self.path
                proxy.calls.append((self.command, target, len(body)))
                if target == "PutLogEvents" and proxy.throttle > 0:
                    proxy.throttle -= 1
                    data = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in self.headers.items():
                    conn.putheader(k, v)
                conn.endheaders(body)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, target: str) -> int:
        return sum(1 for _m, t, _n in self.calls if t == target)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def write_journal(journal_dir: Path, entries: list[tuple[int, str]], *, host: str = "gw1",
                  identifier: str = "haproxy") -> None:
    """Append entries ``(realtime microseconds, message)`` to a real journal file in ``journal_dir``."""
    journal_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for t, msg in entries:
        assert "\n" not in msg
        out.append(f"__REALTIME_TIMESTAMP={t}\n__MONOTONIC_TIMESTAMP={t}\n_BOOT_ID={'ab' * 16}\n_HOSTNAME={host}\n"
                   f"SYSLOG_IDENTIFIER={identifier}\nMESSAGE={msg}\n\n")
    export = journal_dir.parent / "entries.export"
    export.write_text("".join(out), encoding="utf-8")
    # one file per call (journal-remote will not append to a file it did not open itself); journalctl merges them
    name = f"gw-{len(list(journal_dir.glob('*.journal'))):04d}.journal"
    r = subprocess.run([JOURNAL_REMOTE, f"--output={journal_dir / name}", "--split-mode=none", str(export)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
