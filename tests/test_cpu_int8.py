"""The CPU int8 kernels compute the layer they replace, on both the decode and the prefill path,
and fusing q‖k‖v and gate‖up changes no output."""

import copy

import pytest
import torch

from healer.model.cpu_int8 import (
    DECODE_ROWS,
    Int8Linear,
    Int8ScaledEmbedding,
    fuse_projections,
    fuse_rows,
    quantize_language_model,
    quantize_rows,
)
from healer.model.demo import build_model, build_tokenizer


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


@pytest.mark.parametrize("rows", [1, DECODE_ROWS, DECODE_ROWS + 1, 300])  # decode and prefill kernels
def test_int8_linear_matches_the_bf16_linear(linear, rows):
    x = torch.randn(2, rows, 256, dtype=torch.bfloat16)
    got = Int8Linear.from_linear(linear)(x)
    assert got.shape == (2, rows, 96) and got.dtype == torch.bfloat16
    assert relative_error(got, linear(x)) < 0.02


def test_embedding_rows_are_the_heads_rows_times_gemmas_scale(linear):
    head = Int8Linear.from_linear(linear)
    ids = torch.tensor([[0, 5, 95]])
    want = linear.weight.detach()[ids] * 16.0
    for shared in (True, False):
        embedding = Int8ScaledEmbedding(head, torch.tensor(16.0), torch.bfloat16, shared=shared)
        assert relative_error(embedding(ids), want) < 0.02
        # Tied to the head, the table is not registered a second time (no second copy in a state dict).
        assert ("table.weight" in dict(embedding.named_buffers())) is not shared


@pytest.mark.parametrize("rows", [1, 300])  # decode and prefill kernels
def test_fused_rows_give_each_part_its_own_output_exactly(rows):
    torch.manual_seed(1)
    parts = [Int8Linear.from_linear(torch.nn.Linear(64, width, bias=False).to(torch.bfloat16)) for width in (48, 16, 16)]
    x = torch.randn(rows, 64, dtype=torch.bfloat16)
    got = fuse_rows(parts)(x).split([48, 16, 16], dim=-1)
    for part, out in zip(parts, got):
        assert torch.equal(out, part(x))


@pytest.fixture(scope="module")
def tiny_int8_pair():
    """The demo model quantized twice from the same weights: as loaded, and with q‖k‖v and
    gate‖up fused."""
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    plain, fused = copy.deepcopy(model), model
    quantize_language_model(plain)
    quantize_language_model(fused)
    assert fuse_projections(fused) == 2 * len(fused.model.language_model.layers)
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
