"""Catalog of the models, GPUs and weight precisions the capacity planner knows (pure data).

Everything the planner derives (parameter counts, weight bytes, KV-cache bytes per token) is
computed here from the architecture fields of each model's Hugging Face ``config.json``; no
parameter count or checkpoint size is typed in except ``published_params``, which only the
tests use to cross-check the derivation.

Public names (the keys of :data:`MODELS`, :data:`GPUS`, :data:`PRECISIONS`) are what users write
in the environment spec; :func:`lookup_model`, :func:`lookup_gpu` and :func:`lookup_precision`
turn a typo into an :class:`~llmcluster.errors.InfeasibleError` with a "did you mean".
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Literal, TypeVar

from llmcluster.errors import InfeasibleError

Family = Literal["deepseek_v3", "qwen2", "llama"]
Attention = Literal["mla", "gqa"]

#: Bytes of one element of the 16-bit formats that stay unquantized (embeddings, lm_head,
#: norms, biases, the MoE router) in every precision, and of a bf16 KV cache.
BF16_BYTES = 2

#: KV-cache element formats TensorRT-LLM can allocate, in bytes per element.
KV_CACHE_DTYPES: dict[str, int] = {"bf16": 2, "fp8": 1}

#: Architecture name by the first compute capability (``sm``) of each generation.
ARCH_BY_SM: dict[int, str] = {80: "Ampere", 89: "Ada", 90: "Hopper", 100: "Blackwell"}


def arch_name(sm: int) -> str:
    """Name of the GPU generation that introduced compute capability ``sm`` (or the closest older)."""
    known = [s for s in sorted(ARCH_BY_SM) if s <= sm]
    return ARCH_BY_SM[known[-1]] if known else f"sm {sm}"


def sm_text(sm: int) -> str:
    """``90`` -> ``"9.0"``; ``100`` -> ``"10.0"`` (how NVIDIA writes compute capabilities)."""
    return f"{sm // 10}.{sm % 10}"


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Linear:
    """One kind of weight matrix, ``count`` instances across the whole model.

    ``group`` says what the matrix belongs to: ``attention``, ``dense_mlp`` (a non-MoE MLP),
    ``shared_expert`` or ``routed_expert``. Quantized precisions apply to these matrices only.
    """

    name: str
    group: str
    count: int
    in_features: int
    out_features: int

    @property
    def params(self) -> int:
        return self.count * self.in_features * self.out_features


@dataclass(frozen=True)
class ModelSpec:
    """A served model. Field names follow the model's Hugging Face ``config.json``."""

    name: str
    hf_repo: str
    family: Family
    attention: Attention
    moe: bool
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    published_params: float
    supported_precisions: tuple[str, ...]
    head_dim: int | None = None
    # Multi-head latent attention (DeepSeek-V3 family).
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    qk_nope_head_dim: int | None = None
    v_head_dim: int | None = None
    # Mixture of experts (DeepSeek-V3 family).
    n_routed_experts: int = 0
    n_shared_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    first_k_dense_replace: int = 0
    revision: str | None = None

    # -- architecture helpers -------------------------------------------------------

    @property
    def attn_head_dim(self) -> int:
        """``head_dim`` from config.json, else ``hidden_size / num_attention_heads`` (GQA models)."""
        return self.head_dim if self.head_dim is not None else self.hidden_size // self.num_attention_heads

    @property
    def dense_layers(self) -> int:
        """Decoder layers with a dense MLP (all of them for a dense model)."""
        return self.first_k_dense_replace if self.moe else self.num_hidden_layers

    @property
    def moe_layers(self) -> int:
        """Decoder layers whose MLP is a mixture of experts."""
        return self.num_hidden_layers - self.dense_layers

    def _mla(self) -> tuple[int, int, int, int, int]:
        fields = (
            self.q_lora_rank,
            self.kv_lora_rank,
            self.qk_rope_head_dim,
            self.qk_nope_head_dim,
            self.v_head_dim,
        )
        if any(f is None for f in fields):  # pragma: no cover - catalog invariant
            raise ValueError(f"{self.name}: MLA fields missing")
        return fields  # type: ignore[return-value]

    def linears(self) -> tuple[Linear, ...]:
        """Every weight matrix of the decoder layers (the tensors a quantized format compresses)."""
        h, n_layers = self.hidden_size, self.num_hidden_layers
        out: list[Linear] = []
        if self.attention == "mla":
            q_rank, kv_rank, rope, nope, v_dim = self._mla()
            heads = self.num_attention_heads
            out += [
                Linear("q_a_proj", "attention", n_layers, h, q_rank),
                Linear("q_b_proj", "attention", n_layers, q_rank, heads * (nope + rope)),
                Linear("kv_a_proj_with_mqa", "attention", n_layers, h, kv_rank + rope),
                Linear("kv_b_proj", "attention", n_layers, kv_rank, heads * (nope + v_dim)),
                Linear("o_proj", "attention", n_layers, heads * v_dim, h),
            ]
        else:
            d = self.attn_head_dim
            q_out, kv_out = self.num_attention_heads * d, self.num_key_value_heads * d
            out += [
                Linear("q_proj", "attention", n_layers, h, q_out),
                Linear("k_proj", "attention", n_layers, h, kv_out),
                Linear("v_proj", "attention", n_layers, h, kv_out),
                Linear("o_proj", "attention", n_layers, q_out, h),
            ]
        # SwiGLU MLPs: gate_proj and up_proj (hidden -> inter), down_proj (inter -> hidden).
        mlps = [("dense_mlp", self.dense_layers, self.intermediate_size)]
        if self.moe:
            mlps += [
                ("shared_expert", self.moe_layers * self.n_shared_experts, self.moe_intermediate_size),
                ("routed_expert", self.moe_layers * self.n_routed_experts, self.moe_intermediate_size),
            ]
        for group, count, inter in mlps:
            if count:
                out += [
                    Linear("gate_proj", group, count, h, inter),
                    Linear("up_proj", group, count, h, inter),
                    Linear("down_proj", group, count, inter, h),
                ]
        return tuple(out)

    def unquantized_params(self) -> dict[str, int]:
        """Parameters that stay 16-bit in every precision, by group.

        ``embed_tokens`` and ``lm_head`` (absent when tied), RMSNorm weights (two per layer, the
        final norm, and MLA's ``q_a_layernorm``/``kv_a_layernorm``), the q/k/v biases of Qwen2
        attention, and the MoE router (``gate.weight`` plus DeepSeek-V3's
        ``e_score_correction_bias``).
        """
        h, n_layers = self.hidden_size, self.num_hidden_layers
        embed = self.vocab_size * h
        norms = n_layers * 2 * h + h
        if self.attention == "mla":
            q_rank, kv_rank, *_ = self._mla()
            norms += n_layers * (q_rank + kv_rank)
        biases = 0
        if self.family == "qwen2":
            biases = n_layers * (self.num_attention_heads + 2 * self.num_key_value_heads) * self.attn_head_dim
        router = self.moe_layers * (self.n_routed_experts * h + self.n_routed_experts) if self.moe else 0
        return {
            "embed_tokens": embed,
            "lm_head": 0 if self.tie_word_embeddings else embed,
            "norms": norms,
            "biases": biases,
            "router": router,
        }

    def param_count(self) -> int:
        """Total parameters derived from the architecture (DeepSeek: without the MTP module)."""
        return sum(lin.params for lin in self.linears()) + sum(self.unquantized_params().values())

    def expert_params(self) -> int:
        """Parameters of one routed expert (0 for a dense model)."""
        return 3 * self.hidden_size * self.moe_intermediate_size if self.moe else 0

    def active_param_count(self) -> int:
        """Parameters used for one token: everything except the routed experts not selected.

        For a MoE model: attention, dense MLPs, shared experts, ``num_experts_per_tok`` routed
        experts per MoE layer, router, norms, embeddings and lm_head. Dense models: all.
        """
        if not self.moe:
            return self.param_count()
        unused = self.moe_layers * (self.n_routed_experts - self.num_experts_per_tok) * self.expert_params()
        return self.param_count() - unused

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        """KV-cache bytes one token occupies across all layers (not sharded).

        MLA caches the compressed latent plus the decoupled RoPE key: ``kv_lora_rank +
        qk_rope_head_dim`` elements per layer (DeepSeek-V3: 61 x 576 x 2 = 70,272 bytes in bf16).
        GQA caches K and V for each KV head: ``2 x layers x num_key_value_heads x head_dim``.
        """
        if self.attention == "mla":
            _, kv_rank, rope, _, _ = self._mla()
            return self.num_hidden_layers * (kv_rank + rope) * kv_dtype_bytes
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.attn_head_dim * kv_dtype_bytes

    def gqa_equivalent_kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        """KV bytes per token a naive multi-head formula would give (to show what MLA saves).

        MLA models: every one of ``num_attention_heads`` heads caching a full key
        (``qk_nope_head_dim + qk_rope_head_dim``) and value (``v_head_dim``). GQA models: same as
        :meth:`kv_bytes_per_token`.
        """
        if self.attention != "mla":
            return self.kv_bytes_per_token(kv_dtype_bytes)
        _, _, rope, nope, v_dim = self._mla()
        per_layer = self.num_attention_heads * ((nope + rope) + v_dim)
        return self.num_hidden_layers * per_layer * kv_dtype_bytes

    # -- bytes in a given precision -----------------------------------------------

    def weight_bytes_by_group(self, precision: PrecisionSpec) -> dict[str, int]:
        """Checkpoint bytes in ``precision``, by group (matrix groups plus unquantized groups).

        Quantized matrices are charged their packed weights plus their scale tensors; the
        parameters of :meth:`unquantized_params` stay bf16 in every format.
        """
        groups: dict[str, int] = {}
        for lin in self.linears():
            layout = precision.layout_for(self, lin.group)
            groups[lin.group] = groups.get(lin.group, 0) + lin.count * layout.matrix_bytes(
                lin.in_features, lin.out_features
            )
        for group, params in self.unquantized_params().items():
            groups[group] = params * BF16_BYTES
        return groups

    def weights_bytes(self, precision: PrecisionSpec) -> int:
        """Total checkpoint bytes in ``precision`` (what the serving GPUs must hold)."""
        return sum(self.weight_bytes_by_group(precision).values())


_DEEPSEEK_PRECISIONS = ("bf16", "fp8", "w4a8", "fp4")
_DENSE_PRECISIONS = ("bf16", "fp8", "int4-awq", "w4a8", "fp4")


def _deepseek_v3_arch(name: str, hf_repo: str) -> ModelSpec:
    # deepseek-ai/DeepSeek-V3 and deepseek-ai/DeepSeek-R1 config.json (same architecture):
    # hidden_size 7168, num_hidden_layers 61, num_attention_heads 128, num_key_value_heads 128,
    # q_lora_rank 1536, kv_lora_rank 512, qk_rope_head_dim 64, qk_nope_head_dim 128,
    # v_head_dim 128, n_routed_experts 256, n_shared_experts 1, num_experts_per_tok 8,
    # moe_intermediate_size 2048, first_k_dense_replace 3, intermediate_size 18432,
    # vocab_size 129280, max_position_embeddings 163840, tie_word_embeddings false.
    # The checkpoint also ships one multi-token-prediction layer (num_nextn_predict_layers 1,
    # ~14B parameters) that is only loaded for MTP speculative decoding; it is not counted.
    # published_params: 671B total, 37B activated (DeepSeek-V3 technical report / model card).
    return ModelSpec(
        name=name,
        hf_repo=hf_repo,
        family="deepseek_v3",
        attention="mla",
        moe=True,
        hidden_size=7168,
        num_hidden_layers=61,
        num_attention_heads=128,
        num_key_value_heads=128,
        intermediate_size=18432,
        vocab_size=129280,
        tie_word_embeddings=False,
        max_position_embeddings=163840,
        published_params=671e9,
        supported_precisions=_DEEPSEEK_PRECISIONS,
        q_lora_rank=1536,
        kv_lora_rank=512,
        qk_rope_head_dim=64,
        qk_nope_head_dim=128,
        v_head_dim=128,
        n_routed_experts=256,
        n_shared_experts=1,
        num_experts_per_tok=8,
        moe_intermediate_size=2048,
        first_k_dense_replace=3,
    )


def _dense(
    name: str,
    hf_repo: str,
    family: Family,
    *,
    hidden_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    intermediate_size: int,
    vocab_size: int,
    published_params: float,
    tie_word_embeddings: bool = False,
    max_position_embeddings: int = 131072,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        hf_repo=hf_repo,
        family=family,
        attention="gqa",
        moe=False,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        intermediate_size=intermediate_size,
        vocab_size=vocab_size,
        tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=max_position_embeddings,
        published_params=published_params,
        supported_precisions=_DENSE_PRECISIONS,
    )


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        _deepseek_v3_arch("deepseek-v3", "deepseek-ai/DeepSeek-V3"),
        _deepseek_v3_arch("deepseek-r1", "deepseek-ai/DeepSeek-R1"),
        # deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B config.json (base Qwen2.5-Math-1.5B):
        # hidden_size 1536, num_hidden_layers 28, num_attention_heads 12, num_key_value_heads 2,
        # intermediate_size 8960, vocab_size 151936, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 1.78B (Qwen2.5-Math-1.5B model card).
        _dense(
            "deepseek-r1-distill-qwen-1.5b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
            "qwen2",
            hidden_size=1536,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            intermediate_size=8960,
            vocab_size=151936,
            published_params=1.78e9,
        ),
        # deepseek-ai/DeepSeek-R1-Distill-Qwen-7B config.json (base Qwen2.5-Math-7B):
        # hidden_size 3584, num_hidden_layers 28, num_attention_heads 28, num_key_value_heads 4,
        # intermediate_size 18944, vocab_size 152064, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 7.62B.
        _dense(
            "deepseek-r1-distill-qwen-7b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
            "qwen2",
            hidden_size=3584,
            num_hidden_layers=28,
            num_attention_heads=28,
            num_key_value_heads=4,
            intermediate_size=18944,
            vocab_size=152064,
            published_params=7.62e9,
        ),
        # deepseek-ai/DeepSeek-R1-Distill-Qwen-14B config.json (base Qwen2.5-14B):
        # hidden_size 5120, num_hidden_layers 48, num_attention_heads 40, num_key_value_heads 8,
        # intermediate_size 13824, vocab_size 152064, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 14.8B.
        _dense(
            "deepseek-r1-distill-qwen-14b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B",
            "qwen2",
            hidden_size=5120,
            num_hidden_layers=48,
            num_attention_heads=40,
            num_key_value_heads=8,
            intermediate_size=13824,
            vocab_size=152064,
            published_params=14.8e9,
        ),
        # deepseek-ai/DeepSeek-R1-Distill-Qwen-32B config.json (base Qwen2.5-32B):
        # hidden_size 5120, num_hidden_layers 64, num_attention_heads 40, num_key_value_heads 8,
        # intermediate_size 27648, vocab_size 152064, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 32.8B.
        _dense(
            "deepseek-r1-distill-qwen-32b",
            "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
            "qwen2",
            hidden_size=5120,
            num_hidden_layers=64,
            num_attention_heads=40,
            num_key_value_heads=8,
            intermediate_size=27648,
            vocab_size=152064,
            published_params=32.8e9,
        ),
        # deepseek-ai/DeepSeek-R1-Distill-Llama-8B config.json (base Llama-3.1-8B):
        # hidden_size 4096, num_hidden_layers 32, num_attention_heads 32, num_key_value_heads 8,
        # intermediate_size 14336, vocab_size 128256, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 8.03B.
        _dense(
            "deepseek-r1-distill-llama-8b",
            "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
            "llama",
            hidden_size=4096,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=14336,
            vocab_size=128256,
            published_params=8.03e9,
        ),
        # deepseek-ai/DeepSeek-R1-Distill-Llama-70B config.json (base Llama-3.3-70B-Instruct):
        # hidden_size 8192, num_hidden_layers 80, num_attention_heads 64, num_key_value_heads 8,
        # intermediate_size 28672, vocab_size 128256, tie_word_embeddings false,
        # max_position_embeddings 131072. Published: 70.6B.
        _dense(
            "deepseek-r1-distill-llama-70b",
            "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
            "llama",
            hidden_size=8192,
            num_hidden_layers=80,
            num_attention_heads=64,
            num_key_value_heads=8,
            intermediate_size=28672,
            vocab_size=128256,
            published_params=70.6e9,
        ),
    )
}


# --------------------------------------------------------------------------- GPUs

MIB = 1024**2


@dataclass(frozen=True)
class GPUSpec:
    """A GPU model. ``memory_bytes`` is the capacity ``nvidia-smi`` reports (total, in MiB x 2**20)."""

    name: str
    display_name: str
    arch: str
    sm: int
    memory_bytes: int
    hbm_bandwidth_bytes_per_s: float
    nvlink_domain: int  # GPUs one NVLink/NVSwitch domain joins; 1 = PCIe only
    default_gpus_per_node: int
    form_factor: str
    #: How the GPUs of several nodes share memory over NVLink: "imex" (GB200/GB300 NVL72 racks run
    #: the IMEX daemon instead of a fabric manager); "node" = NVLink stays inside the node (HGX
    #: boards with NVSwitch run the fabric manager, see the pool's ``gpu.nvswitch``).
    nvlink_fabric: str = "node"

    @property
    def has_nvlink(self) -> bool:
        return self.nvlink_domain > 1


GPUS: dict[str, GPUSpec] = {
    g.name: g
    for g in (
        # NVIDIA H100 Tensor Core GPU datasheet: H100 SXM 80 GB HBM3, 3.35 TB/s, NVLink 900 GB/s,
        # HGX H100 8-GPU with NVSwitch. nvidia-smi reports 81559 MiB.
        GPUSpec("h100", "NVIDIA H100 SXM 80GB", "hopper", 90, 81559 * MIB, 3.35e12, 8, 8, "sxm"),
        # NVIDIA H200 Tensor Core GPU datasheet: H200 SXM 141 GB HBM3e, 4.8 TB/s, HGX H200 8-GPU.
        # nvidia-smi reports 143771 MiB.
        GPUSpec("h200", "NVIDIA H200 SXM 141GB", "hopper", 90, 143771 * MIB, 4.8e12, 8, 8, "sxm"),
        # NVIDIA H20 (HGX H20 8-GPU): 96 GB HBM3, 4.0 TB/s, NVLink 900 GB/s. nvidia-smi: 97871 MiB.
        GPUSpec("h20", "NVIDIA H20 96GB", "hopper", 90, 97871 * MIB, 4.0e12, 8, 8, "sxm"),
        # NVIDIA A100 Tensor Core GPU datasheet: A100 80GB SXM, HBM2e 2,039 GB/s, HGX A100 8-GPU.
        # Nominal 81920 MiB (80 GiB) used.
        GPUSpec("a100-80gb", "NVIDIA A100 SXM 80GB", "ampere", 80, 81920 * MIB, 2.039e12, 8, 8, "sxm"),
        # Same datasheet: A100 40GB SXM, HBM2 1,555 GB/s. Nominal 40960 MiB (40 GiB) used.
        GPUSpec("a100-40gb", "NVIDIA A100 SXM 40GB", "ampere", 80, 40960 * MIB, 1.555e12, 8, 8, "sxm"),
        # NVIDIA L40S datasheet: 48 GB GDDR6 with ECC, 864 GB/s, PCIe Gen4 x16, no NVLink.
        # nvidia-smi reports 46068 MiB (ECC on). Servers commonly hold 8 (e.g. AWS g6e.48xlarge).
        GPUSpec("l40s", "NVIDIA L40S 48GB", "ada", 89, 46068 * MIB, 0.864e12, 1, 8, "pcie"),
        # NVIDIA DGX B200 / HGX B200 datasheet: 8x B200, 1,440 GB total GPU memory (180 GB per
        # GPU usable), HBM3e 8 TB/s per GPU, NVLink 5 with NVSwitch. 183359 MiB is the total
        # nvidia-smi is commonly reported to show on HGX B200 boards (not checked on hardware here;
        # it is ~2% above the 180 GB datasheet figure).
        GPUSpec("b200", "NVIDIA B200 180GB", "blackwell", 100, 183359 * MIB, 8.0e12, 8, 8, "sxm"),
        # NVIDIA GB200 NVL72 datasheet: 72 Blackwell GPUs, 13.4 TB HBM3e (186 GB per GPU), 8 TB/s per
        # GPU; a compute tray holds 4 GPUs (2 Grace CPUs). NVLink spans the 72-GPU rack through
        # NVLink switch trays; memory is shared across trays with IMEX. The planner keeps tensor
        # parallelism inside a tray (nvlink_domain 4): a conservative choice, not the rack's limit.
        # 186 GB = 177388 MiB is the datasheet figure, not an nvidia-smi reading (none here).
        GPUSpec("gb200", "NVIDIA GB200 186GB", "blackwell", 100, 177388 * MIB, 8.0e12, 4, 4, "nvl72", "imex"),
    )
}


# --------------------------------------------------------------------------- precisions


@dataclass(frozen=True)
class QuantLayout:
    """How one weight matrix is stored: packed weights plus scale tensors.

    ``scale_block`` is the (rows, columns) tile of the (out_features x in_features) matrix that
    shares one scale; ``None`` means one per-tensor scale (or none when ``scale_bytes`` is 0).
    """

    weight_bits: int
    scale_block: tuple[int, int] | None
    scale_bytes: int

    def matrix_bytes(self, in_features: int, out_features: int) -> int:
        packed = math.ceil(in_features * out_features * self.weight_bits / 8)
        if self.scale_block is None:
            scales = 1 if self.scale_bytes else 0
        else:
            rows, cols = self.scale_block
            scales = math.ceil(out_features / rows) * math.ceil(in_features / cols)
        return packed + scales * self.scale_bytes


@dataclass(frozen=True)
class FamilyOverride:
    """A precision's model-family-specific minimum GPU and storage layout.

    ``expert_layout`` applies to MoE expert matrices (``routed_expert``, ``shared_expert``) and
    ``layout`` to every other matrix of that family.
    """

    min_sm: int
    layout: QuantLayout
    expert_layout: QuantLayout
    reason: str


@dataclass(frozen=True)
class PrecisionSpec:
    """A weight format TensorRT-LLM serves. ``min_sm`` is the lowest compute capability."""

    name: str
    display_name: str
    min_sm: int
    layout: QuantLayout
    family_overrides: tuple[tuple[str, FamilyOverride], ...] = ()

    def override_for(self, model: ModelSpec) -> FamilyOverride | None:
        return dict(self.family_overrides).get(model.family)

    def min_sm_for(self, model: ModelSpec) -> int:
        override = self.override_for(model)
        return override.min_sm if override else self.min_sm

    def layout_for(self, model: ModelSpec, group: str) -> QuantLayout:
        override = self.override_for(model)
        if override is None:
            return self.layout
        return override.expert_layout if group in ("routed_expert", "shared_expert") else override.layout


_BF16 = QuantLayout(16, None, 0)
# FP8 E4M3 with one fp32 per-tensor scale (TensorRT-LLM's FP8 recipe for dense models).
_FP8_PER_TENSOR = QuantLayout(8, None, 4)
# DeepSeek-V3/R1's released FP8 checkpoint: E4M3 weights with one fp32 scale per 128x128 block
# (quantization_config.weight_block_size [128, 128] in config.json).
_FP8_BLOCK = QuantLayout(8, (128, 128), 4)
# INT4 weights, one fp16 scale per group of 128 input channels (AWQ group size 128).
_INT4_G128 = QuantLayout(4, (1, 128), 2)
# NVFP4: E2M1 weights, one FP8 (E4M3) scale per 16 consecutive weights (plus a negligible
# per-tensor fp32 global scale, not counted).
_NVFP4 = QuantLayout(4, (1, 16), 1)

_DEEPSEEK_BLOCK_FP8_REASON = (
    "DeepSeek-V3/R1 use 128x128 block-scaled FP8; Ada (sm 89) has FP8 tensor cores, but the "
    "block-scale GEMM and FP8 MLA kernels TensorRT-LLM uses for DeepSeek are Hopper/Blackwell only"
)

_DEEPSEEK_NO_AMPERE_REASON = (
    "TensorRT-LLM does not support DeepSeek-V3/R1 on Ampere (sm 80/86) in any precision"
)

PRECISIONS: dict[str, PrecisionSpec] = {
    p.name: p
    for p in (
        PrecisionSpec(
            "bf16",
            "BF16",
            80,
            _BF16,
            (("deepseek_v3", FamilyOverride(89, _BF16, _BF16, _DEEPSEEK_NO_AMPERE_REASON)),),
        ),
        PrecisionSpec(
            "fp8",
            "FP8 (E4M3)",
            89,
            _FP8_PER_TENSOR,
            (("deepseek_v3", FamilyOverride(90, _FP8_BLOCK, _FP8_BLOCK, _DEEPSEEK_BLOCK_FP8_REASON)),),
        ),
        PrecisionSpec("int4-awq", "INT4 AWQ (W4A16)", 80, _INT4_G128),
        # W4A8: INT4 weights, FP8 activations (FP8 tensor cores: sm 89+). For DeepSeek the
        # W4AFP8 checkpoints quantize the MoE experts to INT4 and keep the rest block-FP8.
        PrecisionSpec(
            "w4a8",
            "W4A8 (INT4 weights, FP8 activations)",
            89,
            _INT4_G128,
            (("deepseek_v3", FamilyOverride(90, _FP8_BLOCK, _INT4_G128, _DEEPSEEK_BLOCK_FP8_REASON)),),
        ),
        # NVFP4 needs Blackwell FP4 tensor cores. For DeepSeek, NVIDIA's FP4 checkpoints quantize
        # the MoE experts to NVFP4 and keep the other linears FP8 (modelled as block FP8).
        PrecisionSpec(
            "fp4",
            "NVFP4",
            100,
            _NVFP4,
            (("deepseek_v3", FamilyOverride(100, _FP8_BLOCK, _NVFP4, "NVFP4 needs Blackwell")),),
        ),
    )
}


# --------------------------------------------------------------------------- lookups

_T = TypeVar("_T")


def _lookup(kind: str, name: str, table: dict[str, _T]) -> _T:
    if name in table:
        return table[name]
    lowered = name.strip().lower()
    if lowered in table:
        return table[lowered]
    known = sorted(table)
    close = difflib.get_close_matches(lowered, known, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise InfeasibleError(f"unknown {kind} {name!r}: {hint}known {kind}s: {', '.join(known)}")


def lookup_model(name: str) -> ModelSpec:
    """The catalog model called ``name`` (case-insensitive); InfeasibleError with a hint otherwise."""
    return _lookup("model", name, MODELS)


def lookup_gpu(name: str) -> GPUSpec:
    """The catalog GPU called ``name`` (case-insensitive); InfeasibleError with a hint otherwise."""
    return _lookup("gpu", name, GPUS)


def lookup_precision(name: str) -> PrecisionSpec:
    """The catalog precision called ``name`` (case-insensitive); InfeasibleError with a hint otherwise."""
    return _lookup("precision", name, PRECISIONS)
