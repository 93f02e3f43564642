"""LAB STAND-IN ENGINE (a simulation of trtllm-serve's place, not TensorRT-LLM, not DeepSeek).

llama.cpp's OpenAI-compatible server (``llama_cpp.server``, PyPI ``llama-cpp-python[server]``) on a
real tiny model (SmolLM2-135M-Instruct, a GGUF), on the CPU. The lab's stand-in ``trtllm-serve``
execs this script when the model directory it was given holds a ``.gguf`` file and the lab engine
is installed on the host (``llmcluster.lab.llama_engine``, opt-in ``LLMCLUSTER_LAB_MODEL=smollm2``),
so the unit, its ExecStart, the manifest check and the health gate stay those of production.

What it adds to llama.cpp's server, each a thin labelled shim:

* ``GET /health`` -> 200 (llama_cpp.server has none; the role's readiness gate and the gateway's
  health check ask it). The model loads before the socket listens: until then, connection refused.
* ``GET /metrics`` -> a few Prometheus counters in trtllm-serve's names, with
  ``trtllm_simulated 1`` (llama_cpp.server has no metrics endpoint).
* ``system_fingerprint: llmcluster-sim:<host>`` in non-streamed completions, as the canned stand-in
  sets it (the lab's gateway failover check reads which node answered).

``/v1/models`` names ``--served-name`` (the stand-in passes the model directory's name, as the
canned stand-in does). Run as ``python3 engine_standin.py --model FILE.gguf --host H --port P
--served-name NAME`` with llama_cpp importable (the lab sets PYTHONPATH to the engine's site dir).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

STARTED = time.monotonic()


def log(level: str, message: str) -> None:
    sys.stderr.write(f"[lab stand-in engine] [{level}] {message}\n")
    sys.stderr.flush()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engine_standin", description="LAB STAND-IN: llama.cpp on a tiny GGUF model")
    p.add_argument("--model", required=True, help="the .gguf file")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-name", required=True, help="the model name /v1/models answers")
    p.add_argument("--n-ctx", type=int, default=2048)
    p.add_argument("--threads", type=int, default=int(os.environ.get("LLMCLUSTER_LAB_ENGINE_THREADS", "2")))
    return p


class Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.active = 0


def metrics_text(c: Counters) -> str:
    with c.lock:
        ok, err, active = c.requests, c.errors, c.active
    lines = [
        "# HELP trtllm_simulated 1: this server is the llmcluster lab stand-in (llama.cpp, tiny model).",
        "# TYPE trtllm_simulated gauge", "trtllm_simulated 1",
        "# HELP trtllm_request_success_total Requests answered.",
        "# TYPE trtllm_request_success_total counter", f"trtllm_request_success_total {ok}",
        "# HELP trtllm_request_error_total Requests refused.",
        "# TYPE trtllm_request_error_total counter", f"trtllm_request_error_total {err}",
        "# HELP trtllm_num_requests_running Requests in flight.",
        "# TYPE trtllm_num_requests_running gauge", f"trtllm_num_requests_running {active}",
        "# HELP trtllm_model_loaded 1 once the model is loaded (/health answers 200).",
        "# TYPE trtllm_model_loaded gauge", "trtllm_model_loaded 1",
    ]
    return "\n".join(lines) + "\n"


class Shim:
    """ASGI wrapper: /health and /metrics, the fingerprint in JSON completions, the counters."""

    COMPLETIONS = ("/v1/chat/completions", "/v1/completions")

    def __init__(self, app, counters: Counters, node: str) -> None:
        self.app, self.counters, self.node = app, counters, node

    async def _plain(self, send, status: int, body: bytes, ctype: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path == "/health" and scope["method"] in ("GET", "HEAD"):
            return await self._plain(send, 200, b"", b"text/plain")
        if path == "/metrics" and scope["method"] == "GET":
            return await self._plain(send, 200, metrics_text(self.counters).encode(),
                                     b"text/plain; version=0.0.4; charset=utf-8")
        if path not in self.COMPLETIONS:
            return await self.app(scope, receive, send)
        state: dict = {"json": False, "status": 0, "start": None, "body": b""}

        async def wrapped_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                headers = dict(message.get("headers") or [])
                state["json"] = headers.get(b"content-type", b"").startswith(b"application/json")
                if not state["json"]:
                    return await send(message)
                state["start"] = message
                return None
            if message["type"] == "http.response.body" and state["json"]:
                state["body"] += message.get("body", b"")
                if message.get("more_body"):
                    return None
                body = state["body"]
                if state["status"] == 200:
                    try:
                        doc = json.loads(body)
                        doc["system_fingerprint"] = f"llmcluster-sim:{self.node}"
                        body = json.dumps(doc).encode()
                    except ValueError:
                        pass
                start = state["start"]
                headers = [(k, v) for k, v in start.get("headers") or [] if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                return await send({"type": "http.response.body", "body": body})
            return await send(message)

        with self.counters.lock:
            self.counters.active += 1
        try:
            await self.app(scope, receive, wrapped_send)
        finally:
            with self.counters.lock:
                self.counters.active -= 1
                if state["status"] == 200:
                    self.counters.requests += 1
                else:
                    self.counters.errors += 1


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not os.path.isfile(args.model):
        log("ERROR", f"--model: {args.model}: no such file")
        return 1
    try:
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        log("ERROR", f"the lab engine is not importable ({exc}): is PYTHONPATH the engine's site dir?")
        return 1
    log("INFO", f"LAB STAND-IN (llama.cpp, not TensorRT-LLM): loading {args.model} as {args.served_name!r}")
    app = create_app(
        # Queue concurrent requests (llama_cpp.server's default interrupts a running stream when the next
        # request arrives: a gateway with several clients would see truncated answers).
        server_settings=ServerSettings(host=args.host, port=args.port, interrupt_requests=False),
        model_settings=[ModelSettings(model=args.model, model_alias=args.served_name, n_ctx=args.n_ctx,
                                      n_threads=args.threads, n_threads_batch=args.threads, verbose=False)],
    )
    log("INFO", f"model loaded {time.monotonic() - STARTED:.2f} s after start: serving on "
                f"http://{args.host}:{args.port}")
    uvicorn.run(Shim(app, Counters(), os.uname().nodename), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
