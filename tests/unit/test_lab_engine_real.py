"""The lab's real-model stand-in engine for real, on loopback (no lab): llama.cpp serving
SmolLM2-135M-Instruct (llmcluster.lab.engine_standin, a LAB STAND-IN), alone and behind the stand-in
``trtllm-serve`` exactly as the tensorrt_llm unit starts it (a model directory with the GGUF).

Slow and needing the build (llama-cpp-python compiles for minutes): skipped unless the engine is in
the lab cache (``make lab-engine`` builds it; CI has no cache, so ``make test`` gains nothing here).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from llmcluster.lab import llama_engine as E
from llmcluster.lab._sys import stop_process
from llmcluster.lab.nvidia_sim.wheels import TRTLLM_VERSION, build_wheels

pytestmark = pytest.mark.slow

#: Seed 002's target for a model server: unit start to first token.
COLD_START_TARGET_S = 15.0


@pytest.fixture(scope="module")
def engine() -> E.LabEngine:
    found = E.cached_engine()
    if found is None:
        pytest.skip(f"the lab engine ({E.engine_key()}) is not in the lab cache: `make lab-engine` builds it "
                    "(minutes); CI does not")
    E.ensure_site(found)
    return found


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(base: str, body: dict) -> dict:
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def test_real_tokens_streaming_and_the_bench_harness(engine, tmp_path):
    port = _port()
    base = f"http://127.0.0.1:{port}"
    env = E.site_env(engine.directory / "site")
    proc, cold = E.cold_start(E.local_argv(engine, "127.0.0.1", port, "DeepSeek-R1"), env, base,
                              model="deepseek-r1", log=tmp_path / "engine.log")
    try:
        print(f"lab engine cold start: /health {cold['health_s']} s, first token {cold['first_token_s']} s")
        assert 0 < cold["first_token_s"] <= COLD_START_TARGET_S, cold
        assert cold["done"] and "".join(cold["pieces"]).strip(), cold
        with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
            assert [m["id"] for m in json.loads(r.read())["data"]] == ["DeepSeek-R1"]
        # Real tokens: the answer follows the prompt (a canned stand-in answers alike), usage is counted.
        answers = {}
        for prompt in ("What is the capital of France? Answer in one word.", "Write one word: blue."):
            doc = _post(base, {"model": "deepseek-r1", "messages": [{"role": "user", "content": prompt}],
                               "max_tokens": 24, "temperature": 0})
            text = doc["choices"][0]["message"]["content"]
            assert text.strip() and "SIMULATED" not in text, doc
            assert doc["usage"]["completion_tokens"] > 0 and doc["usage"]["prompt_tokens"] > 5, doc
            assert doc["system_fingerprint"].startswith("llmcluster-sim:"), doc
            answers[prompt] = (text, doc["usage"]["prompt_tokens"])
        (a, pa), (b, pb) = answers.values()
        assert a != b and pa != pb, answers
        assert "Paris" in a, a
        # Streaming: several content deltas, then [DONE].
        got = E.stream_chat(base, "Count from 1 to 10.", model="deepseek-r1", max_tokens=32)
        assert got["done"] and len(got["pieces"]) >= 5, got
        # llmcluster bench serve --url against it (the CLI, as an operator runs it).
        out = tmp_path / "bench.json"
        r = subprocess.run([sys.executable, "-c", "import sys; from llmcluster.cli import main; sys.exit(main())",
                            "bench", "serve", "--url", base, "--concurrency", "2", "--requests", "4", "--warmup", "1",
                            "--isl", "32", "--osl", "16", "--out", str(out)],
                           capture_output=True, text=True, timeout=300, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "TTFT ms p50/p90/p99" in r.stdout, r.stdout
        summary = json.loads(out.read_text())["summary"]
        assert summary["ok"] == 4 and summary["errors"] == 0 and summary["output_tokens_mean"] > 1, summary
        with urllib.request.urlopen(base + "/metrics", timeout=10) as m:
            text = m.read().decode()
        # cold start 1 + 2 posts + 1 stream + bench 1 warm-up + 4
        assert "trtllm_simulated 1" in text and "trtllm_request_success_total 9" in text, text
    finally:
        stop_process(proc)


def test_behind_the_standin_trtllm_serve_as_the_unit_starts_it(engine, tmp_path):
    """The unit's ExecStart (trtllm-serve MODEL_DIR --host --port ...) on a model dir holding the GGUF."""
    wheels = build_wheels(tmp_path / "wheels")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(wheels[0].parent),
                    f"tensorrt_llm=={TRTLLM_VERSION}"], check=True, capture_output=True)
    model = tmp_path / "deepseek-ai" / "DeepSeek-R1"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"model_type": "deepseek_v3"}))
    try:
        os.link(engine.gguf, model / engine.gguf.name)
    except OSError:  # another file system
        shutil.copyfile(engine.gguf, model / engine.gguf.name)
    host_dir = tmp_path / "llama-engine"  # what install_on_host puts in a host's root
    host_dir.mkdir()
    (host_dir / "site").symlink_to(engine.directory / "site")
    (host_dir / E.SHIM.name).symlink_to(E.SHIM)
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\ncase "$*" in *--query-gpu=index,*) echo "0, 570.172.08, 9.0";; '
                   '*compute_cap*) echo 9.0;; *) echo 0;; esac\n')
    smi.chmod(0o755)
    env = {**os.environ, "PATH": f"{smi.parent}:{os.environ['PATH']}", "LLMCLUSTER_SIM_ENGINE_DIR": str(host_dir)}
    env.pop("PYTHONPATH", None)
    port = _port()
    base = f"http://127.0.0.1:{port}"
    argv = [str(venv / "bin" / "trtllm-serve"), str(model), "--host", "127.0.0.1", "--port", str(port),
            "--backend", "pytorch", "--tp_size", "1", "--pp_size", "1", "--max_batch_size", "8",
            "--max_num_tokens", "4096", "--max_seq_len", "4096", "--kv_cache_free_gpu_memory_fraction", "0.9"]
    proc, cold = E.cold_start(argv, env, base, model="deepseek-r1", log=tmp_path / "serve.log")
    try:
        print(f"unit ExecStart cold start: /health {cold['health_s']} s, first token {cold['first_token_s']} s")
        assert 0 < cold["first_token_s"] <= COLD_START_TARGET_S, cold
        doc = _post(base, {"model": "deepseek-r1", "max_tokens": 16,
                           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert "SIMULATED" not in doc["choices"][0]["message"]["content"] and doc["usage"]["completion_tokens"] > 0
        with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
            assert [m["id"] for m in json.loads(r.read())["data"]] == ["DeepSeek-R1"]
    finally:
        stop_process(proc)
    log = Path(tmp_path / "serve.log").read_text()
    assert "LAB STAND-IN ENGINE: llama.cpp serves" in log and "SIMULATED loading" not in log, log
