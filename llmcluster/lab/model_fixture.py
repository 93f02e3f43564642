"""LAB FIXTURE: a small model tree for the model store to stage in the lab (a few MB, random weights).

The lab's GPU nodes get their model the way production nodes do: the ``model_store`` role stages it
from a source and verifies it against its manifest before trtllm-serve may start. The source here is
a folder on the controller (this machine), generated once per cache and content:

* the model's Hugging Face config and tokenizer settings (:func:`llmcluster.lab.nvidia_sim.checkpoint
  .write_checkpoint`, as the lab's stand-in trtllm-serve reads them) and its ``SIMULATED-CHECKPOINT``
  marker;
* :data:`SHARDS` safetensors shards of pseudo-random BF16 tensors (deterministic, ~1 MiB each) and
  ``model.safetensors.index.json``: NOT the model's weights — a fixture of the right format whose
  bytes the verifier hashes and whose headers it checks;
* the manifest, written by the model verifier's own ``manifest`` command (the llmcluster.hosts
  collection's ``model_manifest`` module) — what ``llmcluster model manifest`` writes in production.

:func:`ensure_lab_model` returns the folder and the manifest; the lab inventory passes them to the
role as ``model_store_source`` and ``model_store_manifest_src`` (:func:`inventory_overrides`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from llmcluster.lab.nvidia_sim.checkpoint import write_checkpoint
from llmcluster.plan.catalog import lookup_model

#: The model verifier (the llmcluster.hosts collection's module, run as a script).
VERIFIER = (Path(__file__).resolve().parents[1] / "collections" / "ansible_collections" / "llmcluster" / "hosts"
            / "plugins" / "module_utils" / "model_manifest.py")
#: Shards of the fixture and the shape of their one tensor each (BF16: 2 bytes an element).
SHARDS = 3
TENSOR_SHAPE = (512, 1024)
#: The manifest's version field for the fixture.
VERSION = "lab-fixture-1"


def write_safetensors(path: Path, tensors: Mapping[str, tuple[str, tuple[int, ...], bytes]],
                      metadata: Mapping[str, str] | None = None) -> None:
    """A safetensors file: little-endian u64 header length, the JSON header, the tensors' bytes."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    offset, blobs = 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8 bytes with spaces
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for blob in blobs:
            f.write(blob)


def write_tree(folder: Path, model_name: str) -> None:
    """The fixture tree of the catalog model ``model_name`` in ``folder`` (created)."""
    m = lookup_model(model_name)
    write_checkpoint(folder, m)
    elements = TENSOR_SHAPE[0] * TENSOR_SHAPE[1]
    weight_map, total = {}, 0
    for i in range(SHARDS):
        name = f"model.layers.{i}.mlp.down_proj.weight"
        data = random.Random(f"{model_name}/{i}").randbytes(elements * 2)
        shard = f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors"
        write_safetensors(folder / shard, {name: ("BF16", TENSOR_SHAPE, data)}, {"format": "pt"})
        weight_map[name] = shard
        total += len(data)
    index = {"metadata": {"total_size": total, "llmcluster_lab_fixture": "random weights, not the model's"},
             "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class LabModel:
    """The fixture of one model: the folder the role stages from and its manifest (on the controller)."""

    source: Path
    manifest: Path


def _content_hash(model_name: str, gguf: Path | None = None) -> str:
    h = hashlib.sha256(model_name.encode() + b"\0")
    if gguf is not None:  # the real-model stand-in's file (its cache path names its pinned version)
        h.update(f"{gguf.resolve()}:{gguf.stat().st_size}".encode() + b"\0")
    for path in (Path(__file__), Path(__file__).parent / "nvidia_sim" / "checkpoint.py"):
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_lab_model(cache: Path, model_name: str, gguf: Path | None = None) -> LabModel:
    """Build (or reuse) the fixture of ``model_name`` under ``cache/lab-model-<hash>/``.

    With ``gguf`` (the lab's real-model stand-in, :mod:`llmcluster.lab.llama_engine`) the tree also
    holds that file, covered by the manifest: the stand-in trtllm-serve then serves it with llama.cpp."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    m = lookup_model(model_name)
    final = cache / f"lab-model-{model_name}-{_content_hash(model_name, gguf)}"
    out = LabModel(final / "tree" / m.hf_repo, final / f"{model_name}.json")
    with open(cache / "lab-model.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".complete").exists():
            return out
        tmp = cache / f".{final.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tree = tmp / "tree" / m.hf_repo
        write_tree(tree, model_name)
        if gguf is not None:
            shutil.copyfile(gguf, tree / gguf.name)
        r = subprocess.run([sys.executable, "-I", str(VERIFIER), "manifest", str(tree), "--model", model_name,
                            "--version", VERSION, "--out", str(tmp / out.manifest.name)],
                           capture_output=True, text=True, check=False)
        if r.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise RuntimeError(f"the model verifier could not write the lab fixture's manifest: {r.stderr.strip()}")
        (tmp / "README").write_text(
            f"LAB FIXTURE (llmcluster lab): a small tree in the format of {m.hf_repo} with RANDOM weights,\n"
            "staged by the model_store role onto the lab's GPU nodes. Not a model."
            + (f"\nPlus {gguf.name}: a real tiny model (SmolLM2-135M-Instruct) the lab's stand-in engine serves."
               if gguf is not None else "") + "\n", encoding="utf-8")
        (tmp / ".complete").write_text("ok\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    return out


def inventory_overrides(fixture: LabModel) -> dict[str, str]:
    """The ``all.vars`` the lab inventory adds: the model_store role stages the fixture from the controller."""
    return {"model_store_source": str(fixture.source), "model_store_manifest_src": str(fixture.manifest)}
