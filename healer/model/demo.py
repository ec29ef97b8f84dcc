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
from PIL import Image
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

# Scripted openings (`opening=`): demo models that write the same words before (or instead of)
# their answer on every image, to test that P(yes) is read where the answer word is generated.
# Each token is in the vocabulary as one piece, as MedGemma's tokenizer has "**" and these words.
OPENINGS: dict[str, tuple[list[str], list[str] | None]] = {
    # name: (the tokens before the answer, the answer's yes and no tokens; None: no answer)
    "bold": (["**"], ["Yes", "No"]),  # "**Yes." — answers at step 1
    "phrase": (["Based", "▁on", "▁the", "▁image", ","], ["▁yes", "▁no"]),  # answers at step 5
    "never": (["I", "▁cannot", "▁tell", "▁from", "▁this", "▁image", "."], None),  # never answers
}
OPENING_WORDS = sorted({token for tokens, _ in OPENINGS.values() for token in tokens if len(token) > 1})

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
    for word in WORDS + ["▁" + w for w in WORDS] + OPENING_WORDS:
        for left, right in _merges_for(word):
            if (left, right) not in merges:
                merges.append((left, right))
            vocab.setdefault(left + right, len(vocab))
    # Saved as real Gemma tokenizers come: right padding and an automatic <bos>. The engine must
    # set left padding and pass add_special_tokens=False itself; the tests fail if it does not.
    tokenizer = GemmaTokenizer(
        vocab=vocab,
        merges=merges,
        padding_side="right",
        add_bos_token=True,
        additional_special_tokens=TURN_TOKENS + list(IMAGE_TOKENS.values()),
        extra_special_tokens=IMAGE_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens(TURN_TOKENS, special_tokens=True)  # decoded text leaves them out, as Gemma's
    return tokenizer


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
    "tied": False,  # the output layer is shaped apart from the input (see _shape_output)
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
    "tied": True,  # MedGemma's output head is its embedding (1.34 GB in bf16, read per token)
}
SIZES = {"tiny": TINY, "medgemma-4b": MEDGEMMA_4B}


def build_model(
    tokenizer: GemmaTokenizer, size: dict = TINY, seed: int = 0, opening: str | None = None,
) -> Gemma3ForConditionalGeneration:
    """A random model; with `opening` (a key of OPENINGS), one that writes that opening first."""
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
        if opening is None:
            _shape_output(model, tokenizer)
        else:
            _script(model, tokenizer, *OPENINGS[opening])
    model.generation_config = GenerationConfig(
        bos_token_id=ids("<bos>"),
        pad_token_id=ids("<pad>"),
        eos_token_id=[ids("<eos>"), ids("<end_of_turn>")],
    )
    return model.eval()


def _damp_layers(model) -> None:
    """Make the last position's hidden state mostly its own input embedding, with the prompt and
    the image mixed in: Gemma 3's post-norms scale each layer's output by 1 + weight, and the
    input embedding is scaled up. The output layer can then say what follows which token."""
    for layer in model.model.language_model.layers:
        layer.post_attention_layernorm.weight.fill_(-0.7)
        layer.post_feedforward_layernorm.weight.fill_(-0.7)
    model.get_input_embeddings().weight.mul_(10)


def _follow(model, tokenizer, token: str, successor: str, logits: float) -> None:
    """Raise `successor`'s logit by about `logits` wherever `token` is the last input."""
    ids = tokenizer.convert_tokens_to_ids
    direction = model.get_input_embeddings().weight[ids(token)].float()
    direction = direction / direction.norm()
    output = model.get_output_embeddings().weight
    scale = output.shape[1] ** 0.5  # the final norm leaves the hidden state at unit RMS
    output[ids(successor)] += (logits / scale * direction).to(output.dtype)


# The default demo's pull towards answering at once: about this many logits on every yes/no
# variant after the prompt. It puts the answer mass around MIN_ANSWER_MASS (0.5), varying with
# the image, so the service's tests see yes, no and uncertain answers.
ANSWER_PULL = 4.0
# How strongly the image decides between yes and no (see _answer_by_image).
IMAGE_SWAY = 3.0
EOSIN, HAEMATOXYLIN = (230, 150, 200), (110, 80, 170)  # the two reference images' colours


def _shape_output(model, tokenizer) -> None:
    """Tilt the output layer so the random model writes printable text that often ends sentences
    and answers yes or no first, with the image deciding which: every branch of the answer path
    then runs. The weights stay random; the answers stay meaningless."""
    ids = tokenizer.convert_tokens_to_ids
    output = model.get_output_embeddings().weight
    answer_words = WORDS + ["▁" + w for w in WORDS]
    output[[ids(f"<0x{byte:02X}>") for byte in range(256)]] *= 0.02
    output[[ids("."), ids("▁")]] *= 1.6
    _damp_layers(model)
    for word in answer_words:
        _follow(model, tokenizer, "\n", word, ANSWER_PULL)  # the prompt ends "<start_of_turn>model\n"
        _follow(model, tokenizer, word, ".", 8.0)  # "Yes." then a (random) explanation
    _follow(model, tokenizer, ".", "▁", 4.0)


def _script(model, tokenizer, before: list[str], answer: list[str] | None) -> None:
    """Make the model a chain: each token's successor is fixed, whatever the image, except the
    choice between yes and no at the answer step (the yes token gets 1.2 logits more)."""
    chain = ["\n", *before]
    successors = {a: [b] for a, b in zip(chain, chain[1:])}
    if answer is None:
        successors[chain[-1]] = ["<end_of_turn>"]
    else:
        successors[chain[-1]] = answer
        successors.update({word: ["."] for word in answer})
        successors["."] = ["<end_of_turn>"]
    _damp_layers(model)
    for token, following in successors.items():
        for rank, successor in enumerate(following):
            _follow(model, tokenizer, token, successor, 12.0 + (1.2 if rank == 0 and len(following) == 2 else 0.0))


@torch.no_grad()
def _answer_by_image(model, processor) -> None:
    """Let the image pick yes or no: the yes rows move along the direction from the hidden state
    a plain haematoxylin-purple image leaves after the prompt to the one an eosin-pink image
    leaves, the no rows against it, with what both share removed. Pinker tiles lean yes, more
    purple ones no, by up to ~IMAGE_SWAY logits: meaningless, but the image decides."""
    from healer.text.prompts import DEFAULT_QUESTION, SYSTEM_PROMPT

    messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DEFAULT_QUESTION}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    colours = [EOSIN, HAEMATOXYLIN]
    inputs = processor(text=[text] * 2, images=[[Image.new("RGB", (64, 64), c)] for c in colours],
                       add_special_tokens=False, return_tensors="pt")
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    pink, purple = model.model(**inputs).last_hidden_state[:, -1].float()
    middle = (pink + purple) / 2
    direction = pink - purple
    direction -= (direction @ middle) / (middle @ middle) * middle
    sway = IMAGE_SWAY * direction / (direction @ pink)  # the pink image: +IMAGE_SWAY for yes
    ids = processor.tokenizer.convert_tokens_to_ids
    output = model.get_output_embeddings().weight
    for word in WORDS:
        sign = 0.5 if word.lower() == "yes" else -0.5
        for token in (word, "▁" + word):
            output[ids(token)] += (sign * sway).to(output.dtype)


def write_demo_model(directory: Path, size: str = "tiny", opening: str | None = None) -> Path:
    """Write a random model (tiny, or MedGemma 4B's full size), its processor and a demo marker.
    `opening` (tiny only): a model that opens every answer the same way (OPENINGS)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    processor = build_processor()
    # Shards of at most 5 GB, as google/medgemma-4b-it ships them.
    model = build_model(processor.tokenizer, SIZES[size], opening=opening)
    if size == "tiny" and opening is None:
        _answer_by_image(model, processor)
    model.save_pretrained(directory, max_shard_size="5GB")
    processor.save_pretrained(directory)
    marker = {
        "id": (DEMO_MODEL_ID + (f"-{opening}" if opening else "")) if size == "tiny" else f"healer/random-{size}",
        "revision": None,
        "demo": True,
        "note": "random weights: answers are meaningless; for tests and demonstrations only",
    }
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return directory
