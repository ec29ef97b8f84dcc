"""The CPU int8 kernels compute the layer they replace, on both the decode and the prefill path."""

import pytest
import torch

from healer.model.cpu_int8 import DECODE_ROWS, Int8Linear, Int8ScaledEmbedding, quantize_rows


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
