"""The lab's model fixture (llmcluster.lab.model_fixture, a LAB FIXTURE: random weights): generated
once per cache, a few MB, in the model's format, its manifest written by the verifier and matching it;
the lab inventory hands it to the model_store role."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

from llmcluster.lab import model_fixture as F
from llmcluster.plan.catalog import lookup_model


def test_fixture_tree_manifest_and_reuse(tmp_path):
    fx = F.ensure_lab_model(tmp_path, "deepseek-r1")
    assert fx.source.name == "DeepSeek-R1" and fx.source.parent.name == "deepseek-ai"
    names = sorted(p.name for p in fx.source.iterdir())
    assert names == sorted(["config.json", "generation_config.json", "tokenizer_config.json", "SIMULATED-CHECKPOINT",
                            "model.safetensors.index.json"]
                           + [f"model-{i:05d}-of-{F.SHARDS:05d}.safetensors" for i in range(1, F.SHARDS + 1)])
    total = sum(p.stat().st_size for p in fx.source.iterdir())
    assert 2 * 2**20 < total < 8 * 2**20, total  # a few MB
    assert json.loads((fx.source / "config.json").read_text())["model_type"] == lookup_model("deepseek-r1").family
    shard = (fx.source / f"model-00001-of-{F.SHARDS:05d}.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", shard[:8])
    header = json.loads(shard[8:8 + n])
    (tensor,) = [v for k, v in header.items() if k != "__metadata__"]
    assert tensor["dtype"] == "BF16" and tensor["data_offsets"][1] == len(shard) - 8 - n == 2 * 512 * 1024
    m = json.loads(fx.manifest.read_text())
    assert m["format"] == "llmcluster-model-manifest/1" and m["model"] == "deepseek-r1"
    assert len(m["files"]) == len(names)
    r = subprocess.run([sys.executable, "-I", str(F.VERIFIER), "verify", "--manifest", str(fx.manifest),
                        str(fx.source)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    # Reused as is (the manifest's creation time stays: a second converge copies nothing new).
    again = F.ensure_lab_model(tmp_path, "deepseek-r1")
    assert again == fx and again.manifest.read_text() == fx.manifest.read_text()
    assert F.inventory_overrides(fx) == {"model_store_source": str(fx.source),
                                         "model_store_manifest_src": str(fx.manifest)}


def test_deterministic_content(tmp_path):
    a = F.ensure_lab_model(tmp_path / "a", "deepseek-r1-distill-qwen-7b")
    b = F.ensure_lab_model(tmp_path / "b", "deepseek-r1-distill-qwen-7b")
    fa = {e["path"]: e["sha256"] for e in json.loads(a.manifest.read_text())["files"]}
    fb = {e["path"]: e["sha256"] for e in json.loads(b.manifest.read_text())["files"]}
    assert fa == fb
