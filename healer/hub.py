"""Fetching MedGemma from the Hugging Face Hub into a model directory (used by download.py)."""

import json
import logging
from pathlib import Path

from huggingface_hub import snapshot_download

from healer.model_dir import MARKER_FILE, check_model_dir

log = logging.getLogger(__name__)

# Only what the service loads: config, weights, tokenizer, processor, chat template.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.jinja"]


def download_model(model_id: str, revision: str | None, directory: Path, token: str | None) -> Path:
    path = snapshot_download(
        repo_id=model_id, revision=revision, local_dir=directory, token=token,
        allow_patterns=ALLOW_PATTERNS,
    )
    check_model_dir(Path(path))
    marker = {"id": model_id, "revision": revision, "demo": False}
    (Path(path) / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return Path(path)
