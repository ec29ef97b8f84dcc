"""A random-weight Gemma 3 with MedGemma's processor geometry, built offline in well under a second.

It is the embedded default when no real weights are available (no Hugging Face token, no
network), and the model every end-to-end test runs through: the same AutoProcessor /
AutoModelForImageTextToText code that loads MedGemma loads this directory. Its answers are
meaningless by construction; `healer-model.json` marks it as a demo so the service says so.

The image path is the real one: 896 px input, 14 px patches, 256 image tokens per image.
"""

import json
from pathlib import Path

import torch
from transformers import (
    Gemma3Config,
    Gemma3ForConditionalGeneration,
    Gemma3ImageProcessorPil,
    Gemma3Processor,
    Gemma3TextConfig,
    GemmaTokenizer,
    GenerationConfig,
    SiglipVisionConfig,
)

from healer.model.model_dir import MARKER_FILE

DEMO_MODEL_ID = "healer/tiny-random-gemma3"

# Gemma 3's own chat template: a system turn is folded into the first user turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] | trim }}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'image' -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
TURN_TOKENS = ["<start_of_turn>", "<end_of_turn>"]
IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
# Whole-word tokens, so that the yes/no look-up finds single tokens as it does in MedGemma.
WORDS = ["Yes", "No", "yes", "no", "YES", "NO"]

IMAGE_SIZE = 896
PATCH_SIZE = 14
IMAGE_TOKENS_PER_IMAGE = 256


def _merges_for(word: str) -> list[tuple[str, str]]:
    """Left-to-right merges that build `word` from its characters."""
    return [(word[:i], word[i]) for i in range(1, len(word))]


def build_tokenizer() -> GemmaTokenizer:
    vocab: dict[str, int] = {}
    for token in SPECIAL_TOKENS + TURN_TOKENS + list(IMAGE_TOKENS.values()):
        vocab[token] = len(vocab)
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for char in ["▁", "\n"] + [chr(c) for c in range(33, 127)]:
        vocab.setdefault(char, len(vocab))
    merges: list[tuple[str, str]] = []
    for word in WORDS + ["▁" + w for w in WORDS]:
        for left, right in _merges_for(word):
            if (left, right) not in merges:
                merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
    return GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        padding_side="left",
        additional_special_tokens=TURN_TOKENS + list(IMAGE_TOKENS.values()),
        extra_special_tokens=IMAGE_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )


def build_processor() -> Gemma3Processor:
    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=build_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS_PER_IMAGE,
    )


# Geometry of the tiny demo model: ~0.3 M parameters, builds and loads in a blink.
TINY = {
    "text": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=32,
                 max_position_embeddings=2048, sliding_window=512,
                 layer_types=["sliding_attention", "full_attention"]),
    "vision": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
    "vocab_size": None,  # the tokenizer's
}

# MedGemma 4B's exact architecture (google/medgemma-4b-it's config): 4.3 B parameters, ~8.6 GB in
# bf16. With random weights it costs exactly what the real model costs: benchmarks use it.
MEDGEMMA_4B = {
    "text": dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                 num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                 max_position_embeddings=131072, sliding_window=1024,
                 rope_parameters={
                     "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
                     "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1_000_000.0},
                 }),  # every 6th layer global: transformers' default layer pattern for Gemma 3
    "vision": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
    "vocab_size": 262_208,
}
SIZES = {"tiny": TINY, "medgemma-4b": MEDGEMMA_4B}


def build_model(tokenizer: GemmaTokenizer, size: dict = TINY, seed: int = 0) -> Gemma3ForConditionalGeneration:
    torch.manual_seed(seed)
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(
        vocab_size=size["vocab_size"] or len(tokenizer),
        pad_token_id=ids("<pad>"),
        eos_token_id=ids("<eos>"),
        bos_token_id=ids("<bos>"),
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
        _shape_output(model.get_input_embeddings().weight, tokenizer)
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<bos>"),
        pad_token_id=ids("<pad>"),
        eos_token_id=[ids("<eos>"), ids("<end_of_turn>")],
    )
    return model.eval()


def _shape_output(embedding: torch.Tensor, tokenizer: GemmaTokenizer) -> None:
    """Tilt the (tied) output embedding so the random model writes printable text that often
    starts with a yes/no word and ends sentences: every branch of the answer path then runs.
    The weights stay random; the answers stay meaningless."""
    ids = tokenizer.convert_tokens_to_ids
    embedding[[ids(f"<0x{byte:02X}>") for byte in range(256)]] *= 0.02
    embedding[[ids(word) for word in WORDS + ["▁" + w for w in WORDS]]] *= 1.6
    embedding[[ids("."), ids("▁")]] *= 1.6


def write_demo_model(directory: Path, size: str = "tiny") -> Path:
    """Write a random model (tiny, or MedGemma 4B's full size), its processor and a demo marker."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    processor = build_processor()
    # Shards of at most 5 GB, as google/medgemma-4b-it ships them.
    build_model(processor.tokenizer, SIZES[size]).save_pretrained(directory, max_shard_size="5GB")
    processor.save_pretrained(directory)
    marker = {
        "id": DEMO_MODEL_ID if size == "tiny" else f"healer/random-{size}",
        "revision": None,
        "demo": True,
        "note": "random weights: answers are meaningless; for tests and demonstrations only",
    }
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return directory
