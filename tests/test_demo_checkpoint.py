"""The demo model is saved as google/medgemma-4b-it is: the Hub's tensor names, which vLLM and
llama.cpp's converter require, and which transformers reads as it reads MedGemma."""

import json

import pytest
from safetensors import safe_open
from transformers import AutoModelForImageTextToText

from healer.model.demo.checkpoint import HUB_PREFIXES, hub_name


def tensor_names(model_dir) -> set[str]:
    names = set()
    for shard in model_dir.glob("model*.safetensors"):
        with safe_open(shard, framework="pt") as reader:
            names.update(reader.keys())
    return names


def test_every_tensor_has_the_hubs_name(demo_model_dir):
    names = tensor_names(demo_model_dir)
    assert all(name.startswith(HUB_PREFIXES) for name in names)
    assert "vision_tower.vision_model.embeddings.patch_embedding.weight" in names
    assert "language_model.model.embed_tokens.weight" in names
    assert "multi_modal_projector.mm_input_projection_weight" in names


def test_transformers_loads_it_with_nothing_missing_or_left_over(demo_model_dir):
    _, info = AutoModelForImageTextToText.from_pretrained(demo_model_dir, output_loading_info=True)
    assert {key: sorted(value) for key, value in info.items() if value} == {}


def test_its_config_names_medgemmas_vocabulary_and_image_tokens(demo_model_dir):
    config = json.loads((demo_model_dir / "config.json").read_text())
    assert config["text_config"]["vocab_size"] == 262_208
    assert (config["boi_token_index"], config["eoi_token_index"], config["image_token_index"]) == (255999, 256000, 262144)
    assert config["mm_tokens_per_image"] == 256


def test_a_tensor_it_cannot_place_is_refused():
    with pytest.raises(ValueError, match="no Hub name"):
        hub_name("model.something_else.weight")
    assert hub_name("vision_tower.encoder.layers.0.mlp.fc1.weight") == "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight"
