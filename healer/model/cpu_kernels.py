"""The kernels each phase of an answer computes with on the CPU, chosen by the CPU's class.

`QUANTIZATION` says what the weights are in memory (int8: the language model as int8 rows;
none: bf16); the CPU's class (healer.model.cpu_class) says what computes them. Chosen from the
class, not by timing kernels at start-up: the class decides which kernels are exact and which
run in reference code, a start-up measurement on 2 shared CPUs would be noisy, and a table is
testable. Measured per kernel, one 2560→10240 product, 2 threads, each class forced on a Zen 4
EPYC (docs/performance.md, "Kernels per CPU class"):

| class | vision tower, attention | q‖k‖v, o, gate‖up at prefill | down, head at prefill | decode |
|---|---|---|---|---|
| amx | bf16 | int8 × int8, oneDNN prepacked | int8 widened to bf16 | prepacked int8 × int8; weight-only for down, head |
| avx512_bf16 | bf16 | int8 × int8, torch._int_mm | int8 widened to bf16 | int8 weight-only |
| avx512_vnni | fp32 from bf16 weights | int8 × int8, torch._int_mm | int8 widened to fp32 | int8 weight-only |
| avx512, avx2, baseline | fp32 from bf16 weights | int8 widened to fp32 | int8 widened to fp32 | int8 weight-only |

Why: oneDNN's prepacked int8 runs in reference code without AMX (~300× slower); `_int_mm`
saturates without VNNI; a bf16 prefill matmul without bf16 hardware runs converted in software
(4–7× fp32's time); the weight-only int8 kernel is the fastest decode everywhere but AMX.
"""

from dataclasses import dataclass

import torch
from torch import nn

from healer.model.cpu_class import CpuClass
from healer.model.cpu_int8 import Int8Kernels, to_cpu_int8
from healer.model.cpu_matmul import compute_in_fp32, use_fp32_attention


@dataclass(frozen=True)
class KernelPlan:
    cpu: CpuClass
    quantization: str  # "int8" or "none", as QUANTIZATION says
    compute: torch.dtype  # what bf16 weights' prefill matmuls and attention compute in
    int8: Int8Kernels

    def phases(self) -> dict[str, str]:
        """Which kernel computes each phase, in words: GET /, the start-up log and /metrics."""
        fp32 = self.compute == torch.float32
        bf16_weights = "fp32 from bf16 weights, attention fp32" if fp32 else "bf16"
        if self.quantization != "int8":
            return {"vision": bf16_weights, "prefill": bf16_weights, "decode": "bf16"}
        widened = f"int8 weights widened to {'fp32' if self.int8.widen_to == torch.float32 else 'bf16'}"
        fused = {"packed": "int8 x int8 (oneDNN prepacked)", "int8": "int8 x int8 (torch._int_mm)"}.get(self.int8.fused)
        prefill = f"{fused}; down: {widened}" if fused else widened
        decode = "int8 weight-only (torch._weight_int8pack_mm)"
        if self.int8.fused == "packed":
            decode = f"int8 x int8 (oneDNN prepacked); down and head: {decode}"
        return {"vision": bf16_weights, "prefill": prefill + ("; attention fp32" if fp32 else ""), "decode": decode}


def plan_for(cpu: CpuClass, quantization: str) -> KernelPlan:
    bf16_hardware = cpu.at_least("avx512_bf16")
    compute = torch.bfloat16 if bf16_hardware else torch.float32
    if cpu.at_least("amx"):
        fused = "packed"
    elif cpu.at_least("avx512_vnni"):
        fused = "int8"
    else:
        fused = "widened"
    return KernelPlan(cpu, quantization, compute, Int8Kernels(fused=fused, widen_to=compute))


def apply_plan(model: nn.Module, plan: KernelPlan) -> None:
    """Swap the model's modules for the plan's kernels, in place (a bf16 model as loaded)."""
    if plan.compute == torch.float32:
        use_fp32_attention(model.config)
        compute_in_fp32(model.model.vision_tower)
        if plan.quantization != "int8":
            compute_in_fp32(model.model.language_model)
    if plan.quantization == "int8":
        to_cpu_int8(model, plan.int8)
