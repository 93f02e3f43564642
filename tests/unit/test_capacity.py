"""Capacity planner tests. Expected values are hand-computed; the arithmetic is in the comments.

Memory constants used below (runtime reserve = 3 GiB + 5% of the GPU's memory):
  H100: 81559 MiB = 85,520,809,984 B; reserve 3,221,225,472 + 4,276,040,499 -> usable 78,023,544,013
  H200: 143771 MiB = 150,754,820,096 B; reserve 3,221,225,472 + 7,537,741,004 -> usable 139,995,853,620
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmcluster.errors import InfeasibleError
from llmcluster.plan.capacity import (
    CapacityPlan,
    decode_weight_bytes,
    expected_distinct_experts,
    extra_llm_api_options,
    size_deployment,
    trtllm_serve_command,
)
from llmcluster.plan.catalog import GPUS, MODELS, PRECISIONS

R1 = "deepseek-r1"
LLAMA70 = "deepseek-r1-distill-llama-70b"


# --------------------------------------------------------------------------- DeepSeek-R1


def test_r1_fp8_on_h200_is_one_node_of_eight() -> None:
    plan = size_deployment(R1, "h200", "fp8")
    assert (plan.gpus, plan.nodes, plan.tp, plan.pp, plan.ep) == (8, 1, 8, 1, 8)
    assert plan.backend == "pytorch"
    assert plan.kv_dtype == "fp8"
    # weights 673,150,582,112 / 8 = 84,143,822,764 per GPU (fits 139,995,853,620 usable)
    assert plan.weights_bytes_per_gpu == 84_143_822_764
    # MLA latent replicated on every TP rank: 35,136 B/token (fp8) x 32768 x 16 = 18,421,383,168
    assert plan.kv_bytes_per_gpu == 18_421_383_168
    # DeepSeek's KV fraction is 0.8 (NVIDIA's recipes: 0.75-0.8):
    # pool = 0.8 x (139,995,853,620 - 84,143,822,764) = 44,681,624,684 ; / 35,136 = 1,271,676 tokens
    assert plan.kv_cache_pool_bytes_per_gpu == 44_681_624_684
    assert plan.kv_tokens_capacity == 1_271_676
    assert plan.kv_cache_free_gpu_memory_fraction == 0.8
    assert not plan.attention_dp  # 16 sequences: NVIDIA's nearest recipes keep attention DP off


def test_r1_fp8_on_h100_needs_two_nodes() -> None:
    # 8 GPUs: 673,150,582,112 / 8 = 84.1e9 B of weights > 78.0e9 usable -> 16 GPUs.
    plan = size_deployment(R1, "h100", "fp8")
    assert (plan.gpus, plan.nodes, plan.tp, plan.pp, plan.ep) == (16, 2, 8, 2, 8)
    assert plan.weights_bytes_per_gpu == 42_071_911_382  # 673,150,582,112 / 16
    # busiest stage holds ceil(61/2) = 31 layers x 576 B (fp8) x 32768 x 16 = 9,361,686,528
    assert plan.kv_bytes_per_gpu == 9_361_686_528
    assert any("2 nodes" in w for w in plan.warnings)


def test_r1_default_precision_is_fp8_on_hopper_and_none_on_ampere() -> None:
    assert size_deployment(R1, "h200").precision == "fp8"
    # TensorRT-LLM does not serve DeepSeek-V3/R1 on Ampere in any precision (bf16 was sized before).
    with pytest.raises(InfeasibleError, match="on Ampere"):
        size_deployment(R1, "a100-80gb")


@pytest.mark.parametrize("model", [R1, "deepseek-v3"])
@pytest.mark.parametrize("gpu", ["a100-80gb", "a100-40gb"])
@pytest.mark.parametrize("precision", ["bf16", "fp8", "w4a8", "fp4"])
def test_deepseek_v3_family_on_ampere_is_infeasible_in_every_precision(model: str, gpu: str, precision: str) -> None:
    with pytest.raises(InfeasibleError, match=r"Ampere") as err:
        size_deployment(model, gpu, precision)
    assert f"{gpu} is sm 80 (Ampere)" in str(err.value)


def test_r1_fp8_on_ampere_is_infeasible_and_says_hopper() -> None:
    with pytest.raises(InfeasibleError, match=r"fp8 needs compute capability >= 9\.0 \(Hopper") as err:
        size_deployment(R1, "a100-80gb", "fp8")
    assert "a100-80gb is sm 80 (Ampere)" in str(err.value)
    assert "use bf16" not in str(err.value)  # no precision serves DeepSeek-R1 on Ampere


def test_r1_fp8_on_l40s_is_infeasible_but_dense_fp8_on_l40s_fits_one_gpu() -> None:
    with pytest.raises(InfeasibleError, match="Hopper"):
        size_deployment(R1, "l40s", "fp8")
    plan = size_deployment("deepseek-r1-distill-qwen-7b", "l40s", "fp8")
    assert plan.gpus == 1
    assert plan.backend == "engine"


def test_fp4_needs_blackwell() -> None:
    plan = size_deployment(R1, "b200", "fp4")
    # NVFP4 experts ~386e9 B; B200 usable 192,265,846,784 - 3 GiB - 5% = 179.4e9: 4 GPUs (2 hold 193e9).
    assert (plan.gpus, plan.tp, plan.ep) == (4, 4, 4)
    with pytest.raises(InfeasibleError, match="Blackwell"):
        size_deployment(R1, "h100", "fp4")


def test_r1_int4_awq_is_not_offered() -> None:
    with pytest.raises(InfeasibleError, match="use one of bf16, fp8, w4a8, fp4"):
        size_deployment(R1, "h100", "int4-awq")


def test_unknown_model_suggests() -> None:
    with pytest.raises(InfeasibleError, match="did you mean 'deepseek-r1'"):
        size_deployment("deepseek-r", "h100")


def test_context_above_max_position_embeddings() -> None:
    with pytest.raises(
        InfeasibleError, match="context 500000 exceeds deepseek-r1 max_position_embeddings 163840"
    ):
        size_deployment(R1, "h200", context=500000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"context": 0}, "context must be >= 1"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"gpus_per_node": 0}, "gpus_per_node must be >= 1"),
        ({"max_nodes": 0}, "max_nodes must be >= 1"),
        ({"kv_dtype": "int8"}, "unknown kv_dtype"),
    ],
)
def test_input_validation(kwargs: dict[str, int | str], message: str) -> None:
    with pytest.raises(InfeasibleError, match=message):
        size_deployment("deepseek-r1-distill-qwen-7b", "h100", **kwargs)  # type: ignore[arg-type]


def test_fp8_kv_cache_needs_ada() -> None:
    with pytest.raises(InfeasibleError, match="use kv_dtype bf16"):
        size_deployment("deepseek-r1-distill-qwen-7b", "a100-80gb", "bf16", kv_dtype="fp8")


def test_does_not_fit_in_max_nodes_says_so() -> None:
    with pytest.raises(InfeasibleError, match="does not fit in 1 node of 8x h100") as err:
        size_deployment(R1, "h100", "fp8", max_nodes=1)
    assert "raise max_nodes" in str(err.value)
    with pytest.raises(InfeasibleError, match="does not fit in 64 nodes of 8x h200"):
        size_deployment(R1, "h200", "fp8", concurrency=100_000)


# --------------------------------------------------------------------------- dense distills


def test_qwen_1_5b_bf16_on_h100_is_one_gpu() -> None:
    plan = size_deployment("deepseek-r1-distill-qwen-1.5b", "h100", "bf16")
    assert (plan.gpus, plan.tp, plan.pp, plan.ep) == (1, 1, 1, 1)
    assert plan.weights_bytes == 2 * 1_777_088_000


def test_llama_70b_bf16_on_h100_tp_by_hand() -> None:
    # weights 141,107,412,992 B; KV 2 x 80 x 8 x 128 x 2 = 327,680 B/token, sharded by min(tp, 8).
    # context 8192, concurrency 16:
    #   tp2: free 78,023,544,013 - 70,553,706,496 = 7,469,837,517 -> pool 6,722,853,765
    #        KV 163,840 x 8192 x 16 = 21,474,836,480 > pool           -> no
    #   tp4: free 78,023,544,013 - 35,276,853,248 = 42,746,690,765 -> pool 38,472,021,688
    #        KV 81,920 x 8192 x 16 = 10,737,418,240 <= pool           -> yes
    plan = size_deployment(LLAMA70, "h100", "bf16", context=8192, concurrency=16)
    assert (plan.tp, plan.gpus) == (4, 4)
    assert plan.kv_bytes_per_gpu == 10_737_418_240
    # context 4096, concurrency 1 on tp2: KV 163,840 x 4096 = 671,088,640 <= 6,722,853,765 -> tp2
    assert size_deployment(LLAMA70, "h100", "bf16", context=4096, concurrency=1).tp == 2
    # defaults (32768 x 16): tp4 KV 81,920 x 524,288 = 42,949,672,960 > 38,472,021,688 -> tp8
    assert size_deployment(LLAMA70, "h100", "bf16").tp == 8


def test_fp8_never_needs_more_gpus_than_bf16() -> None:
    for context, concurrency in [(8192, 16), (32768, 16), (4096, 1), (131072, 4)]:
        bf16 = size_deployment(LLAMA70, "h100", "bf16", context=context, concurrency=concurrency)
        fp8 = size_deployment(LLAMA70, "h100", "fp8", context=context, concurrency=concurrency)
        assert fp8.gpus <= bf16.gpus


def test_tp_must_divide_heads() -> None:
    # qwen-7b has 28 heads: 8 GPUs in one node cannot be tp 8, so the planner uses tp 4 x pp 2.
    plan = size_deployment("deepseek-r1-distill-qwen-7b", "a100-40gb", "bf16", context=131072, concurrency=16)
    assert 28 % plan.tp == 0
    assert plan.tp * plan.pp == plan.gpus


def test_pcie_tensor_parallel_warns() -> None:
    plan = size_deployment(LLAMA70, "l40s", "bf16")
    assert plan.tp > 1
    assert any("PCIe" in w for w in plan.warnings)


# --------------------------------------------------------------------------- roofline


def test_expected_distinct_experts() -> None:
    assert expected_distinct_experts(256, 8, 1) == pytest.approx(8.0)
    # 256 x (1 - (31/32)^16) = 101.77...
    assert expected_distinct_experts(256, 8, 16) == pytest.approx(256 * (1 - (31 / 32) ** 16))
    assert expected_distinct_experts(256, 8, 10_000) == pytest.approx(256.0)


def test_batch_one_moe_reads_a_small_share_of_the_weights() -> None:
    r1 = MODELS[R1]
    fp8 = PRECISIONS["fp8"]
    # Read in full: attention 11,416,215,392 + dense MLP 1,189,375,488 + shared 2,554,954,752
    #   + lm_head 1,853,358,080 + norms 2,013,184 + router 212,890,624 + one embedding row 14,336
    #   = 17,228,821,856; routed experts 654,068,416,512 x 8/256 = 20,439,638,016
    touched = decode_weight_bytes(r1, fp8, batch=1)
    assert touched == pytest.approx(37_668_459_872, rel=1e-9)
    assert touched < 0.06 * r1.weights_bytes(fp8)
    # a dense model reads everything but the embedding table
    llama = MODELS[LLAMA70]
    assert decode_weight_bytes(llama, fp8, 1) > 0.97 * llama.weights_bytes(fp8)


def test_decode_bound_scales_with_bandwidth_for_the_same_shape() -> None:
    h100 = size_deployment("deepseek-r1-distill-llama-8b", "h100", "bf16", context=8192)
    h200 = size_deployment("deepseek-r1-distill-llama-8b", "h200", "bf16", context=8192)
    assert (h100.tp, h100.pp) == (h200.tp, h200.pp) == (1, 1)
    assert h200.decode_tokens_per_s_bound / h200.gpus > h100.decode_tokens_per_s_bound / h100.gpus
    assert h200.decode_tokens_per_s_bound / h100.decode_tokens_per_s_bound == pytest.approx(
        4.8 / 3.35, rel=1e-3
    )
    assert h100.decode_tokens_per_s_bound == pytest.approx(
        16 * h100.decode_tokens_per_s_per_user_bound, rel=1e-2
    )


def test_decode_bound_by_hand_for_r1_on_h200() -> None:
    plan = size_deployment(R1, "h200", "fp8")
    share = expected_distinct_experts(256, 8, 16) / 256
    r1, fp8 = MODELS[R1], PRECISIONS["fp8"]
    groups = r1.weight_bytes_by_group(fp8)
    weights = (
        sum(groups.values()) - groups["routed_expert"] * (1 - share) - groups["embed_tokens"] + 16 * 7168 * 2
    )
    kv = 35136 * 16 * 16384  # fp8 latent, 16 sequences at 32768 / 2 tokens, replicated per rank
    step = (weights / 8 + kv) / 4.8e12
    assert plan.decode_tokens_per_s_per_user_bound == pytest.approx(1 / step, abs=0.05)
    assert plan.decode_tokens_per_s_bound == pytest.approx(16 / step, abs=0.05)


# --------------------------------------------------------------------------- output


def test_to_dict_keys_and_types() -> None:
    d = size_deployment(R1, "h100").to_dict()
    required = {
        "model", "gpu", "precision", "kv_dtype", "context", "concurrency", "weights_bytes",
        "kv_bytes_per_token", "tp", "pp", "ep", "gpus", "nodes", "gpus_per_node", "backend",
        "max_batch_size", "max_num_tokens", "max_seq_len", "kv_cache_free_gpu_memory_fraction",
        "decode_tokens_per_s_bound", "decode_tokens_per_s_per_user_bound", "weights_bytes_per_gpu",
        "kv_bytes_per_gpu", "memory_bytes_per_gpu", "kv_tokens_capacity", "warnings", "trtllm_args",
    }  # fmt: skip
    assert required <= set(d)
    assert isinstance(d["warnings"], list)
    for key in ("weights_bytes", "kv_bytes_per_gpu", "weights_bytes_per_gpu", "memory_bytes_per_gpu"):
        assert isinstance(d[key], int)
    assert d["trtllm_args"] == {
        "backend": "pytorch",
        "tp_size": 8,
        "pp_size": 2,
        "ep_size": 8,
        "max_batch_size": 16,
        "max_num_tokens": 8192,
        "max_seq_len": 32768,
        "kv_cache_free_gpu_memory_fraction": 0.8,  # DeepSeek: NVIDIA recipes 0.75-0.8
    }
    assert d["decode_tokens_per_s_bound"] == round(d["decode_tokens_per_s_bound"], 1)


def test_max_num_tokens_rules() -> None:
    small = size_deployment("deepseek-r1-distill-qwen-1.5b", "h100", context=2048, concurrency=4)
    assert (small.max_num_tokens, small.max_seq_len, small.max_batch_size) == (2048, 2048, 4)
    wide = size_deployment("deepseek-r1-distill-qwen-1.5b", "h100", context=1024, concurrency=2000)
    assert wide.max_num_tokens == 2000


def test_deterministic() -> None:
    assert size_deployment(R1, "h100") == size_deployment(R1, "h100")


def test_trtllm_serve_command() -> None:
    plan = size_deployment(R1, "h100")
    argv = trtllm_serve_command(plan, "models/deepseek-r1", "0.0.0.0", 8000)
    assert argv == [
        "trtllm-serve", "models/deepseek-r1",
        "--host", "0.0.0.0", "--port", "8000",
        "--backend", "pytorch",
        "--tp_size", "8", "--pp_size", "2", "--ep_size", "8",
        "--max_batch_size", "16", "--max_num_tokens", "8192", "--max_seq_len", "32768",
        "--kv_cache_free_gpu_memory_fraction", "0.8",
    ]  # fmt: skip
    dense = size_deployment("deepseek-r1-distill-qwen-7b", "h100", "bf16")
    argv = trtllm_serve_command(dense, "engines/qwen7b", "127.0.0.1", 9000, "extra.yaml")
    assert "--ep_size" not in argv
    assert argv[argv.index("--backend") + 1] == "tensorrt"
    assert argv[-2:] == ["--extra_llm_api_options", "extra.yaml"]
    assert extra_llm_api_options(plan)["kv_cache_config"]["dtype"] == "fp8"
    assert extra_llm_api_options(dense)["kv_cache_config"]["dtype"] == "auto"
    with pytest.raises(InfeasibleError, match="port"):
        trtllm_serve_command(plan, "m", "h", 0)


# --------------------------------------------------------------------------- properties

COMBOS = [
    (R1, "h200", "fp8"),
    (R1, "h100", "fp8"),
    (R1, "h20", "bf16"),
    (R1, "b200", "fp4"),
    (LLAMA70, "h100", "bf16"),
    (LLAMA70, "l40s", "fp8"),
    ("deepseek-r1-distill-qwen-32b", "a100-40gb", "int4-awq"),
    ("deepseek-r1-distill-qwen-7b", "l40s", "bf16"),
    ("deepseek-r1-distill-qwen-1.5b", "h20", "w4a8"),
]


def _size(model: str, gpu: str, precision: str, context: int, concurrency: int) -> CapacityPlan | None:
    try:
        return size_deployment(model, gpu, precision, context=context, concurrency=concurrency)
    except InfeasibleError:
        return None


def _check_invariants(plan: CapacityPlan) -> None:
    assert plan.tp * plan.pp == plan.gpus
    if plan.nodes > 1:
        assert plan.gpus == plan.nodes * plan.gpus_per_node
    else:
        assert plan.gpus <= plan.gpus_per_node
    assert (
        plan.weights_bytes_per_gpu + plan.runtime_reserve_bytes_per_gpu + plan.kv_cache_pool_bytes_per_gpu
        <= (plan.memory_bytes_per_gpu)
    )
    assert plan.kv_bytes_per_gpu <= plan.kv_cache_pool_bytes_per_gpu
    assert plan.weights_bytes_per_gpu * plan.gpus >= plan.weights_bytes
    assert plan.kv_tokens_capacity >= plan.context * plan.concurrency
    assert plan.ep == (plan.tp if MODELS[plan.model].moe else 1)
    assert MODELS[plan.model].num_attention_heads % plan.tp == 0
    hw = GPUS[plan.gpu]
    assert plan.tp <= (hw.nvlink_domain if hw.has_nvlink else plan.gpus_per_node)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    combo=st.sampled_from(COMBOS),
    context=st.integers(min_value=1, max_value=131072),
    concurrency=st.integers(min_value=1, max_value=512),
    extra=st.integers(min_value=1, max_value=512),
)
def test_more_concurrency_never_needs_fewer_gpus(
    combo: tuple[str, str, str], context: int, concurrency: int, extra: int
) -> None:
    model, gpu, precision = combo
    low = _size(model, gpu, precision, context, concurrency)
    high = _size(model, gpu, precision, context, concurrency + extra)
    if low is None:
        assert high is None
        return
    _check_invariants(low)
    if high is not None:
        _check_invariants(high)
        assert high.gpus >= low.gpus


@settings(max_examples=100, deadline=None)
@given(
    combo=st.sampled_from(COMBOS),
    context=st.integers(min_value=1, max_value=65536),
    longer=st.integers(min_value=1, max_value=65536),
    concurrency=st.integers(min_value=1, max_value=64),
)
def test_longer_context_never_needs_fewer_gpus(
    combo: tuple[str, str, str], context: int, longer: int, concurrency: int
) -> None:
    model, gpu, precision = combo
    low = _size(model, gpu, precision, context, concurrency)
    high = _size(model, gpu, precision, context + longer, concurrency)
    if low is None:
        assert high is None
    elif high is not None:
        _check_invariants(high)
        assert high.gpus >= low.gpus
