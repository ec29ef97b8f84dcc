"""The CPU int8 kernels compute the layer they replace, on both the decode and the prefill path,
whichever way a CPU class has them compute; an answer never depends on the others in its batch;
fusing q‖k‖v and gate‖up changes no output."""

import copy

import pytest
import torch

from healer.model.cpu_int8 import (
    Int8Kernels,
    Int8RowsLinear,
    Int8ScaledEmbedding,
    PackedInt8Linear,
    quantize_language_model,
    quantize_rows,
)
from healer.model.cpu_matmul import DECODE_ROWS
from healer.model.demo.architecture import build_model
from healer.model.demo.vocabulary import gemma3_tokenizer


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


@pytest.fixture(scope="module")
def linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(256, 96, bias=False).to(torch.bfloat16)


def test_rows_come_back_within_half_a_step_of_their_scale(linear):
    weight, scales = quantize_rows(linear.weight.detach())
    assert weight.dtype == torch.int8 and scales.shape == (96,)
    back = weight.float() * scales.float()[:, None]
    assert (back - linear.weight.float()).abs().max(dim=1).values.le(scales.float() * 0.51).all()


QUANTIZED = {  # every way a CPU class may have an int8 linear compute (healer.model.cpu_kernels)
    "int8 x int8, oneDNN prepacked": lambda linear: PackedInt8Linear.from_linears([linear]),
    "int8 x int8 at prefill, torch._int_mm": lambda linear: Int8RowsLinear.from_linears([linear], "int8"),
    "int8 weights widened to bf16": lambda linear: Int8RowsLinear.from_linears([linear], torch.bfloat16),
    "int8 weights widened to fp32": lambda linear: Int8RowsLinear.from_linears([linear], torch.float32),
}
# What activations each kind quantizes per row, so that a row never depends on its batch-mates.
PER_ROW = {"oneDNN prepacked": lambda linear: PackedInt8Linear.from_linears([linear]),
           "torch._int_mm": lambda linear: Int8RowsLinear.from_linears([linear], "int8")}


@pytest.mark.parametrize("kind", QUANTIZED)
@pytest.mark.parametrize("rows", [1, DECODE_ROWS, DECODE_ROWS + 1, 300])  # decode and prefill shapes
def test_int8_linears_match_the_bf16_linear(linear, kind, rows):
    x = torch.randn(2, rows, 256, dtype=torch.bfloat16)
    got = QUANTIZED[kind](linear)(x)
    assert got.shape == (2, rows, 96) and got.dtype == torch.bfloat16
    assert relative_error(got, linear(x)) < 0.02


@pytest.mark.parametrize("kind", PER_ROW)
def test_a_rows_output_does_not_depend_on_the_other_rows_in_its_batch(linear, kind):
    """Activations are quantized row by row: an answer batched with others, even ones with a
    hundredfold larger activation, is computed exactly as it would be beside quiet ones, at a
    decode step's shape and at a prefill's."""
    int8 = PER_ROW[kind](linear)
    torch.manual_seed(2)
    alone = torch.randn(1, 256, dtype=torch.bfloat16)
    for rows in (4, DECODE_ROWS + 4):  # decode and prefill shapes
        loud = 100 * torch.randn(rows - 1, 256, dtype=torch.bfloat16)
        quiet = alone.repeat(rows, 1)
        assert torch.equal(int8(torch.cat([loud, alone]))[-1], int8(quiet)[-1])
        assert torch.equal(int8(torch.cat([alone, loud]))[0], int8(quiet)[0])
    assert torch.equal(int8(torch.cat([alone, 100 * alone]))[0], int8(alone)[0])  # decode: one row or more


def test_embedding_rows_are_the_heads_rows_times_gemmas_scale(linear):
    head = Int8RowsLinear.from_linears([linear])
    ids = torch.tensor([[0, 5, 95]])
    want = linear.weight.detach()[ids] * 16.0
    for shared in (True, False):
        embedding = Int8ScaledEmbedding(head, torch.tensor(16.0), torch.bfloat16, shared=shared)
        assert relative_error(embedding(ids), want) < 0.02
        # Tied to the head, the table is not registered a second time (no second copy in a state dict).
        assert ("table.weight" in dict(embedding.named_buffers())) is not shared


@pytest.mark.parametrize("kind", QUANTIZED)
@pytest.mark.parametrize("rows", [1, 300])  # decode and prefill shapes
def test_fused_rows_give_each_part_its_own_output_exactly(kind, rows):
    torch.manual_seed(1)
    parts = [torch.nn.Linear(64, width, bias=False).to(torch.bfloat16) for width in (48, 16, 16)]
    x = torch.randn(rows, 64, dtype=torch.bfloat16)
    fused = QUANTIZED[kind](parts[0])
    fused = type(fused)(*quantize_rows(torch.cat([p.weight.detach() for p in parts])),
                        *([fused.prefill] if isinstance(fused, Int8RowsLinear) else []))
    got = fused(x).split([48, 16, 16], dim=-1)
    for part, out in zip(parts, got):
        assert torch.equal(out, QUANTIZED[kind](part)(x))


def _quantized_unfused(model: torch.nn.Module, kernels: Int8Kernels) -> torch.nn.Module:
    """Each linear of the language model as an int8 linear of its own, the head as
    quantize_language_model makes it: the reference that fusion must reproduce."""
    for layer in model.model.language_model.layers:
        for owner, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                             (layer.mlp, ("gate_proj", "up_proj"))):
            for name in names:
                setattr(owner, name, kernels.fused_linear([getattr(owner, name)]))
        layer.mlp.down_proj = kernels.weight_only([layer.mlp.down_proj])
    assert quantize_language_model(model, kernels) == 1  # nothing left in bf16 but the head (and embedding)
    return model


@pytest.fixture(scope="module", params=["packed", "int8", "widened"])
def tiny_int8_pair(request):
    """The demo model quantized twice from the same weights, for each way a CPU class has the
    fused layers compute: one int8 linear per projection, and as served (q‖k‖v and gate‖up fused)."""
    kernels = Int8Kernels(fused=request.param)
    tokenizer = gemma3_tokenizer()
    model = build_model(tokenizer)
    plain, fused = _quantized_unfused(copy.deepcopy(model), kernels), model
    layers = len(fused.model.language_model.layers)
    assert quantize_language_model(fused, kernels) == 4 * layers + 1  # attention and MLP: 2 each, and the head
    return plain, fused


@pytest.mark.parametrize("length", [1, 40])  # a decode step and a prefill
def test_fused_projections_leave_the_models_logits_unchanged(tiny_int8_pair, length):
    plain, fused = tiny_int8_pair
    ids = torch.randint(10, 200, (2, length))
    with torch.inference_mode():
        want, got = (model(input_ids=ids).logits for model in (plain, fused))
    assert torch.equal(got, want)  # bit for bit: a swapped k/v or gate/up would change them


def test_fused_q_k_v_never_hand_out_a_slice_of_another_input(tiny_int8_pair):
    plain, fused = tiny_int8_pair
    want_attention, got_attention = (m.model.language_model.layers[0].self_attn for m in (plain, fused))
    first, second = torch.randn(2, 1, 3, 64, dtype=torch.bfloat16)
    got_attention.q_proj(first)  # leaves q‖k‖v of `first` waiting for k and v
    for name in ("k_proj", "v_proj", "q_proj"):
        assert torch.equal(getattr(got_attention, name)(second), getattr(want_attention, name)(second))
