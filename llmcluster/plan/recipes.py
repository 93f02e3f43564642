"""NVIDIA's published TensorRT-LLM serving configurations, as data (pure; the table is package data).

``data/trtllm_recipes.yaml`` holds one row per configuration NVIDIA publishes (the recipe database
``examples/configs/database/`` and the curated configurations of the NVIDIA/TensorRT-LLM
repository), each with its source file and commit. :func:`nearest` finds the row closest to a
workload; the capacity planner asks it whether attention data parallelism is published practice
there (:func:`published_attention_dp`) and :mod:`llmcluster.plan.engine` starts from the row and
explains every departure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

#: The TensorRT-LLM version whose option names the table (and the engine configuration) uses:
#: the version llmcluster.plan.nvidia pins by default (``llmcluster_nvidia.trtllm.version``).
RECIPES_FILE = "trtllm_recipes.yaml"


@dataclass(frozen=True)
class Recipe:
    id: str
    model: str
    gpu: str  # a catalog GPU name, or "any"
    precision: str
    isl: int
    osl: int
    concurrency: int
    source_path: str
    source_commit: str
    options: dict[str, Any]

    @property
    def source(self) -> str:
        return f"NVIDIA/TensorRT-LLM {self.source_path}@{self.source_commit[:12]}"

    @property
    def tp(self) -> int:
        return int(self.options.get("tensor_parallel_size", 1))

    @property
    def attention_dp(self) -> bool:
        return bool(self.options.get("enable_attention_dp", False))

    @property
    def mtp_layers(self) -> int:
        spec = self.options.get("speculative_config") or {}
        return int(spec.get("num_nextn_predict_layers", 0)) if spec.get("decoding_type") == "MTP" else 0


@lru_cache(maxsize=1)
def table() -> tuple[str, tuple[Recipe, ...]]:
    """(TensorRT-LLM version the option names follow, the rows)."""
    text = resources.files("llmcluster.plan").joinpath("data", RECIPES_FILE).read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    rows = tuple(
        Recipe(id=r["id"], model=r["model"], gpu=r["gpu"], precision=r["precision"], isl=int(r["isl"]),
               osl=int(r["osl"]), concurrency=int(r["concurrency"]), source_path=r["source"]["path"],
               source_commit=r["source"]["commit"], options=dict(r["options"]))
        for r in doc["recipes"])
    return str(doc["trtllm_version"]), rows


def recipes() -> tuple[Recipe, ...]:
    return table()[1]


def _distance(r: Recipe, isl: int, osl: int, concurrency: int, tp: int | None) -> float:
    d = (abs(math.log2(max(isl, 1) / r.isl)) + abs(math.log2(max(osl, 1) / r.osl))
         + abs(math.log2(max(concurrency, 1) / r.concurrency)))
    if tp is not None and r.tp != tp:
        d += 1.0  # a row for another parallel layout is a weaker guide than one for this layout
    if r.gpu == "any":
        d += 0.5  # a GPU-specific row wins over a generic one at the same distance
    return d


def nearest(model: str, gpu: str, precision: str, *, isl: int, osl: int, concurrency: int,
            tp: int | None = None) -> Recipe | None:
    """The published row closest to the workload for this model, GPU and precision (or None).

    Distance: the sum of |log2| ratios of ISL, OSL and concurrency, plus 1 when the row's
    tensor-parallel size differs from ``tp`` and 0.5 for rows that name no GPU; ties go to the
    row listed first."""
    rows = [r for r in recipes() if r.model == model and r.precision == precision and r.gpu in (gpu, "any")]
    if not rows:
        return None
    return min(rows, key=lambda r: _distance(r, isl, osl, concurrency, tp))


def split_context(context: int, osl: int | None = None) -> tuple[int, int]:
    """(ISL, OSL) the planner assumes for a context when the workload gives none: OSL 1024 (at most
    half the context), the rest input."""
    out = min(1024, max(1, context // 2)) if osl is None else osl
    return max(1, context - out), out


def published_attention_dp(model: str, gpu: str, precision: str, *, context: int, concurrency: int,
                           tp: int) -> bool | None:
    """Whether NVIDIA's nearest published configuration enables attention DP (None: no row)."""
    isl, osl = split_context(context)
    r = nearest(model, gpu, precision, isl=isl, osl=osl, concurrency=concurrency, tp=tp)
    return None if r is None else r.attention_dp
