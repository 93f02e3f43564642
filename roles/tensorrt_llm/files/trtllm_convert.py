"""Convert a Hugging Face checkpoint into a TensorRT-LLM checkpoint (role tensorrt_llm, engine backend).

Run with the TensorRT-LLM venv's python. It uses TensorRT-LLM's Python API, as the per-model
``convert_checkpoint.py`` examples do: the family class of the Hugging Face architecture
(``AutoModelForCausalLM.get_trtllm_model_class``), then ``from_hugging_face`` once per rank
with that rank's ``Mapping`` and ``save_checkpoint`` into the output directory (the config once).
The plan's precision and KV-cache dtype become the ``QuantConfig``.
"""

from __future__ import annotations

import argparse
import sys

#: The plan's precision -> TensorRT-LLM QuantAlgo name (None: the checkpoint's own dtype).
QUANT_ALGOS = {"bf16": None, "fp16": None, "fp8": "FP8", "int4-awq": "W4A16_AWQ", "w4a8": "W4A8_AWQ",
               "fp4": "NVFP4"}
KV_ALGOS = {"fp8": "FP8", "bf16": None, "fp16": None, "auto": None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model_dir", required=True, help="the Hugging Face checkpoint (config.json + weights)")
    p.add_argument("--output_dir", required=True, help="where the TensorRT-LLM checkpoint is written")
    p.add_argument("--tp_size", type=int, required=True)
    p.add_argument("--pp_size", type=int, required=True)
    p.add_argument("--gpus_per_node", type=int, default=8)
    p.add_argument("--precision", choices=sorted(QUANT_ALGOS), required=True)
    p.add_argument("--kv_dtype", choices=sorted(KV_ALGOS), default="auto")
    p.add_argument("--dtype", default="auto", help="activation dtype (auto: the checkpoint's torch_dtype)")
    args = p.parse_args(argv)

    from tensorrt_llm import Mapping
    from tensorrt_llm.models import AutoModelForCausalLM
    from tensorrt_llm.models.modeling_utils import QuantConfig
    from tensorrt_llm.quantization import QuantAlgo

    quant_algo, kv_algo = QUANT_ALGOS[args.precision], KV_ALGOS[args.kv_dtype]
    quant_config = QuantConfig(quant_algo=QuantAlgo[quant_algo] if quant_algo else None,
                               kv_cache_quant_algo=QuantAlgo[kv_algo] if kv_algo else None)
    model_cls = AutoModelForCausalLM.get_trtllm_model_class(args.model_dir)
    world_size = args.tp_size * args.pp_size
    for rank in range(world_size):
        mapping = Mapping(world_size=world_size, rank=rank, gpus_per_node=args.gpus_per_node,
                          tp_size=args.tp_size, pp_size=args.pp_size)
        model = model_cls.from_hugging_face(args.model_dir, args.dtype, mapping=mapping, quant_config=quant_config)
        model.save_checkpoint(args.output_dir, save_config=rank == 0)
        del model
    print(f"converted {args.model_dir} -> {args.output_dir} ({world_size} rank(s), {model_cls.__name__}, "
          f"quant {quant_algo or 'none'}, kv {kv_algo or 'auto'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
