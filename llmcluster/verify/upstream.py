"""The gateway -> GPU hop carries only TLS: the programs the verification suite runs on the hosts
(:mod:`llmcluster.verify.capture`, sent as ``python3 -c``) and the judges of what they print.

* ``probe``: from a gateway host, a plain HTTP request to an upstream's inference address and
  serving port must get no HTTP response (the head's TLS terminator requires TLS);
* ``capture``: on the head's inference interface, while a client request carrying a unique marker
  passes through the gateway, every TCP payload to or from the serving port is a TLS record (or a
  continuation of one): no cleartext HTTP and never the marker.

Each judge returns a list of problems (empty: the check passed); an empty or partial document is
a problem, never a pass.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CAPTURE = Path(__file__).with_name("capture.py")
#: How long a capture listens (seconds) and how long the suite waits for its result after that.
CAPTURE_SECONDS = 8.0
RESULT_WAIT_S = 20.0


def capture_source() -> str:
    """The text of the host-side program (``python3 -c`` it with a mode and its arguments)."""
    return CAPTURE.read_text(encoding="utf-8")


def new_marker() -> str:
    """A string no other traffic carries: sent in a prompt, it must never be seen on the wire."""
    return f"llmcluster-capture-{secrets.token_hex(8)}"


def chat_body(marker: str, model: str = "deepseek-r1") -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": f"ping {marker}"}], "max_tokens": 4})


def probe_args(address: str, port: int) -> list[str]:
    return ["probe", address, str(port)]


def capture_args(iface: str | None, address: str, port: int, marker: str, outfile: str,
                 seconds: float = CAPTURE_SECONDS) -> list[str]:
    return ["capture", iface or "-", address, str(port), f"{seconds:g}", marker, outfile]


def result_args(outfile: str, wait_s: float = RESULT_WAIT_S) -> list[str]:
    return ["result", outfile, f"{wait_s:g}"]


def judge_probe(doc: Mapping[str, Any] | None, what: str) -> list[str]:
    """A plain HTTP request got no HTTP response, from a listener that accepted the connection."""
    if not doc or "connected" not in doc:
        return [f"{what}: the plain-HTTP probe printed no result: {doc!r}"]
    if doc.get("http"):
        return [f"{what}: answered plain HTTP ({doc.get('response', '')[:40]!r}): the hop is not TLS-only"]
    if not doc.get("connected"):
        return [f"{what}: nothing accepted the connection ({doc.get('error') or 'no error given'}): the TLS "
                "terminator must listen there"]
    return []


def judge_capture(doc: Mapping[str, Any] | None, what: str, answered: bool | None = None) -> list[str]:
    """TLS records and no cleartext HTTP nor marker on the wire; ``answered``: whether the marked
    request was answered by this host (None: the answer does not say which host served it)."""
    if not doc or "error" in doc or "payloads" not in doc:
        return [f"{what}: no capture result: {(doc or {}).get('error', doc)!r}"]
    problems = []
    if doc.get("http"):
        problems.append(f"{what}: {doc['http']} cleartext HTTP payload(s) on {doc.get('interface')} to/from "
                        f"tcp/{','.join(map(str, doc.get('ports', [])))}: {'; '.join(doc.get('http_samples', []))}")
    if doc.get("marker"):
        problems.append(f"{what}: the request's marker crossed {doc.get('interface')} in clear "
                        f"({doc['marker']} payload(s))")
    if not doc.get("tls"):
        problems.append(f"{what}: no TLS record to/from tcp/{','.join(map(str, doc.get('ports', [])))} on "
                        f"{doc.get('interface')} ({doc.get('segments', 0)} segment(s), {doc.get('payloads', 0)} "
                        "payload(s)): the capture saw no upstream traffic")
    if answered is False:
        problems.append(f"{what}: no request through the gateway reached this upstream during the capture")
    return problems
