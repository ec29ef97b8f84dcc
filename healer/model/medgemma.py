"""MedGemma (or any Gemma 3 image-text checkpoint) through transformers.

Loaded once: AutoProcessor + AutoModelForImageTextToText, bfloat16, or 8-bit: bitsandbytes on CUDA,
healer.model.cpu_int8 on the CPU. Each batch is one left-padded `generate` call (or one forward pass in answer-only mode):
greedy, stopped per row at the end of the explanation's first sentence or at `max_new_tokens`.
P(yes) comes from the first generated token's logits over every yes/no variant in the vocabulary.
"""

import contextlib
import ctypes
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    AutoModelForImageTextToText,
    AutoProcessor,
    BitsAndBytesConfig,
    GenerationConfig,
    StoppingCriteria,
    StoppingCriteriaList,
)

from healer.screening import answers
from healer.model.cpu_int8 import to_cpu_int8
from healer.model.engine import Engine, Generation, ModelInfo, Query
from healer.model.model_dir import check_model_dir, read_source
from healer.screening.prompts import SYSTEM_PROMPT
from healer.settings import Settings

log = logging.getLogger(__name__)

# On CUDA, bitsandbytes leaves these in bf16: the vision tower is ~70 % of prefill FLOPs and
# lm_head is tied to the embedding.
# transformers 5.x matches module names from the top: a bare "vision_tower" would match nothing.
INT8_SKIP_MODULES = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]


def resolve_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but no CUDA device is visible; use DEVICE=auto or cpu")
    return requested


def usable_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may really use: affinity, capped by a cgroup v2 quota (Cloud Run)."""
    count = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return count


def _release_freed_memory() -> None:
    """Hand the activations' freed heap back to the OS (glibc keeps it otherwise): after an
    answer at full size, RSS falls from ~8 GiB to ~5.4 GiB in int8 on the CPU."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class _FirstSentenceStop(StoppingCriteria):
    """Stops each row once it holds its yes/no and one finished sentence (or at once if the
    row only wants the answer); `generate` stops when every row has."""

    def __init__(self, tokenizer, prompt_length: int, explain: list[bool]):
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.done = torch.tensor([not wanted for wanted in explain])

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        for row in torch.nonzero(~self.done).flatten().tolist():
            text = self.tokenizer.decode(input_ids[row, self.prompt_length :], skip_special_tokens=True)
            self.done[row] = answers.explanation_complete(text)
        return self.done.clone().to(input_ids.device)


class MedGemmaEngine(Engine):
    def __init__(self, model, processor, info: ModelInfo, max_new_tokens: int):
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.info = info
        self.max_new_tokens = max_new_tokens
        self.input_device = next(model.parameters()).device
        self.yes_ids, self.no_ids = self._yes_no_ids()
        self.generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=model.generation_config.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )

    @classmethod
    def load(cls, settings: Settings) -> "MedGemmaEngine":
        check_model_dir(settings.model_dir)
        source = read_source(settings.model_dir, settings.model_id, settings.model_revision)
        device = resolve_device(settings.device)
        if device == "cpu":
            torch.set_num_threads(usable_cpus())
        kwargs: dict = {"dtype": torch.bfloat16, "device_map": device}
        cpu_int8 = settings.quantization == "int8" and device == "cpu"
        if settings.quantization == "int8" and not cpu_int8:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_8bit=True, llm_int8_skip_modules=INT8_SKIP_MODULES
            )
            # bitsandbytes' CPU path warns on every matmul that it casts inputs to float16.
            logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
            warnings.filterwarnings("ignore", message=".*inputs will be cast.*")
        started = time.perf_counter()
        processor = AutoProcessor.from_pretrained(settings.model_dir)
        processor.tokenizer.padding_side = "left"  # right padding breaks batched first-token logits
        model = AutoModelForImageTextToText.from_pretrained(settings.model_dir, **kwargs).eval()
        if cpu_int8:
            to_cpu_int8(model)
            _release_freed_memory()
        on_meta = [name for name, p in model.named_parameters() if p.device.type == "meta"]
        if on_meta:
            raise RuntimeError(f"{len(on_meta)} weights were not loaded (e.g. {on_meta[0]})")
        info = ModelInfo(source.id, source.revision, device, settings.quantization, source.demo)
        log.info(
            "loaded %s (revision %s) on %s, quantization %s, in %.1f s",
            info.id, info.revision or "unknown", device, info.quantization,
            time.perf_counter() - started,
        )
        return cls(model, processor, info, settings.max_new_tokens)

    def _yes_no_ids(self) -> tuple[list[int], list[int]]:
        labelled: dict[str, list[int]] = {"yes": [], "no": []}
        for token, token_id in self.tokenizer.get_vocab().items():
            label = answers.token_label(token)
            if label:
                labelled[label].append(token_id)
        if not labelled["yes"] or not labelled["no"]:
            raise RuntimeError("the tokenizer has no single token for 'yes' or for 'no'")
        return sorted(labelled["yes"]), sorted(labelled["no"])

    def _label_of(self, token_id: int):
        return "yes" if token_id in self.yes_ids else "no" if token_id in self.no_ids else None

    def _inputs(self, queries: Sequence[Query]):
        prompts = [
            self.processor.apply_chat_template(
                [
                    {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q.question}]},
                ],
                add_generation_prompt=True,
                tokenize=False,
            )
            for q in queries
        ]
        # The template already starts with <bos>: the processor must not add a second one.
        inputs = self.processor(
            text=prompts,
            images=[[q.image] for q in queries],
            padding=True,
            add_special_tokens=False,
            return_tensors="pt",
        ).to(self.input_device)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    def _p_yes(self, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        yes = torch.logsumexp(logits[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(logits[:, self.no_ids], dim=-1)
        return torch.sigmoid(yes - no)

    @torch.inference_mode()
    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        started = time.perf_counter()
        inputs = self._inputs(queries)
        prepared = time.perf_counter()
        if any(q.explain for q in queries):
            prompt_length = inputs["input_ids"].shape[1]
            stop = _FirstSentenceStop(self.tokenizer, prompt_length, [q.explain for q in queries])
            out = self.model.generate(
                **inputs,
                generation_config=self.generation_config,
                stopping_criteria=StoppingCriteriaList([stop]),
            )
            first_logits = out.logits[0]
            new_tokens = out.sequences[:, prompt_length:]
            texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        else:
            first_logits = self.model(**inputs, logits_to_keep=1).logits[:, -1, :]
            texts = [""] * len(queries)
        first_ids = first_logits.argmax(dim=-1).tolist()
        p_yes = self._p_yes(first_logits).tolist()
        if self.input_device.type == "cpu":
            _release_freed_memory()
        timings = {
            "preprocess": round((prepared - started) * 1000, 1),
            "model": round((time.perf_counter() - prepared) * 1000, 1),
        }
        return [
            Generation(
                text=text.strip() if query.explain else "",
                p_yes=probability,
                first_token_label=self._label_of(first_id),
                timings_ms=timings,
            )
            for query, text, probability, first_id in zip(queries, texts, p_yes, first_ids)
        ]

    def warmup(self) -> None:
        """One answer on a blank tile: pages the memory-mapped weights in before the first user."""
        started = time.perf_counter()
        self.generate([Query(Image.new("RGB", (64, 64), "white"), "Warm-up.", explain=False)])
        log.info("warm-up answered in %.1f s", time.perf_counter() - started)
