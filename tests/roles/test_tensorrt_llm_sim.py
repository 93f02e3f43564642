"""The lab's stand-in TensorRT-LLM (``llmcluster.lab.nvidia_sim.wheels``, a SIMULATION) for real:
the wheels are valid and reproducible, pip installs them offline into a throw-away venv, and
``trtllm-serve`` / ``trtllm-build`` / the conversion API (through the role's own
``files/trtllm_convert.py``) behave like the real tools would, with a fake ``nvidia-smi`` on PATH.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from llmcluster.lab._sys import stop_process
from llmcluster.lab.nvidia_sim.wheels import TORCH_VERSION, TRTLLM_VERSION, build_wheels
from llmcluster.plan.capacity import size_deployment
from llmcluster.plan.engine import engine_config
from tests.conftest import ROOT

CONVERT = ROOT / "roles" / "tensorrt_llm" / "files" / "trtllm_convert.py"
QWEN = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_attention_heads": 28,
        "num_key_value_heads": 4, "num_hidden_layers": 28, "hidden_size": 3584, "vocab_size": 152064,
        "max_position_embeddings": 32768, "torch_dtype": "bfloat16"}
FAKE_SMI = """#!/bin/sh
# fake nvidia-smi (test): {n} GPUs of compute capability {cap}
case "$*" in
  *--query-gpu=index,*) i=0; while [ $i -lt {n} ]; do echo "$i, 570.172.08, {cap}"; i=$((i+1)); done;;
  *--query-gpu=index*) i=0; while [ $i -lt {n} ]; do echo "$i"; i=$((i+1)); done;;
  *--query-gpu=compute_cap*) i=0; while [ $i -lt {n} ]; do echo "{cap}"; i=$((i+1)); done;;
  *) echo "fake nvidia-smi";;
esac
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fake_smi(folder: Path, n: int, cap: str) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    smi = folder / "nvidia-smi"
    smi.write_text(FAKE_SMI.format(n=n, cap=cap), encoding="utf-8")
    smi.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ.get('PATH', '')}",
            "LLMCLUSTER_SIM_LOAD_SECONDS": "1.5", "LLMCLUSTER_SIM_BUILD_SECONDS": "0"}


def _http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> list[Path]:
    return build_wheels(tmp_path_factory.mktemp("wheels"))


@pytest.fixture(scope="module")
def venv(wheels, tmp_path_factory) -> Path:
    """A throw-away venv with the stand-ins, installed offline like the role does."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, capture_output=True)
    r = subprocess.run([str(root / "bin" / "pip"), "install", "--no-input", "--disable-pip-version-check",
                        "--no-index", "--find-links", str(wheels[0].parent), f"tensorrt_llm=={TRTLLM_VERSION}"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    return root


@pytest.fixture()
def model(tmp_path) -> Path:
    d = tmp_path / "models" / "Qwen2-7B"
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(QWEN), encoding="utf-8")
    return d


def test_wheels_are_valid_and_reproducible(wheels, tmp_path):
    assert [w.name for w in wheels] == [f"torch-{TORCH_VERSION}-py3-none-any.whl",
                                        f"tensorrt_llm-{TRTLLM_VERSION}-py3-none-any.whl"]
    again = build_wheels(tmp_path)
    assert [w.read_bytes() for w in again] == [w.read_bytes() for w in wheels], "not reproducible"
    for wheel in wheels:
        name, version = wheel.name.split("-")[:2]
        dist_info = f"{name}-{version}.dist-info"
        with zipfile.ZipFile(wheel) as zf:
            assert zf.testzip() is None
            names = set(zf.namelist())
            record = zf.read(f"{dist_info}/RECORD").decode().splitlines()
            listed = set()
            for line in record:
                path, digest, size = line.rsplit(",", 2)
                listed.add(path)
                if path == f"{dist_info}/RECORD":
                    assert digest == size == ""
                    continue
                data = zf.read(path)
                want = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert (digest, int(size)) == (want, len(data)), path
            assert listed == names
            meta = zf.read(f"{dist_info}/METADATA").decode()
            assert f"Name: {name}\n" in meta and f"Version: {version}\n" in meta
            assert "Tag: py3-none-any" in zf.read(f"{dist_info}/WHEEL").decode()
            for path in names:
                if path.endswith(".py"):
                    compile(zf.read(path), path, "exec")
    with zipfile.ZipFile(wheels[1]) as zf:
        meta = zf.read(f"tensorrt_llm-{TRTLLM_VERSION}.dist-info/METADATA").decode()
        eps = zf.read(f"tensorrt_llm-{TRTLLM_VERSION}.dist-info/entry_points.txt").decode()
    assert f"Requires-Dist: torch=={TORCH_VERSION}" in meta
    for script in ("trtllm-serve", "trtllm-build", "trtllm-llmapi-launch"):
        assert f"{script} = " in eps


def test_versions_probe_like_the_role(venv):
    code = ("import json, tensorrt_llm, torch; print(json.dumps({'trtllm': tensorrt_llm.__version__, "
            "'cuda': torch.version.cuda}))")
    r = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout.splitlines()[-1]) == {"trtllm": TRTLLM_VERSION, "cuda": "12.9"}
    assert "SIMULATED" in r.stderr
    for script in ("trtllm-serve", "trtllm-build", "trtllm-llmapi-launch"):
        assert (venv / "bin" / script).exists()
    r = subprocess.run([str(venv / "bin" / "trtllm-llmapi-launch"), "echo", "launched"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "launched"


def _serve(venv: Path, env: dict, args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([str(venv / "bin" / "trtllm-serve"), *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_health(proc: subprocess.Popen, base: str, timeout: float = 20) -> list[int]:
    """Poll /health until 200; returns the statuses seen."""
    seen: list[int] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            status, _ = _http("GET", base + "/health")
        except OSError:
            time.sleep(0.05)
            continue
        seen.append(status)
        if status == 200:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"/health never answered 200: {seen}")


def _serve_args(model: Path, port: int, *, backend="pytorch", tp=2, options: Path | None = None) -> list[str]:
    args = [str(model), "--host", "127.0.0.1", "--port", str(port), "--backend", backend, "--tp_size", str(tp),
            "--pp_size", "1", "--max_batch_size", "8", "--max_num_tokens", "4096", "--max_seq_len", "4096",
            "--kv_cache_free_gpu_memory_fraction", "0.9"]
    return args + (["--extra_llm_api_options", str(options)] if options else [])


def test_serve_answers_like_trtllm_serve(venv, model, tmp_path):
    env = _fake_smi(tmp_path / "bin", 2, "9.0")
    options = tmp_path / "extra-llm-api-options.yml"
    # The planner's full engine configuration (llmcluster.plan.engine) for DeepSeek-R1 at high
    # concurrency (attention DP, MTP, MoE backend, CUDA graphs), its parallel sizes cut to these 2 GPUs.
    full = engine_config(size_deployment("deepseek-r1", "h200", "fp8", concurrency=256, context=2048)).options
    assert {"enable_attention_dp", "speculative_config", "moe_config", "cuda_graph_config"} <= set(full)
    full = {**full, "tensor_parallel_size": 2, "moe_expert_parallel_size": 2}
    options.write_text(yaml.safe_dump(full, indent=2), encoding="utf-8")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(venv, {**env, "LLMCLUSTER_SIM_NODES": "1"}, _serve_args(model, port, tp=2, options=options))
    try:
        seen = _wait_health(proc, base)
        assert seen[0] == 503, f"no loading phase seen: {seen}"
        status, body = _http("GET", base + "/v1/models")
        assert status == 200 and json.loads(body)["data"][0]["id"] == "Qwen2-7B"
        assert json.loads(_http("GET", base + "/version")[1]) == {"version": TRTLLM_VERSION}
        req = {"model": "Qwen2-7B", "messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 64}
        first = _http("POST", base + "/v1/chat/completions", json.dumps(req).encode())
        second = _http("POST", base + "/v1/chat/completions", json.dumps(req).encode())
        assert first[0] == 200 and first == second, "answers are deterministic"
        doc = json.loads(first[1])
        content = doc["choices"][0]["message"]["content"]
        assert doc["object"] == "chat.completion" and doc["model"] == "Qwen2-7B" and "SIMULATED" in content
        assert doc["usage"]["total_tokens"] == doc["usage"]["prompt_tokens"] + doc["usage"]["completion_tokens"]
        other = _http("POST", base + "/v1/chat/completions",
                      json.dumps({**req, "messages": [{"role": "user", "content": "else"}]}).encode())
        assert json.loads(other[1])["id"] != doc["id"]
        # Streaming: SSE chunks whose deltas add up to the same answer, then [DONE].
        status, raw = _http("POST", base + "/v1/chat/completions", json.dumps({**req, "stream": True}).encode())
        events = [e[len("data: "):] for e in raw.decode().split("\n\n") if e.startswith("data: ")]
        assert status == 200 and events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == content
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        status, body = _http("POST", base + "/v1/completions", json.dumps({"prompt": "hi", "max_tokens": 3}).encode())
        assert status == 200 and json.loads(body)["choices"][0]["finish_reason"] == "length"
        assert _http("POST", base + "/v1/chat/completions", b"{not json")[0] == 400
        assert _http("POST", base + "/v1/chat/completions", b'{"model": "x"}')[0] == 400
        assert _http("GET", base + "/nope")[0] == 404
        status, metrics = _http("GET", base + "/metrics")
        assert status == 200 and "trtllm_request_success_total 5" in metrics.decode()
        # llmcluster bench serve's harness streams from it (SSE, usage in the last chunk)
        from llmcluster import bench_serve as BS

        rep = BS.run(BS.endpoint_from_url(base), BS.Config(
            model="Qwen2-7B", isl=BS.Dist.parse("8", "--isl"), osl=BS.Dist.parse("6", "--osl"), mode="closed",
            concurrency=2, requests=4, warmup=0)).summary()
        assert rep["ok"] == 4 and rep["output_tokens_mean"] == 6 and rep["ttft_s"]["p50"] is not None, rep
        assert "trtllm_kv_cache_utilization" in metrics.decode()
    finally:
        stop_process(proc, 10)
    assert proc.returncode == 0
    assert "cuda_graph_config" in proc.stderr.read()


def test_serve_refuses_what_the_real_server_refuses(venv, model, tmp_path):
    env = _fake_smi(tmp_path / "bin", 2, "9.0")
    port = _free_port()
    bad_key, too_wide = tmp_path / "bad-key.yml", tmp_path / "too-wide.yml"
    bad_key.write_text(yaml.safe_dump({"kv_cache_fraction": 0.9}), encoding="utf-8")
    bad_field = tmp_path / "bad-field.yml"
    bad_field.write_text(yaml.safe_dump({"moe_config": {"backends": "CUTLASS"}}), encoding="utf-8")
    too_wide.write_text(yaml.safe_dump({"tensor_parallel_size": 8}), encoding="utf-8")
    cases = [
        (_serve_args(model, port, tp=4), "2 GPU(s) per node x 1 node(s)"),
        (_serve_args(tmp_path / "missing", port), "no such model directory"),
        (_serve_args(model, port, backend="tensorrt"), "not a TensorRT engine directory"),
        (_serve_args(model, port, options=bad_key), "unknown LLM API option(s) kv_cache_fraction"),
        (_serve_args(model, port, options=bad_field), "unknown LLM API option(s) moe_config.backends"),
        (_serve_args(model, port, options=too_wide), "= 8 ranks, but only 2 GPU(s) per node"),
    ]
    for args, message in cases:
        r = subprocess.run([str(venv / "bin" / "trtllm-serve"), *args], env=env, capture_output=True, text=True,
                           timeout=30, check=False)
        assert r.returncode == 1 and message in r.stderr, (args, r.stderr)
    # tp 4 fits two hosts of two GPUs.
    proc = _serve(venv, {**env, "LLMCLUSTER_SIM_NODES": "2", "LLMCLUSTER_SIM_LOAD_SECONDS": "0"},
                  _serve_args(model, port, tp=4))
    try:
        _wait_health(proc, f"http://127.0.0.1:{port}")
    finally:
        stop_process(proc, 10)


def test_convert_build_and_serve_an_engine(venv, model, tmp_path):
    env = _fake_smi(tmp_path / "bin", 2, "9.0")
    py = str(venv / "bin" / "python")
    ckpt, engine = tmp_path / "entry.tmp" / "checkpoint", tmp_path / "entry.tmp" / "engine"
    r = subprocess.run([py, str(CONVERT), "--model_dir", str(model), "--output_dir", str(ckpt), "--tp_size", "2",
                        "--pp_size", "1", "--gpus_per_node", "2", "--precision", "fp8", "--kv_dtype", "fp8"],
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["architecture"] == "QWenForCausalLM"
    assert cfg["mapping"]["world_size"] == 2 and cfg["mapping"]["tp_size"] == 2
    assert cfg["quantization"]["quant_algo"] == "FP8" and cfg["quantization"]["kv_cache_quant_algo"] == "FP8"
    assert sorted(p.name for p in ckpt.glob("rank*.safetensors")) == ["rank0.safetensors", "rank1.safetensors"]
    build = [str(venv / "bin" / "trtllm-build"), "--checkpoint_dir", str(ckpt), "--output_dir", str(engine),
             "--max_batch_size", "8", "--max_num_tokens", "4096", "--max_seq_len", "4096", "--gemm_plugin", "auto"]
    r = subprocess.run(build, env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    ecfg = json.loads((engine / "config.json").read_text())
    assert ecfg["build_config"]["max_batch_size"] == 8 and ecfg["build_config"]["max_seq_len"] == 4096
    assert ecfg["pretrained_config"]["mapping"]["tp_size"] == 2
    assert ecfg["llmcluster_sim"] == {"simulated": True, "gpu_sm": 90, "trtllm_version": TRTLLM_VERSION}
    assert (engine / "rank0.engine").read_bytes().startswith(b"SIMULATED")
    assert sorted(p.name for p in engine.glob("rank*.engine")) == ["rank0.engine", "rank1.engine"]
    r = subprocess.run([str(venv / "bin" / "trtllm-build"), "--output_dir", str(engine)], env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "--checkpoint_dir" in r.stderr
    # The engine refuses a GPU of another SM.
    port = _free_port()
    other = _fake_smi(tmp_path / "bin-b200", 2, "10.0")
    r = subprocess.run([str(venv / "bin" / "trtllm-serve"), *_serve_args(engine, port, backend="tensorrt")],
                       env=other, capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and "built for SM 90, this GPU is SM 100" in r.stderr
    # A DeepSeek-V3 checkpoint has no TensorRT engine flow (PyTorch backend only).
    ds = tmp_path / "ds"
    ds.mkdir()
    ds_config = {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"]}
    (ds / "config.json").write_text(json.dumps(ds_config), encoding="utf-8")
    r = subprocess.run([py, str(CONVERT), "--model_dir", str(ds), "--output_dir", str(tmp_path / "x"), "--tp_size", "8",
                        "--pp_size", "1", "--precision", "fp8"], env=env, capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "not supported in TRT-LLM" in r.stderr
    # And the engine serves on the GPUs it was built for.
    proc = _serve(venv, {**env, "LLMCLUSTER_SIM_LOAD_SECONDS": "0"},
                  [*_serve_args(engine, port, backend="tensorrt"), "--tokenizer", str(model)])
    try:
        _wait_health(proc, f"http://127.0.0.1:{port}")
        status, body = _http("POST", f"http://127.0.0.1:{port}/v1/completions", b'{"prompt": "hello"}')
        assert status == 200 and json.loads(body)["model"] == "engine"
    finally:
        stop_process(proc, 10)


STUB_ENGINE = """import json, os, sys
with open(os.environ["STUB_OUT"], "w") as f:
    json.dump({"argv": sys.argv[1:], "pythonpath": os.environ.get("PYTHONPATH"), "pid": os.getpid()}, f)
"""


def test_serve_hands_a_gguf_model_to_the_lab_engine(venv, model, tmp_path):
    """LAB STAND-IN ENGINE (opt-in): a .gguf in the model directory and the lab engine installed ->
    the same process execs the engine with the same host, port and served name; without the engine
    it warns and answers canned (the fallback)."""
    env = _fake_smi(tmp_path / "bin", 2, "9.0")
    (model / "SmolLM2-135M-Instruct.Q4_1.gguf").write_bytes(b"GGUF")
    port = _free_port()
    engine = tmp_path / "llama-engine"
    engine.mkdir()
    (engine / "engine_standin.py").write_text(STUB_ENGINE, encoding="utf-8")
    out = tmp_path / "stub.json"
    proc = _serve(venv, {**env, "LLMCLUSTER_SIM_ENGINE_DIR": str(engine), "STUB_OUT": str(out)},
                  _serve_args(model, port))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    got = json.loads(out.read_text())
    assert got["argv"] == ["--model", str(model / "SmolLM2-135M-Instruct.Q4_1.gguf"), "--host", "127.0.0.1",
                           "--port", str(port), "--served-name", "Qwen2-7B"]
    assert got["pythonpath"] == str(engine / "site") and got["pid"] == proc.pid, "exec, not a child"
    assert "LAB STAND-IN ENGINE" in err
    # The checks of the real server still come first: too many ranks fail before any hand-over.
    r = subprocess.run([str(venv / "bin" / "trtllm-serve"), *_serve_args(model, port, tp=4)],
                       env={**env, "LLMCLUSTER_SIM_ENGINE_DIR": str(engine), "STUB_OUT": str(tmp_path / "no.json")},
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 1 and not (tmp_path / "no.json").exists()
    # No engine installed: the canned stand-in answers, and says why in its log.
    none = {**env, "LLMCLUSTER_SIM_ENGINE_DIR": str(tmp_path / "none"), "LLMCLUSTER_SIM_LOAD_SECONDS": "0"}
    proc = _serve(venv, none, _serve_args(model, port))
    try:
        _wait_health(proc, f"http://127.0.0.1:{port}")
        status, body = _http("POST", f"http://127.0.0.1:{port}/v1/completions", b'{"prompt": "hello"}')
        assert status == 200 and "SIMULATED" in json.loads(body)["choices"][0]["text"]
    finally:
        stop_process(proc, 10)
    assert "no lab engine in" in proc.stderr.read()
