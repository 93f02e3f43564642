"""The lab's real-model stand-in engine (llmcluster.lab.llama_engine / engine_standin, a LAB STAND-IN),
the parts that need no llama.cpp build: the opt-in switch, the cache key, the ASGI shim (/health,
/metrics, the node fingerprint), the model fixture with a GGUF under its manifest, the host install.
The engine itself, for real: tests/unit/test_lab_engine_real.py (slow, needs the cached build)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmcluster.lab import engine_standin as S
from llmcluster.lab import llama_engine as E
from llmcluster.lab import model_fixture as F
from llmcluster.lab._sys import LabError
from llmcluster.lab.nvidia_sim import wheels as W


def test_switch_is_opt_in_and_names_the_key():
    assert E.enabled({}) is False
    for off in ("", "0", "off", "canned"):
        assert E.enabled({E.ENV_SWITCH: off}) is False
    assert E.enabled({E.ENV_SWITCH: "smollm2"}) is True
    assert E.enabled({E.ENV_SWITCH: " SmolLM2 "}) is True
    with pytest.raises(LabError) as exc:
        E.enabled({E.ENV_SWITCH: "llama-70b"})
    assert str(exc.value).startswith("LLMCLUSTER_LAB_MODEL: unknown lab model 'llama-70b'")


def test_key_covers_versions_and_build_flags(monkeypatch):
    key = E.engine_key()
    assert key.startswith("lab-engine-") and key == E.engine_key()
    changes = (("LLAMA_CPP_VERSION", "0.3.35"), ("SMOLLM2_VERSION", "0.1.1"), ("CMAKE_ARGS", "-DGGML_OPENMP=ON"))
    for name, value in changes:
        with monkeypatch.context() as m:
            m.setattr(E, name, value)
            assert E.engine_key() != key, name


def test_nothing_cached_means_no_engine(tmp_path):
    assert E.cached_engine(tmp_path) is None
    (tmp_path / E.engine_key()).mkdir()
    (tmp_path / E.engine_key() / "engine.json").write_text("{}")
    assert E.cached_engine(tmp_path) is None  # no model file: an incomplete entry is not an engine


def test_host_path_is_the_one_the_standin_server_reads():
    assert E.HOST_ENGINE_DIR == W.LAB_ENGINE_DIR
    serve = W.trtllm_files()["tensorrt_llm/commands/serve.py"]
    assert repr(W.LAB_ENGINE_DIR) in serve and "__LAB_ENGINE_DIR__" not in serve
    compile(serve, "serve.py", "exec")


class _FakeApp:
    """An ASGI app answering every request with a fixed JSON body (llama_cpp.server's place)."""

    def __init__(self, body: bytes, ctype: bytes = b"application/json", status: int = 200):
        self.body, self.ctype, self.status, self.paths = body, ctype, status, []

    async def __call__(self, scope, receive, send):
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", self.ctype), (b"content-length", str(len(self.body)).encode())]})
        half = len(self.body) // 2
        await send({"type": "http.response.body", "body": self.body[:half], "more_body": True})
        await send({"type": "http.response.body", "body": self.body[half:]})


def _call(app, method: str, path: str) -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    # a loop of its own, not asyncio.run: that clears the thread's current loop, which later tests in the
    # same process (Pulumi's mock runtime) take
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app({"type": "http", "method": method, "path": path}, receive, send))
    finally:
        loop.close()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_shim_adds_health_metrics_and_the_node_fingerprint():
    inner = _FakeApp(json.dumps({"id": "x", "choices": [{"message": {"content": "hi"}}]}).encode())
    counters = S.Counters()
    shim = S.Shim(inner, counters, "gpu-01")
    assert _call(shim, "GET", "/health")[0] == 200
    status, headers, body = _call(shim, "POST", "/v1/chat/completions")
    doc = json.loads(body)
    assert status == 200 and doc["system_fingerprint"] == "llmcluster-sim:gpu-01" and doc["choices"]
    assert int(headers[b"content-length"]) == len(body)
    status, _, metrics = _call(shim, "GET", "/metrics")
    assert status == 200 and b"trtllm_simulated 1" in metrics and b"trtllm_request_success_total 1" in metrics
    # Streams and other routes pass through untouched; an error counts as one.
    stream = S.Shim(_FakeApp(b"data: {}\n\n", b"text/event-stream"), counters, "gpu-01")
    assert _call(stream, "POST", "/v1/chat/completions")[2] == b"data: {}\n\n"
    assert _call(shim, "GET", "/v1/models")[2] == inner.body and inner.paths[-1] == "/v1/models"
    bad = S.Shim(_FakeApp(b'{"error": "x"}', status=400), counters, "gpu-01")
    assert json.loads(_call(bad, "POST", "/v1/completions")[2]) == {"error": "x"}
    assert "trtllm_request_error_total 1" in S.metrics_text(counters)
    assert "trtllm_request_success_total 2" in S.metrics_text(counters)


def test_standin_refuses_a_missing_model_file(tmp_path):
    r = subprocess.run([sys.executable, str(S.__file__), "--model", str(tmp_path / "nope.gguf"), "--served-name", "m"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 1 and "--model: " in r.stderr and "no such file" in r.stderr


def test_fixture_with_a_gguf_is_covered_by_its_manifest(tmp_path):
    gguf = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    gguf.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    plain = F.ensure_lab_model(tmp_path / "cache", "deepseek-r1")
    real = F.ensure_lab_model(tmp_path / "cache", "deepseek-r1", gguf)
    assert real.source != plain.source and not (plain.source / gguf.name).exists()
    assert (real.source / gguf.name).read_bytes() == gguf.read_bytes()
    files = {e["path"] for e in json.loads(real.manifest.read_text())["files"]}
    plain_files = {e["path"] for e in json.loads(plain.manifest.read_text())["files"]}
    assert gguf.name in files and files - {gguf.name} == plain_files
    ok = subprocess.run([sys.executable, "-I", str(F.VERIFIER), "verify", "--manifest", str(real.manifest),
                         str(real.source)], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    # A changed model file fails the verification the unit runs before every start.
    (real.source / gguf.name).write_bytes(b"GGUF" + bytes(2048))
    bad = subprocess.run([sys.executable, "-I", str(F.VERIFIER), "verify", "--manifest", str(real.manifest),
                          str(real.source)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and gguf.name in bad.stderr + bad.stdout


def test_install_on_host_copies_the_site_and_the_standin(tmp_path):
    d = tmp_path / "cache" / E.engine_key()
    (d / "site" / "llama_cpp").mkdir(parents=True)
    (d / "site" / "llama_cpp" / "__init__.py").write_text("")
    (d / "site" / ".complete").write_text("{}\n")
    engine = E.LabEngine(d, False, 0.0, {})
    dest = E.install_on_host(tmp_path / "root", engine)
    assert dest == tmp_path / "root" / E.HOST_ENGINE_DIR.lstrip("/")
    assert (dest / "site" / "llama_cpp" / "__init__.py").is_file()
    assert (dest / "engine_standin.py").read_text() == Path(S.__file__).read_text()
    assert "LAB STAND-IN ENGINE" in (dest / "README").read_text()
    assert dest.stat().st_mode & 0o755 == 0o755


def test_a_bad_switch_stops_lab_up_and_converge_before_anything_starts(monkeypatch, tmp_path, capsys):
    import llmcluster.lab
    from llmcluster.cli import main
    from tests.conftest import STACKS

    def tripwire(*a, **k):
        raise AssertionError("the lab runtime was created for a refused command")

    monkeypatch.setattr(llmcluster.lab, "LabRuntime", tripwire)
    monkeypatch.setenv(E.ENV_SWITCH, "llama-70b")
    for action in ("up", "converge"):
        rc = main(["lab", action, "--stack", "lab", "--stacks-dir", str(STACKS), "--state-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert rc != 0 and "Traceback" not in err, err
        assert err.strip().splitlines()[0].startswith("LLMCLUSTER_LAB_MODEL: unknown lab model 'llama-70b'"), err
