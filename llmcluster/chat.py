"""``llmcluster chat``: one chat completion through the stack's mTLS gateway, streamed to stdout.

The endpoint is the stack's gateway as the plan gives it (``https://<gateway hostname>:<port>``,
connected at :func:`llmcluster.plan.serving.gateway_address` or ``--connect``, SNI and ``Host`` the
hostname); the client identity comes from a ``llmcluster pki export`` folder (``--cert-dir``; the
lab's own export by default for a stack the lab runs): the certificate of
:meth:`llmcluster.plan.access.AccessPlan.caller_of` (the first named client a policy admits to
``/v1/chat/completions``, else ``admin``), unless ``--client`` names another. The request is the
same streamed request ``llmcluster bench serve`` sends (its connection and SSE code); the answer
goes to stdout as it arrives, then the latency (time to the first token, total) to stderr.

Every failure is one ``<key>: <what is wrong>`` line and a non-zero exit: no export, the gateway
unreachable, the TLS handshake refused (either side), an HTTP error from the gateway.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from llmcluster.errors import LLMClusterError

#: Exit code of a request that reached no answer (the gateway unreachable, TLS refused, an HTTP error).
EXIT_NO_ANSWER = 1
CHAT_PATH = "/v1/chat/completions"


class ChatError(LLMClusterError):
    """One line: the key path (an option, a plan key) and what is wrong."""

    keyed = True


def add_parser(sub: Any, bounded: Any, stack_args: Any) -> None:
    c = sub.add_parser("chat", help="send one chat completion through the stack's mTLS gateway and stream the "
                                    "answer (then its latency)")
    stack_args(c)
    c.add_argument("prompt", help="the user message")
    c.add_argument("--model", help="model name (default: the stack's serving.model)")
    c.add_argument("--cert-dir", metavar="DIR", help="a `llmcluster pki export` folder: the client identity and "
                                                    "the root CA (default: the lab's export, for a stack the lab "
                                                    "runs)")
    c.add_argument("--client", help="the client certificate's name in --cert-dir (default: the first API client "
                                    "the stack's access policies admit to /v1/chat/completions, else admin)")
    c.add_argument("--connect", metavar="ADDRESS", help="address to connect to (default: the gateway's VIP or "
                                                       "first host); SNI and Host stay the gateway's hostname")
    c.add_argument("--state-dir", help="the lab's state dir, where its PKI export is (default: "
                                       "~/.local/state/llmcluster/lab)")
    c.add_argument("--max-tokens", type=bounded(int, 1, 1_048_576), default=256, help="at most this many tokens")
    c.add_argument("--timeout", type=bounded(float, 0, 3600, " s", low_open=True), default=60.0,
                   help="seconds to wait for the gateway (connect, each read)")


def default_cert_dir(stack: str, state_dir: Path) -> Path | None:
    """The lab's PKI export when the lab in ``state_dir`` runs ``stack`` (its manifest names it)."""
    manifest = state_dir / "pki" / "manifest.json"
    try:
        if json.loads(manifest.read_text()).get("stack") == stack:
            return manifest.parent
    except (OSError, ValueError, AttributeError):
        return None
    return None


def chat(ep: Any, model: str, prompt: str, *, max_tokens: int, timeout: float, out: TextIO,
         clock: Any = time.perf_counter) -> dict[str, Any]:
    """Send the request, write each content piece to ``out`` as it comes; return the latency and
    usage (``ttft_s``, ``total_s``, ``pieces``, ``usage``). Raises :class:`ChatError`."""
    from llmcluster.bench_serve import SseStream, _connect

    try:
        ctx = ep.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise ChatError(f"--cert-dir: the client certificate or CA cannot be loaded: {_reason(exc)}") from None
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                       "stream": True, "stream_options": {"include_usage": True}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Connection": "close",
               "Host": ep.host if ep.port == 443 else f"{ep.host}:{ep.port}"}
    where = f"{ep.url} (connecting to {ep.address}:{ep.port})"
    start = clock()
    conn = _connect(ep, ctx, timeout)
    ttft = None
    pieces = 0
    try:
        try:
            conn.request("POST", f"{ep.base_path}{CHAT_PATH}", body=body, headers=headers)
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as exc:
            raise ChatError(f"serving.gateway: {where}: the gateway's certificate does not verify against "
                            f"--cert-dir's root-ca.pem: {exc.verify_message or _reason(exc)}") from None
        except ssl.SSLError as exc:
            raise ChatError(f"serving.gateway: {where}: TLS refused: {_reason(exc)} (is the client certificate "
                            "one of this cluster's? see --client, --cert-dir)") from None
        except ConnectionRefusedError:
            raise ChatError(f"serving.gateway: {where}: connection refused (is the gateway up? `llmcluster lab "
                            "status` for the lab)") from None
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            if isinstance(exc, (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected)):
                raise ChatError(f"serving.gateway: {where}: the gateway closed the connection ({_reason(exc)}): "
                                "TLS refused? (a client certificate it does not accept, or none)") from None
            raise ChatError(f"serving.gateway: {where}: unreachable: {_reason(exc)}") from None
        if resp.status != 200:
            detail = resp.read(300).decode("utf-8", "replace").strip().replace("\n", " ")
            hint = {403: " (this client is not admitted to this path or model: see --client, llmcluster:access)",
                    401: " (no client identity)"}.get(resp.status, "")
            raise ChatError(f"serving.gateway: {where}: HTTP {resp.status}{hint}: {detail[:160]}")
        stream = SseStream(resp)
        try:
            for text in stream:
                if ttft is None:
                    ttft = clock() - start
                pieces += 1
                out.write(text)
                out.flush()
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise ChatError(f"serving.gateway: {where}: the stream broke off: {_reason(exc)}") from None
        total = clock() - start
        out.write("\n")
        out.flush()
        if not stream.done:
            raise ChatError(f"serving.gateway: {where}: the stream ended without [DONE] (answer incomplete)")
        return {"ttft_s": ttft, "total_s": total, "pieces": pieces, "usage": stream.usage}
    finally:
        conn.close()


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc) or exc.__class__.__name__
    return str(text)[:200]


def cmd_chat(args: Any, *, load: Any, default_state_dir: Any) -> int:
    from llmcluster.bench_serve import BenchError, client_material, endpoint_from_url
    from llmcluster.plan.build import build_plan
    from llmcluster.plan.serving import gateway_address

    plan = build_plan(load(args))
    gw = plan.serving.gateway
    if gw is None:
        raise ChatError(f"serving.gateway: stack {plan.spec.stack} has no gateway: nothing to call through")
    if args.cert_dir is not None:
        cert_dir = Path(args.cert_dir)
    else:
        state = Path(args.state_dir).expanduser() if args.state_dir else default_state_dir()
        found = default_cert_dir(plan.spec.stack, state)
        if found is None:
            raise ChatError(f"--cert-dir: no PKI export given, and no lab of stack {plan.spec.stack} in {state}: "
                            "give the `llmcluster pki export` folder")
        cert_dir = found
    client = args.client or gw.access.caller_of(CHAT_PATH)
    try:
        cacert, cert, key = client_material(str(cert_dir), client, option="--cert-dir")
        ep = endpoint_from_url(f"https://{gw.hostname}:{gw.port}", connect=args.connect or gateway_address(gw, plan.ip),
                               cacert=cacert, cert=cert, key=key)
    except BenchError as exc:
        raise ChatError(str(exc)) from None
    model = args.model or plan.serving.model
    r = chat(ep, model, args.prompt, max_tokens=args.max_tokens, timeout=args.timeout, out=sys.stdout)
    ttft = "-" if r["ttft_s"] is None else f"{r['ttft_s'] * 1000:.0f} ms"
    tokens = (r["usage"] or {}).get("completion_tokens", r["pieces"])
    sys.stderr.write(f"{model} via {ep.url} as {client}: TTFT {ttft}, total {r['total_s'] * 1000:.0f} ms, "
                     f"{tokens} token(s)\n")
    return 0 if r["pieces"] else EXIT_NO_ANSWER
