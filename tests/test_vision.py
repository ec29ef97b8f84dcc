"""The vision tower's residual stream kept row-major (healer.model.vision), on the tiny demo model."""

import pytest
import torch
from transformers import AutoModelForImageTextToText

from bench.vision_tower import main as bench_vision_tower
from healer.model.cpu_class import detect
from healer.model.cpu_kernels import apply_plan, plan_for
from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine
from healer.model.vision import keep_residuals_row_major, vision_embeddings
from healer.text.prompts import DEFAULT_QUESTION
from tests.conftest import demo_settings


def layer_norm_inputs(model) -> list[bool]:
    """Whether each call of the tower's first layer norm got a row-major input (recorded)."""
    seen: list[bool] = []
    norm = model.model.vision_tower.encoder.layers[0].layer_norm1
    norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].is_contiguous()))
    return seen


@pytest.fixture
def model(demo_model_dir):
    return AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.bfloat16).eval()


def test_siglip_hands_its_layer_norms_a_channels_first_view_unless_told(model):
    """The reason the module exists: without it every layer norm copies its input first."""
    seen = layer_norm_inputs(model)
    pixels = torch.randn(1, 3, 896, 896, dtype=torch.bfloat16)
    with torch.inference_mode():
        model.model.get_image_features(pixel_values=pixels)
        assert keep_residuals_row_major(model)
        model.model.get_image_features(pixel_values=pixels)
    assert seen == [False, True]


def test_the_image_embeddings_are_bit_identical_row_major(model):
    pixels = torch.randn(2, 3, 896, 896, dtype=torch.bfloat16)
    with torch.inference_mode():
        before = model.model.get_image_features(pixel_values=pixels).pooler_output
        keep_residuals_row_major(model)
        after = model.model.get_image_features(pixel_values=pixels).pooler_output
    assert torch.equal(before, after)


def test_a_model_without_a_vision_tower_is_left_alone():
    assert vision_embeddings(torch.nn.Linear(2, 2)) is None
    assert not keep_residuals_row_major(torch.nn.Linear(2, 2))


def test_the_engine_runs_its_tower_row_major_and_answers_as_before(demo_model_dir, he_tile):
    """Loaded by the engine: the layer norms see row-major input, and P(yes) is the one the
    unpatched transformers model gives with the same CPU kernels (the same arithmetic, so equal,
    not merely close)."""
    engine = MedGemmaEngine.load(demo_settings(demo_model_dir))
    seen = layer_norm_inputs(engine.model)
    query = Query(he_tile, DEFAULT_QUESTION, explain=False)
    [generation] = engine.generate([query])
    assert seen and all(seen)
    plain = AutoModelForImageTextToText.from_pretrained(demo_model_dir, dtype=torch.bfloat16).eval()
    apply_plan(plain, plan_for(detect(), "none"))  # without bf16 hardware: products in fp32, as the engine's
    with torch.inference_mode():
        inputs = engine._inputs([query])
        patched, unpatched = (m(**inputs).logits[0, -1] for m in (engine.model, plain))
    assert torch.equal(patched, unpatched)
    assert generation.answer_step == 0  # the default demo answers at its first step: these logits
    [p_yes], _ = engine._read_answers(unpatched[None])
    assert generation.p_yes == p_yes


def test_the_vision_tower_benchmark_prints_both_variants_and_their_agreement(capsys):
    bench_vision_tower(["--layers", "1", "--rounds", "1", "--threads", "1"])
    table = capsys.readouterr().out
    assert "| | as served | row-major |" in table
    assert "| max abs diff of the embeddings | 0 | 0 |" in table
    assert "| copies (s) |" in table
