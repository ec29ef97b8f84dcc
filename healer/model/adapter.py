"""A fine-tuned LoRA adapter (ADAPTER_DIR, written by `python -m healer.finetune`) on the base model.

An adapter folder holds peft's `adapter_config.json` and `adapter_model.safetensors`, and
Healer's card `healer-adapter.json` (the base model it was trained on, the data, the validation
metrics and the threshold chosen on validation). It is checked before anything heavy loads: an
adapter made for another base model, or a broken one, is an `AdapterError` with one line.

Served merged: the LoRA deltas are added into the base weights once at start-up, so an answer
costs exactly what the base model's does. bitsandbytes cannot merge into int8 weights, so in
8-bit mode the base is loaded in bf16, merged, and then quantized in memory layer by layer
(healer.model.int8): a start-up cost, none per answer, and no copy of the weights on disk.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from healer.model.model_dir import ModelSource

CARD_FILE = "healer-adapter.json"
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
HASH_CHARS = 12

log = logging.getLogger(__name__)


class AdapterError(RuntimeError):
    """ADAPTER_DIR cannot be served on this model; the message says why, in one line."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str  # the adapter folder's name
    sha256: str  # of adapter_model.safetensors, first 12 hex digits: which weights serve
    base_id: str
    base_revision: str | None
    threshold: float | None  # chosen on validation; the service's THRESHOLD unless set


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AdapterError(f"adapter {path.parent} has no {path.name}; is it a healer.finetune output?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AdapterError(f"adapter {path.parent} is corrupt: {path.name} is not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise AdapterError(f"adapter {path.parent} is corrupt: {path.name} is not a JSON object")
    return data


def _check_weights(path: Path) -> str:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as weights:
            names = list(weights.keys())
    except FileNotFoundError:
        raise AdapterError(f"adapter {path.parent} has no {path.name}") from None
    except Exception as error:  # safetensors raises its own error types for every kind of damage
        raise AdapterError(f"adapter {path.parent} is corrupt: {path.name} cannot be read ({error})") from None
    if not any("lora_" in name for name in names):
        raise AdapterError(f"adapter {path.parent} is corrupt: {path.name} holds no LoRA weights")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:HASH_CHARS]


def check_adapter(directory: Path, base: ModelSource) -> AdapterInfo:
    """The adapter's identity, once its files read and its base model is the one served."""
    directory = Path(directory)
    if not directory.is_dir():
        raise AdapterError(f"ADAPTER_DIR {directory} does not exist")
    card = _read_json(directory / CARD_FILE)
    _read_json(directory / CONFIG_FILE)
    trained_on = card.get("base") or {}
    if not isinstance(trained_on, dict) or not trained_on.get("id"):
        raise AdapterError(f"adapter {directory} is corrupt: {CARD_FILE} names no base model")
    # A revision is compared only when both sides know it: the demo model has none.
    revisions_differ = trained_on.get("revision") and base.revision and trained_on["revision"] != base.revision
    if trained_on["id"] != base.id or revisions_differ:
        raise AdapterError(
            f"adapter {directory} was made for {trained_on['id']} (revision "
            f"{trained_on.get('revision') or 'unknown'}), but MODEL_DIR serves {base.id} "
            f"(revision {base.revision or 'unknown'}); fine-tune again on this model"
        )
    threshold = (card.get("validation") or {}).get("threshold")
    return AdapterInfo(
        name=directory.resolve().name,
        sha256=_check_weights(directory / WEIGHTS_FILE),
        base_id=trained_on["id"],
        base_revision=trained_on.get("revision"),
        threshold=float(threshold) if threshold is not None else None,
    )


def merged_into(model, directory: Path):
    """`model` with the adapter's LoRA deltas added into its weights (peft's merge_and_unload)."""
    from peft import PeftModel

    try:
        adapted = PeftModel.from_pretrained(model, directory)
    except Exception as error:  # shapes or module names that do not fit this model, damaged weights
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AdapterError(f"adapter {directory} does not fit this model: {first_line}") from None
    return adapted.merge_and_unload()


def load_merged(model_class, model_dir: Path, kwargs: dict, directory: Path):
    """The base model from `model_dir` with the adapter merged, loaded as `kwargs` ask."""
    started = time.perf_counter()
    quantization = kwargs.get("quantization_config")
    bf16 = {key: value for key, value in kwargs.items() if key != "quantization_config"}
    model = merged_into(model_class.from_pretrained(model_dir, **bf16), directory)
    if quantization is not None:
        # bitsandbytes cannot merge into int8 weights: quantized after the merge, in memory.
        from healer.model.int8 import quantize_int8

        model = quantize_int8(model, quantization)
    log.info("adapter %s merged in %.1f s", Path(directory).name, time.perf_counter() - started)
    return model
