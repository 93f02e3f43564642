"""Monitoring checks (docs/observability.md): every planned target is scraped and up, and an alert
reaches the webhook receiver. Shared by the verification suite (``suite/test_monitoring.py``, lab
or real inventory) and the local test (``tests/roles/test_monitoring_local.py``: real Prometheus and
Alertmanager on loopback). As elsewhere in this package, judges return a list of problems (empty:
the check passed).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def up_problems(query: Mapping[str, Any], expected: Iterable[tuple[str, str]]) -> list[str]:
    """``query``: Prometheus' answer to ``up`` (/api/v1/query); ``expected``: (job, host) of the plan."""
    if query.get("status") != "success":
        return [f"Prometheus answered {query.get('status')!r}: {query.get('error', '')}"]
    seen: dict[tuple[str, str], str] = {}
    for r in query.get("data", {}).get("result", []):
        m = r.get("metric", {})
        seen[(m.get("job", ""), m.get("host", m.get("instance", "")))] = r.get("value", [0, "?"])[1]
    out = []
    for job, host in sorted(set(expected)):
        v = seen.get((job, host))
        if v is None:
            out.append(f"{job} on {host}: not a target of Prometheus (scrape configuration)")
        elif v != "1":
            out.append(f"{job} on {host}: up == {v} (the target does not answer the scrape)")
    return out


def firing(alerts: Mapping[str, Any], alertname: str, labels: Mapping[str, str] | None = None) -> bool:
    """Whether ``alertname`` (with ``labels``) is firing in Prometheus' /api/v1/alerts answer."""
    for a in alerts.get("data", {}).get("alerts", []):
        lab = a.get("labels", {})
        if lab.get("alertname") == alertname and a.get("state") == "firing" and all(
                lab.get(k) == v for k, v in (labels or {}).items()):
            return True
    return False


def get_json(url: str, timeout: float = 5) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # a planned http address
        return json.loads(r.read())


def prometheus_query(base: str, expr: str) -> dict[str, Any]:
    return get_json(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 1.0) -> float | None:
    """Seconds it took until ``predicate()`` held, or None after ``timeout``."""
    t0 = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - t0
        except (OSError, ValueError):  # not answering yet, or not JSON yet
            pass
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(step)


class WebhookReceiver:
    """Alertmanager's webhook target: records every notification (``payloads``) with its arrival time."""

    def __init__(self, address: str = "127.0.0.1", port: int = 0):
        self.payloads: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"invalid": body[:200].decode(errors="replace")}
                with owner._lock:
                    owner.payloads.append((time.monotonic(), doc))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, alertname: str, status: str = "firing", labels: Mapping[str, str] | None = None) -> bool:
        with self._lock:
            docs = [d for _t, d in self.payloads]
        for d in docs:
            for a in d.get("alerts", []):
                lab = a.get("labels", {})
                if lab.get("alertname") == alertname and a.get("status") == status and all(
                        lab.get(k) == v for k, v in (labels or {}).items()):
                    return True
        return False
