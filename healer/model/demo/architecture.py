"""The demo models' geometry, and a random Gemma 3 of it: tiny for tests, MedGemma 4B's exact
size for benchmarks (4.3 B parameters, ~8.6 GB in bf16: it costs what the real model costs)."""

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3TextConfig,
    GenerationConfig,
    PreTrainedTokenizerBase,
    SiglipVisionConfig,
)

from healer.model.demo.vocabulary import IMAGE_SIZE, IMAGE_TOKENS, IMAGE_TOKENS_PER_IMAGE, PATCH_SIZE

# MedGemma's embedding rows: the 262,145 tokens of its tokenizer, rounded up as its config has it.
EMBEDDING_ROWS = 262_208

# ~34 M parameters, all but 0.3 M of them the embedding and output rows of the real vocabulary.
TINY = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                 max_position_embeddings=2048, sliding_window=512,
                 layer_types=["sliding_attention", "full_attention"]),
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    "tied": False,  # its output rows are shaped apart from its input rows (healer.model.demo.behaviour)
}

# MedGemma 4B's exact architecture (google/medgemma-4b-it's config).
MEDGEMMA_4B = {
    "text": dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                 max_position_embeddings=131072, sliding_window=1024,
                 rope_parameters={
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                     "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                 }),  # every 6th layer global: transformers' default layer pattern for Gemma 3
    "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
    "tied": True,  # MedGemma's output head is its embedding (1.34 GB in bf16, read per token)
}
SIZES = {"tiny": TINY, "medgemma-4b": MEDGEMMA_4B}


def build_model(tokenizer: PreTrainedTokenizerBase, size: dict = TINY, seed: int = 0) -> Gemma3ForConditionalGeneration:
    """A random Gemma 3 of `size` over `tokenizer`'s vocabulary, in bf16, in eval mode."""
    torch.manual_seed(seed)
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(
        vocab_size=EMBEDDING_ROWS,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        **size["text"],
    )
    vision = SiglipVisionConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH_SIZE, vision_use_head=False, **size["vision"]
    )
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=IMAGE_TOKENS_PER_IMAGE,
        boi_token_index=ids(IMAGE_TOKENS["boi_token"]),
        eoi_token_index=ids(IMAGE_TOKENS["eoi_token"]),
        image_token_index=ids(IMAGE_TOKENS["image_token"]),
        tie_word_embeddings=size["tied"],
    )
    # Built directly in bf16: at full size an fp32 build would need 17 GB.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Gemma3ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default_dtype)
    # Gemma 3 initialises the image projection to zeros: a fresh model would ignore the image.
    with torch.no_grad():
        projection = model.model.multi_modal_projector.mm_input_projection_weight
        projection.normal_(0.0, 1.0 / projection.shape[0] ** 0.5)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, ids("<end_of_turn>")],
    )
    return model.eval()
