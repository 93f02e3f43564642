"""The trtllm-serve engine configuration: the full extra LLM-API options file (pure, no I/O).

:func:`engine_config` turns a capacity plan (model, GPU, precision, parallel layout, context,
concurrency) and the workload's input/output lengths into the YAML ``trtllm-serve
--extra_llm_api_options`` reads. It starts from NVIDIA's nearest published configuration
(:mod:`llmcluster.plan.recipes`, the rows carry their source) and derives from the workload what
the planner knows better; every option that departs from the row is listed with the reason in
:attr:`EngineConfig.departures`. Option names follow the pinned TensorRT-LLM (1.0.0:
``TorchLlmArgs`` / ``TrtLlmArgs``). The rules and their sources:

* **Parallelism** — ``tensor_parallel_size``, ``pipeline_parallel_size``,
  ``moe_expert_parallel_size`` and ``enable_attention_dp`` are the capacity plan's (which follows
  the nearest row's attention-DP choice unless memory forbids; see :mod:`.capacity`). With
  attention DP, ``attention_dp_config`` is the published one (balance on, ``timeout_iters`` 60,
  ``batching_wait_iters`` 0: every DeepSeek-R1 row that enables attention DP).
* **Batch and token limits** (the workload) — ``max_seq_len`` is the context;
  ``max_batch_size`` is the sequences one rank schedules (the concurrency, divided over the
  ranks under attention DP): the cache is sized for exactly those; ``max_num_tokens`` (the
  tokens of one scheduler iteration) is one prefill chunk plus one decode step of every
  scheduled sequence, ``min(ISL, 8192) + batch x (1 + MTP draft) + 64`` rounded up to 64 (the
  published H200 1k/1k rows at 16-64 requests are exactly ``ISL + batch x 4 + 64``).
* **Chunked prefill** (``enable_chunked_prefill``) — on when an input can exceed
  ``max_num_tokens`` (NVIDIA's recipe selector: "to handle requests with input sequences longer
  than the configured ISL, add enable_chunked_prefill: true").
* **KV cache** — ``dtype`` fp8 where the plan's KV cache is FP8 (every DeepSeek-R1 row), else
  ``auto``; ``free_gpu_memory_fraction`` the plan's (0.8 DeepSeek, 0.9 dense: the curated
  Llama-70B row), so the cache the plan sized is the cache the server allocates.
* **CUDA graphs** (PyTorch backend) — ``enable_padding: true`` (every row) and explicit
  ``batch_sizes`` up to the rank's ``max_batch_size``: 1, 2, 4, then steps of 8 to 128, then
  powers of two, then the maximum itself (a padded batch runs the next captured size).
* **MoE backend** (PyTorch backend, MoE models) — the nearest row's for this GPU and precision;
  without a row NVIDIA's DeepSeek-R1 deployment guide's support matrix: Hopper FP8 ``CUTLASS``;
  Blackwell FP8 ``DEEPGEMM``; Blackwell NVFP4 ``TRTLLM`` (``CUTLASS`` with attention DP).
* **MTP speculative decoding** (DeepSeek-V3/R1, PyTorch backend) — the nearest row's draft
  length (3 at low concurrency, 1 with attention DP, none in some high-throughput rows);
  without a row 3 below 16 sequences a rank, else 1.
* ``trust_remote_code: true`` for DeepSeek-V3/R1 (every row sets it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmcluster.errors import InfeasibleError
from llmcluster.plan.capacity import MAX_NUM_TOKENS_CAP, CapacityPlan
from llmcluster.plan.catalog import lookup_gpu, lookup_model
from llmcluster.plan.recipes import Recipe, nearest, split_context, table

#: The LLM-API options (``TorchLlmArgs`` / ``TrtLlmArgs`` fields of TensorRT-LLM 1.0.0, the pinned
#: version) this planner and NVIDIA's recipes use, with the fields of the nested configurations
#: (``KvCacheConfig``, ``CudaGraphConfig``, ``MoeConfig``, ``MTPDecodingConfig``, ``AttentionDpConfig``);
#: None: a scalar. The lab's stand-in trtllm-serve refuses anything else, as the real pydantic models
#: refuse extra inputs (llmcluster.lab.nvidia_sim.wheels).
LLM_API_OPTIONS: dict[str, tuple[str, ...] | None] = {
    "tensor_parallel_size": None, "pipeline_parallel_size": None, "moe_expert_parallel_size": None,
    "moe_tensor_parallel_size": None, "enable_attention_dp": None,
    "attention_dp_config": ("enable_balance", "batching_wait_iters", "timeout_iters"),
    "max_batch_size": None, "max_num_tokens": None, "max_seq_len": None, "max_beam_width": None,
    "enable_chunked_prefill": None,
    "kv_cache_config": ("dtype", "free_gpu_memory_fraction", "enable_block_reuse", "max_tokens"),
    "cuda_graph_config": ("enable_padding", "batch_sizes", "max_batch_size"),
    "moe_config": ("backend",),
    "speculative_config": ("decoding_type", "num_nextn_predict_layers", "use_relaxed_acceptance_for_thinking",
                           "relaxed_topk", "relaxed_delta"),
    "trust_remote_code": None, "print_iter_log": None, "stream_interval": None, "backend": None,
    "disable_overlap_scheduler": None, "enable_iter_perf_stats": None, "num_postprocess_workers": None,
}
#: attention_dp_config of every published DeepSeek-R1 row with attention DP.
ATTENTION_DP_CONFIG = {"enable_balance": True, "batching_wait_iters": 0, "timeout_iters": 60}
#: NVIDIA's DeepSeek-R1 deployment guide, "MoE Backend Support Matrix" (no published row).
MOE_BACKEND_MATRIX = {("hopper", "fp8"): "CUTLASS", ("blackwell", "fp8"): "DEEPGEMM",
                      ("blackwell", "fp4"): "TRTLLM"}
#: MTP draft length without a row: 3 for latency (few sequences a rank), else 1.
MTP_LOW_CONCURRENCY_DRAFT, MTP_HIGH_CONCURRENCY_DRAFT, MTP_LOW_CONCURRENCY_MAX_PER_RANK = 3, 1, 16


@dataclass(frozen=True)
class EngineConfig:
    """The extra LLM-API options and where they come from."""

    options: dict[str, Any]
    isl: int
    osl: int
    trtllm_version: str
    recipe: str | None = None
    recipe_source: str | None = None
    departures: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {"options": self.options, "isl": self.isl, "osl": self.osl, "trtllm_version": self.trtllm_version,
                "recipe": self.recipe, "recipe_source": self.recipe_source, "departures": list(self.departures)}


def cuda_graph_batch_sizes(max_batch: int) -> list[int]:
    """1, 2, 4, steps of 8 up to 128, powers of two beyond, and ``max_batch`` (all <= max_batch)."""
    sizes = {1, 2, 4, *range(8, 129, 8)}
    p = 256
    while p < max_batch:
        sizes.add(p)
        p *= 2
    sizes.add(max_batch)
    return sorted(s for s in sizes if s <= max_batch)


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def _moe_backend(arch: str, precision: str, attention_dp: bool, row: Recipe | None) -> tuple[str, str]:
    if row is not None and "moe_config" in row.options:
        return row.options["moe_config"]["backend"], f"nearest recipe {row.id}"
    if arch == "blackwell" and precision == "fp4" and attention_dp:
        return "CUTLASS", "deployment guide support matrix (NVFP4, high throughput)"
    backend = MOE_BACKEND_MATRIX.get((arch, precision))
    if backend is None:
        return "CUTLASS", "TensorRT-LLM's default MoE backend (no published choice for this GPU and precision)"
    return backend, "deployment guide support matrix"


def engine_config(cap: CapacityPlan, *, isl: int | None = None, osl: int | None = None,
                  backend: str | None = None) -> EngineConfig:
    """The ``--extra_llm_api_options`` of ``cap`` for inputs of ``isl`` and outputs of ``osl`` tokens
    (default: OSL 1024, at most half the context, and the rest of the context as input).
    ``backend``: ``pytorch`` to serve a dense checkpoint through the PyTorch flow instead of the
    plan's TensorRT engine (scripts/gpu_check.py does, to skip the engine build)."""
    for name, value in (("isl", isl), ("osl", osl)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InfeasibleError(f"{name} must be a positive whole number (got {value!r})")
    if isl is None:
        isl = split_context(cap.context, osl)[0]
    if osl is None:
        osl = max(1, cap.context - isl) if cap.context > isl else 1
    if isl + osl > cap.context:
        raise InfeasibleError(f"isl {isl} + osl {osl} exceeds the context {cap.context}: raise serving.context "
                              f"or shorten the workload")
    model = lookup_model(cap.model)
    gpu = lookup_gpu(cap.gpu)
    version, _ = table()
    if backend not in (None, "pytorch", "engine"):
        raise InfeasibleError(f"backend must be pytorch or engine (got {backend!r})")
    pytorch = (backend or cap.backend) == "pytorch"
    deepseek = model.family == "deepseek_v3"
    row = nearest(cap.model, cap.gpu, cap.precision, isl=isl, osl=osl, concurrency=cap.concurrency, tp=cap.tp)
    dp = cap.tp if cap.attention_dp else 1
    batch = -(-cap.concurrency // dp)

    if deepseek and pytorch:
        if row is not None:
            mtp, mtp_why = row.mtp_layers, f"nearest recipe {row.id}"
        else:
            mtp = MTP_LOW_CONCURRENCY_DRAFT if batch < MTP_LOW_CONCURRENCY_MAX_PER_RANK else MTP_HIGH_CONCURRENCY_DRAFT
            mtp_why = "rule: 3 draft tokens below 16 sequences a rank, else 1"
    else:
        mtp, mtp_why = 0, "MTP is DeepSeek-V3/R1's (PyTorch backend)"
    chunk = min(isl, MAX_NUM_TOKENS_CAP)
    max_num_tokens = _round_up(chunk + batch * (1 + mtp) + 64, 64)

    opts: dict[str, Any] = {
        "tensor_parallel_size": cap.tp,
        "pipeline_parallel_size": cap.pp,
    }
    if model.moe:
        opts["moe_expert_parallel_size"] = cap.ep
    opts["enable_attention_dp"] = cap.attention_dp
    if cap.attention_dp:
        opts["attention_dp_config"] = dict(ATTENTION_DP_CONFIG)
    opts["max_batch_size"] = batch
    opts["max_num_tokens"] = max_num_tokens
    opts["max_seq_len"] = cap.context
    opts["enable_chunked_prefill"] = cap.context - 1 > max_num_tokens
    opts["kv_cache_config"] = {"dtype": "fp8" if cap.kv_dtype == "fp8" else "auto",
                               "free_gpu_memory_fraction": cap.kv_cache_free_gpu_memory_fraction}
    notes: list[str] = []
    if pytorch:
        opts["cuda_graph_config"] = {"enable_padding": True, "batch_sizes": cuda_graph_batch_sizes(batch)}
        if model.moe:
            backend, why = _moe_backend(gpu.arch, cap.precision, cap.attention_dp, row)
            opts["moe_config"] = {"backend": backend}
            if row is None:
                notes.append(f"moe_config.backend {backend}: {why}")
        if mtp:
            opts["speculative_config"] = {"decoding_type": "MTP", "num_nextn_predict_layers": mtp}
        if row is None and deepseek:
            notes.append(f"speculative_config: MTP {mtp} ({mtp_why})")
    if deepseek:
        opts["trust_remote_code"] = True
    if not pytorch:
        notes.append("engine backend (trtllm-build): CUDA graphs, the MoE backend and MTP are PyTorch-backend "
                     "options; the engine is built with max_batch_size/max_num_tokens/max_seq_len above")
    departures = notes + (_departures(opts, row, cap, isl, osl, batch) if row is not None else
                          [f"no published configuration for {cap.model} on {cap.gpu} in {cap.precision}: "
                           "rules of llmcluster.plan.engine apply"])
    return EngineConfig(options=opts, isl=isl, osl=osl, trtllm_version=version,
                        recipe=row.id if row else None, recipe_source=row.source if row else None,
                        departures=tuple(departures))


def _departures(opts: dict[str, Any], row: Recipe, cap: CapacityPlan, isl: int, osl: int, batch: int) -> list[str]:
    """One line per option whose value differs from the nearest row's, with the reason."""
    ro = row.options
    out: list[str] = []
    where = f"recipe {row.id} (ISL {row.isl}, OSL {row.osl}, concurrency {row.concurrency})"
    work = f"this workload (ISL {isl}, OSL {osl}, concurrency {cap.concurrency}, context {cap.context})"

    def differs(key: str) -> bool:
        return key in ro and ro[key] != opts.get(key)

    if differs("tensor_parallel_size") or "pipeline_parallel_size" in opts and opts["pipeline_parallel_size"] != 1:
        out.append(f"tensor_parallel_size {opts['tensor_parallel_size']} x pipeline_parallel_size "
                   f"{opts['pipeline_parallel_size']} (the {where} uses tp {ro.get('tensor_parallel_size', 1)}): "
                   f"the smallest layout whose weights and KV cache fit {cap.gpus} GPU(s) for {work}")
    if "moe_expert_parallel_size" in opts and differs("moe_expert_parallel_size"):
        out.append(f"moe_expert_parallel_size {opts.get('moe_expert_parallel_size')} (the {where}: "
                   f"{ro['moe_expert_parallel_size']}): experts are split over the whole TP group, which keeps "
                   f"every GPU's expert weights equal")
    if differs("enable_attention_dp"):
        why = ("the replicated MLA cache of this concurrency does not fit, split by request it does"
               if opts["enable_attention_dp"] else "the published choice at the nearest workload does not apply")
        out.append(f"enable_attention_dp {opts['enable_attention_dp']} (the {where}: "
                   f"{ro['enable_attention_dp']}): {why}")
    if "max_batch_size" in ro and ro["max_batch_size"] != opts["max_batch_size"]:
        out.append(f"max_batch_size {opts['max_batch_size']} (the {where}: {ro['max_batch_size']}): the sequences "
                   f"one rank schedules for {work}; the KV cache is sized for exactly these")
    if "max_num_tokens" in ro and ro["max_num_tokens"] != opts["max_num_tokens"]:
        out.append(f"max_num_tokens {opts['max_num_tokens']} (the {where}: {ro['max_num_tokens']}): one prefill "
                   f"chunk (min(ISL, {MAX_NUM_TOKENS_CAP})) plus a decode step of {batch} sequence(s) and their "
                   f"draft tokens, + 64")
    if "max_seq_len" in ro and ro["max_seq_len"] != opts["max_seq_len"]:
        out.append(f"max_seq_len {opts['max_seq_len']} (the {where}: {ro['max_seq_len']}): the context the "
                   f"deployment promises (serving.context)")
    if opts.get("enable_chunked_prefill") and not ro.get("enable_chunked_prefill"):
        out.append(f"enable_chunked_prefill true: inputs up to {cap.context - 1} tokens exceed max_num_tokens "
                   f"{opts['max_num_tokens']} (NVIDIA's recipe selector: add it for inputs longer than the ISL)")
    rk, ok = ro.get("kv_cache_config", {}), opts["kv_cache_config"]
    if rk.get("dtype") not in (None, ok["dtype"]):
        out.append(f"kv_cache_config.dtype {ok['dtype']} (the {where}: {rk['dtype']}): the plan's KV dtype")
    if "free_gpu_memory_fraction" in rk and rk["free_gpu_memory_fraction"] != ok["free_gpu_memory_fraction"]:
        out.append(f"kv_cache_config.free_gpu_memory_fraction {ok['free_gpu_memory_fraction']} (the {where}: "
                   f"{rk['free_gpu_memory_fraction']}): the fraction the capacity plan sized the cache with")
    rc, oc = ro.get("cuda_graph_config"), opts.get("cuda_graph_config")
    if rc is not None and oc is not None and rc.get("max_batch_size") != oc["batch_sizes"][-1]:
        out.append(f"cuda_graph_config.batch_sizes up to {oc['batch_sizes'][-1]} (the {where}: max_batch_size "
                   f"{rc.get('max_batch_size', 'default')}): graphs for every batch one rank can schedule, padded")
    return out
