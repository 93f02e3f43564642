"""scripts/gpu_check.py (run on a lent GPU): compiles, and its dry run prints the plan and writes nothing."""

from __future__ import annotations

import py_compile
import subprocess
import sys

import yaml

from tests.helpers.tools import ROOT

SCRIPT = ROOT / "scripts" / "gpu_check.py"


def test_compiles() -> None:
    py_compile.compile(str(SCRIPT), doraise=True)
    py_compile.compile(str(ROOT / "bench" / "gateway.py"), doraise=True)


def test_dry_run_prints_the_steps_and_writes_nothing(tmp_path) -> None:
    out = tmp_path / "results"
    p = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--gpu", "h200", "--out", str(out),
                        "--concurrency", "16"], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 0, p.stderr
    text = p.stdout
    assert "DRY RUN" in text and not out.exists()
    for step in ("1. GPU facts", "2. HBM bandwidth", "3. engine configuration", "trtllm-serve", "bench serve"):
        assert step in text, step
    # the engine configuration printed is the planner's, valid YAML, PyTorch flow (CUDA graphs)
    body = text.split("engine configuration", 1)[1].split("\n", 1)[1].split("\n4. ", 1)[0]
    opts = yaml.safe_load(body)
    assert opts["max_batch_size"] == 16 and opts["cuda_graph_config"]["batch_sizes"][-1] == 16
    assert opts["kv_cache_config"]["free_gpu_memory_fraction"] == 0.9


def test_not_a_gpu_machine_without_dry_run(tmp_path) -> None:
    p = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "r")], capture_output=True, text=True,
                       timeout=120, check=False, env={"PATH": "/nonexistent"})
    assert p.returncode == 2 and "no nvidia-smi" in p.stderr and not (tmp_path / "r").exists()
