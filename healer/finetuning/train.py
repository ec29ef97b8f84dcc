"""LoRA training of the served model on labelled tiles (peft), with early stopping on validation loss.

The base is loaded exactly as the service loads it (MODEL_DIR, DEVICE; bf16). As in Google's
MedGemma fine-tuning notebook, LoRA matrices go on every linear layer (peft's "all-linear": the
SigLIP vision tower's and the language model's, not lm_head), so the image features themselves
adapt to a lab's stains; the multi-modal projector (one 1152 x 2560 matrix and a norm at full size)
trains in full. Each tile is shown the service's prompt (healer.model.inputs) followed by the
answer it should get; the loss covers the answer's tokens and, on its own, the P(yes) the service
reads at the first of them.

On CUDA, `low_memory="8bit"|"4bit"` loads the frozen base quantized by bitsandbytes (QLoRA);
only the LoRA matrices train, in bf16. That path needs a GPU and is untested on this project's
CPU-only test machines.
"""

import logging
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from healer.evaluation.folder import Tile
from healer.finetuning.data import FinetuneError, answer_for
from healer.model.engine import ModelInfo
from healer.model.inputs import END_OF_TURN, model_inputs
from healer.model.model_dir import read_source
from healer.model.medgemma import INT8_SKIP_MODULES, MedGemmaEngine, resolve_device
from healer.screening.images import decode_image
from healer.settings import Settings

log = logging.getLogger(__name__)

# Every nn.Linear but the output layer, the vision tower's included (measured on the demo task:
# language-model-only LoRA plus the final norm left held-out ROC AUC at chance).
LORA_TARGETS = "all-linear"
# Gemma 3 holds the image-to-text projection as a bare Parameter, which LoRA cannot wrap.
PROJECTOR = "multi_modal_projector"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 3
    batch_size: int = 4
    learning_rate: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    patience: int = 2  # epochs without a better validation loss before stopping
    seed: int = 0
    low_memory: str | None = None  # "8bit" or "4bit": a quantized frozen base, CUDA only


@dataclass
class History:
    epochs_run: int = 0
    best_epoch: int = 0
    train_loss: list[float] | None = None
    validation_loss: list[float] | None = None
    seconds_per_step: float = 0.0
    peak_memory_gib: float | None = None


def load_base(settings: Settings, low_memory: str | None) -> MedGemmaEngine:
    """The served model without any adapter: bf16, or a quantized frozen base on CUDA."""
    plain = settings.model_copy(update={"adapter_dir": None, "quantization": "none"})
    if low_memory is None:
        # Without bf16 hardware (AVX2) this trains in bf16 emulated in software: slow, but the
        # served kernels (fp32 products) compute without gradients.
        return MedGemmaEngine.load(plain, trainable=True)
    if resolve_device(settings.device) != "cuda":
        raise FinetuneError("--low-memory needs a CUDA device (bitsandbytes' training kernels); "
                           "on the CPU, train in bf16")
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    quantization = (
        BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=INT8_SKIP_MODULES)
        if low_memory == "8bit" else
        BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           llm_int8_skip_modules=INT8_SKIP_MODULES)
    )
    model = AutoModelForImageTextToText.from_pretrained(
        settings.model_dir, dtype=torch.bfloat16, device_map="cuda", quantization_config=quantization)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    processor = AutoProcessor.from_pretrained(settings.model_dir)
    processor.tokenizer.padding_side = "left"
    source = read_source(settings.model_dir, settings.model_id, settings.model_revision)
    info = ModelInfo(source.id, source.revision, "cuda", "int8" if low_memory == "8bit" else "nf4", source.demo)
    return MedGemmaEngine(model, processor, info, settings.max_new_tokens)


def with_lora(engine: MedGemmaEngine, config: TrainConfig) -> MedGemmaEngine:
    """The same engine answering through a peft model whose only trainable weights are LoRA's."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=LORA_TARGETS, bias="none",
                      modules_to_save=[PROJECTOR])
    model = get_peft_model(engine.model, lora)
    # Activations are recomputed in the backward pass instead of kept: at MedGemma's size, the
    # 27 vision layers over 4,096 patches and the 34 text layers held for backward exceed 24 GB
    # at two tiles a step (measured); recomputing them costs one more forward pass.
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    return MedGemmaEngine(model, engine.processor, engine.info, engine.max_new_tokens)


def batch_loss(engine: MedGemmaEngine, tiles: Sequence[Tile], question: str, max_pixels: int) -> torch.Tensor:
    """Cross-entropy over the answer tokens (the prompt and padding are skipped), plus the binary
    cross-entropy of the P(yes) the service reads at the answer's first position: yes against no,
    whatever else the vocabulary holds. The word is one token of a dozen, yet the only number served."""
    images = [decode_image(tile.path.read_bytes(), max_pixels) for tile in tiles]
    answers = [answer_for(tile) for tile in tiles]
    inputs = model_inputs(engine.processor, images, [question] * len(tiles), engine.input_device,
                          engine.model.dtype, answers=answers)
    wanted = [engine.tokenizer(answer + END_OF_TURN, add_special_tokens=False)["input_ids"] for answer in answers]
    longest = max(len(ids) for ids in wanted)
    targets = inputs["input_ids"][:, -longest:]
    mask = torch.zeros_like(targets, dtype=torch.bool)
    for row, ids in enumerate(wanted):
        # Left padding puts every answer at the end of its row.
        if targets[row, -len(ids):].tolist() != ids:
            raise RuntimeError("the answer does not tokenize the same inside the prompt; cannot label it")
        if ids[0] not in engine.yes_ids + engine.no_ids:
            raise RuntimeError(f"the answer's first token ({ids[0]}) is not a yes/no token the service reads")
        mask[row, -len(ids):] = True
    # Only the positions that predict answer tokens: at full size, logits for the whole prompt
    # over a 262k vocabulary would take gigabytes.
    logits = engine.model(**inputs, logits_to_keep=longest + 1).logits[:, :-1].float()
    per_token = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
    answer = (per_token * mask).sum() / mask.sum()
    first = torch.stack([logits[row, longest - len(ids)] for row, ids in enumerate(wanted)])
    yes_minus_no = torch.logsumexp(first[:, engine.yes_ids], -1) - torch.logsumexp(first[:, engine.no_ids], -1)
    labels = torch.tensor([float(tile.label) for tile in tiles], device=yes_minus_no.device)
    return answer + F.binary_cross_entropy_with_logits(yes_minus_no, labels)


def _mean_loss(engine, tiles, question, batch_size, max_pixels) -> float:
    engine.model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(tiles), batch_size):
            batch = tiles[start : start + batch_size]
            total += batch_loss(engine, batch, question, max_pixels).item() * len(batch)
    return total / len(tiles)


def _lora_state(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}


def train(
    engine: MedGemmaEngine, train_tiles: Sequence[Tile], validation_tiles: Sequence[Tile], question: str,
    config: TrainConfig, max_pixels: int, progress: bool = True, say: Callable[[str], None] = print,
) -> History:
    """Trains `engine.model` (a peft model) in place; it ends holding the best epoch's LoRA weights."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    order = random.Random(config.seed)
    model = engine.model
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
    if engine.input_device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    history = History(train_loss=[], validation_loss=[])
    best, best_state, waited, steps, step_seconds = float("inf"), _lora_state(model), 0, 0, 0.0
    tiles = list(train_tiles)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order.shuffle(tiles)
        running, seen = 0.0, 0
        batches = [tiles[i : i + config.batch_size] for i in range(0, len(tiles), config.batch_size)]
        with tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", unit="step", disable=not progress) as bar:
            for batch in bar:
                started = time.perf_counter()
                loss = batch_loss(engine, batch, question, max_pixels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step_seconds += time.perf_counter() - started
                steps += 1
                running += loss.item() * len(batch)
                seen += len(batch)
                bar.set_postfix(loss=f"{running / seen:.4f}")
        validation = _mean_loss(engine, list(validation_tiles), question, config.batch_size, max_pixels)
        history.train_loss.append(running / seen)
        history.validation_loss.append(validation)
        history.epochs_run = epoch
        improved = validation < best
        say(f"epoch {epoch}: training loss {running / seen:.4f}, validation loss {validation:.4f}"
            f"{' (best so far)' if improved else ''}")
        if improved:
            best, best_state, waited, history.best_epoch = validation, _lora_state(model), 0, epoch
        else:
            waited += 1
            if waited >= config.patience:
                say(f"early stop: no better validation loss for {waited} epoch(s)")
                break
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in best_state:
                p.copy_(best_state[name])
    model.eval()
    history.seconds_per_step = step_seconds / max(steps, 1)
    if engine.input_device.type == "cuda":
        history.peak_memory_gib = torch.cuda.max_memory_allocated() / 2**30
    else:  # the process's peak resident memory: the model, activations and gradients, all of it
        history.peak_memory_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return history
