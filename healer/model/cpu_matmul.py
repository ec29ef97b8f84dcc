"""Matrix products on the CPU that every kernel choice shares: a weight widened chunk by chunk,
bf16 weights computed in fp32, and attention computed in fp32.

A CPU without bf16 hardware (AVX2, AVX-512 without BF16) converts a bf16 matmul in software: on
an AVX2-only EPYC one 2560→10240 product of 709 rows took 1,817 ms in bf16 against 253 ms in fp32.
ATen sends bf16 matmuls to oneDNN only where the CPU has AVX-512 (`mkldnn_bf16_device_check`);
elsewhere they, and the CPU flash attention's inner products, fall back to ATen's generic gemm.
So there, prefill-sized products widen the bf16 weights to fp32 as they go, and attention over
many queries upcasts q, k and v; the model's weights and its activations between layers stay
bf16, exactly as on a CPU with bf16 hardware (healer.model.cpu_kernels decides per class).
"""

import threading

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask
from transformers.modeling_utils import AttentionInterface

# Up to this many rows a product is a decode step (one row per answer in a batch of up to 16):
# a matrix-vector product bound by reading the weight, where widening it first would only add
# bytes. Beyond, it is a prefill, bound by arithmetic.
DECODE_ROWS = 16

# Widened weights go through one buffer per thread and dtype of at most this many elements
# (32 MB in fp32), whatever the weight's size: a 20480×2560 weight widened at once would hold
# 210 MB. Measured on 2560→20480 at 709 rows: chunked 565 ms, all at once 598 ms (fp32).
_CHUNK_ELEMENTS = 8 * 2**20

_scratch = threading.local()


def _buffer(dtype: torch.dtype, elements: int) -> torch.Tensor:
    buffers = _scratch.__dict__.setdefault("buffers", {})
    if dtype not in buffers or buffers[dtype].numel() < elements:
        buffers[dtype] = torch.empty(min(elements, _CHUNK_ELEMENTS), dtype=dtype)
    return buffers[dtype]


def widened_matmul(rows: torch.Tensor, weight: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
    """rows @ weightᵀ (× scales per output column), in rows' dtype, the weight (int8 or bf16)
    widened to that dtype one chunk of output rows at a time. For inference: no gradient."""
    weight = weight.detach()
    out_features, in_features = weight.shape
    chunk = max(1, _CHUNK_ELEMENTS // in_features)
    buffer = _buffer(rows.dtype, min(out_features, chunk) * in_features)
    out = torch.empty(rows.shape[0], out_features, dtype=rows.dtype)
    for start in range(0, out_features, chunk):
        part = weight[start : start + chunk]
        widened = buffer[: part.numel()].view(part.shape).copy_(part)
        torch.mm(rows, widened.t(), out=out[:, start : start + part.shape[0]])
    return out.mul_(scales.to(rows.dtype)) if scales is not None else out


class Fp32Linear(nn.Module):
    """A bf16 linear whose prefill-sized products compute in fp32 (bf16 weights widened as they
    go, the bias added in fp32, the output rounded back to bf16); decode rows stay bf16."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= DECODE_ROWS:
            return nn.functional.linear(x, self.weight, self.bias)
        out = widened_matmul(rows.float(), self.weight)
        if self.bias is not None:
            out += self.bias.float()
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bf16 weights computed in fp32"


class Fp32Conv2d(nn.Module):
    """A bf16 convolution computed in fp32 from an fp32 copy of its (small) weights: SigLIP's
    patch embedding, which in bf16 without bf16 hardware runs ATen's slow_conv2d (9.2 s of a
    78 s prefill, AVX2 forced on a Zen 4). `weight` stays the bf16 one: SigLIP casts its input
    to that dtype."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = conv.weight
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                              conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                              device="cpu", dtype=torch.float32)
        with torch.no_grad():
            self.conv.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.conv.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x.float()).to(x.dtype)


def compute_in_fp32(module: nn.Module) -> int:
    """Every plain nn.Linear and nn.Conv2d under `module` computed in fp32 (Fp32Linear,
    Fp32Conv2d), in place. Returns how many were swapped."""
    swapped = 0
    for name, child in list(module.named_children()):
        if type(child) is nn.Linear:
            setattr(module, name, Fp32Linear(child))
        elif type(child) is nn.Conv2d:
            setattr(module, name, Fp32Conv2d(child))
        else:
            swapped += compute_in_fp32(child)
            continue
        swapped += 1
    return swapped


FP32_ATTENTION = "healer_sdpa_fp32"


def sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' sdpa attention with q, k and v upcast to fp32 for many queries (a prefill);
    a decode step's single query stays in the cache's dtype (upcasting the cache would cost more
    than the product)."""
    if query.shape[2] <= DECODE_ROWS:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(query.dtype), weights


def use_fp32_attention(config) -> None:
    """Make a model's attention `sdpa_fp32` (the setter reaches every sub-config); its masks stay sdpa's."""
    AttentionInterface.register(FP32_ATTENTION, sdpa_fp32)
    AttentionMaskInterface.register(FP32_ATTENTION, sdpa_mask)
    config._attn_implementation = FP32_ATTENTION
