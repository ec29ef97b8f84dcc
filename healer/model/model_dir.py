"""What a servable model directory holds, checked before anything heavy is loaded.

A directory is complete when it has the model config, every safetensors shard its index names
(or the single `model.safetensors`), a tokenizer and a processor config. `healer-model.json`,
written by `download.py`, records where the weights came from (id, revision, demo or not).
"""

import json
from dataclasses import dataclass
from pathlib import Path

MARKER_FILE = "healer-model.json"
WEIGHTS_INDEX = "model.safetensors.index.json"
SINGLE_WEIGHTS = "model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")

HOW_TO_FIX = (
    "Download MedGemma with `HF_TOKEN=... python download.py` (after accepting its licence on "
    "Hugging Face), or write the tiny demo model with `python download.py --demo`, "
    "and point MODEL_DIR at that directory."
)


class ModelDirError(RuntimeError):
    """The model directory is missing or incomplete; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSource:
    id: str
    revision: str | None
    demo: bool


def missing_files(directory: Path) -> list[str]:
    """Names of the files a complete model directory would have and this one lacks."""
    directory = Path(directory)
    missing = [] if (directory / "config.json").is_file() else ["config.json"]
    index = directory / WEIGHTS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing += [shard for shard in shards if not (directory / shard).is_file()]
    elif not (directory / SINGLE_WEIGHTS).is_file():
        missing.append(f"{SINGLE_WEIGHTS} or {WEIGHTS_INDEX}")
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if not any((directory / name).is_file() for name in PROCESSOR_FILES):
        missing.append(" or ".join(PROCESSOR_FILES))
    return missing


def check_model_dir(directory: Path) -> None:
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelDirError(f"Model directory {directory} does not exist. {HOW_TO_FIX}")
    missing = missing_files(directory)
    if missing:
        raise ModelDirError(
            f"Model directory {directory} is incomplete (missing: {', '.join(missing)}). {HOW_TO_FIX}"
        )


def read_source(directory: Path, default_id: str, default_revision: str | None) -> ModelSource:
    """Where the weights came from, as `download.py` recorded it; settings otherwise."""
    marker = Path(directory) / MARKER_FILE
    if not marker.is_file():
        return ModelSource(default_id, default_revision, demo=False)
    data = json.loads(marker.read_text())
    return ModelSource(
        id=data.get("id") or default_id,
        revision=data.get("revision"),
        demo=bool(data.get("demo", False)),
    )
