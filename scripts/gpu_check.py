#!/usr/bin/env python3
"""On a machine with an NVIDIA GPU: the GPU verification checks and ``llmcluster bench serve``
against a small distill served by trtllm-serve with the planner's engine configuration; results
under ``bench/results/``.

Steps (each skipped with the reason, never faked, where its tool or input is missing):

1. **GPU facts**: the verification suite's gather program (``llmcluster.verify.gpu.GATHER``: one
   ``nvidia-smi`` query per GPU, ``-q``, NVLink, packages, DCGM, the TensorRT-LLM venv) run
   locally; reported: GPUs (name, driver, compute capability, memory), persistence and ECC.
2. **HBM bandwidth**: the suite's device-to-device copy (``HBM_PROBE``, needs torch with CUDA),
   judged against the catalog's bandwidth for the detected GPU (``judge_hbm``: >= 90 %).
3. **Engine configuration**: the planner sizes ``--model`` on the detected GPU for ``--context``
   and ``--concurrency`` (one node of ``--gpus`` GPUs) and writes the extra LLM-API options
   (``llmcluster.plan.engine``) next to the results.
4. **Serve and load-test**: ``trtllm-serve <--model-dir> --backend pytorch`` on 127.0.0.1 with
   those options (the PyTorch flow: no engine build, so the check takes minutes), then
   ``llmcluster bench serve`` closed-loop at ``--concurrency`` and at 1, with ``--isl``/``--osl``;
   the reports (JSON) and a summary (Markdown, with the ratio to the roofline) are written to
   ``--out`` (default ``bench/results``). The model must already be on the machine
   (``--model-dir``, a Hugging Face checkpoint folder): nothing is downloaded.

``--dry-run`` runs nothing on a GPU and writes nothing: it prints the steps and commands it would
run and the engine configuration for ``--gpu`` (default h100), so it can be checked anywhere.

    python scripts/gpu_check.py [--dry-run] [--model-dir DIR] [--model deepseek-r1-distill-qwen-1.5b]
        [--gpu h100] [--gpus 1] [--context 4096] [--concurrency 32] [--isl 512] [--osl 256]
        [--requests 200] [--port 8011] [--out bench/results] [--serve-timeout 1800]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from llmcluster.plan.capacity import size_deployment  # noqa: E402
from llmcluster.plan.catalog import GPUS  # noqa: E402
from llmcluster.plan.engine import engine_config  # noqa: E402

#: nvidia-smi product names -> catalog GPU (first match wins).
SMI_NAMES = (("H200", "h200"), ("H100", "h100"), ("H20", "h20"), ("B200", "b200"), ("GB200", "gb200"),
             ("A100-SXM4-80GB", "a100-80gb"), ("A100-SXM4-40GB", "a100-40gb"), ("A100 80GB", "a100-80gb"),
             ("L40S", "l40s"))


def catalog_gpu(smi_name: str) -> str | None:
    for needle, name in SMI_NAMES:
        if needle.lower() in smi_name.lower():
            return name
    return None


def sh(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def gpu_facts() -> dict[str, Any]:
    from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils.nvidia_smi import (
        nvidia_smi_query,
    )
    from llmcluster.verify.gpu import GATHER, QUERY_FIELDS

    args = json.dumps({"query": ",".join(QUERY_FIELDS), "diag_level": 1, "cache": "/nonexistent",
                       "venv_python": shutil.which("python3") or sys.executable, "fabric_service": "",
                       "health": "", "inference": []})
    p = sh([sys.executable, "-c", GATHER, args], timeout=1200)
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:]}
    raw = json.loads(p.stdout.strip().splitlines()[-1])
    rows = nvidia_smi_query(raw["query"]["out"], QUERY_FIELDS)
    return {"gpus": rows, "dcgm_rc": raw["diag"]["rc"], "venv": raw["venv"]["out"].strip(),
            "persistence_on": all(r.get("persistence_mode") == "Enabled" for r in rows) if rows else None,
            "ecc_on": all(r.get("ecc.mode.current") == "Enabled" for r in rows) if rows else None}


def hbm(gpu: str) -> dict[str, Any]:
    from llmcluster.verify.gpu import HBM_PROBE, judge_hbm

    p = sh([sys.executable, "-c", HBM_PROBE], timeout=300)
    if p.returncode != 0:
        return {"skipped": f"the copy probe needs torch with CUDA: {p.stderr.strip()[-200:]}"}
    got = json.loads(p.stdout.strip().splitlines()[-1])
    bound = GPUS[gpu].hbm_bandwidth_bytes_per_s
    return {**got, "catalog_gbps": bound / 1e9, "ratio": round(got["gbps"] / (bound / 1e9), 3),
            "problems": judge_hbm(got["gbps"], bound)}


def plan_options(a: argparse.Namespace, gpu: str) -> tuple[Any, Any]:
    cap = size_deployment(a.model, gpu, context=a.context, concurrency=a.concurrency, gpus_per_node=a.gpus,
                          max_nodes=1)
    return cap, engine_config(cap, isl=a.isl, osl=a.osl, backend="pytorch")


def serve_argv(a: argparse.Namespace, cap: Any, options: Path) -> list[str]:
    return ["trtllm-serve", a.model_dir or "<--model-dir>", "--host", "127.0.0.1", "--port", str(a.port),
            "--backend", "pytorch", "--tp_size", str(cap.tp), "--pp_size", str(cap.pp),
            "--extra_llm_api_options", str(options)]


def bench_argv(a: argparse.Namespace, name: str, concurrency: int, report: Path) -> list[str]:
    return [sys.executable, "-m", "llmcluster.cli", "bench", "serve", "--url", f"http://127.0.0.1:{a.port}",
            "--model", name, "--concurrency", str(concurrency), "--isl", str(a.isl), "--osl", str(a.osl),
            "--ignore-eos", "--requests", str(a.requests if concurrency > 1 else max(8, a.requests // 10)),
            "--json", "--out", str(report)]


def wait_health(port: int, proc: subprocess.Popen, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"trtllm-serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(5)
    raise RuntimeError(f"trtllm-serve did not answer /health within {timeout:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--model-dir")
    ap.add_argument("--model", default="deepseek-r1-distill-qwen-1.5b", help="catalog name of the checkpoint")
    ap.add_argument("--gpu", default=None, help="catalog GPU (default: detected; h100 in a dry run)")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--context", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--isl", type=int, default=512)
    ap.add_argument("--osl", type=int, default=256)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--port", type=int, default=8011)
    ap.add_argument("--serve-timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(a.out)

    if a.dry_run:
        gpu = a.gpu or "h100"
        cap, eng = plan_options(a, gpu)
        options = out / f"gpu-check-{gpu}-{stamp}-options.yml"
        print("DRY RUN: nothing is run on a GPU and nothing is written")
        print(f"1. GPU facts: {sys.executable} -c <llmcluster.verify.gpu.GATHER> (nvidia-smi, dcgmi, venv)")
        print(f"2. HBM bandwidth: {sys.executable} -c <llmcluster.verify.gpu.HBM_PROBE>, judged against "
              f"{GPUS[gpu].hbm_bandwidth_bytes_per_s / 1e9:.0f} GB/s")
        print(f"3. engine configuration for {a.model} on {a.gpus}x {gpu} (recipe {eng.recipe}): {options}")
        print(yaml.safe_dump(eng.options, sort_keys=False).rstrip())
        print(f"4. {shlex.join(serve_argv(a, cap, options))}")
        for c in (a.concurrency, 1):
            print(f"   {shlex.join(bench_argv(a, a.model, c, out / f'serve-gpu-{gpu}-c{c}-{stamp}.json'))}")
        print(f"   summary: {out / f'gpu-check-{gpu}-{stamp}.md'}; roofline decode bound "
              f"{cap.decode_tokens_per_s_bound} tokens/s at concurrency {cap.concurrency}")
        return 0

    if shutil.which("nvidia-smi") is None:
        print("no nvidia-smi: not a GPU machine (use --dry-run)", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    facts = gpu_facts()
    names = [r.get("name", "") for r in facts.get("gpus", [])]
    gpu = a.gpu or (catalog_gpu(names[0]) if names else None)
    summary: list[str] = [f"# GPU check {stamp}", "", f"GPUs: {names}", f"facts: `{json.dumps(facts)[:2000]}`", ""]
    result: dict[str, Any] = {"stamp": stamp, "facts": facts, "gpu": gpu}
    if gpu is None:
        summary.append(f"no catalog GPU for {names}: planning, serving and the bench are skipped")
    else:
        result["hbm"] = hbm(gpu)
        summary.append(f"HBM: `{json.dumps(result['hbm'])}`")
        cap, eng = plan_options(a, gpu)
        options = out / f"gpu-check-{gpu}-{stamp}-options.yml"
        options.write_text(yaml.safe_dump(eng.options, sort_keys=False))
        result["engine"] = eng.to_dict()
        result["roofline_tokens_per_s"] = cap.decode_tokens_per_s_bound
        if not a.model_dir or shutil.which("trtllm-serve") is None:
            why = "no --model-dir (nothing is downloaded)" if not a.model_dir else "no trtllm-serve on PATH"
            summary.append(f"serve and bench skipped: {why}")
        else:
            proc = subprocess.Popen(serve_argv(a, cap, options), stdout=open(out / f"trtllm-serve-{stamp}.log", "w"),
                                    stderr=subprocess.STDOUT)
            try:
                result["load_s"] = wait_health(a.port, proc, a.serve_timeout)
                served = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{a.port}/v1/models",
                                                           timeout=10).read())["data"][0]["id"]
                for c in (a.concurrency, 1):
                    report = out / f"serve-gpu-{gpu}-c{c}-{stamp}.json"
                    p = sh(bench_argv(a, served, c, report), timeout=3600)
                    s = json.loads(report.read_text())["summary"] if report.exists() else {"error": p.stderr[-500:]}
                    result[f"bench_c{c}"] = s
                    tps = s.get("output_tokens_per_s")
                    ratio = round(tps / cap.decode_tokens_per_s_bound, 3) if tps and c == a.concurrency else None
                    summary.append(f"bench concurrency {c}: {json.dumps(s)[:1500]} (roofline ratio {ratio})")
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
    (out / f"gpu-check-{gpu}-{stamp}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out / f"gpu-check-{gpu}-{stamp}.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
