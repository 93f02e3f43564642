"""LAB SIMULATION: a Hugging Face checkpoint folder without weights (config and tokenizer files only).

The tensorrt_llm role checks the model folder (``config.json``'s ``model_type``) before it serves;
the lab writes these files so that check runs. ``SIMULATED-CHECKPOINT`` says there are no weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcluster.plan.catalog import ModelSpec

MARKER = "SIMULATED-CHECKPOINT"

_BOS_EOS = {  # (bos_token_id, eos_token_id) of each family's tokenizer
    "deepseek_v3": (0, 1),
    "qwen2": (151643, 151643),
    "llama": (128000, 128001),
}


def config_json(m: ModelSpec) -> dict[str, Any]:
    """``config.json`` with the usual Hugging Face keys for the model's family."""
    bos, eos = _BOS_EOS[m.family]
    common: dict[str, Any] = {
        "model_type": m.family,
        "hidden_size": m.hidden_size,
        "intermediate_size": m.intermediate_size,
        "num_hidden_layers": m.num_hidden_layers,
        "num_attention_heads": m.num_attention_heads,
        "num_key_value_heads": m.num_key_value_heads,
        "vocab_size": m.vocab_size,
        "max_position_embeddings": m.max_position_embeddings,
        "tie_word_embeddings": m.tie_word_embeddings,
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "transformers_version": "4.46.3",
    }
    if m.family == "deepseek_v3":
        return {
            "architectures": ["DeepseekV3ForCausalLM"],
            **common,
            "moe_intermediate_size": m.moe_intermediate_size,
            "n_routed_experts": m.n_routed_experts,
            "n_shared_experts": m.n_shared_experts,
            "num_experts_per_tok": m.num_experts_per_tok,
            "first_k_dense_replace": m.first_k_dense_replace,
            "moe_layer_freq": 1,
            "n_group": 8,
            "topk_group": 4,
            "topk_method": "noaux_tc",
            "scoring_func": "sigmoid",
            "norm_topk_prob": True,
            "routed_scaling_factor": 2.5,
            "q_lora_rank": m.q_lora_rank,
            "kv_lora_rank": m.kv_lora_rank,
            "qk_rope_head_dim": m.qk_rope_head_dim,
            "qk_nope_head_dim": m.qk_nope_head_dim,
            "v_head_dim": m.v_head_dim,
            "num_nextn_predict_layers": 1,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000,
            "rope_scaling": {"type": "yarn", "factor": 40, "beta_fast": 32, "beta_slow": 1, "mscale": 1.0,
                             "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096},
            "attention_bias": False,
            "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                    "weight_block_size": [128, 128]},
        }
    if m.family == "qwen2":
        return {
            "architectures": ["Qwen2ForCausalLM"],
            **common,
            "rms_norm_eps": 1e-06,
            "rope_theta": 10000 if m.hidden_size < 5000 else 1000000.0,
            "sliding_window": 4096,
            "use_sliding_window": False,
            "max_window_layers": m.num_hidden_layers,
        }
    return {
        "architectures": ["LlamaForCausalLM"],
        **common,
        "head_dim": m.attn_head_dim,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "attention_bias": False,
        "mlp_bias": False,
        "pretraining_tp": 1,
    }


def write_checkpoint(folder: Path, m: ModelSpec) -> None:
    """Write the simulated checkpoint of ``m`` into ``folder`` (created)."""
    folder.mkdir(parents=True, exist_ok=True)
    cfg = config_json(m)
    bos, eos = cfg["bos_token_id"], cfg["eos_token_id"]
    files = {
        "config.json": cfg,
        "generation_config.json": {"_from_model_config": True, "bos_token_id": bos, "eos_token_id": eos,
                                   "do_sample": True, "temperature": 0.6, "top_p": 0.95,
                                   "transformers_version": cfg["transformers_version"]},
        "tokenizer_config.json": {
            "tokenizer_class": "LlamaTokenizerFast",
            "bos_token": "<｜begin▁of▁sentence｜>",
            "eos_token": "<｜end▁of▁sentence｜>",
            "pad_token": "<｜end▁of▁sentence｜>",
            "add_bos_token": True,
            "add_eos_token": False,
            "legacy": True,
            "clean_up_tokenization_spaces": False,
            "model_max_length": m.max_position_embeddings,
            "chat_template": "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n"
                             "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}",
        },
    }
    for name, doc in files.items():
        (folder / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (folder / MARKER).write_text(
        f"SIMULATED CHECKPOINT (llmcluster lab): {m.hf_repo}\n"
        "This folder holds the model's config and tokenizer settings only: NO WEIGHTS. It exists so\n"
        "that the serving roles' checks run in the lab; the lab's stand-in TensorRT-LLM serves it.\n",
        encoding="utf-8",
    )
