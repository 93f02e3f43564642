"""LAB SIMULATION: stand-in ``torch`` and ``tensorrt_llm`` wheels (never installed in production).

The lab's GPU hosts have no GPU, no CUDA and no route to pypi.nvidia.com, yet the
``tensorrt_llm`` role installs TensorRT-LLM into a venv with pip, converts checkpoints with its
Python API, builds engines with ``trtllm-build`` and serves with ``trtllm-serve``. This module
writes two small pure-Python wheels with the real names, versions and entry points, which the
lab copies to ``/srv/llmcluster-sim/wheels/`` (``pip install --no-index --find-links``):

* ``torch-2.7.1+cu129-py3-none-any.whl``: ``torch.__version__``, ``torch.version.cuda``
  (``12.9``), ``torch.cuda.is_available()/device_count()`` from ``nvidia-smi``.
* ``tensorrt_llm-1.0.0-py3-none-any.whl`` (``Requires-Dist: torch==2.7.1+cu129``):

  - ``trtllm-serve MODEL --host --port --backend pytorch|tensorrt --tp_size --pp_size
    [--ep_size] --max_batch_size --max_num_tokens --max_seq_len
    --kv_cache_free_gpu_memory_fraction [--extra_llm_api_options YAML]``: refuses what the real
    server refuses (no config.json, an engine built for another SM / TensorRT-LLM version /
    parallel mapping, more ranks than GPUs), loads for ``$LLMCLUSTER_SIM_LOAD_SECONDS``
    (default 1; ``/health`` answers 503 meanwhile) and then serves ``/health``, ``/version``,
    ``/metrics`` (Prometheus text), ``/v1/models``, ``/v1/chat/completions`` and
    ``/v1/completions`` (streaming too) with deterministic answers that say they are simulated.
    Opt-in (``LLMCLUSTER_LAB_MODEL=smollm2``, :mod:`llmcluster.lab.llama_engine`): when the model
    directory holds a ``.gguf`` and the lab engine is installed in :data:`LAB_ENGINE_DIR`, it execs
    llama.cpp's server on that real tiny model instead (:mod:`llmcluster.lab.engine_standin`).
    It binds ``--host``/``--port`` as given: in the lab, as in production, the tensorrt_llm role
    starts it on 127.0.0.1 at ``serving.backend_port``, behind the ``serving_tls`` terminator
    (real HAProxy with the node's real host certificate: nothing about the TLS hop is simulated).
  - ``trtllm-build --checkpoint_dir --output_dir ...``: an engine directory (``config.json`` with
    ``build_config``, ``pretrained_config`` and ``llmcluster_sim.{gpu_sm,trtllm_version}``, one
    ``rank<N>.engine`` per rank, whose first line says SIMULATED).
  - ``trtllm-llmapi-launch CMD...``: execs CMD on MPI rank 0, idles as a "worker" elsewhere.
  - The checkpoint-conversion API: ``tensorrt_llm.Mapping``,
    ``tensorrt_llm.models.AutoModelForCausalLM`` (and the family classes),
    ``tensorrt_llm.models.modeling_utils.QuantConfig``, ``tensorrt_llm.quantization.QuantAlgo``:
    ``from_hugging_face(...)`` reads the Hugging Face ``config.json``, ``save_checkpoint(dir)``
    writes a TensorRT-LLM checkpoint ``config.json`` and ``rank<N>.safetensors`` stubs.

Everything is standard library only (Debian 12's python3 3.11 and newer). The wheels are built
without a build backend (a wheel is a zip file) and are byte-for-byte reproducible.
GPUs are whatever ``nvidia-smi --query-gpu=... --format=csv,noheader`` reports (the lab's
stand-in ``nvidia-smi``); the number of hosts of an MPI job is ``$LLMCLUSTER_SIM_NODES``
(default 1) or, under ``mpirun``, ``OMPI_COMM_WORLD_SIZE / OMPI_COMM_WORLD_LOCAL_SIZE``.
"""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from llmcluster.plan.engine import LLM_API_OPTIONS

#: Where the lab installs its real-model stand-in engine (llmcluster.lab.llama_engine.HOST_ENGINE_DIR).
LAB_ENGINE_DIR = "/srv/llmcluster-sim/llama-engine"
TORCH_VERSION = "2.7.1+cu129"
TORCH_CUDA = "12.9"
TRTLLM_VERSION = "1.0.0"
#: Zip entries' timestamp (the earliest a zip file can hold): reproducible wheels.
_EPOCH = (1980, 1, 1, 0, 0, 0)

# --------------------------------------------------------------------------- torch

_TORCH_INIT = '''\
"""SIMULATED torch 2.7.1+cu129 (llmcluster lab stand-in: version metadata only, no tensors, no CUDA)."""

from torch import cuda, version

__version__ = version.__version__
SIMULATED = True

__all__ = ["SIMULATED", "__version__", "cuda", "version"]
'''

_TORCH_VERSION = f'''\
"""SIMULATED torch version information (llmcluster lab stand-in)."""

__version__ = "{TORCH_VERSION}"
cuda = "{TORCH_CUDA}"
hip = None
git_version = "llmcluster-lab-simulated"
'''

_TORCH_CUDA = '''\
"""SIMULATED torch.cuda (llmcluster lab stand-in): devices are what nvidia-smi lists."""

import subprocess


def _query(field):
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=" + field, "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in r.stdout.splitlines() if line.strip()] if r.returncode == 0 else []


def device_count():
    return len(_query("index"))


def is_available():
    return device_count() > 0


def get_device_capability(device=0):
    caps = _query("compute_cap")
    major, minor = caps[int(device)].split(".")
    return int(major), int(minor)


def get_device_name(device=0):
    return _query("name")[int(device)]
'''

# --------------------------------------------------------------------------- tensorrt_llm

_TRTLLM_INIT = f'''\
"""SIMULATED TensorRT-LLM {TRTLLM_VERSION} (llmcluster lab stand-in: no CUDA, no engines, no inference).

The names, versions, console scripts and checkpoint API of the real package, for the lab's
GPU hosts that have no GPU. Answers of its server say they are simulated.
"""

import sys

import torch  # noqa: F401  (the real package needs torch too)

from tensorrt_llm._sim import SIMULATED
from tensorrt_llm.mapping import Mapping

__version__ = "{TRTLLM_VERSION}"

# The real package prints its version banner on import (here on stderr: stdout stays parseable).
print(f"[TensorRT-LLM] TensorRT-LLM version: {{__version__}} (SIMULATED)", file=sys.stderr, flush=True)

__all__ = ["SIMULATED", "Mapping", "__version__"]
'''

_TRTLLM_SIM = '''\
"""Helpers of the SIMULATED TensorRT-LLM (llmcluster lab stand-in)."""

import json
import os
import subprocess
import sys
import time

SIMULATED = True


class SimError(RuntimeError):
    """What the real tool would fail with."""


def log(level, message):
    stamp = time.strftime("%m/%d/%Y-%H:%M:%S", time.gmtime())
    print(f"[{stamp}] [TRT-LLM] [{level}] {message}", file=sys.stderr, flush=True)


def nvidia_smi(field):
    """One value per GPU of ``nvidia-smi --query-gpu=FIELD --format=csv,noheader``."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=" + field, "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise SimError("nvidia-smi not found: no NVIDIA driver, no CUDA device on this host") from None
    except subprocess.TimeoutExpired:
        raise SimError("nvidia-smi timed out") from None
    if r.returncode != 0:
        raise SimError(f"nvidia-smi failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()}")
    return [line.strip() for line in r.stdout.splitlines() if line.strip()]


def gpu_count():
    return len(nvidia_smi("index"))


def gpu_sm():
    """Compute capability x10 of GPU 0 (``9.0`` -> 90, ``10.0`` -> 100)."""
    caps = nvidia_smi("compute_cap")
    if not caps:
        raise SimError("no CUDA device: nvidia-smi lists no GPU")
    major, _, minor = caps[0].partition(".")
    return int(major) * 10 + int(minor or 0)


def mpi_nodes():
    """Hosts of this job: mpirun's world / local size, else $LLMCLUSTER_SIM_NODES (default 1)."""
    world = os.environ.get("OMPI_COMM_WORLD_SIZE")
    local = os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE")
    if world and local and int(local) > 0:
        return max(1, -(-int(world) // int(local)))
    return max(1, int(os.environ.get("LLMCLUSTER_SIM_NODES", "1")))


def env_seconds(name, default):
    try:
        return max(0.0, float(os.environ.get(name, default)))
    except ValueError:
        return float(default)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\\n")
'''

_TRTLLM_MAPPING = '''\
"""SIMULATED tensorrt_llm.Mapping: how a model is split over ranks (tensor, pipeline, expert)."""


class Mapping:
    def __init__(self, world_size=1, rank=0, gpus_per_node=8, *, tp_size=1, pp_size=1, cp_size=1,
                 moe_tp_size=-1, moe_ep_size=-1, **kwargs):
        if tp_size * pp_size * cp_size != world_size:
            raise ValueError(f"world_size must equal to tp_size * pp_size * cp_size, but got "
                             f"{world_size} != {tp_size} * {pp_size} * {cp_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is out of range for world_size {world_size}")
        if moe_tp_size == -1 and moe_ep_size == -1:
            moe_tp_size, moe_ep_size = tp_size, 1
        elif moe_tp_size == -1:
            moe_tp_size = tp_size // moe_ep_size
        elif moe_ep_size == -1:
            moe_ep_size = tp_size // moe_tp_size
        if moe_tp_size * moe_ep_size != tp_size:
            raise ValueError(f"tp_size must equal to moe_tp_size * moe_ep_size, but got "
                             f"{tp_size} != {moe_tp_size} * {moe_ep_size}")
        self.world_size = world_size
        self.rank = rank
        self.gpus_per_node = gpus_per_node
        self.tp_size = tp_size
        self.pp_size = pp_size
        self.cp_size = cp_size
        self.moe_tp_size = moe_tp_size
        self.moe_ep_size = moe_ep_size
        self.tp_rank = rank % tp_size
        self.pp_rank = rank // tp_size

    def to_dict(self):
        return {"world_size": self.world_size, "gpus_per_node": self.gpus_per_node, "tp_size": self.tp_size,
                "pp_size": self.pp_size, "cp_size": self.cp_size, "moe_tp_size": self.moe_tp_size,
                "moe_ep_size": self.moe_ep_size}

    def __repr__(self):
        return (f"Mapping(world_size={self.world_size}, rank={self.rank}, tp_size={self.tp_size}, "
                f"pp_size={self.pp_size}, moe_ep_size={self.moe_ep_size})")
'''

_TRTLLM_QUANT = '''\
"""SIMULATED tensorrt_llm.quantization: the quantization algorithm names of TensorRT-LLM."""

from enum import Enum


class QuantAlgo(str, Enum):
    W8A16 = "W8A16"
    W4A16 = "W4A16"
    W4A16_AWQ = "W4A16_AWQ"
    W4A8_AWQ = "W4A8_AWQ"
    W8A8_SQ_PER_CHANNEL = "W8A8_SQ_PER_CHANNEL"
    FP8 = "FP8"
    FP8_PER_CHANNEL_PER_TOKEN = "FP8_PER_CHANNEL_PER_TOKEN"
    FP8_BLOCK_SCALES = "FP8_BLOCK_SCALES"
    INT8 = "INT8"
    NVFP4 = "NVFP4"
    NO_QUANT = "NO_QUANT"

    def __str__(self):
        return self.value


__all__ = ["QuantAlgo"]
'''

_TRTLLM_MODELING_UTILS = '''\
"""SIMULATED tensorrt_llm.models.modeling_utils: checkpoint conversion from Hugging Face.

``from_hugging_face`` reads the Hugging Face ``config.json`` (no weights are read) and
``save_checkpoint`` writes a TensorRT-LLM checkpoint: ``config.json`` and one
``rank<N>.safetensors`` per rank (a valid safetensors file that holds no tensor).
"""

import json
import os
import struct

from tensorrt_llm._sim import log, read_json, write_json
from tensorrt_llm.mapping import Mapping
from tensorrt_llm.quantization import QuantAlgo

_DTYPES = {"float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float32": "float32", "fp32": "float32"}


class QuantConfig:
    def __init__(self, quant_algo=None, kv_cache_quant_algo=None, group_size=128, has_zero_point=False,
                 pre_quant_scale=False, exclude_modules=None):
        self.quant_algo = QuantAlgo(quant_algo) if quant_algo is not None else None
        self.kv_cache_quant_algo = QuantAlgo(kv_cache_quant_algo) if kv_cache_quant_algo is not None else None
        self.group_size = group_size
        self.has_zero_point = has_zero_point
        self.pre_quant_scale = pre_quant_scale
        self.exclude_modules = exclude_modules

    def to_dict(self):
        return {"quant_algo": self.quant_algo.value if self.quant_algo else None,
                "kv_cache_quant_algo": self.kv_cache_quant_algo.value if self.kv_cache_quant_algo else None,
                "group_size": self.group_size, "has_zero_point": self.has_zero_point,
                "pre_quant_scale": self.pre_quant_scale, "exclude_modules": self.exclude_modules}


class PretrainedConfig:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def to_dict(self):
        return dict(self.__dict__)


class PretrainedModel:
    #: Hugging Face model_type values this family converts.
    HF_MODEL_TYPES = ()

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_hugging_face(cls, hf_model_or_dir, dtype="auto", mapping=None, quant_config=None, **kwargs):
        hf_dir = os.fspath(hf_model_or_dir)
        path = os.path.join(hf_dir, "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found: not a Hugging Face checkpoint directory")
        hf = read_json(path)
        model_type = hf.get("model_type")
        if model_type not in cls.HF_MODEL_TYPES:
            raise ValueError(f"{cls.__name__} cannot convert a {model_type!r} checkpoint")
        mapping = mapping or Mapping()
        quant_config = quant_config or QuantConfig()
        heads = int(hf.get("num_attention_heads", 1))
        layers = int(hf.get("num_hidden_layers", 1))
        if heads % mapping.tp_size:
            raise ValueError(f"num_attention_heads {heads} is not divisible by tp_size {mapping.tp_size}")
        if layers < mapping.pp_size:
            raise ValueError(f"num_hidden_layers {layers} is smaller than pp_size {mapping.pp_size}")
        if dtype == "auto":
            dtype = hf.get("torch_dtype") or "bfloat16"
        if dtype not in _DTYPES:
            raise ValueError(f"unsupported dtype {dtype!r}")
        config = PretrainedConfig(
            architecture=cls.__name__, dtype=_DTYPES[dtype], vocab_size=hf.get("vocab_size"),
            hidden_size=hf.get("hidden_size"), num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=hf.get("num_key_value_heads", heads), intermediate_size=hf.get("intermediate_size"),
            max_position_embeddings=hf.get("max_position_embeddings"), hidden_act=hf.get("hidden_act", "silu"),
            mapping=mapping.to_dict(), quantization=quant_config.to_dict(),
            llmcluster_sim={"simulated": True, "hf_model_type": model_type,
                            "hf_architecture": (hf.get("architectures") or [None])[0]},
        )
        log("INFO", f"SIMULATED conversion of {hf_dir} for rank {mapping.rank} ({mapping!r})")
        model = cls(config)
        model.mapping = mapping
        return model

    @classmethod
    def quantize(cls, hf_model_dir, output_dir, dtype="auto", mapping=None, quant_config=None, **kwargs):
        """Calibrate and write the quantized checkpoint of every rank (no calibration here)."""
        mapping = mapping or Mapping()
        for rank in range(mapping.world_size):
            m = Mapping(world_size=mapping.world_size, rank=rank, gpus_per_node=mapping.gpus_per_node,
                        tp_size=mapping.tp_size, pp_size=mapping.pp_size, moe_tp_size=mapping.moe_tp_size,
                        moe_ep_size=mapping.moe_ep_size)
            cls.from_hugging_face(hf_model_dir, dtype, mapping=m, quant_config=quant_config).save_checkpoint(
                output_dir, save_config=rank == 0)

    def save_checkpoint(self, output_dir, save_config=True):
        output_dir = os.fspath(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        rank = getattr(self, "mapping", Mapping()).rank
        header = json.dumps({"__metadata__": {"format": "pt", "llmcluster_sim": "SIMULATED checkpoint, no weights",
                                              "rank": str(rank)}}, sort_keys=True).encode()
        header += b" " * (-len(header) % 8)
        with open(os.path.join(output_dir, f"rank{rank}.safetensors"), "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
        if save_config:
            write_json(os.path.join(output_dir, "config.json"), self.config.to_dict())
'''

_TRTLLM_MODELS = '''\
"""SIMULATED tensorrt_llm.models: the model families and AutoModelForCausalLM."""

import os

from tensorrt_llm._sim import read_json
from tensorrt_llm.models.modeling_utils import PretrainedConfig, PretrainedModel, QuantConfig


class LLaMAForCausalLM(PretrainedModel):
    HF_MODEL_TYPES = ("llama", "mistral")


class QWenForCausalLM(PretrainedModel):
    HF_MODEL_TYPES = ("qwen", "qwen2", "qwen3")


class DeepseekV2ForCausalLM(PretrainedModel):
    HF_MODEL_TYPES = ("deepseek_v2",)


#: Hugging Face architecture -> TensorRT-LLM class. DeepSeek-V3/R1 has no TensorRT engine flow:
#: it is served by the PyTorch backend (trtllm-serve --backend pytorch).
MODEL_MAP = {
    "LlamaForCausalLM": LLaMAForCausalLM,
    "MistralForCausalLM": LLaMAForCausalLM,
    "Qwen2ForCausalLM": QWenForCausalLM,
    "Qwen3ForCausalLM": QWenForCausalLM,
    "QWenLMHeadModel": QWenForCausalLM,
    "DeepseekV2ForCausalLM": DeepseekV2ForCausalLM,
}


class AutoModelForCausalLM:
    @staticmethod
    def get_trtllm_model_class(hf_model_or_dir, trust_remote_code=False, decoder=False):
        hf = read_json(os.path.join(os.fspath(hf_model_or_dir), "config.json"))
        arch = (hf.get("architectures") or [""])[0]
        if arch not in MODEL_MAP:
            raise NotImplementedError(
                f"The given huggingface model architecture {arch} is not supported in TRT-LLM yet")
        return MODEL_MAP[arch]

    @classmethod
    def from_hugging_face(cls, hf_model_or_dir, dtype="auto", mapping=None, quant_config=None, **kwargs):
        model_cls = cls.get_trtllm_model_class(hf_model_or_dir)
        return model_cls.from_hugging_face(hf_model_or_dir, dtype, mapping=mapping, quant_config=quant_config,
                                           **kwargs)


__all__ = ["MODEL_MAP", "AutoModelForCausalLM", "DeepseekV2ForCausalLM", "LLaMAForCausalLM", "PretrainedConfig",
           "PretrainedModel", "QWenForCausalLM", "QuantConfig"]
'''

_TRTLLM_BUILD = '''\
"""SIMULATED trtllm-build: a TensorRT-LLM checkpoint -> an engine directory (llmcluster lab stand-in)."""

import argparse
import glob
import hashlib
import json
import os
import sys
import time

import tensorrt_llm
from tensorrt_llm._sim import SimError, env_seconds, gpu_sm, log, read_json, write_json


#: Plugin and feature switches (recorded in build_config.plugin_config).
PLUGIN_FLAGS = ("gemm_plugin", "gpt_attention_plugin", "moe_plugin", "kv_cache_type", "remove_input_padding",
                "context_fmha", "use_paged_context_fmha", "use_fp8_context_fmha", "multiple_profiles",
                "reduce_fusion", "paged_kv_cache")


def parser():
    p = argparse.ArgumentParser(prog="trtllm-build", description="SIMULATED trtllm-build (llmcluster lab)")
    p.add_argument("--checkpoint_dir", required=True)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--max_batch_size", type=int, default=2048)
    p.add_argument("--max_num_tokens", type=int, default=8192)
    p.add_argument("--max_seq_len", type=int, default=None)
    p.add_argument("--max_input_len", type=int, default=1024)
    p.add_argument("--max_beam_width", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log_level", default="info")
    for flag in PLUGIN_FLAGS:
        p.add_argument("--" + flag, default=None)
    return p


def build(args):
    ckpt = args.checkpoint_dir
    cfg_path = os.path.join(ckpt, "config.json")
    if not os.path.isfile(cfg_path):
        raise SimError(f"{cfg_path} not found: not a TensorRT-LLM checkpoint")
    cfg = read_json(cfg_path)
    for key in ("architecture", "dtype", "mapping"):
        if key not in cfg:
            raise SimError(f"{cfg_path}: no {key!r}: not a TensorRT-LLM checkpoint config")
    mapping = cfg["mapping"]
    world = int(mapping.get("world_size", 1))
    if world != int(mapping.get("tp_size", 1)) * int(mapping.get("pp_size", 1)):
        raise SimError(f"{cfg_path}: world_size {world} != tp_size * pp_size")
    ranks = sorted(glob.glob(os.path.join(ckpt, "rank*.safetensors")))
    if len(ranks) != world:
        raise SimError(f"{ckpt}: {len(ranks)} rank*.safetensors for world_size {world}")
    for name in ("max_batch_size", "max_num_tokens", "max_beam_width"):
        if getattr(args, name) < 1:
            raise SimError(f"--{name} must be positive")
    max_seq_len = args.max_seq_len or cfg.get("max_position_embeddings") or 2048
    sm = gpu_sm()
    log("INFO", f"SIMULATED build of {cfg['architecture']} ({world} rank(s)) for SM {sm}")
    time.sleep(env_seconds("LLMCLUSTER_SIM_BUILD_SECONDS", 1))
    plugins = {k: getattr(args, k) for k in PLUGIN_FLAGS if getattr(args, k) is not None}
    out = args.output_dir
    os.makedirs(out, exist_ok=True)
    for rank in range(world):
        with open(os.path.join(ckpt, f"rank{rank}.safetensors"), "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        body = json.dumps({"rank": rank, "architecture": cfg["architecture"], "gpu_sm": sm,
                           "trtllm_version": tensorrt_llm.__version__, "checkpoint_sha256": digest}, sort_keys=True)
        with open(os.path.join(out, f"rank{rank}.engine"), "wb") as f:
            f.write(b"SIMULATED TensorRT engine (llmcluster lab stand-in: not a real engine)\\n"
                    + body.encode() + b"\\n")
    write_json(os.path.join(out, "config.json"), {
        "version": tensorrt_llm.__version__,
        "pretrained_config": cfg,
        "build_config": {"max_batch_size": args.max_batch_size, "max_num_tokens": args.max_num_tokens,
                         "max_seq_len": max_seq_len, "max_input_len": min(args.max_input_len, max_seq_len),
                         "max_beam_width": args.max_beam_width, "plugin_config": plugins},
        "llmcluster_sim": {"simulated": True, "gpu_sm": sm, "trtllm_version": tensorrt_llm.__version__},
    })
    log("INFO", f"SIMULATED engine written to {out}")


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        build(args)
    except (SimError, OSError, ValueError) as e:
        log("ERROR", str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

_TRTLLM_SERVE = '''\
"""SIMULATED trtllm-serve: the OpenAI-compatible server of TensorRT-LLM (llmcluster lab stand-in).

It checks what the real server would refuse, "loads" for $LLMCLUSTER_SIM_LOAD_SECONDS (default 1;
/health answers 503 meanwhile), then answers deterministically: every answer says it is simulated.
It listens where it is told (--host/--port, the real defaults): the tensorrt_llm role starts it on
127.0.0.1 at serving.backend_port, behind the node's real (not simulated) TLS terminator.
LAB STAND-IN ENGINE (opt-in): when the model directory holds a .gguf file and the lab installed its
engine (LAB_ENGINE_DIR), it execs llama.cpp's server on that real tiny model instead (same process,
host, port and served name): real tokens, still not TensorRT-LLM.
"""

import argparse
import glob
import hashlib
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import tensorrt_llm
from tensorrt_llm._sim import SimError, env_seconds, gpu_count, gpu_sm, log, mpi_nodes, read_json


def parser():
    p = argparse.ArgumentParser(prog="trtllm-serve", description="SIMULATED trtllm-serve (llmcluster lab)")
    p.add_argument("model")
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--backend", choices=("pytorch", "tensorrt", "_autodeploy"), default="pytorch")
    p.add_argument("--log_level", default="info")
    p.add_argument("--max_beam_width", type=int, default=1)
    p.add_argument("--max_batch_size", type=int, default=2048)
    p.add_argument("--max_num_tokens", type=int, default=8192)
    p.add_argument("--max_seq_len", type=int, default=None)
    p.add_argument("--tp_size", type=int, default=1)
    p.add_argument("--pp_size", type=int, default=1)
    p.add_argument("--ep_size", type=int, default=None)
    p.add_argument("--cluster_size", type=int, default=None)
    p.add_argument("--gpus_per_node", type=int, default=None)
    p.add_argument("--kv_cache_free_gpu_memory_fraction", type=float, default=0.9)
    p.add_argument("--num_postprocess_workers", type=int, default=0)
    p.add_argument("--trust_remote_code", action="store_true")
    p.add_argument("--extra_llm_api_options", default=None)
    p.add_argument("--reasoning_parser", default=None)
    return p


def _scalar(text):
    text = text.strip()
    if text in ("", "~", "null"):
        return None
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in "[{\\"":
        return json.loads(text)
    if text[:1] == "'" and text[-1:] == "'":
        return text[1:-1].replace("\\'\\'", "\\'")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# The LLM API options the stand-in accepts (top level -> fields of a nested configuration, None for a
# scalar): llmcluster.plan.engine.LLM_API_OPTIONS, the TensorRT-LLM 1.0.0 fields llmcluster's engine
# configuration and NVIDIA's published recipes use; anything else is refused as the real pydantic
# models refuse extra inputs. Filled in when the wheel is built.
LLM_API_OPTIONS = __LLM_API_OPTIONS__


def parse_yaml(text):
    """The block-style YAML subset of an options file (mappings, lists of scalars)."""
    root = {}
    stack = [(-1, root)]
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#") and ln.strip() != "---"]
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        body = line.strip()
        while len(stack) > 1:
            owner, container = stack[-1]
            if indent > owner or (indent == owner and isinstance(container, list) and body.startswith("- ")):
                break
            stack.pop()
        parent = stack[-1][1]
        if body.startswith("- "):
            if not isinstance(parent, list):
                raise ValueError(f"line {i + 1}: a list item where a mapping key was expected")
            parent.append(_scalar(body[2:]))
            continue
        key, sep, value = body.partition(":")
        if not sep or not isinstance(parent, dict):
            raise ValueError(f"line {i + 1}: expected 'key: value', got {body!r}")
        key = key.strip().strip("\\"'")
        if value.strip():
            parent[key] = _scalar(value)
            continue
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        child = [] if nxt.strip().startswith("- ") else {}
        parent[key] = child
        stack.append((indent, child))
    return root


def check(args):
    """What the real server refuses before it loads anything. Returns the served model name."""
    model = args.model.rstrip("/") or args.model
    if not os.path.isdir(model):
        raise SimError(f"{model}: no such model directory (a Hugging Face repo id needs network: none here)")
    cfg_path = os.path.join(model, "config.json")
    if not os.path.isfile(cfg_path):
        raise SimError(f"{cfg_path} not found: neither a Hugging Face checkpoint nor an engine directory")
    cfg = read_json(cfg_path)
    ranks = args.tp_size * args.pp_size
    if args.backend == "tensorrt":
        if "build_config" not in cfg or "pretrained_config" not in cfg:
            raise SimError(f"{model} is not a TensorRT engine directory (config.json has no build_config)")
        sim = cfg.get("llmcluster_sim", {})
        if sim.get("trtllm_version") != tensorrt_llm.__version__:
            raise SimError(f"engine {model} was built by TensorRT-LLM {sim.get('trtllm_version')}, this is "
                           f"{tensorrt_llm.__version__}: engines are not portable across versions, rebuild it")
        sm = gpu_sm()
        if sim.get("gpu_sm") != sm:
            raise SimError(f"engine {model} was built for SM {sim.get('gpu_sm')}, this GPU is SM {sm}: "
                           f"engines are not portable across GPU architectures, rebuild it")
        mapping = cfg["pretrained_config"].get("mapping", {})
        if (mapping.get("tp_size"), mapping.get("pp_size")) != (args.tp_size, args.pp_size):
            raise SimError(f"engine {model} is built for tp_size {mapping.get('tp_size')} pp_size "
                           f"{mapping.get('pp_size')}, asked for tp_size {args.tp_size} pp_size {args.pp_size}")
        engines = glob.glob(os.path.join(model, "rank*.engine"))
        if len(engines) != ranks:
            raise SimError(f"engine {model} has {len(engines)} rank*.engine files for {ranks} rank(s)")
        build = cfg["build_config"]
        for name in ("max_batch_size", "max_num_tokens", "max_seq_len"):
            asked = getattr(args, name)
            if asked is not None and build.get(name) is not None and asked > build[name]:
                raise SimError(f"--{name} {asked} exceeds the engine's build-time {name} {build[name]}")
    elif "model_type" not in cfg:
        raise SimError(f"{cfg_path} has no model_type: not a Hugging Face checkpoint")
    if args.ep_size is not None and (args.ep_size < 1 or args.tp_size % args.ep_size):
        raise SimError(f"--ep_size {args.ep_size} must divide --tp_size {args.tp_size}")
    if not 0 < args.kv_cache_free_gpu_memory_fraction <= 1:
        raise SimError("--kv_cache_free_gpu_memory_fraction must be in (0, 1]")
    for name in ("max_batch_size", "max_num_tokens", "tp_size", "pp_size"):
        if getattr(args, name) < 1:
            raise SimError(f"--{name} must be positive")
    gpus = gpu_count()
    nodes = mpi_nodes()
    if gpus == 0:
        raise SimError("no CUDA device: nvidia-smi lists no GPU")
    if ranks > gpus * nodes:
        raise SimError(f"tp_size * pp_size = {ranks} ranks, but only {gpus} GPU(s) per node x {nodes} node(s): "
                       f"run it under mpirun over {-(-ranks // gpus)} nodes")
    options = {}
    if args.extra_llm_api_options:
        with open(args.extra_llm_api_options, encoding="utf-8") as f:
            text = f.read()
        try:
            import yaml
        except ImportError:
            options = parse_yaml(text)
        else:
            options = yaml.safe_load(text) or {}
        if not isinstance(options, dict):
            raise SimError(f"{args.extra_llm_api_options}: the options must be a mapping")
        unknown = sorted(set(options) - set(LLM_API_OPTIONS))
        for name, fields in LLM_API_OPTIONS.items():
            if fields is not None and isinstance(options.get(name), dict):
                unknown += [f"{name}.{k}" for k in sorted(set(options[name]) - set(fields))]
        if unknown:
            raise SimError(f"{args.extra_llm_api_options}: unknown LLM API option(s) {', '.join(unknown)} "
                           f"(TensorRT-LLM {tensorrt_llm.__version__} refuses extra inputs)")
        # The options file wins over the flags (as in trtllm-serve): its parallel sizes decide the ranks.
        ranks = int(options.get("tensor_parallel_size", args.tp_size)) * int(options.get("pipeline_parallel_size",
                                                                                          args.pp_size))
        if options.get("enable_attention_dp") and int(options.get("tensor_parallel_size", args.tp_size)) < 2:
            raise SimError("enable_attention_dp needs tensor_parallel_size >= 2")
        if ranks > gpus * nodes:
            raise SimError(f"the options' tensor_parallel_size x pipeline_parallel_size = {ranks} ranks, but only "
                           f"{gpus} GPU(s) per node x {nodes} node(s)")
    return os.path.basename(os.path.abspath(model)), options


# The lab's real-model stand-in (llmcluster.lab.llama_engine, opt-in): where the lab installs llama.cpp
# on the host ($LLMCLUSTER_SIM_ENGINE_DIR elsewhere: tests). Filled in when the wheel is built.
LAB_ENGINE_DIR = os.environ.get("LLMCLUSTER_SIM_ENGINE_DIR") or __LAB_ENGINE_DIR__


def lab_engine_argv(args, model):
    """LAB STAND-IN ENGINE: the argv that serves a real tiny model in this server's place, or None.

    When the model directory (or, for an engine, --tokenizer's) holds a .gguf file and the lab engine
    is installed, llama.cpp serves that (verified) file under the same name, host and port."""
    ggufs = []
    for folder in (args.tokenizer, args.model):
        if folder and os.path.isdir(folder):
            ggufs = sorted(glob.glob(os.path.join(folder, "*.gguf")))
            if ggufs:
                break
    if not ggufs:
        return None
    shim = os.path.join(LAB_ENGINE_DIR, "engine_standin.py")
    if not os.path.isfile(shim):
        log("WARNING", f"{ggufs[0]}: a GGUF model, but no lab engine in {LAB_ENGINE_DIR}: canned answers")
        return None
    return [sys.executable, shim, "--model", ggufs[0], "--host", args.host, "--port", str(args.port),
            "--served-name", model]


class State:
    def __init__(self, model, args, options):
        self.model = model
        self.args = args
        self.options = options
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.counters = {"requests": 0, "errors": 0, "prompt_tokens": 0, "generation_tokens": 0, "active": 0}


def _digest(body):
    canon = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _prompt_text(body, chat):
    if chat:
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ValueError("'messages' must be a non-empty list")
        parts = []
        for m in msgs:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError("every message needs 'role' and 'content'")
            c = m["content"]
            if isinstance(c, list):
                c = " ".join(p.get("text", "") for p in c if isinstance(p, dict))
            parts.append(str(c))
        return " ".join(parts), len(msgs)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("'prompt' must be a non-empty string")
    return prompt, 0


def answer(state, body, chat):
    """The deterministic completion of a request: (digest, words, finish_reason, prompt_tokens)."""
    text, n_msgs = _prompt_text(body, chat)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError("'max_tokens' must be a positive integer")
    digest = _digest(body)
    prompt_tokens = len(text.split()) + 4 * n_msgs
    max_seq_len = state.args.max_seq_len
    if max_seq_len is not None and prompt_tokens >= max_seq_len:
        raise ValueError(f"the prompt ({prompt_tokens} tokens) does not fit max_seq_len {max_seq_len}")
    words = (f"SIMULATED answer from {state.model}: the llmcluster lab stand-in for trtllm-serve ran no "
             f"model. Request {digest[:12]}, {prompt_tokens} prompt tokens.").split(" ")
    finish = "stop"
    if limit is not None and limit < len(words):
        words, finish = words[:limit], "length"
    return digest, words, finish, prompt_tokens


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "trtllm-serve-SIMULATED/" + tensorrt_llm.__version__

        def log_message(self, fmt, *args):
            log("INFO", f"{self.address_string()} {fmt % args}")

        def _send(self, status, body=b"", ctype="application/json"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status, obj):
            self._send(status, json.dumps(obj).encode())

        def _error(self, status, message):
            with state.lock:
                state.counters["errors"] += 1
            kind = {400: "BadRequestError", 404: "NotFoundError", 503: "ServiceUnavailableError"}.get(status, "Error")
            self._json(status, {"object": "error", "message": message, "type": kind, "param": None, "code": status})

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self._send(200 if state.ready.is_set() else 503, b"", "text/plain")
            elif path == "/version":
                self._json(200, {"version": tensorrt_llm.__version__})
            elif path == "/metrics":
                self._send(200, self._metrics().encode(), "text/plain; version=0.0.4; charset=utf-8")
            elif not state.ready.is_set():
                self._error(503, "the model is loading")
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [
                    {"id": state.model, "object": "model", "created": 0, "owned_by": "tensorrt_llm"}]})
            else:
                self._error(404, f"no route {path}")

        do_HEAD = do_GET

        def _metrics(self):
            with state.lock:
                c = dict(state.counters)
            kv = min(1.0, c["active"] / max(1, state.args.max_batch_size))
            lines = [
                "# HELP trtllm_simulated 1: this server is the llmcluster lab stand-in (SIMULATED).",
                "# TYPE trtllm_simulated gauge", "trtllm_simulated 1",
                "# HELP trtllm_request_success_total Requests answered.",
                "# TYPE trtllm_request_success_total counter", f"trtllm_request_success_total {c['requests']}",
                "# HELP trtllm_request_error_total Requests refused.",
                "# TYPE trtllm_request_error_total counter", f"trtllm_request_error_total {c['errors']}",
                "# HELP trtllm_prompt_tokens_total Prompt tokens processed.",
                "# TYPE trtllm_prompt_tokens_total counter", f"trtllm_prompt_tokens_total {c['prompt_tokens']}",
                "# HELP trtllm_generation_tokens_total Tokens generated.",
                "# TYPE trtllm_generation_tokens_total counter",
                f"trtllm_generation_tokens_total {c['generation_tokens']}",
                "# HELP trtllm_num_requests_running Requests in flight.",
                "# TYPE trtllm_num_requests_running gauge", f"trtllm_num_requests_running {c['active']}",
                "# HELP trtllm_kv_cache_utilization Fraction of the KV cache blocks in use.",
                "# TYPE trtllm_kv_cache_utilization gauge", f"trtllm_kv_cache_utilization {kv:.4f}",
                "# HELP trtllm_model_loaded 1 once the model is loaded (/health answers 200).",
                "# TYPE trtllm_model_loaded gauge", f"trtllm_model_loaded {int(state.ready.is_set())}",
            ]
            return "\\n".join(lines) + "\\n"

        def do_POST(self):
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            if path not in ("/v1/chat/completions", "/v1/completions"):
                self._error(404, f"no route {path}")
                return
            if not state.ready.is_set():
                self._error(503, "the model is loading")
                return
            try:
                body = json.loads(raw)
                if not isinstance(body, dict):
                    raise ValueError("the request body must be a JSON object")
            except ValueError as e:
                self._error(400, f"invalid JSON: {e}")
                return
            chat = path == "/v1/chat/completions"
            try:
                digest, words, finish, prompt_tokens = answer(state, body, chat)
            except ValueError as e:
                self._error(400, str(e))
                return
            with state.lock:
                state.counters["active"] += 1
            try:
                self._complete(body, chat, digest, words, finish, prompt_tokens)
            finally:
                with state.lock:
                    state.counters["active"] -= 1
                    state.counters["requests"] += 1
                    state.counters["prompt_tokens"] += prompt_tokens
                    state.counters["generation_tokens"] += len(words)

        def _complete(self, body, chat, digest, words, finish, prompt_tokens):
            rid = ("chatcmpl-" if chat else "cmpl-") + digest[:24]
            created = 1_700_000_000 + int(digest[:6], 16)
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                     "total_tokens": prompt_tokens + len(words)}
            text = " ".join(words)
            obj = "chat.completion" if chat else "text_completion"
            if not body.get("stream"):
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                          if chat else {"index": 0, "text": text, "finish_reason": finish, "logprobs": None})
                # SIMULATION: names the node that answered (the lab's gateway failover check reads it).
                self._json(200, {"id": rid, "object": obj, "created": created, "model": state.model,
                                 "system_fingerprint": "llmcluster-sim:" + os.uname().nodename,
                                 "choices": [choice], "usage": usage})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk_obj = "chat.completion.chunk" if chat else "text_completion"

            def event(choice, extra=None):
                data = {"id": rid, "object": chunk_obj, "created": created, "model": state.model,
                        "choices": [choice] if choice is not None else []}
                data.update(extra or {})
                self._chunk(("data: " + json.dumps(data) + "\\n\\n").encode())

            if chat:
                event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
            for i, w in enumerate(words):
                piece = w if i == len(words) - 1 else w + " "
                event({"index": 0, "delta": {"content": piece}, "finish_reason": None} if chat
                      else {"index": 0, "text": piece, "finish_reason": None})
            event({"index": 0, "delta": {}, "finish_reason": finish} if chat
                  else {"index": 0, "text": "", "finish_reason": finish})
            if (body.get("stream_options") or {}).get("include_usage"):
                event(None, {"usage": usage})
            self._chunk(b"data: [DONE]\\n\\n")
            self._chunk(b"")

        def _chunk(self, data):
            self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(data), data))
            self.wfile.flush()

    return Handler


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:  # trtllm-serve serve MODEL ... (the explicit subcommand)
        argv = argv[1:]
    args = parser().parse_args(argv)
    log("INFO", f"SIMULATED trtllm-serve {tensorrt_llm.__version__} (llmcluster lab stand-in): {args.model}")
    try:
        model, options = check(args)
    except (SimError, OSError, ValueError) as e:
        log("ERROR", str(e))
        return 1
    real = lab_engine_argv(args, model)
    if real:
        log("INFO", f"LAB STAND-IN ENGINE: llama.cpp serves {real[3]} as {model} (a real tiny model, not TensorRT-LLM)")
        env = dict(os.environ, PYTHONPATH=os.path.join(LAB_ENGINE_DIR, "site"))
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(real[0], real, env)
    state = State(model, args, options)
    try:
        server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    except OSError as e:
        log("ERROR", f"cannot listen on {args.host}:{args.port}: {e}")
        return 1
    server.daemon_threads = True
    delay = env_seconds("LLMCLUSTER_SIM_LOAD_SECONDS", 1)

    def load():
        log("INFO", f"SIMULATED loading of {model} (backend {args.backend}, tp {args.tp_size}, pp {args.pp_size},"
                    f" options {sorted(options)}): {delay:g} s")
        time.sleep(delay)
        state.ready.set()
        log("INFO", f"SIMULATED model {model} loaded: serving on http://{args.host}:{args.port}")

    threading.Thread(target=load, daemon=True).start()

    def stop(signum, frame):
        log("INFO", f"signal {signum}: shutting down")
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''

_TRTLLM_LAUNCH = '''\
"""SIMULATED trtllm-llmapi-launch: runs CMD on MPI rank 0; the other ranks are (idle) workers.

The real launcher starts the LLM API's MPI worker loop on ranks > 0 and the command on rank 0.
"""

import os
import signal
import sys

from tensorrt_llm._sim import log


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: trtllm-llmapi-launch COMMAND [ARG...]", file=sys.stderr)
        return 2
    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK") or os.environ.get("PMI_RANK") or 0)
    if rank > 0:
        log("INFO", f"SIMULATED MPI worker rank {rank}: waiting for the leader")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            signal.pause()
    os.execvp(argv[0], argv)
    return 127


if __name__ == "__main__":
    sys.exit(main())
'''

_TRTLLM_ENTRY_POINTS = """\
[console_scripts]
trtllm-build = tensorrt_llm.commands.build:main
trtllm-llmapi-launch = tensorrt_llm.llmapi.trtllm_llmapi_launch:main
trtllm-serve = tensorrt_llm.commands.serve:main
"""


def _metadata(name: str, version: str, summary: str, requires: tuple[str, ...] = ()) -> str:
    home = "https://github.com/NVIDIA/TensorRT-LLM" if name == "tensorrt_llm" else "https://pytorch.org"
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", f"Summary: {summary}",
             f"Home-page: {home}", "License: Apache-2.0 (llmcluster lab stand-in)", "Requires-Python: >=3.10"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\nSIMULATED package for the llmcluster lab: not the real software.\n"


_WHEEL_FILE = "Wheel-Version: 1.0\nGenerator: llmcluster-lab-nvidia-sim\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _write_wheel(dest: Path, name: str, version: str, files: dict[str, str], metadata: str,
                 entry_points: str) -> Path:
    dist_info = f"{name}-{version}.dist-info"
    contents: dict[str, bytes] = {path: text.encode() for path, text in sorted(files.items())}
    contents[f"{dist_info}/METADATA"] = metadata.encode()
    contents[f"{dist_info}/WHEEL"] = _WHEEL_FILE.encode()
    contents[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    contents[f"{dist_info}/top_level.txt"] = f"{name}\n".encode()
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in contents.items())
    record += f"{dist_info}/RECORD,,\n"
    contents[f"{dist_info}/RECORD"] = record.encode()
    path = dest / f"{name}-{version}-py3-none-any.whl"
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in contents.items():
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(path)
    return path


def torch_files() -> dict[str, str]:
    return {"torch/__init__.py": _TORCH_INIT, "torch/version.py": _TORCH_VERSION,
            "torch/cuda/__init__.py": _TORCH_CUDA}


def trtllm_files() -> dict[str, str]:
    return {
        "tensorrt_llm/__init__.py": _TRTLLM_INIT,
        "tensorrt_llm/_sim.py": _TRTLLM_SIM,
        "tensorrt_llm/mapping.py": _TRTLLM_MAPPING,
        "tensorrt_llm/quantization/__init__.py": _TRTLLM_QUANT,
        "tensorrt_llm/models/__init__.py": _TRTLLM_MODELS,
        "tensorrt_llm/models/modeling_utils.py": _TRTLLM_MODELING_UTILS,
        "tensorrt_llm/commands/__init__.py": '"""SIMULATED TensorRT-LLM command-line tools."""\n',
        "tensorrt_llm/commands/build.py": _TRTLLM_BUILD,
        "tensorrt_llm/commands/serve.py": _TRTLLM_SERVE.replace("__LLM_API_OPTIONS__", repr(
            {k: (tuple(v) if v is not None else None) for k, v in sorted(LLM_API_OPTIONS.items())})).replace(
            "__LAB_ENGINE_DIR__", repr(LAB_ENGINE_DIR)),
        "tensorrt_llm/llmapi/__init__.py": '"""SIMULATED TensorRT-LLM LLM API (the MPI launcher only)."""\n',
        "tensorrt_llm/llmapi/trtllm_llmapi_launch.py": _TRTLLM_LAUNCH,
    }


def build_wheels(dest: Path) -> list[Path]:
    """Write the stand-in ``torch`` and ``tensorrt_llm`` wheels into ``dest``; returns their paths."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    torch = _write_wheel(
        dest, "torch", TORCH_VERSION, torch_files(),
        _metadata("torch", TORCH_VERSION, "SIMULATED PyTorch (llmcluster lab stand-in: version metadata only)"),
        "[console_scripts]\n")
    trtllm = _write_wheel(
        dest, "tensorrt_llm", TRTLLM_VERSION, trtllm_files(),
        _metadata("tensorrt_llm", TRTLLM_VERSION,
                  "SIMULATED TensorRT-LLM (llmcluster lab stand-in: trtllm-serve/trtllm-build without a GPU)",
                  (f"torch=={TORCH_VERSION}",)),
        _TRTLLM_ENTRY_POINTS)
    return [torch, trtllm]
