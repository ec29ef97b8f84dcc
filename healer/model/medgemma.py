"""MedGemma (or any Gemma 3 image-text checkpoint) through transformers.

Loaded once: AutoProcessor + AutoModelForImageTextToText, bfloat16, or 8-bit (bitsandbytes on CUDA,
healer.model.cpu_int8 on the CPU), with a fine-tuned adapter merged in when ADAPTER_DIR is set
(healer.model.adapter); on the CPU each phase computes with its CPU class's kernels
(healer.model.cpu_kernels). Each batch is one left-padded greedy `generate` call, stopped per row: a
row that wants an explanation at the end of its first sentence after the answer (or at
`max_new_tokens`), an answer-only row at its answer step (or after ANSWER_WITHIN tokens without
one): a few decode steps. P(yes) and the answer mass come from the logits at the answer step
(healer.text.answer_step), over every yes/no variant in the vocabulary.
"""

import contextlib
import copy
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
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from healer.text.answer_step import ANSWER_WITHIN, explanation_complete, find_answer_step, token_label
from healer.model.adapter import check_adapter, load_merged
from healer.model.cpu_class import detect
from healer.model.cpu_kernels import KernelPlan, apply_plan, plan_for
from healer.model.engine import Compute, Engine, Generation, Listener, ModelInfo, Query, TokenLogprob
from healer.model.inputs import model_inputs
from healer.model.model_dir import check_model_dir, read_source
from healer.model.vision import keep_residuals_row_major
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


def _cpu_compute(plan: KernelPlan) -> Compute:
    return Compute(plan.cpu.model, plan.cpu.name, plan.phases(), plan.cpu.capped_by)


def _gpu_compute(quantization: str) -> Compute:
    language = "int8 (bitsandbytes LLM.int8)" if quantization == "int8" else "bf16"
    return Compute(torch.cuda.get_device_name(), None, {"vision": "bf16", "prefill": language, "decode": language})


def _log_compute(compute: Compute) -> None:
    if compute.cpu_class is not None:
        capped = f", capped by {' '.join(compute.capped_by)}" if compute.capped_by else ""
        log.info("CPU class %s (%s%s)", compute.cpu_class, compute.processor, capped)
    for phase, kernel in compute.kernels.items():
        log.info("kernels, %s: %s", phase, kernel)


class _LastLogits(LogitsProcessor):
    """Keeps the logits of the step being generated (float32, as `generate` returns them), so
    that a streamed row's P(yes) is read the moment its answer step is chosen."""

    last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.last = scores
        return scores


class _RowStop(StoppingCriteria):
    """Stops each row once it has what it needs, so `generate` stops when every row has: an
    explained row its answer and one finished sentence (or `max_new_tokens`), an answer-only row
    its answer step (or ANSWER_WITHIN tokens without one). A streamed row also tells its listener
    as it goes, and stops as soon as the listener is cancelled."""

    def __init__(self, engine: "MedGemmaEngine", prompt_length: int, queries: Sequence[Query], logits: _LastLogits):
        self.engine = engine
        self.prompt_length = prompt_length
        self.explain = [q.explain for q in queries]
        self.listeners = [q.listener for q in queries]
        self.logits = logits
        self.answered = [False] * len(queries)
        self.lengths = [0] * len(queries)  # the tokens each row generated before it was done
        self.done = torch.zeros(len(queries), dtype=torch.bool)

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        for row in torch.nonzero(~self.done).flatten().tolist():
            listener = self.listeners[row]
            if listener is not None and listener.cancelled:
                self.done[row] = True  # nobody waits for it: it leaves the batch
                continue
            new = input_ids[row, self.prompt_length :].tolist()
            self.lengths[row] = len(new)
            text = self.engine.tokenizer.decode(new, skip_special_tokens=True) if self.explain[row] else ""
            if self.explain[row]:
                self.done[row] = len(new) >= self.engine.max_new_tokens or explanation_complete(text)
            else:
                self.done[row] = len(new) >= ANSWER_WITHIN or self.engine.answer_step(new) is not None
            if listener is not None:
                self._tell(listener, row, new, text)
        return self.done.clone().to(input_ids.device)

    def _tell(self, listener: Listener, row: int, new: list[int], text: str) -> None:
        if not self.answered[row] and len(new) <= ANSWER_WITHIN:
            step = self.engine.answer_step(new)
            # The answer step is always the newest token when it is found: the tokens before it
            # were looked at the step before. Its logits are the ones `generate` just chose it by.
            if step is not None:
                self.answered[row] = True
                p_yes, mass = self.engine._read_answers(self.logits.last[row : row + 1])
                listener.answered(Generation(text="", p_yes=p_yes[0], answer_label=self.engine._labels[new[step]],
                                             answer_mass=mass[0], answer_step=step))
        if text:
            listener.wrote(text)


class MedGemmaEngine(Engine):
    def __init__(self, model, processor, info: ModelInfo, max_new_tokens: int, parameters: int | None = None):
        self.model = model
        self.parameters = parameters
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.info = info
        self.max_new_tokens = max_new_tokens
        self.input_device = next(model.parameters()).device
        self.yes_ids, self.no_ids = self._yes_no_ids()
        self._labels = {**dict.fromkeys(self.yes_ids, "yes"), **dict.fromkeys(self.no_ids, "no")}
        eos = model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=max_new_tokens,
            eos_token_id=model.generation_config.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )

    @classmethod
    def load(cls, settings: Settings, trainable: bool = False) -> "MedGemmaEngine":
        """The model as served, or with `trainable` as loaded: plain bf16 modules that autograd
        can train through (the CPU kernel plan computes for inference only)."""
        check_model_dir(settings.model_dir)
        source = read_source(settings.model_dir, settings.model_id, settings.model_revision)
        adapter = check_adapter(settings.adapter_dir, source) if settings.adapter_dir else None
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
        processor.tokenizer.padding_side = "left"  # right padding breaks batched answer-step logits
        if adapter is None:
            model = AutoModelForImageTextToText.from_pretrained(settings.model_dir, **kwargs).eval()
        else:
            model = load_merged(AutoModelForImageTextToText, settings.model_dir, kwargs, settings.adapter_dir).eval()
        keep_residuals_row_major(model)  # bit-identical; ~20 % less vision-tower time on the CPU
        parameters = sum(p.numel() for p in model.parameters())
        if device == "cpu" and trainable:
            cpu = detect()
            compute = Compute(cpu.model, cpu.name, dict.fromkeys(("vision", "prefill", "decode"), "bf16 as loaded, trainable"),
                              cpu.capped_by)
        elif device == "cpu":
            plan = plan_for(detect(), settings.quantization)
            apply_plan(model, plan)
            if cpu_int8:
                _release_freed_memory()
            compute = _cpu_compute(plan)
        else:
            compute = _gpu_compute(settings.quantization)
        on_meta = [name for name, p in model.named_parameters() if p.device.type == "meta"]
        if on_meta:
            raise RuntimeError(f"{len(on_meta)} weights were not loaded (e.g. {on_meta[0]})")
        info = ModelInfo(source.id, source.revision, device, settings.quantization, source.demo, adapter, compute)
        log.info(
            "loaded %s (revision %s) on %s, quantization %s, in %.1f s",
            info.id, info.revision or "unknown", device, info.quantization,
            time.perf_counter() - started,
        )
        _log_compute(compute)
        return cls(model, processor, info, settings.max_new_tokens, parameters)

    def _yes_no_ids(self) -> tuple[list[int], list[int]]:
        labelled: dict[str, list[int]] = {"yes": [], "no": []}
        for token, token_id in self.tokenizer.get_vocab().items():
            label = token_label(token)
            if label:
                labelled[label].append(token_id)
        if not labelled["yes"] or not labelled["no"]:
            raise RuntimeError("the tokenizer has no single token for 'yes' or for 'no'")
        return sorted(labelled["yes"]), sorted(labelled["no"])

    def answer_step(self, new_ids: Sequence[int]) -> int | None:
        """The index of the answer step among a row's generated tokens, or None: the first of the
        first ANSWER_WITHIN tokens that is a yes/no variant after text that may precede an answer."""
        ends = next((i for i, token_id in enumerate(new_ids) if token_id in self._eos_ids), len(new_ids))
        labels = [self._labels.get(token_id) for token_id in new_ids[:ends]]  # none after the turn ended
        return find_answer_step(labels, lambda step: self.tokenizer.decode(new_ids[:step], skip_special_tokens=True))

    def _inputs(self, queries: Sequence[Query]):
        return model_inputs(self.processor, [q.image for q in queries], [q.question for q in queries],
                            self.input_device, self.model.dtype)

    def _read_answers(self, logits: torch.Tensor) -> tuple[list[float], list[float]]:
        """P(yes) and the answer mass from each row's logits at its answer step. The log-odds are
        taken in float32; the sigmoid in float64, where it saturates ~20 log-odds later."""
        log_probs = logits.float().log_softmax(dim=-1)
        yes = torch.logsumexp(log_probs[:, self.yes_ids], dim=-1)
        no = torch.logsumexp(log_probs[:, self.no_ids], dim=-1)
        p_yes = torch.sigmoid((yes - no).double())
        mass = torch.logaddexp(yes, no).exp()
        return p_yes.tolist(), mass.tolist()

    @torch.inference_mode()
    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        started = time.perf_counter()
        inputs = self._inputs(queries)
        prepared = time.perf_counter()
        prompt_length = inputs["input_ids"].shape[1]
        longest = max(self.max_new_tokens if q.explain else ANSWER_WITHIN for q in queries)
        config = copy.copy(self.generation_config)  # transformers warns on config + max_new_tokens
        config.max_new_tokens = longest
        last_logits = _LastLogits()
        rows = _RowStop(self, prompt_length, queries, last_logits)
        out = self.model.generate(
            **inputs,
            generation_config=config,
            logits_processor=LogitsProcessorList([last_logits]),
            stopping_criteria=StoppingCriteriaList([rows]),
        )
        new_tokens = out.sequences[:, prompt_length:].tolist()
        steps = [self.answer_step(row) for row in new_tokens]
        # No answer step: P(yes) is read at the first step, and the mass reported is 0.
        step_logits = torch.stack([out.logits[step or 0][row] for row, step in enumerate(steps)])
        p_yes, mass = self._read_answers(step_logits)
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        logprobs = [None if q.top_logprobs is None else self._logprobs(out.logits, row, new_tokens[row][: rows.lengths[row]],
                                                                        q.top_logprobs)
                    for row, q in enumerate(queries)]
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
                answer_label=None if step is None else self._labels[row[step]],
                answer_mass=0.0 if step is None else share,
                answer_step=step,
                timings_ms=timings,
                logprobs=row_logprobs,
            )
            for query, text, probability, share, step, row, row_logprobs
            in zip(queries, texts, p_yes, mass, steps, new_tokens, logprobs)
        ]

    def _logprobs(self, logits: tuple[torch.Tensor, ...], row: int, ids: list[int], top: int) -> tuple[TokenLogprob, ...]:
        """Each generated token's log-probability under the full softmax, with the `top` most
        likely tokens of its step, up to where the row ended its turn."""
        out = []
        for step, token_id in enumerate(ids):
            if token_id in self._eos_ids:
                break
            log_probs = logits[step][row].float().log_softmax(dim=-1)
            best = log_probs.topk(top) if top else None
            out.append(TokenLogprob(
                self._piece(token_id), log_probs[token_id].item(),
                tuple(zip(map(self._piece, best.indices.tolist()), best.values.tolist())) if best is not None else (),
            ))
        return tuple(out)

    def _piece(self, token_id: int) -> str:
        return self.tokenizer.convert_ids_to_tokens(token_id).replace("▁", " ")

    def warmup(self) -> None:
        """One answer-only answer on a blank tile: pages the memory-mapped weights in before the
        first user (healer.model.load times it)."""
        self.generate([Query(Image.new("RGB", (64, 64), "white"), "Warm-up.", explain=False)])
