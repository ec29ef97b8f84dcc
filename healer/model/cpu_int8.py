"""8-bit on the CPU: the language model's weights in int8, one scale per output row, computed
by whichever kernels are fast and exact on this CPU (healer.model.cpu_kernels chooses by class).

bitsandbytes is the right tool on CUDA; on the CPU its int8 path casts activations to float16 and
ran slower than bf16 (74 ms vs 1.5 ms for one decode-shaped Linear on an AMX Xeon). Here every
weight matrix of the language model is stored once as int8 rows × scales (symmetric absmax), and:

- **q‖k‖v, o and gate‖up** may also quantize their input, one int8 scale per row (per token),
  and multiply int8 × int8: int32 sums are exact, so a row's output depends on that row alone,
  never on the other answers in its batch. Two kernels do it, and neither is fast everywhere:
  - `PackedInt8Linear`, oneDNN's prepacked kernel, for prefill and decode. torch prepacks the
    weight in AMX's tile layout; without AMX oneDNN runs it in its reference code (`ref_int8`):
    298 ms for one decode-shaped 2560→10240 row on a Zen 4 EPYC, 211 s at 709 rows. AMX only.
  - `torch._int_mm` for prefill (`Int8RowsLinear(prefill="int8")`): exact int32 sums where the
    CPU has VNNI; without VNNI oneDNN sums pairs in saturating int16 (errors of millions were
    measured on AVX2 and plain AVX-512), so never there.
  Elsewhere they widen their int8 weight, like down.
- **down and the output head** (`Int8RowsLinear`) keep their input as it is. down's input,
  GELU(gate)·up, is where language models' rare huge activations arise: one scale per token would
  leave the other values a few int8 steps. The head's logits are what P(yes) is read from.
- **Decode rows** (`DECODE_ROWS` or fewer) go through `torch._weight_int8pack_mm`, ATen's own
  weight-only kernel, on every CPU but AMX's prepacked path: 0.8–1.2 ms per 2560→10240 row on AVX2
  to AVX-512 BF16. Prefill rows widen the int8 weight (bf16 with bf16 hardware, fp32 without) chunk
  by chunk (healer.model.cpu_matmul). The head's rows are also the embedding table: MedGemma ties them.

Each layer's q, k and v are one int8 matrix, and so are gate and up: a decode step makes 4
kernel calls per layer instead of 7, reading the same bytes.

The vision tower and the projector stay bf16: they run once per image, compute-bound, where
int8 weights save no time.
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from healer.model.cpu_matmul import DECODE_ROWS, widened_matmul

_CHUNK_ROWS = 16_384  # quantize big matrices (the 262k-row embedding) in slices: bounded fp32 scratch
_INT_MM_ROWS = 512  # torch._int_mm over this many rows at a time: its int32 and fp32 results stay small


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 rows and their bf16 scales (absmax / 127), so that row ≈ int8 × scale."""
    quantized = torch.empty(weight.shape, dtype=torch.int8)
    scales = torch.empty(weight.shape[0], dtype=torch.bfloat16)
    for start in range(0, weight.shape[0], _CHUNK_ROWS):
        rows = weight[start : start + _CHUNK_ROWS].float()
        # Rounded to bf16 first, so the scale the kernels use is the one the rows were divided by.
        scale = (rows.abs().amax(dim=1) / 127).clamp(min=1e-12).to(torch.bfloat16)
        quantized[start : start + _CHUNK_ROWS] = (rows / scale.float()[:, None]).round_().clamp_(-127, 127)
        scales[start : start + _CHUNK_ROWS] = scale
    return quantized, scales


def quantize_activations(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row as int8 and its symmetric scale, rounded to the rows' dtype first so that the
    scale applied to the product is exactly the one the row was divided by."""
    scale = (rows.abs().amax(dim=1, keepdim=True).float() / 127).clamp_(min=1e-12).to(rows.dtype)
    return rows.float().div_(scale.float()).round_().to(torch.int8), scale


@dataclass(frozen=True)
class Int8Kernels:
    """How the int8 layers compute: chosen per CPU class by healer.model.cpu_kernels."""

    # q‖k‖v, o and gate‖up: oneDNN's prepacked int8 × int8 (AMX), int8 × int8 through
    # torch._int_mm at prefill (VNNI), or the weight widened at prefill (no VNNI).
    fused: Literal["packed", "int8", "widened"] = "packed"
    widen_to: torch.dtype = torch.bfloat16  # what a widened weight computes in: bf16 where the CPU has it

    def fused_linear(self, linears: list[nn.Linear]) -> nn.Module:
        if self.fused == "packed":
            return PackedInt8Linear.from_linears(linears)
        return Int8RowsLinear.from_linears(linears, "int8" if self.fused == "int8" else self.widen_to)

    def weight_only(self, linears: list[nn.Linear]) -> "Int8RowsLinear":
        return Int8RowsLinear.from_linears(linears, self.widen_to)


def _stacked_rows(linears: list[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """The given linears' weights side by side as one int8 matrix (given one: that linear). Rows
    are quantized each with its own scale, so stacking changes no output element."""
    if any(linear.bias is not None for linear in linears):
        raise ValueError("int8 linears hold no bias (Gemma's linears have none)")
    if len({linear.in_features for linear in linears}) != 1:
        raise ValueError("fused linears must read the same input width")
    return quantize_rows(torch.cat([linear.weight.detach() for linear in linears]))


class PackedInt8Linear(nn.Module):
    """y = x Wᵀ as int8 × int8: W as int8 rows × scales, prepacked for oneDNN (AMX's layout); x
    quantized per row as it arrives."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        self.out_features, self.in_features = weight.shape
        # An opaque oneDNN tensor (its layout is the kernel's): an attribute, not a buffer, as
        # it has no storage a state dict or a copy could read.
        self.packed = torch.ops.onednn.qlinear_prepack(weight, [1, self.in_features])
        self.register_buffer("scales", scales.float())  # [out] fp32, as oneDNN takes them
        self.register_buffer("zero_points", torch.zeros(self.out_features, dtype=torch.int64), persistent=False)

    @classmethod
    def from_linears(cls, linears: list[nn.Linear]) -> "PackedInt8Linear":
        return cls(*_stacked_rows(linears))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quantized, scale = quantize_activations(x.reshape(-1, self.in_features))
        out = torch.ops.onednn.qlinear_pointwise(
            quantized, 1.0, 0, self.packed, self.scales, self.zero_points, None, 1.0, 0, x.dtype, "none", [], ""
        )
        return out.mul_(scale).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 x int8 (oneDNN prepacked)"


class Int8RowsLinear(nn.Module):
    """y = x Wᵀ with W held as int8 rows × bf16 scales. Decode rows: the weight-only kernel on x
    as it is. Prefill rows, by `prefill`: "int8", x quantized per row and multiplied int8 × int8
    (torch._int_mm, exact with VNNI); a dtype, the weight widened to it."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor, prefill: torch.dtype | str = torch.bfloat16):
        super().__init__()
        self.register_buffer("weight", weight)  # [out, in] int8
        self.register_buffer("scales", scales)  # [out] bf16
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.prefill = prefill

    @classmethod
    def from_linears(cls, linears: list[nn.Linear], prefill: torch.dtype | str = torch.bfloat16) -> "Int8RowsLinear":
        return cls(*_stacked_rows(linears), prefill)

    @classmethod
    def from_linear(cls, linear: nn.Linear, prefill: torch.dtype | str = torch.bfloat16) -> "Int8RowsLinear":
        return cls.from_linears([linear], prefill)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= DECODE_ROWS:  # a decode step: one row per answer
            out = torch._weight_int8pack_mm(rows.contiguous(), self.weight, self.scales.to(x.dtype))
        elif self.prefill == "int8":
            out = self._int8_product(rows)
        else:
            out = widened_matmul(rows.to(self.prefill), self.weight, self.scales).to(x.dtype)
        return out.reshape(*x.shape[:-1], self.out_features)

    def _int8_product(self, rows: torch.Tensor) -> torch.Tensor:
        out = torch.empty(rows.shape[0], self.out_features, dtype=rows.dtype)
        scales = self.scales.float()
        for start in range(0, rows.shape[0], _INT_MM_ROWS):
            quantized, scale = quantize_activations(rows[start : start + _INT_MM_ROWS])
            sums = torch._int_mm(quantized, self.weight.t())
            out[start : start + _INT_MM_ROWS] = sums.float().mul_(scale.float()).mul_(scales)
        return out

    def extra_repr(self) -> str:
        prefill = "int8 x int8 (torch._int_mm)" if self.prefill == "int8" else f"widened to {self.prefill}"
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights, prefill {prefill}"


class Int8GatedMLP(nn.Module):
    """Gemma's MLP, down(act(gate(x)) * up(x)), with gate and up in one int8 matmul."""

    def __init__(self, mlp: nn.Module, kernels: Int8Kernels):
        super().__init__()
        self.intermediate_size = mlp.gate_proj.out_features
        self.gate_up_proj = kernels.fused_linear([mlp.gate_proj, mlp.up_proj])
        self.down_proj = kernels.weight_only([mlp.down_proj])
        self.act_fn = mlp.act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).split(self.intermediate_size, dim=-1)
        return self.down_proj(self.act_fn(gate) * up)


class _FusedProjection(nn.Module):
    """One of q/k/v read from a shared q‖k‖v product. transformers' attention calls q_proj,
    k_proj and v_proj one after the other on the same tensor: the first call computes all three,
    the next ones take their slice. A call on any other tensor (or one changed in place since)
    computes the product afresh, so no caller can get a stale slice."""

    def __init__(self, shared: "_SharedQKV", index: int):
        super().__init__()
        self._shared = [shared]  # a list: the attention module registers the shared one once
        self.index = index
        self.out_features = shared.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._shared[0].part(x, self.index)


class _SharedQKV(nn.Module):
    def __init__(self, attention: nn.Module, kernels: Int8Kernels):
        super().__init__()
        parts = [attention.q_proj, attention.k_proj, attention.v_proj]
        self.sizes = [part.out_features for part in parts]
        self.qkv_proj = kernels.fused_linear(parts)
        self._input: torch.Tensor | None = None
        self._version: int | None = None
        self._parts: tuple = ()

    def part(self, x: torch.Tensor, index: int) -> torch.Tensor:
        # Held, not just compared by id: an id is only unique while its tensor lives.
        version = None if x.is_inference() else x._version
        if x is not self._input or version != self._version:
            self._parts = self.qkv_proj(x).split(self.sizes, dim=-1)
            self._input, self._version = x, version
        out = self._parts[index]
        if index == len(self.sizes) - 1:  # the last reader: hold no activations between steps
            self._input, self._parts = None, ()
        return out


def _quantize_attention(attention: nn.Module, kernels: Int8Kernels) -> None:
    """q, k and v of one attention module as one int8 matmul (see _FusedProjection), o as one."""
    shared = _SharedQKV(attention, kernels)
    attention.qkv = shared
    attention.q_proj, attention.k_proj, attention.v_proj = (_FusedProjection(shared, i) for i in range(3))
    attention.o_proj = kernels.fused_linear([attention.o_proj])


class Int8ScaledEmbedding(nn.Module):
    """Gemma 3's scaled word embedding over int8 rows: the output head's own when the model ties
    them (MedGemma does), a table of its own otherwise."""

    def __init__(self, table: Int8RowsLinear, embed_scale: torch.Tensor, dtype: torch.dtype, shared: bool):
        super().__init__()
        if shared:
            self._shared = [table]  # a list: lm_head registers it, a second registration would copy it
        else:
            self.table = table
        self.register_buffer("embed_scale", embed_scale.to(dtype), persistent=False)
        self.dtype = dtype

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        table = self._shared[0] if hasattr(self, "_shared") else self.table
        rows = nn.functional.embedding(input_ids, table.weight).to(self.dtype)
        return rows * table.scales[input_ids].unsqueeze(-1) * self.embed_scale


def to_cpu_int8(model: nn.Module, kernels: Int8Kernels) -> int:
    """Quantize the language model, then copy what stays bf16 off the checkpoint's memory map.

    The model arrives memory-mapped (from_pretrained's default): quantizing reads each bf16
    weight from the page cache, a reclaimable file-backed cost, and never holds the whole bf16
    model in private memory. Once every remaining weight (vision tower, projector, norms) is
    copied, nothing points into the file and the mapping closes: what stays is anonymous int8
    and bf16 memory only. Returns how many modules were quantized."""
    swapped = quantize_language_model(model, kernels)
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            parameter.data = parameter.data.clone()
    return swapped


def _is_plain_linear(module: nn.Module | None) -> bool:
    return type(module) is nn.Linear


def _quantize_children(parent: nn.Module, kernels: Int8Kernels) -> int:
    swapped = 0
    for name, child in list(parent.named_children()):
        if all(_is_plain_linear(getattr(child, p, None)) for p in ("gate_proj", "up_proj", "down_proj")):
            setattr(parent, name, Int8GatedMLP(child, kernels))
            swapped += 2
        elif all(_is_plain_linear(getattr(child, p, None)) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
            _quantize_attention(child, kernels)
            swapped += 2
        elif _is_plain_linear(child):
            setattr(parent, name, kernels.fused_linear([child]))
            swapped += 1
        else:
            swapped += _quantize_children(child, kernels)
    return swapped


def quantize_language_model(model: nn.Module, kernels: Int8Kernels) -> int:
    """Swap the language model's linears for int8 ones, in place, one module at a time (q‖k‖v
    and gate‖up fused), then the tied head and the embedding. Returns how many int8 modules."""
    text = model.model.language_model
    swapped = _quantize_children(text, kernels)
    embedding, head = text.embed_tokens, model.lm_head
    tied = head.weight.data_ptr() == embedding.weight.data_ptr()
    model.lm_head = kernels.weight_only([head])
    table = model.lm_head if tied else Int8RowsLinear(*quantize_rows(embedding.weight.detach()))
    text.embed_tokens = Int8ScaledEmbedding(table, embedding.embed_scale, embedding.weight.dtype, shared=tied)
    return swapped + 1
