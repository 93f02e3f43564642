"""A small model tree, its manifest (written by the model verifier's own ``manifest`` command) and the
six ways of corrupting it that the verifier must refuse, naming the file.

Shared by tests/roles/test_model_store_local.py (the model_store role's stage-in and verification),
tests/roles/test_tensorrt_llm_render.py (the trtllm-serve unit's ExecStartPre) and the verification
suite's unit tests.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

from llmcluster.lab.model_fixture import VERIFIER, write_safetensors

MODEL = "lab-model"
SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")
#: corruption class -> the relative path the verifier must name
CORRUPTIONS = {
    "truncated": SHARDS[0],
    "flipped-bit": SHARDS[1],
    "zeroed-header": SHARDS[0],
    "missing": "config.json",
    "extra": "notes.txt",
    "swapped-symlink": "tokenizer.json",
}


def make_tree(folder: Path) -> Path:
    """config.json, tokenizer.json, two safetensors shards and a file in a subfolder (~200 KiB)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "hidden_size": 64}) + "\n")
    (folder / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE"}}) + "\n")
    for i, shard in enumerate(SHARDS):
        data = random.Random(i).randbytes(64 * 1024)
        write_safetensors(folder / shard, {f"layers.{i}.weight": ("BF16", (128, 256), data),
                                           f"layers.{i}.bias": ("F32", (4096,), data[:16384])})
    (folder / "original").mkdir(exist_ok=True)
    (folder / "original" / "params.json").write_text('{"dim": 64}\n')
    return folder


def write_manifest(tree: Path, out: Path, model: str = MODEL) -> dict:
    """The tree's manifest, written by ``model-verify manifest`` (``python3 -I``: standard library only)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-I", str(VERIFIER), "manifest", str(tree), "--model", model,
                        "--version", "test", "--out", str(out), "--force"], capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def install_verifier(dest: Path) -> Path:
    """The collection's module copied as the nodes get it (an executable script)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(VERIFIER, dest)
    dest.chmod(0o755)
    return dest


def corrupt(tree: Path, kind: str) -> str:
    """Apply corruption ``kind`` to ``tree``; returns the relative path the verifier must name."""
    rel = CORRUPTIONS[kind]
    path = tree / rel
    if kind == "truncated":
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size - 1)
    elif kind == "flipped-bit":
        data = bytearray(path.read_bytes())
        data[len(data) - 1000] ^= 0x01  # inside the tensor data
        path.write_bytes(bytes(data))
    elif kind == "zeroed-header":
        data = bytearray(path.read_bytes())
        data[:8] = bytes(8)
        path.write_bytes(bytes(data))
    elif kind == "missing":
        path.unlink()
    elif kind == "extra":
        path.write_text("left here by hand\n")
    elif kind == "swapped-symlink":
        path.unlink()
        os.symlink("config.json", path)
    else:
        raise ValueError(kind)
    return rel
