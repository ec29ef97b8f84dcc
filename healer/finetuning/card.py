"""The adapter's card, `healer-adapter.json`: what it was trained on, how, and how well it did.

The service reads two things from it (healer.model.adapter): the base model it fits, and the
threshold chosen on validation, its default THRESHOLD.
"""

import json
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from healer.finetuning.data import Split, class_counts
from healer.finetuning.train import History, TrainConfig
from healer.model.adapter import CARD_FILE
from healer.model.engine import ModelInfo


def build_card(info: ModelInfo, folder, split: Split, question: str, config: TrainConfig,
               history: History, validation: dict) -> dict:
    return {
        "base": {"id": info.id, "revision": info.revision, "demo": info.demo},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": {
            "folder": str(folder.root),
            "positive": folder.positive,
            "negative": folder.negative,
            "skipped_classes": folder.skipped,
            "train": class_counts(split.train),
            "validation": class_counts(split.validation),
            "split": split.how,
        },
        "question": question,
        "settings": {**asdict(config), "device": info.device},
        "training": asdict(history),
        "validation": validation,
    }


def write_card(directory: Path, card: dict) -> Path:
    path = Path(directory) / CARD_FILE
    path.write_text(json.dumps(card, indent=2) + "\n")
    return path
