"""Capacity planner: the smallest TensorRT-LLM deployment that serves a model (pure, no I/O).

:func:`size_deployment` walks candidate deployments in increasing GPU count and returns the
first one whose per-GPU memory holds the weight shard, the runtime reserve and the KV cache of
``concurrency`` sequences of ``context`` tokens. The model is deliberately simple and
deterministic; its assumptions are:

* **Runtime reserve** per GPU: 3 GiB (CUDA context, NCCL buffers, TensorRT-LLM workspace) plus
  5% of the GPU's memory (activations, CUDA graphs, allocator fragmentation).
* **Even sharding**: every GPU of a replica holds ``weights_bytes / (tp x pp)``. Real shards
  differ a little (embeddings sit in the first stage, lm_head in the last, stages get
  ``ceil(layers / pp)`` or ``floor`` layers).
* **KV cache**: TensorRT-LLM gives ``kv_cache_free_gpu_memory_fraction`` of the memory left after
  weights and buffers to the KV cache: 0.90 for dense models, 0.80 for DeepSeek-V3/R1 (NVIDIA's
  published configurations for DeepSeek-R1 use 0.75-0.8: MTP's draft layers and the CUDA graphs
  need the rest; ``llmcluster/plan/data/trtllm_recipes.yaml``). MLA's latent cache has no heads to shard, so
  every TP rank holds the full latent of its stage's layers; GQA shards the KV heads across TP
  ranks (and replicates them when ``tp > num_key_value_heads``). The busiest pipeline stage
  (``ceil(layers / pp)`` layers) decides.
* **Parallelism**: tensor parallelism stays inside one NVLink domain (on PCIe-only GPUs it may
  span the node, with a warning); pipeline parallelism spans nodes; MoE experts are split over
  the TP group (``ep = tp``). For each GPU count the largest valid TP is tried first; when it
  does not fit, smaller TP with more pipeline stages (also inside a node) is tried at the same
  GPU count, which matters for MLA, whose replicated KV cache only pipeline stages divide.
* **Attention data parallelism** (MLA models): each TP rank runs attention for its own requests
  with the full latent cache of those requests (the cache is split by request, not replicated)
  and holds the attention weights whole; the MoE layers stay expert-parallel over all ranks. It
  is chosen, at the same TP size and before any pipeline split, where NVIDIA's nearest published
  configuration enables it (high concurrency), where no published row exists and every rank
  would serve >= 16 sequences (:data:`ADP_MIN_SEQUENCES_PER_RANK`), and wherever the replicated
  cache does not fit but the split one does. MLA models get no pipeline stages inside one node
  (NVIDIA's recipes for DeepSeek-R1 never split a node into stages; attention DP divides the cache
  instead): where neither fits, the next GPU count is tried.

The decode throughput it reports is a memory-bandwidth **roofline**, an upper bound no real
deployment reaches: see :func:`decode_step_bytes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from llmcluster.errors import InfeasibleError
from llmcluster.plan.catalog import (
    BF16_BYTES,
    GPUS,
    KV_CACHE_DTYPES,
    PRECISIONS,
    GPUSpec,
    ModelSpec,
    PrecisionSpec,
    arch_name,
    lookup_gpu,
    lookup_model,
    lookup_precision,
    sm_text,
)

GiB = 1024**3

#: Fixed part of the per-GPU runtime reserve (CUDA context, NCCL, TensorRT-LLM workspace).
RUNTIME_RESERVE_FIXED_BYTES = 3 * GiB
#: Proportional part of the runtime reserve, in percent of the GPU's memory (activations etc.).
RUNTIME_RESERVE_PERCENT = 5
#: Share of the memory left after weights and reserve that TensorRT-LLM gives the KV cache.
KV_CACHE_FREE_GPU_MEMORY_FRACTION = 0.90
#: The same for DeepSeek-V3/R1 (MTP and CUDA graphs need headroom: NVIDIA's recipes use 0.75-0.8).
KV_CACHE_FREE_GPU_MEMORY_FRACTION_MLA_MOE = 0.80
#: Without a published row, attention DP is chosen when every rank serves at least this many
#: sequences (NVIDIA's DeepSeek-R1 1k/1k rows turn it on from 128 concurrent requests on 8 GPUs).
ADP_MIN_SEQUENCES_PER_RANK = 16
#: Chunked-prefill token budget per scheduler iteration (``max_num_tokens``) upper cap.
MAX_NUM_TOKENS_CAP = 8192
#: Precisions whose default KV cache is FP8 (on sm >= 8.9).
_FP8_KV_PRECISIONS = ("fp8", "w4a8", "fp4")
#: FP8 KV cache: FP8 tensor cores arrive with Ada (sm 89); the FP8 MLA kernels need Hopper.
_FP8_KV_MIN_SM = {"gqa": 89, "mla": 90}

Backend = Literal["pytorch", "engine"]


@dataclass(frozen=True)
class CapacityPlan:
    """The minimum deployment (one replica) found by :func:`size_deployment`.

    Byte counts are integers. ``decode_*`` are roofline upper bounds rounded to 0.1 token/s.
    ``memory_bytes_per_gpu`` is the GPU's capacity; ``weights_bytes_per_gpu +
    runtime_reserve_bytes_per_gpu + kv_cache_pool_bytes_per_gpu`` never exceeds it, and
    ``kv_bytes_per_gpu`` (the cache ``concurrency`` full-context sequences need) never exceeds
    ``kv_cache_pool_bytes_per_gpu``.
    """

    model: str
    gpu: str
    precision: str
    kv_dtype: str
    context: int
    concurrency: int
    weights_bytes: int
    kv_bytes_per_token: int
    tp: int
    pp: int
    ep: int
    gpus: int
    nodes: int
    gpus_per_node: int
    backend: Backend
    max_batch_size: int
    max_num_tokens: int
    max_seq_len: int
    kv_cache_free_gpu_memory_fraction: float
    decode_tokens_per_s_bound: float
    decode_tokens_per_s_per_user_bound: float
    decode_bytes_per_step: int
    weights_bytes_per_gpu: int
    kv_bytes_per_gpu: int
    kv_cache_pool_bytes_per_gpu: int
    runtime_reserve_bytes_per_gpu: int
    memory_bytes_per_gpu: int
    kv_tokens_capacity: int
    warnings: tuple[str, ...] = ()
    #: attention data parallelism (``enable_attention_dp``): the MLA cache split by request
    attention_dp: bool = False

    @property
    def trtllm_args(self) -> dict[str, Any]:
        """Arguments for ``trtllm-serve`` (PyTorch backend) or ``trtllm-build`` (engine backend).

        ``ep_size`` is ``moe_expert_parallel_size`` in the LLM API; 1 for dense models.
        """
        return {
            "backend": self.backend,
            "tp_size": self.tp,
            "pp_size": self.pp,
            "ep_size": self.ep,
            "max_batch_size": self.max_batch_size,
            "max_num_tokens": self.max_num_tokens,
            "max_seq_len": self.max_seq_len,
            "kv_cache_free_gpu_memory_fraction": self.kv_cache_free_gpu_memory_fraction,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: every field, ``warnings`` as a list, plus ``trtllm_args``."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        out["trtllm_args"] = self.trtllm_args
        return out


# --------------------------------------------------------------------------- helpers


def expected_distinct_experts(n_experts: int, top_k: int, batch: int) -> float:
    """Expected number of distinct routed experts a batch touches in one MoE layer.

    Assumes uniform, independent routing: each expert is missed by one token with probability
    ``1 - k/E``, so ``E x (1 - (1 - k/E) ** B)``.
    """
    if n_experts <= 0 or top_k <= 0 or batch <= 0:
        return 0.0
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** batch)


def decode_weight_bytes(model: ModelSpec, precision: PrecisionSpec, batch: int) -> float:
    """Weight bytes one decode step reads across the whole replica (before sharding).

    Everything but the routed experts is read in full (attention, dense MLPs, shared experts,
    router, norms, lm_head); routed experts only in proportion to
    :func:`expected_distinct_experts`; the input embedding only for the ``batch`` rows looked up.
    """
    groups = model.weight_bytes_by_group(precision)
    total = float(sum(groups.values()))
    routed = groups.get("routed_expert", 0)
    if routed:
        share = expected_distinct_experts(model.n_routed_experts, model.num_experts_per_tok, batch)
        total -= routed * (1.0 - share / model.n_routed_experts)
    embed = groups["embed_tokens"]
    total -= embed - min(embed, batch * model.hidden_size * BF16_BYTES)
    return total


def _kv_shard(model: ModelSpec, tp: int) -> int:
    """How many ways one token's KV is split across a TP group."""
    return 1 if model.attention == "mla" else min(tp, model.num_key_value_heads)


def decode_step_bytes(
    model: ModelSpec, precision: PrecisionSpec, kv_dtype_bytes: int, tp: int, context: int, concurrency: int,
    attention_dp: bool = False,
) -> float:
    """Bytes the GPUs of one replica read, stage after stage, for one decode step.

    Each pipeline stage's GPUs read their share of the weights touched
    (:func:`decode_weight_bytes` / ``tp``) and their share of the batch's KV cache, taking every
    sequence at ``context / 2`` tokens (the average over a sequence's life). Summed over the
    stages (pipeline stages run one after another for a single batch), so ``pp`` cancels out.
    With ``attention_dp`` every rank reads the attention weights whole and the full cache of its
    ``concurrency / tp`` sequences (the busiest rank decides).
    """
    if attention_dp:
        attn = model.weight_bytes_by_group(precision).get("attention", 0)
        weights = (decode_weight_bytes(model, precision, concurrency) - attn) / tp + attn
        kv = model.kv_bytes_per_token(kv_dtype_bytes) * (-(-concurrency // tp)) * (context / 2)
        return weights + kv
    weights = decode_weight_bytes(model, precision, concurrency) / tp
    kv = model.kv_bytes_per_token(kv_dtype_bytes) * concurrency * (context / 2) / _kv_shard(model, tp)
    return weights + kv


def runtime_reserve_bytes(gpu: GPUSpec) -> int:
    """Per-GPU memory kept out of weights and KV cache (see module docstring)."""
    return RUNTIME_RESERVE_FIXED_BYTES + gpu.memory_bytes * RUNTIME_RESERVE_PERCENT // 100


def kv_fraction_for(model: ModelSpec) -> float:
    """``kv_cache_free_gpu_memory_fraction`` the plan sizes with and configures (module docstring)."""
    if model.family == "deepseek_v3":
        return KV_CACHE_FREE_GPU_MEMORY_FRACTION_MLA_MOE
    return KV_CACHE_FREE_GPU_MEMORY_FRACTION


def backend_for(model: ModelSpec) -> Backend:
    """``pytorch`` (trtllm-serve's PyTorch flow, which has the MLA/MoE kernels) for DeepSeek-V3/R1;
    ``engine`` (a ``trtllm-build`` TensorRT engine) for the dense distills."""
    return "pytorch" if model.family == "deepseek_v3" else "engine"


def _gpus_for_sm(min_sm: int) -> list[str]:
    return sorted(name for name, g in GPUS.items() if g.sm >= min_sm)


def _precision_ok(model: ModelSpec, precision: PrecisionSpec, gpu: GPUSpec) -> bool:
    return precision.name in model.supported_precisions and gpu.sm >= precision.min_sm_for(model)


def _check_precision(model: ModelSpec, precision: PrecisionSpec, gpu: GPUSpec) -> None:
    if precision.name not in model.supported_precisions:
        raise InfeasibleError(
            f"{precision.name} is not a precision TensorRT-LLM serves for {model.name}: "
            f"use one of {', '.join(model.supported_precisions)}"
        )
    need = precision.min_sm_for(model)
    if gpu.sm >= need:
        return
    usable = [p for p in model.supported_precisions if _precision_ok(model, PRECISIONS[p], gpu)]
    arch = arch_name(need)
    override = precision.override_for(model)
    why = f" ({override.reason})" if override and override.min_sm != precision.min_sm else ""
    alternatives = f"use {' or '.join(usable)}, or " if usable else "use "
    raise InfeasibleError(
        f"{precision.name} needs compute capability >= {sm_text(need)} ({arch} or newer) for "
        f"{model.name}{why}; {gpu.name} is sm {gpu.sm} ({arch_name(gpu.sm)}): {alternatives}"
        f"{'an' if arch[:1].lower() in 'aeiou' else 'a'} {arch} or newer GPU ({', '.join(_gpus_for_sm(need))})"
    )


def _default_precision(model: ModelSpec, gpu: GPUSpec) -> str:
    return "fp8" if _precision_ok(model, PRECISIONS["fp8"], gpu) else "bf16"


def _resolve_kv_dtype(kv_dtype: str | None, model: ModelSpec, precision: str, gpu: GPUSpec) -> str:
    min_sm = _FP8_KV_MIN_SM[model.attention]
    if kv_dtype is None:
        return "fp8" if precision in _FP8_KV_PRECISIONS and gpu.sm >= min_sm else "bf16"
    if kv_dtype not in KV_CACHE_DTYPES:
        raise InfeasibleError(f"unknown kv_dtype {kv_dtype!r}: known: {', '.join(sorted(KV_CACHE_DTYPES))}")
    if kv_dtype == "fp8" and gpu.sm < min_sm:
        raise InfeasibleError(
            f"an fp8 KV cache for {model.name} needs compute capability >= {sm_text(min_sm)} "
            f"({arch_name(min_sm)} or newer); {gpu.name} is sm {gpu.sm}: use kv_dtype bf16"
        )
    return kv_dtype


#: Bounds of the sizing inputs, checked before any work (``llmcluster size`` checks the same when
#: parsing its options), so that no input makes the search below run away: GPUs per node as the
#: spec's ``pools.<pool>.gpu.count`` (72: an NVL72 rack, the largest NVLink domain), nodes as
#: ``pools.<pool>.count``, the context as ``serving.context``'s ceiling (its floor, 512, is the
#: spec's; ``size`` accepts any positive context). Concurrency goes beyond ``serving.concurrency``'s
#: 4096: ``size`` answers what-ifs ("how many GPUs for a million users") and the work does not grow
#: with it (it only multiplies the KV cache), so 2**20. The search is then at most
#: ``log2(72) + 1 + max_nodes`` GPU counts, each with at most 72 TP sizes.
MIN_GPUS_PER_NODE, MAX_GPUS_PER_NODE = 1, 72
MIN_CONTEXT, MAX_CONTEXT = 1, 1_048_576
MIN_CONCURRENCY, MAX_CONCURRENCY = 1, 1_048_576
MIN_NODES, MAX_NODES = 1, 4096


def check_bounds(*, context: int | None = None, concurrency: int | None = None, gpus_per_node: int | None = None,
                 max_nodes: int | None = None) -> None:
    """Raise :class:`InfeasibleError` for a sizing input outside its bounds (above)."""
    for name, value, lo, hi, unit in (
        ("context", context, MIN_CONTEXT, MAX_CONTEXT, " tokens"),
        ("concurrency", concurrency, MIN_CONCURRENCY, MAX_CONCURRENCY, " concurrent requests"),
        ("gpus_per_node", gpus_per_node, MIN_GPUS_PER_NODE, MAX_GPUS_PER_NODE, " GPUs per node"),
        ("max_nodes", max_nodes, MIN_NODES, MAX_NODES, " nodes"),
    ):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise InfeasibleError(f"{name} must be a whole number (got {value!r})")
        if not lo <= value <= hi:
            raise InfeasibleError(f"{name} must be >= {lo} and <= {hi}{unit} (got {value})")


def _single_node_counts(gpus_per_node: int) -> list[int]:
    counts = [1 << i for i in range(gpus_per_node.bit_length()) if 1 << i <= gpus_per_node]
    if counts[-1] != gpus_per_node:
        counts.append(gpus_per_node)
    return counts


def _tp_options(gpus: int, gpus_per_node: int, tp_limit: int) -> list[int]:
    """TP sizes for ``gpus`` GPUs, largest first: divisors of the node's share, inside the domain."""
    per_node = min(gpus, gpus_per_node)
    return [t for t in range(min(per_node, tp_limit), 0, -1) if per_node % t == 0 and gpus % t == 0]


def _shape_problem(model: ModelSpec, tp: int, pp: int) -> str | None:
    """Why TensorRT-LLM cannot split ``model`` as tp x pp, or None."""
    if model.num_attention_heads % tp:
        return f"tp {tp} does not divide {model.num_attention_heads} attention heads"
    kv = model.num_key_value_heads
    if model.attention == "gqa" and kv % tp and tp % kv:
        return f"tp {tp} and {kv} KV heads do not divide one another"
    if model.dense_layers and model.intermediate_size % tp:
        return f"tp {tp} does not divide intermediate_size {model.intermediate_size}"
    if model.moe and model.n_routed_experts % tp:
        return f"ep {tp} does not divide {model.n_routed_experts} routed experts"
    if pp > model.num_hidden_layers:
        return f"pp {pp} exceeds {model.num_hidden_layers} layers"
    return None


@dataclass(frozen=True)
class _Fit:
    tp: int
    pp: int
    usable: int
    weights_per_gpu: int
    kv_per_gpu: int
    pool: int
    kv_per_token_per_gpu: int
    frac_pct: int = round(KV_CACHE_FREE_GPU_MEMORY_FRACTION * 100)
    attention_dp: bool = False

    @property
    def fits(self) -> bool:
        return self.pool >= 0 and self.kv_per_gpu <= self.pool

    @property
    def shortfall(self) -> int:
        """Bytes per GPU this layout lacks (weights plus the KV cache grossed up by the KV
        fraction, minus usable memory): picks the closest layout for the error message."""
        kv_gross = self.kv_per_gpu * 100 // self.frac_pct
        return self.weights_per_gpu + kv_gross - self.usable


def _fit(
    model: ModelSpec,
    gpu: GPUSpec,
    weights: int,
    kv_per_token: int,
    tp: int,
    pp: int,
    context: int,
    concurrency: int,
    attention_dp: bool = False,
    attn_weights: int = 0,
) -> _Fit:
    if attention_dp:
        # attention weights whole on every rank (of its stage), the rest sharded as before
        weights_per_gpu = -(-(weights - attn_weights) // (tp * pp)) + -(-attn_weights // pp)
    else:
        weights_per_gpu = -(-weights // (tp * pp))
    frac_pct = round(kv_fraction_for(model) * 100)
    usable = gpu.memory_bytes - runtime_reserve_bytes(gpu)
    free = usable - weights_per_gpu
    pool = free * frac_pct // 100 if free > 0 else -1
    layers_per_stage = -(-model.num_hidden_layers // pp)
    per_layer = kv_per_token // model.num_hidden_layers
    shard = 1 if attention_dp else _kv_shard(model, tp)
    kv_per_token_per_gpu = -(-per_layer * layers_per_stage // shard)
    sequences = -(-concurrency // tp) if attention_dp else concurrency
    return _Fit(
        tp=tp,
        pp=pp,
        usable=usable,
        weights_per_gpu=weights_per_gpu,
        kv_per_gpu=kv_per_token_per_gpu * context * sequences,
        pool=pool,
        kv_per_token_per_gpu=kv_per_token_per_gpu,
        frac_pct=frac_pct,
        attention_dp=attention_dp,
    )


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"


# --------------------------------------------------------------------------- planner


def size_deployment(
    model: str,
    gpu: str,
    precision: str | None = None,
    context: int | None = None,
    concurrency: int = 16,
    gpus_per_node: int | None = None,
    kv_dtype: str | None = None,
    max_nodes: int = 64,
) -> CapacityPlan:
    """The deployment with the fewest GPUs that serves ``model`` on ``gpu``.

    ``precision`` defaults to fp8 where the model and GPU support it, else bf16; ``context``
    to ``min(32768, max_position_embeddings)``; ``gpus_per_node`` to the GPU's usual server;
    ``kv_dtype`` to fp8 for fp8/w4a8/fp4 weights on sm >= 8.9, else bf16. Candidates: 1, 2, 4,
    ... GPUs of one node, then ``N x gpus_per_node`` for N = 2..``max_nodes``. Raises
    :class:`InfeasibleError` saying what to change when nothing fits, and before any work for an
    input outside its bounds (:func:`check_bounds`).
    """
    check_bounds(context=context, concurrency=concurrency, gpus_per_node=gpus_per_node, max_nodes=max_nodes)
    spec = lookup_model(model)
    hw = lookup_gpu(gpu)
    if context is None:
        context = min(32768, spec.max_position_embeddings)
    if context > spec.max_position_embeddings:
        raise InfeasibleError(
            f"context {context} exceeds {spec.name} max_position_embeddings "
            f"{spec.max_position_embeddings}: use a context <= {spec.max_position_embeddings}"
        )
    gpn = hw.default_gpus_per_node if gpus_per_node is None else gpus_per_node
    prec = lookup_precision(precision) if precision is not None else PRECISIONS[_default_precision(spec, hw)]
    _check_precision(spec, prec, hw)
    kv_name = _resolve_kv_dtype(kv_dtype, spec, prec.name, hw)
    kv_per_token = spec.kv_bytes_per_token(KV_CACHE_DTYPES[kv_name])
    weights = spec.weights_bytes(prec)

    tp_limit = min(gpn, hw.nvlink_domain) if hw.has_nvlink else gpn
    candidates = [(1, g) for g in _single_node_counts(gpn)] + [(n, n * gpn) for n in range(2, max_nodes + 1)]
    closest: _Fit | None = None
    shape_problems: list[str] = []
    for nodes, count in candidates:
        for tp in _tp_options(count, gpn, tp_limit):
            pp = count // tp
            if spec.attention == "mla" and nodes == 1 and pp > 1:
                continue  # no pipeline stages inside one node for MLA (module docstring)
            problem = _shape_problem(spec, tp, pp)
            if problem:
                shape_problems.append(problem)
                continue
            fit = _fit(spec, hw, weights, kv_per_token, tp, pp, context, concurrency)
            adp = _adp_fit(spec, hw, prec, weights, kv_per_token, tp, pp, context, concurrency, fit.fits)
            chosen = adp if adp is not None and adp.fits else fit
            if chosen.fits:
                return _plan(
                    spec, hw, prec, kv_name, kv_per_token, weights, context, concurrency, gpn, nodes, chosen
                )
            for f in (fit, adp):
                if f is not None and (closest is None or f.shortfall < closest.shortfall):
                    closest = f
    raise InfeasibleError(
        _no_fit_message(spec, hw, prec, context, concurrency, gpn, max_nodes, closest, shape_problems)
    )


def _adp_pays(spec: ModelSpec, hw: GPUSpec, prec: PrecisionSpec, tp: int, context: int, concurrency: int) -> bool:
    """Attention DP where NVIDIA publishes it for the nearest workload, else from 16 sequences a rank."""
    from llmcluster.plan.recipes import published_attention_dp

    published = published_attention_dp(spec.name, hw.name, prec.name, context=context, concurrency=concurrency,
                                       tp=tp)
    if published is not None:
        return published
    return concurrency >= ADP_MIN_SEQUENCES_PER_RANK * tp


def _adp_fit(spec: ModelSpec, hw: GPUSpec, prec: PrecisionSpec, weights: int, kv_per_token: int, tp: int, pp: int,
             context: int, concurrency: int, plain_fits: bool) -> _Fit | None:
    """The attention-DP layout at this tp x pp when it is worth trying (module docstring), else None:
    where the plain layout fits, only where attention DP pays; where it does not, whenever every rank
    gets a sequence."""
    if spec.attention != "mla" or tp < 2 or concurrency < tp:
        return None
    if plain_fits and not _adp_pays(spec, hw, prec, tp, context, concurrency):
        return None
    attn = spec.weight_bytes_by_group(prec).get("attention", 0)
    return _fit(spec, hw, weights, kv_per_token, tp, pp, context, concurrency, attention_dp=True, attn_weights=attn)


def _no_fit_message(
    spec: ModelSpec,
    hw: GPUSpec,
    prec: PrecisionSpec,
    context: int,
    concurrency: int,
    gpn: int,
    max_nodes: int,
    closest: _Fit | None,
    shape_problems: list[str],
) -> str:
    where = f"{max_nodes} node{'s' if max_nodes != 1 else ''} of {gpn}x {hw.name}"
    head = (
        f"{spec.name} in {prec.name} (context {context}, concurrency {concurrency}) does not fit in {where}"
    )
    if closest is None:
        reasons = "; ".join(dict.fromkeys(shape_problems)) or "no candidate layout"
        return f"{head}: no valid parallel layout ({reasons}); change gpus_per_node"
    usable = closest.usable
    detail = (
        f"the closest layout (tp {closest.tp} x pp {closest.pp}) needs "
        f"{_gib(closest.weights_per_gpu)} of weights + {_gib(closest.kv_per_gpu)} of KV cache per GPU, "
        f"but a GPU has {_gib(usable)} usable ({closest.frac_pct}% of what "
        f"the weights leave goes to the KV cache)"
    )
    smaller = [
        p
        for p in spec.supported_precisions
        if _precision_ok(spec, PRECISIONS[p], hw)
        and spec.weights_bytes(PRECISIONS[p]) < spec.weights_bytes(prec)
    ]
    fixes = ["reduce context or concurrency"]
    if smaller:
        fixes.append(f"use a smaller precision ({', '.join(smaller)})")
    fixes += ["use a GPU with more memory", "raise max_nodes"]
    return f"{head}: {detail}. Fix: {', '.join(fixes[:-1])} or {fixes[-1]}"


def _plan(
    spec: ModelSpec,
    hw: GPUSpec,
    prec: PrecisionSpec,
    kv_name: str,
    kv_per_token: int,
    weights: int,
    context: int,
    concurrency: int,
    gpn: int,
    nodes: int,
    fit: _Fit,
) -> CapacityPlan:
    tp, pp = fit.tp, fit.pp
    gpus = tp * pp
    warnings: list[str] = []
    if tp > 1 and not hw.has_nvlink:
        warnings.append(
            f"tensor parallelism (tp {tp}) over PCIe: {hw.name} has no NVLink, every layer's "
            "all-reduce crosses PCIe; expect throughput far below the roofline"
        )
    if nodes > 1:
        warnings.append(
            f"pipeline parallelism spans {nodes} nodes: stages exchange activations over the node "
            "network; use an RDMA fabric (InfiniBand, RoCE or EFA)"
        )
    if spec.attention == "mla" and tp > 1 and not fit.attention_dp:
        warnings.append(
            f"the MLA latent KV cache is replicated on all {tp} TP ranks (it has no heads to shard); "
            "attention data parallelism is off: at this concurrency NVIDIA's published configurations "
            "keep it off (latency-bound; it pays from high concurrency)"
        )
    if spec.attention == "gqa" and tp > spec.num_key_value_heads:
        warnings.append(
            f"tp {tp} exceeds {spec.num_key_value_heads} KV heads: KV heads are replicated "
            f"{tp // spec.num_key_value_heads}x"
        )
    step_bytes = decode_step_bytes(spec, prec, KV_CACHE_DTYPES[kv_name], tp, context, concurrency,
                                   attention_dp=fit.attention_dp)
    step_s = step_bytes / hw.hbm_bandwidth_bytes_per_s
    return CapacityPlan(
        model=spec.name,
        gpu=hw.name,
        precision=prec.name,
        kv_dtype=kv_name,
        context=context,
        concurrency=concurrency,
        weights_bytes=weights,
        kv_bytes_per_token=kv_per_token,
        tp=tp,
        pp=pp,
        ep=tp if spec.moe else 1,
        gpus=gpus,
        nodes=nodes,
        gpus_per_node=gpn,
        backend=backend_for(spec),
        max_batch_size=concurrency,
        # Chunked prefill: at most this many tokens per scheduler iteration, but never fewer
        # than one decode token per scheduled sequence.
        max_num_tokens=max(min(MAX_NUM_TOKENS_CAP, context), concurrency),
        max_seq_len=context,
        kv_cache_free_gpu_memory_fraction=fit.frac_pct / 100,
        decode_tokens_per_s_bound=round(concurrency / step_s, 1),
        decode_tokens_per_s_per_user_bound=round(1 / step_s, 1),
        decode_bytes_per_step=round(step_bytes),
        weights_bytes_per_gpu=fit.weights_per_gpu,
        kv_bytes_per_gpu=fit.kv_per_gpu,
        kv_cache_pool_bytes_per_gpu=fit.pool,
        runtime_reserve_bytes_per_gpu=runtime_reserve_bytes(hw),
        memory_bytes_per_gpu=hw.memory_bytes,
        # tokens the replica's cache holds: per rank, times the ranks that hold distinct requests
        kv_tokens_capacity=fit.pool // fit.kv_per_token_per_gpu * (tp if fit.attention_dp else 1),
        warnings=tuple(warnings),
        attention_dp=fit.attention_dp,
    )


# --------------------------------------------------------------------------- trtllm-serve


def extra_llm_api_options(plan: CapacityPlan) -> dict[str, Any]:
    """Settings with no ``trtllm-serve`` flag, for the ``--extra_llm_api_options`` YAML file."""
    return {
        "kv_cache_config": {
            "dtype": "fp8" if plan.kv_dtype == "fp8" else "auto",
            "free_gpu_memory_fraction": plan.kv_cache_free_gpu_memory_fraction,
        }
    }


def trtllm_serve_command(
    plan: CapacityPlan, model_dir: str, host: str, port: int, extra_options_file: str | None = None,
    serve_args: dict[str, Any] | None = None,
) -> list[str]:
    """argv for ``trtllm-serve`` serving ``plan``.

    ``model_dir`` is the Hugging Face checkpoint (pytorch backend) or the built engine
    directory (engine backend, ``--backend tensorrt`` as in TensorRT-LLM 1.x). ``--ep_size`` is
    passed for MoE models only. ``extra_options_file`` names a YAML file holding
    :func:`extra_llm_api_options` (needed for an FP8 KV cache). ``serve_args``: the serving plan's
    ``args`` (``llmcluster.plan.serving.serve_args``: the engine configuration's batch, token and
    KV-fraction values), replacing the capacity plan's where given.
    """
    if not 1 <= port <= 65535:
        raise InfeasibleError(f"port must be 1-65535 (got {port})")
    args = {**plan.trtllm_args, **(serve_args or {})}
    argv = [
        "trtllm-serve",
        model_dir,
        "--host",
        host,
        "--port",
        str(port),
        "--backend",
        "pytorch" if plan.backend == "pytorch" else "tensorrt",
        "--tp_size",
        str(args["tp_size"]),
        "--pp_size",
        str(args["pp_size"]),
    ]
    if plan.ep > 1:
        argv += ["--ep_size", str(args["ep_size"])]
    argv += [
        "--max_batch_size",
        str(args["max_batch_size"]),
        "--max_num_tokens",
        str(args["max_num_tokens"]),
        "--max_seq_len",
        str(args["max_seq_len"]),
        "--kv_cache_free_gpu_memory_fraction",
        str(args["kv_cache_free_gpu_memory_fraction"]),
    ]
    if extra_options_file is not None:
        argv += ["--extra_llm_api_options", extra_options_file]
    return argv
