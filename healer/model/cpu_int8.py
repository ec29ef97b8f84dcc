"""8-bit weights on the CPU: the language model's linears, embedding and output head in int8.

bitsandbytes is the right tool on CUDA; on the CPU its int8 path casts activations to float16 and
ran slower than bf16 (74 ms vs 1.5 ms for one decode-shaped Linear on an AMX Xeon). Here every
weight matrix of the language model is stored once as int8 with one bf16 scale per output row
(symmetric absmax: weight-only, the activations stay bf16), and each call picks the kernel that
suits its shape, with no compiler and so no start-up compilation:

- a few rows (decode steps, the output head): `torch._weight_int8pack_mm` reads the int8 weights
  directly, half the bytes of bf16; decode is bound by reading the weights once per token.
- many rows (prefill): the int8 weight is widened to bf16 (into a reused buffer) and multiplied
  with the bf16 matmul (AMX where the CPU has it); the per-row scale is applied to the product.
  Widening costs ~0.75x a bf16 matmul of a 360-token prompt; the int8 x int8 alternatives
  measured slower still in eager mode (oneDNN's qlinear 2.1x bf16, torch._int_mm with per-token
  activation quantization 3.5x), as they pay for quantizing activations and rescaling outputs.

Each layer's q, k and v are one int8 matrix, and so are gate and up (`fuse_projections`): a
decode step makes 4 kernel calls per layer instead of 7, reading the same bytes.

The embedding and the output head share one int8 matrix when the model ties them, as MedGemma does. The vision
tower and the projector stay bf16: they run once per image, compute-bound, where int8 weights
save no time.
"""

import threading

import torch
from torch import nn

# Up to this many rows, the int8 matrix-vector kernel beats widening the weight (decode of a
# batch of up to 16 answers); beyond, the bf16 matmul's throughput wins.
DECODE_ROWS = 16
_CHUNK_ROWS = 16_384  # quantize big matrices (the 262k-row embedding) in slices: bounded fp32 scratch


_scratch = threading.local()


def _widened(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The int8 weight as `dtype`, written into a buffer reused across calls of the same shape:
    a fresh 52 MB tensor per MLP call costs its page faults every time (prefill measured 96 ms
    per 2560x10240 call with a fresh tensor, 67 ms with the buffer, 38 ms in plain bf16).
    One buffer per shape and thread (the model thread and a warm-up never share one)."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    key = (tuple(weight.shape), dtype)
    if key not in buffers:
        buffers[key] = torch.empty(weight.shape, dtype=dtype)
    return buffers[key].copy_(weight)


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


class Int8Linear(nn.Module):
    """y = x Wᵀ with W held as int8 rows × bf16 scales; no bias (Gemma's linears have none)."""

    def __init__(self, weight: torch.Tensor, scales: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", weight)  # [out, in] int8
        self.register_buffer("scales", scales)  # [out] bf16
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        if linear.bias is not None:
            raise ValueError("Int8Linear holds no bias")
        return cls(*quantize_rows(linear.weight.detach()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        if rows.shape[0] <= DECODE_ROWS:
            out = torch._weight_int8pack_mm(rows.contiguous(), self.weight, self.scales.to(x.dtype))
        else:
            out = nn.functional.linear(rows, _widened(self.weight, x.dtype)).mul_(self.scales.to(x.dtype))
        return out.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def fuse_rows(linears: list[Int8Linear]) -> Int8Linear:
    """One Int8Linear whose output is the given ones' outputs side by side: their int8 rows and
    scales stacked. Each output element is still one row's dot product with its own scale, so the
    result is the same; a decode step makes one kernel call (one parallel region) instead of
    several, and under a loaded CPU each call's thread wake-up costs as much as its work."""
    if len({linear.in_features for linear in linears}) != 1:
        raise ValueError("fused linears must read the same input width")
    return Int8Linear(torch.cat([linear.weight for linear in linears]), torch.cat([linear.scales for linear in linears]))


class Int8GatedMLP(nn.Module):
    """Gemma's MLP, down(act(gate(x)) * up(x)), with gate and up in one int8 matmul."""

    def __init__(self, mlp: nn.Module):
        super().__init__()
        self.intermediate_size = mlp.gate_proj.out_features
        self.gate_up_proj = fuse_rows([mlp.gate_proj, mlp.up_proj])
        self.down_proj = mlp.down_proj
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
    def __init__(self, attention: nn.Module):
        super().__init__()
        parts = [attention.q_proj, attention.k_proj, attention.v_proj]
        self.sizes = [part.out_features for part in parts]
        self.qkv_proj = fuse_rows(parts)
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


def fuse_attention_projections(attention: nn.Module) -> None:
    """q, k and v of one attention module as one int8 matmul (see _FusedProjection)."""
    shared = _SharedQKV(attention)
    attention.qkv = shared
    attention.q_proj, attention.k_proj, attention.v_proj = (_FusedProjection(shared, i) for i in range(3))


class Int8ScaledEmbedding(nn.Module):
    """Gemma 3's scaled word embedding over int8 rows: the output head's own when the model ties
    them (MedGemma does), a table of its own otherwise."""

    def __init__(self, table: Int8Linear, embed_scale: torch.Tensor, dtype: torch.dtype, shared: bool):
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


def fuse_projections(model: nn.Module) -> int:
    """q‖k‖v and gate‖up of every language-model layer as one int8 matmul each: 4 kernel calls
    per layer and decode step instead of 7, reading the same bytes. Returns how many modules."""
    fused = 0
    for parent in list(model.model.language_model.modules()):
        for name, child in list(parent.named_children()):
            if all(isinstance(getattr(child, p, None), Int8Linear) for p in ("gate_proj", "up_proj", "down_proj")):
                setattr(parent, name, Int8GatedMLP(child))
                fused += 1
            elif all(isinstance(getattr(child, p, None), Int8Linear) for p in ("q_proj", "k_proj", "v_proj")):
                fuse_attention_projections(child)
                fused += 1
    return fused


def to_cpu_int8(model: nn.Module) -> int:
    """Quantize the language model, then copy what stays bf16 off the checkpoint's memory map.

    The model arrives memory-mapped (from_pretrained's default): quantizing reads each bf16
    weight from the page cache, a reclaimable file-backed cost, and never holds the whole bf16
    model in private memory. Once every remaining weight (vision tower, projector, norms) is
    copied, nothing points into the file and the mapping closes: what stays is anonymous int8
    and bf16 memory only. Returns how many modules were quantized."""
    swapped = quantize_language_model(model)
    fuse_projections(model)
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            parameter.data = parameter.data.clone()
    return swapped


def quantize_language_model(model: nn.Module) -> int:
    """Swap the language model's linears, embedding and tied head for int8 ones, in place, one
    at a time. Returns how many."""
    text = model.model.language_model
    swapped = 0
    for parent in list(text.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                setattr(parent, name, Int8Linear.from_linear(child))
                swapped += 1
    embedding, head = text.embed_tokens, model.lm_head
    tied = head.weight.data_ptr() == embedding.weight.data_ptr()
    model.lm_head = Int8Linear.from_linear(head)
    table = model.lm_head if tied else Int8Linear(*quantize_rows(embedding.weight.detach()))
    text.embed_tokens = Int8ScaledEmbedding(table, embedding.embed_scale, embedding.weight.dtype, shared=tied)
    return swapped + 1
