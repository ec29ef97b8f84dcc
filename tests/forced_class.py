"""A child process for tests/test_forced_classes.py: run under the caps that force a CPU class
(healer.model.cpu_class.forcing_environment), it loads the demo model in each QUANTIZATION,
answers three real tissue images and prints what ran and what it answered as one JSON line.

    python tests/forced_class.py MODEL_DIR
"""

import json
import sys

from PIL import Image

from healer.model.engine import Query
from healer.model.medgemma import MedGemmaEngine
from healer.text.prompts import DEFAULT_QUESTION
from healer.settings import Settings
from healer.tools.packaged_data import package_file

IMAGES = [("tiatoolbox", "data", "target_image.png"), ("skimage", "data", "ihc.png"),
          ("tiatoolbox", "data", "target_image.png")]


def main(model_dir: str) -> None:
    images = [Image.open(package_file(*parts)).convert("RGB") for parts in IMAGES]
    images[2] = images[2].rotate(90).crop((0, 0, 512, 512))
    queries = [Query(image, DEFAULT_QUESTION, explain=i == 0) for i, image in enumerate(images)]
    report = {}
    for quantization in ("int8", "none"):
        engine = MedGemmaEngine.load(Settings(model_dir=model_dir, quantization=quantization, device="cpu"))
        compute = engine.info.compute
        generations = engine.generate(queries)
        report[quantization] = {
            "cpu_class": compute.cpu_class,
            "capped_by": list(compute.capped_by),
            "kernels": compute.kernels,
            "modules": sorted({type(module).__name__ for module in engine.model.modules()}),
            "answers": [[g.p_yes, g.answer_mass, g.answer_step, g.answer_label] for g in generations],
        }
    print("FORCED-CLASS " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
