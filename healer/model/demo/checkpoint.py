"""Saving a demo model in the checkpoint layout google/medgemma-4b-it ships, so that every engine
reads it as it reads MedGemma: transformers (whose loader maps the Hub's names), vLLM and
llama.cpp's converter (which know only the Hub's names).

transformers 5.25 saves the language model and the projector under the Hub's names
(`language_model.model.…`, `language_model.lm_head.…`, `multi_modal_projector.…`) but the vision
tower without its `vision_model` level (`vision_tower.embeddings.…`), which vLLM's loader refuses.
"""

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

INDEX = "model.safetensors.index.json"
HUB_PREFIXES = ("vision_tower.vision_model.", "multi_modal_projector.", "language_model.model.",
                "language_model.lm_head.")


def hub_name(name: str) -> str:
    """The Hub's name for a tensor as transformers saved it."""
    if name.startswith("vision_tower.") and not name.startswith(HUB_PREFIXES[0]):
        name = HUB_PREFIXES[0] + name[len("vision_tower."):]
    if not name.startswith(HUB_PREFIXES):
        raise ValueError(f"no Hub name for tensor {name!r}")
    return name


def save_in_hub_layout(model, directory: Path) -> None:
    """save_pretrained (shards of at most 5 GB, as MedGemma's), then each shard's tensors renamed."""
    directory = Path(directory)
    model.save_pretrained(directory, max_shard_size="5GB")
    shards = sorted(directory.glob("model*.safetensors"))
    for shard in shards:
        with safe_open(shard, framework="pt") as reader:
            tensors = {hub_name(name): reader.get_tensor(name) for name in reader.keys()}
            metadata = reader.metadata()
        save_file(tensors, shard, metadata=metadata)
        del tensors
    index = directory / INDEX
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"] = {hub_name(name): shard for name, shard in data["weight_map"].items()}
        index.write_text(json.dumps(data, indent=2) + "\n")
