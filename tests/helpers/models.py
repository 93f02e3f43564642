"""Small model trees for the model store tests: real safetensors files written by hand (8-byte
little-endian header length, JSON header padded with spaces to 8 bytes, tensor data)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from llmcluster.collections.ansible_collections.llmcluster.hosts.plugins.module_utils import (
    model_manifest as MM,
)

SCRIPT = Path(MM.__file__)

#: bytes per element of the dtypes the helpers write
_BYTES = {"F32": 4, "BF16": 2, "F16": 2, "U8": 1, "F8_E4M3": 1, "I64": 8}


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]], *, metadata: dict | None = None,
                      seed: int = 0) -> bytes:
    """A valid safetensors file: each tensor (dtype, shape) gets deterministic pseudo-random data."""
    header: dict = {}
    data = bytearray()
    for i, (name, (dtype, shape)) in enumerate(tensors.items()):
        count = 1
        for d in shape:
            count *= d
        n = count * _BYTES[dtype]
        blob = bytes((seed * 131 + i * 31 + k * 7) & 0xFF for k in range(n))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += blob
    if metadata is not None:
        header["__metadata__"] = metadata
    return raw_safetensors(json.dumps(header).encode(), bytes(data))


def raw_safetensors(header: bytes, data: bytes, *, pad: bool = True) -> bytes:
    """8-byte length + ``header`` (padded with spaces to a multiple of 8) + ``data``."""
    if pad:
        header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header + data


def header_of(tensors: dict, data_size: int) -> bytes:
    """A file whose header is ``tensors`` (a dict, written as JSON unchecked) and ``data_size`` zero bytes."""
    return raw_safetensors(json.dumps(tensors).encode(), bytes(data_size))


def make_model(root: Path, *, shards: int = 3, rows: int = 64) -> Path:
    """A small DeepSeek-like tree: ``shards`` safetensors shards, an index, a config, a tokenizer in a
    sub-folder."""
    root.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for i in range(1, shards + 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        tensors = {f"model.layers.{i}.mlp.weight": ("F8_E4M3", [rows, 128]),
                   f"model.layers.{i}.mlp.weight_scale_inv": ("F32", [rows // 8, 1]),
                   f"model.layers.{i}.input_layernorm.weight": ("BF16", [128])}
        (root / name).write_bytes(safetensors_bytes(tensors, metadata={"format": "pt"}, seed=i))
        weight_map.update({t: name for t in tensors})
    (root / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}, indent=1))
    (root / "config.json").write_text(json.dumps({"architectures": ["DeepseekV3ForCausalLM"]}))
    (root / "tokenizer").mkdir(exist_ok=True)
    (root / "tokenizer" / "tokenizer.json").write_text('{"version": "1.0"}\n')
    return root


def flip_bit(path: Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << bit)]))


def data_offset(path: Path) -> int:
    """Where the tensor data of a safetensors file starts."""
    with open(path, "rb") as f:
        return 8 + struct.unpack("<Q", f.read(8))[0]


def write_manifest(root: Path, out: Path, **kw) -> MM.Manifest:
    m = MM.build_manifest(os.fspath(root), **kw)
    out.write_bytes(m.to_json())
    return m
