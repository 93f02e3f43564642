"""Catalog tests: derived parameter counts, weight bytes and KV sizes against hand arithmetic."""

from __future__ import annotations

import pytest

from llmcluster.errors import InfeasibleError
from llmcluster.plan.catalog import (
    GPUS,
    MODELS,
    PRECISIONS,
    QuantLayout,
    lookup_gpu,
    lookup_model,
    lookup_precision,
)

R1 = MODELS["deepseek-r1"]
DISTILLS = [name for name in MODELS if "distill" in name]


def test_catalog_names_are_the_public_ones() -> None:
    assert set(MODELS) == {
        "deepseek-v3",
        "deepseek-r1",
        "deepseek-r1-distill-qwen-1.5b",
        "deepseek-r1-distill-qwen-7b",
        "deepseek-r1-distill-qwen-14b",
        "deepseek-r1-distill-qwen-32b",
        "deepseek-r1-distill-llama-8b",
        "deepseek-r1-distill-llama-70b",
    }
    assert set(GPUS) == {"h100", "h200", "h20", "a100-80gb", "a100-40gb", "l40s", "b200", "gb200"}
    assert set(PRECISIONS) == {"bf16", "fp8", "int4-awq", "w4a8", "fp4"}
    for model in MODELS.values():
        assert set(model.supported_precisions) <= set(PRECISIONS)


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-r1"])
def test_deepseek_param_count_matches_published(name: str) -> None:
    derived = MODELS[name].param_count()
    assert abs(derived - 671e9) / 671e9 < 0.01
    # Hand count (no MTP module):
    #   embed + lm_head          2 x 129280 x 7168                               =   1,853,358,080
    #   MLA attention / layer    q_a 7168x1536 + q_b 1536x24576 + kv_a 7168x576
    #                            + kv_b 512x32768 + o 16384x7168                 =     187,105,280
    #   norms / layer            2 x 7168 + 1536 + 512                           =          16,384
    #   dense MLP / layer        3 x 7168 x 18432                                =     396,361,728
    #   MoE MLP / layer          257 experts x 3 x 7168 x 2048 + router 256 x 7169 = 11,320,164,608
    #   61 x (187,105,280 + 16,384) + 3 x 396,361,728 + 58 x 11,320,164,608 + 7,168 (final norm)
    #   + 1,853,358,080                                                          = 671,026,419,200
    assert derived == 671_026_419_200


def test_deepseek_active_params_near_37b() -> None:
    active = R1.active_param_count()
    assert abs(active - 37e9) / 37e9 < 0.03
    # 671,026,419,200 - 58 layers x 248 unused experts x 44,040,192 params = 37,552,297,472
    assert active == 37_552_297_472


@pytest.mark.parametrize("name", DISTILLS)
def test_distill_param_count_matches_published(name: str) -> None:
    model = MODELS[name]
    assert abs(model.param_count() - model.published_params) / model.published_params < 0.02
    assert model.active_param_count() == model.param_count()


def test_qwen_1_5b_param_count_by_hand() -> None:
    # embed + lm_head (untied): 2 x 151936 x 1536                                = 466,747,392
    # per layer: q 1536x1536 + k,v 2 x 1536x256 + o 1536x1536 + qkv bias 2048
    #            + MLP 3 x 1536 x 8960 + norms 2 x 1536                          =  46,797,824
    # 466,747,392 + 28 x 46,797,824 + 1536 (final norm)                          = 1,777,088,000
    assert MODELS["deepseek-r1-distill-qwen-1.5b"].param_count() == 1_777_088_000


def test_llama_70b_param_count_by_hand() -> None:
    # embed + lm_head: 2 x 128256 x 8192                                         =  2,101,346,304
    # per layer: q,o 2 x 8192^2 + k,v 2 x 8192x1024 + MLP 3 x 8192 x 28672 + norms 16384 = 855,654,400
    # 2,101,346,304 + 80 x 855,654,400 + 8192                                    = 70,553,706,496
    assert MODELS["deepseek-r1-distill-llama-70b"].param_count() == 70_553_706_496


def test_r1_fp8_weights_bytes_by_hand() -> None:
    # Linear params (FP8, 1 byte): 671,026,419,200 total - 1,960,809,984 unquantized = 669,065,609,216
    # Unquantized (bf16, 2 bytes): embeddings 1,853,358,080 + norms 1,006,592 + router 106,445,312
    #                              = 1,960,809,984 params -> 3,921,619,968 bytes
    # Block scales (fp32 per 128x128 block):
    #   attention / layer: q_a 56x12 + q_b 12x192 + kv_a 56x5 + kv_b 4x256 + o 128x56 = 11,448
    #   dense MLP / layer: 3 x 56 x 144 = 24,192; expert: 3 x 56 x 16 = 2,688
    #   61 x 11,448 + 3 x 24,192 + 58 x 257 x 2,688 = 40,838,232 blocks x 4 B = 163,352,928
    # Total: 669,065,609,216 + 3,921,619,968 + 163,352,928 = 673,150,582,112 bytes (~626.9 GiB)
    expected = 673_150_582_112
    got = R1.weights_bytes(PRECISIONS["fp8"])
    assert abs(got - expected) / expected < 0.005
    assert 620 * 2**30 < got < 640 * 2**30


def test_quantized_formats_keep_embeddings_bf16() -> None:
    for name in ("fp8", "int4-awq", "fp4"):
        groups = MODELS["deepseek-r1-distill-llama-8b"].weight_bytes_by_group(PRECISIONS[name])
        # 128256 x 4096 params x 2 bytes
        assert groups["embed_tokens"] == groups["lm_head"] == 1_050_673_152


def test_precision_ordering_by_size() -> None:
    llama = MODELS["deepseek-r1-distill-llama-70b"]
    sizes = {p: llama.weights_bytes(PRECISIONS[p]) for p in llama.supported_precisions}
    assert sizes["bf16"] > sizes["fp8"] > sizes["fp4"] > sizes["int4-awq"]
    assert sizes["bf16"] == 2 * llama.param_count()  # bf16: 2 bytes for every parameter


def test_quant_layout_scale_arithmetic() -> None:
    # INT4 group-128: 128x128 weights -> 8192 bytes packed + 128 rows x 1 group x 2 bytes = 8448
    assert QuantLayout(4, (1, 128), 2).matrix_bytes(128, 128) == 8448
    # NVFP4: 16x16 -> 128 bytes packed + 16 rows x 1 group x 1 byte = 144
    assert QuantLayout(4, (1, 16), 1).matrix_bytes(16, 16) == 144
    # FP8 128x128 blocks, 7168 -> 576 (kv_a_proj_with_mqa): 4,128,768 + 56 x 5 blocks x 4 = 4,129,888
    assert QuantLayout(8, (128, 128), 4).matrix_bytes(7168, 576) == 4_129_888


def test_mla_kv_bytes_per_token() -> None:
    # 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 bytes = 70,272
    assert R1.kv_bytes_per_token(2) == 70272
    assert R1.kv_bytes_per_token(1) == 35136
    # Naive MHA: 61 x 128 heads x ((128 + 64) + 128) x 2 bytes = 4,997,120
    naive = R1.gqa_equivalent_kv_bytes_per_token(2)
    assert naive == 4_997_120
    assert naive > 50 * R1.kv_bytes_per_token(2)


def test_gqa_kv_bytes_per_token() -> None:
    qwen32 = MODELS["deepseek-r1-distill-qwen-32b"]
    assert qwen32.attn_head_dim == 128  # 5120 / 40
    assert qwen32.kv_bytes_per_token(2) == 2 * 64 * 8 * 128 * 2 == 262144
    assert qwen32.gqa_equivalent_kv_bytes_per_token(2) == 262144


def test_precision_compute_capability_requirements() -> None:
    qwen = MODELS["deepseek-r1-distill-qwen-7b"]
    assert PRECISIONS["fp8"].min_sm_for(qwen) == 89  # Ada FP8 is fine for dense models
    assert PRECISIONS["fp8"].min_sm_for(R1) == 90  # block-scaled DeepSeek FP8: Hopper+
    assert PRECISIONS["w4a8"].min_sm_for(qwen) == 89
    assert PRECISIONS["w4a8"].min_sm_for(R1) == 90
    assert PRECISIONS["fp4"].min_sm_for(R1) == PRECISIONS["fp4"].min_sm_for(qwen) == 100
    assert PRECISIONS["bf16"].min_sm == PRECISIONS["int4-awq"].min_sm == 80
    assert "int4-awq" not in R1.supported_precisions
    assert "int4-awq" in qwen.supported_precisions


def test_gpu_memory_figures() -> None:
    assert lookup_gpu("h100").memory_bytes == 81559 * 2**20
    assert lookup_gpu("h200").memory_bytes == 143771 * 2**20
    assert lookup_gpu("a100-80gb").sm == 80
    assert lookup_gpu("l40s").nvlink_domain == 1
    assert lookup_gpu("b200").sm == 100


@pytest.mark.parametrize(
    ("lookup", "typo", "suggestion"),
    [
        (lookup_model, "deepseek-r2", "deepseek-r1"),
        (lookup_gpu, "h10", "h100"),
        (lookup_precision, "fp16", "fp4"),
    ],
)
def test_lookup_typo_suggests(lookup, typo: str, suggestion: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InfeasibleError, match=f"did you mean.*'{suggestion}'"):
        lookup(typo)


def test_lookup_lists_known_names_and_is_case_insensitive() -> None:
    with pytest.raises(InfeasibleError, match="known models: .*deepseek-v3"):
        lookup_model("llama-4")
    assert lookup_model("DeepSeek-R1") is R1
    assert lookup_gpu("H100").name == "h100"
