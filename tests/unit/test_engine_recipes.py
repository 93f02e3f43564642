"""The engine configuration (llmcluster.plan.engine) against NVIDIA's published recipes.

Every row of llmcluster/plan/data/trtllm_recipes.yaml names its source (file and commit in the
NVIDIA/TensorRT-LLM repository). For each row the planner sizes the row's own workload (context =
ISL + OSL + the row's margin, its concurrency, GPU and precision) and must reproduce the published
choices that are not workload arithmetic, and explain every option where it departs.
"""

from __future__ import annotations

import pytest
import yaml

from llmcluster.errors import InfeasibleError
from llmcluster.plan.capacity import size_deployment
from llmcluster.plan.engine import cuda_graph_batch_sizes, engine_config
from llmcluster.plan.recipes import nearest, recipes, table

ROWS = {r.id: r for r in recipes()}
R1_ROWS = [r for r in recipes() if r.model == "deepseek-r1"]


def _plan(row, gpu=None):
    context = max(row.options.get("max_seq_len", row.isl + row.osl), row.isl + row.osl)
    cap = size_deployment(row.model, gpu or row.gpu, row.precision, context=context, concurrency=row.concurrency)
    return cap, engine_config(cap, isl=row.isl, osl=row.osl)


def test_table_rows_carry_their_source_and_pinned_version() -> None:
    version, rows = table()
    assert version == "1.0.0"  # the TensorRT-LLM llmcluster.plan.nvidia pins by default
    assert len({r.id for r in rows}) == len(rows) >= 15
    for r in rows:
        assert r.source_path.startswith("examples/configs/") and len(r.source_commit) == 40, r.id
        assert r.options["kv_cache_config"]["dtype"] == "fp8", r.id
        # 1.0.0 spells MTP's draft length num_nextn_predict_layers
        assert "max_draft_len" not in (r.options.get("speculative_config") or {}), r.id
    gpus = {(r.model, r.gpu) for r in rows}
    assert {("deepseek-r1", "h200"), ("deepseek-r1", "b200"), ("deepseek-r1-distill-llama-70b", "any")} <= gpus


@pytest.mark.parametrize("row", R1_ROWS, ids=lambda r: r.id)
def test_r1_rows_reproduced(row) -> None:
    cap, eng = _plan(row)
    o = eng.options
    # never pipeline stages inside a node (no published DeepSeek-R1 row has any)
    assert o["pipeline_parallel_size"] == 1 and o["tensor_parallel_size"] == o["moe_expert_parallel_size"] == cap.tp
    if cap.tp != row.tp:
        # the planner's fewest GPUs: NVIDIA publishes this workload on 8 GPUs, 4 hold it (B200's
        # own tp 4 row shows the 4-GPU layout); the departure names the layout
        assert cap.gpus < row.tp
        assert ROWS[eng.recipe].tp == cap.tp or any(d.startswith(f"tensor_parallel_size {cap.tp} ")
                                                    for d in eng.departures)
        return
    assert eng.recipe == row.id, "a row's own workload is nearest to itself"
    assert "NVIDIA/TensorRT-LLM examples/configs/database/" in eng.recipe_source
    assert o["enable_attention_dp"] == cap.attention_dp
    if o["enable_attention_dp"] != row.attention_dp:
        # only where the replicated MLA cache of `concurrency` full sequences does not fit: explained
        assert o["enable_attention_dp"] and cap.kv_tokens_capacity >= row.concurrency * cap.context
        assert any(d.startswith("enable_attention_dp True") and "does not fit" in d for d in eng.departures)
        return
    assert ("attention_dp_config" in o) == row.attention_dp
    if row.attention_dp:
        assert o["attention_dp_config"] == row.options["attention_dp_config"]
    # MTP draft length and MoE backend as published
    assert (o.get("speculative_config") or {}).get("num_nextn_predict_layers", 0) == row.mtp_layers
    assert o["moe_config"] == row.options["moe_config"]
    assert o["kv_cache_config"]["dtype"] == "fp8"
    assert abs(o["kv_cache_config"]["free_gpu_memory_fraction"]
               - row.options["kv_cache_config"]["free_gpu_memory_fraction"]) <= 0.051
    assert o["cuda_graph_config"]["enable_padding"] is True
    assert o["trust_remote_code"] is True
    # the workload: every scheduled sequence has a CUDA graph; one iteration takes a full ISL chunk
    # (or 8192 tokens) and a decode step of every sequence with its draft tokens
    per_rank = -(-row.concurrency // (8 if row.attention_dp else 1))
    assert o["max_batch_size"] == per_rank == o["cuda_graph_config"]["batch_sizes"][-1]
    assert o["max_num_tokens"] >= min(row.isl, 8192) + per_rank * (1 + row.mtp_layers)
    assert o["max_seq_len"] >= row.isl + row.osl
    # every option that differs from the row is explained
    for key in ("max_batch_size", "max_num_tokens", "max_seq_len"):
        if key in row.options and row.options[key] != o[key]:
            assert any(d.startswith(f"{key} {o[key]} ") for d in eng.departures), (key, eng.departures)
    if row.options["kv_cache_config"]["free_gpu_memory_fraction"] != o["kv_cache_config"]["free_gpu_memory_fraction"]:
        assert any(d.startswith("kv_cache_config.free_gpu_memory_fraction") for d in eng.departures)


def test_published_low_concurrency_rows_match_exactly_on_token_budget() -> None:
    # H200 1k/1k at 16, 32, 64 requests: max_num_tokens = ISL + batch x (1 + 3) + 64, as published.
    for rid in ("r1-h200-fp8-1k1k-c16", "r1-h200-fp8-1k1k-c32", "r1-h200-fp8-1k1k-c64"):
        _, eng = _plan(ROWS[rid])
        assert eng.options["max_num_tokens"] == ROWS[rid].options["max_num_tokens"], rid
        assert eng.options["max_batch_size"] == ROWS[rid].options["max_batch_size"], rid


def test_b200_tp4_row_keeps_four_gpus_and_explains_expert_parallelism() -> None:
    row = ROWS["r1-b200-fp8-1k1k-c8-tp4"]
    cap, eng = _plan(row)
    assert (cap.gpus, cap.tp) == (4, 4) and eng.recipe == row.id
    assert eng.options["moe_config"] == {"backend": "TRTLLM"}
    assert "speculative_config" not in eng.options  # the row runs without MTP
    assert any(d.startswith("moe_expert_parallel_size 4 ") for d in eng.departures)


def test_dense_llama70b_on_h100_follows_the_curated_row() -> None:
    row = ROWS["llama70b-any-fp8-curated"]
    cap = size_deployment("deepseek-r1-distill-llama-70b", "h100", "fp8", context=4096, concurrency=64)
    eng = engine_config(cap)
    o = eng.options
    assert eng.recipe == row.id and cap.backend == "engine"
    assert o["kv_cache_config"] == row.options["kv_cache_config"]  # fp8, 0.9
    assert o["enable_attention_dp"] is False and "speculative_config" not in o and "moe_config" not in o
    assert "moe_expert_parallel_size" not in o
    assert "cuda_graph_config" not in o  # a PyTorch-backend option; the distill runs a TensorRT engine
    assert any("engine backend" in d for d in eng.departures)
    assert any(d.startswith(f"tensor_parallel_size {cap.tp} ") for d in eng.departures)


def test_high_concurrency_r1_on_h200_uses_attention_dp_not_pipeline() -> None:
    # issue 17: at 64 concurrent 32k-token sequences the replicated MLA cache does not fit tp 8; the
    # planner used to split 8 GPUs into tp 4 x pp 2. NVIDIA's practice: tp 8 with attention DP.
    cap = size_deployment("deepseek-r1", "h200", "fp8", concurrency=64)
    assert (cap.tp, cap.pp, cap.ep, cap.attention_dp) == (8, 1, 8, True)
    assert not any("attention data parallelism would" in w for w in cap.warnings)
    eng = engine_config(cap)
    assert eng.options["enable_attention_dp"] is True and eng.options["max_batch_size"] == 8
    assert eng.options["enable_chunked_prefill"] is True  # 32k inputs > one 8k chunk
    assert any(d.startswith("enable_attention_dp True") for d in eng.departures)
    # the cache holds every sequence: 8 ranks x their own pool
    assert cap.kv_tokens_capacity >= 64 * 32768
    # low concurrency keeps it off, as every published row below 64 requests does
    low = size_deployment("deepseek-r1", "h200", "fp8", concurrency=16)
    assert not low.attention_dp and engine_config(low).options["enable_attention_dp"] is False


def test_without_a_row_rules_apply_and_say_so() -> None:
    cap = size_deployment("deepseek-r1", "h100", "fp8")  # 16x H100: no published row
    eng = engine_config(cap)
    assert eng.recipe is None
    assert eng.options["moe_config"] == {"backend": "CUTLASS"}  # Hopper FP8: support matrix
    assert eng.options["speculative_config"]["num_nextn_predict_layers"] == 1  # 16 sequences a rank: 1
    few = engine_config(size_deployment("deepseek-r1", "h100", "fp8", concurrency=8))
    assert few.options["speculative_config"]["num_nextn_predict_layers"] == 3  # < 16 a rank: 3 (latency)
    assert any("no published configuration" in d for d in eng.departures)
    fp4 = engine_config(size_deployment("deepseek-r1", "gb200", "fp4", concurrency=8))
    assert fp4.options["moe_config"]["backend"] in ("TRTLLM", "CUTLASS")


def test_cuda_graph_batch_sizes() -> None:
    assert cuda_graph_batch_sizes(1) == [1]
    assert cuda_graph_batch_sizes(12) == [1, 2, 4, 8, 12]
    big = cuda_graph_batch_sizes(1000)
    assert big[:5] == [1, 2, 4, 8, 16] and big[-3:] == [256, 512, 1000] and big == sorted(set(big))


def test_bad_workload_is_refused() -> None:
    cap = size_deployment("deepseek-r1", "h200", "fp8", context=4096, concurrency=8)
    with pytest.raises(InfeasibleError, match="isl 4000 \\+ osl 1000 exceeds the context 4096"):
        engine_config(cap, isl=4000, osl=1000)
    with pytest.raises(InfeasibleError, match="osl must be a positive whole number"):
        engine_config(cap, isl=10, osl=0)


def test_nearest_prefers_the_same_layout_and_gpu() -> None:
    a = nearest("deepseek-r1", "b200", "fp8", isl=1024, osl=1024, concurrency=8, tp=4)
    b = nearest("deepseek-r1", "b200", "fp8", isl=1024, osl=1024, concurrency=8, tp=8)
    assert (a.id, b.id) == ("r1-b200-fp8-1k1k-c8-tp4", "r1-b200-fp8-1k1k-c8")
    assert nearest("deepseek-r1", "a100-80gb", "fp8", isl=1, osl=1, concurrency=1) is None


def test_options_file_round_trips_as_yaml() -> None:
    eng = engine_config(size_deployment("deepseek-r1", "b200", "fp8", concurrency=256, context=2048))
    assert yaml.safe_load(yaml.safe_dump(eng.options)) == eng.options


def _names(options: dict) -> set[str]:
    out = set()
    for k, v in options.items():
        out.add(k)
        if isinstance(v, dict):
            out |= {f"{k}.{f}" for f in v}
    return out


def test_option_names_are_the_pinned_versions() -> None:
    from llmcluster.plan.engine import LLM_API_OPTIONS

    known = set(LLM_API_OPTIONS) | {f"{k}.{f}" for k, fs in LLM_API_OPTIONS.items() if fs for f in fs}
    for r in recipes():
        assert _names(r.options) <= known, (r.id, _names(r.options) - known)
    for args in (("deepseek-r1", "h200", "fp8", 2048, 256), ("deepseek-r1", "b200", "fp4", 32768, 8),
                 ("deepseek-r1", "h100", "fp8", 32768, 16), ("deepseek-r1-distill-qwen-7b", "l40s", "fp8", 8192, 4)):
        model, gpu, precision, context, conc = args
        cap = size_deployment(model, gpu, precision, context=context, concurrency=conc)
        for backend in (None, "pytorch"):
            opts = engine_config(cap, backend=backend).options
            assert _names(opts) <= known, (args, _names(opts) - known)
    # a typo is not a known name
    assert "kv_cache_config.free_gpu_mem_fraction" not in known and "attention_dp" not in known
