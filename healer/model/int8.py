"""bitsandbytes 8-bit for a model already in memory: how an adapter merged in bf16 is served in int8.

transformers quantizes while it reads a checkpoint, and bitsandbytes cannot merge LoRA deltas
into int8 weights, so a merged model would otherwise have to be written out in bf16 and read back
quantized: at full size an 8.6 GB copy, in memory on Cloud Run. Here each `nn.Linear` is swapped
for a `Linear8bitLt` built from its merged weights, with the modules skipped and the outlier
threshold that the `BitsAndBytesConfig` names, as transformers' own loader would build them
(`tests/test_finetune.py` checks the answers match). Each bf16 weight is freed once quantized.
"""

import torch
from torch import nn
from transformers import BitsAndBytesConfig
from transformers.quantizers.quantizers_utils import should_convert_module


def quantize_int8(model: nn.Module, config: BitsAndBytesConfig) -> nn.Module:
    """`model` with every convertible `nn.Linear` replaced in place by bitsandbytes' int8 layer."""
    import bitsandbytes as bnb

    skip = list(config.llm_int8_skip_modules or []) + list(getattr(model, "_keep_in_fp32_modules", None) or [])
    targets = [(name, module) for name, module in model.named_modules()
               if type(module) is nn.Linear and should_convert_module(name, skip)]
    for name, linear in targets:
        device = linear.weight.device
        int8 = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, linear.bias is not None,
                                   has_fp16_weights=config.llm_int8_has_fp16_weight,
                                   threshold=config.llm_int8_threshold, device="meta")
        # Int8Params quantizes when moved from the CPU to a device (the CPU included).
        int8.weight = bnb.nn.Int8Params(linear.weight.data.to("cpu"), requires_grad=False,
                                        has_fp16_weights=config.llm_int8_has_fp16_weight).to(device)
        if linear.bias is not None:
            int8.bias = nn.Parameter(linear.bias.data, requires_grad=False)
        int8.source_cls = nn.Linear
        model.set_submodule(name, int8)
        del linear
    model.is_loaded_in_8bit = True
    return model.requires_grad_(False)
