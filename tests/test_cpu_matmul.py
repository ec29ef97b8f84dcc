"""bf16 weights computed in fp32 (CPUs without bf16 hardware) give the product the bf16 layer
stands for, at a prefill's shape and a decode step's, and a widened weight is the same product
whatever chunks it is widened in."""

import pytest
import torch
from torch import nn

from healer.model import cpu_matmul
from healer.model.cpu_matmul import DECODE_ROWS, Fp32Conv2d, Fp32Linear, compute_in_fp32, sdpa_fp32, widened_matmul


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


@pytest.fixture(scope="module")
def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(96, 200, bias=True).to(torch.bfloat16)


@pytest.mark.parametrize("rows", [1, DECODE_ROWS, DECODE_ROWS + 1, 300])
def test_an_fp32_linear_computes_the_bf16_linear(linear, rows):
    x = torch.randn(2, rows, 96, dtype=torch.bfloat16)
    want = nn.functional.linear(x.float(), linear.weight.float(), linear.bias.float())
    got = Fp32Linear(linear)(x)
    assert got.dtype == torch.bfloat16 and got.shape == (2, rows, 200)
    assert relative_error(got, want) < 0.01  # one bf16 rounding of the output


def test_prefill_rows_are_computed_in_fp32_not_in_bf16(linear):
    """Exactly the fp32 product, rounded once: a bf16 matmul would round its partial sums."""
    x = torch.randn(DECODE_ROWS + 1, 96, dtype=torch.bfloat16)
    want = (x.float() @ linear.weight.float().t() + linear.bias.float()).to(torch.bfloat16)
    assert torch.equal(Fp32Linear(linear)(x), want)


def test_a_weight_widened_in_chunks_is_the_same_product(monkeypatch):
    torch.manual_seed(1)
    weight = torch.randint(-127, 128, (1000, 64), dtype=torch.int8)
    scales = torch.rand(1000, dtype=torch.bfloat16)
    rows = torch.randn(50, 64)
    whole = widened_matmul(rows, weight, scales)
    monkeypatch.setattr(cpu_matmul, "_CHUNK_ELEMENTS", 64 * 7)  # 7 weight rows at a time, a ragged last chunk
    monkeypatch.setattr(cpu_matmul, "_scratch", type(cpu_matmul._scratch)())
    chunked = widened_matmul(rows, weight, scales)
    want = (rows @ weight.float().t()) * scales.float()
    torch.testing.assert_close(chunked, want, rtol=1e-5, atol=1e-3)  # fp32 sums, blocked differently
    torch.testing.assert_close(whole, want, rtol=1e-5, atol=1e-3)


def test_the_patch_embedding_computes_in_fp32_and_keeps_sigLIPs_input_dtype():
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 32, kernel_size=14, stride=14).to(torch.bfloat16)
    fp32 = Fp32Conv2d(conv)
    assert fp32.weight.dtype == torch.bfloat16  # SigLIP casts pixel values to this
    pixels = torch.randn(1, 3, 56, 56, dtype=torch.bfloat16)
    want = nn.functional.conv2d(pixels.float(), conv.weight.float(), conv.bias.float(), stride=14)
    got = fp32(pixels)
    assert got.dtype == torch.bfloat16 and relative_error(got, want) < 0.01


def test_every_linear_and_convolution_of_a_tower_is_swapped(linear):
    tower = nn.Sequential(nn.Conv2d(3, 8, 2), nn.Sequential(linear, nn.GELU()), nn.LayerNorm(8))
    assert compute_in_fp32(tower) == 2
    assert isinstance(tower[0], Fp32Conv2d) and isinstance(tower[1][0], Fp32Linear)
    assert isinstance(tower[2], nn.LayerNorm)


@pytest.mark.parametrize("queries", [1, 64])  # a decode step and a prefill
def test_fp32_attention_computes_sdpas_attention(queries):
    torch.manual_seed(3)
    module = nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 1, False, False
    q = torch.randn(1, 2, queries, 32, dtype=torch.bfloat16)
    k, v = torch.randn(2, 1, 2, 64, 32, dtype=torch.bfloat16)
    got, _ = sdpa_fp32(module, q, k, v, None, scaling=32**-0.5)
    want = nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float()).transpose(1, 2)
    assert got.dtype == torch.bfloat16 and got.shape == want.shape
    assert relative_error(got, want) < 0.01
