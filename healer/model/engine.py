"""The interface between the HTTP layer and the model.

An engine is loaded once, then answers batches of (image, question) queries with the model's
raw output: the generated text and P(yes) from the first generated token. Turning that into
yes / no / uncertain is `healer.screening.answers`' job, so every engine is judged by the same rule.

    Engine                      (this module: the interface and its value types)
    ├── MedGemmaEngine          (healer.model.medgemma: transformers, MedGemma or the demo model)
    └── FakeEngine              (healer.model.fake: canned answers for HTTP-contract tests)
"""

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from PIL import Image

from healer.model.adapter import AdapterInfo
from healer.screening.answers import Label


@dataclass(frozen=True)
class Query:
    image: Image.Image  # RGB, any size: the processor resizes it
    question: str
    explain: bool = True  # False: answer and probability only, no text generated


@dataclass(frozen=True)
class Generation:
    text: str  # the new tokens only, special tokens removed
    p_yes: float  # P(yes) / (P(yes) + P(no)) over the first token's yes and no variants
    first_token_label: Label | None  # the first generated token, when it is a yes or no variant
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    id: str
    revision: str | None
    device: str
    quantization: str
    demo: bool
    adapter: AdapterInfo | None = None  # the fine-tuned adapter merged in (ADAPTER_DIR), if any


class Engine(ABC):
    """Load in `load()` (a classmethod of each engine), warm up once, then answer batches."""

    info: ModelInfo

    @abstractmethod
    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        """One Generation per query, in order. Blocking: call it from a worker thread."""

    def warmup(self) -> None:
        """Run once before serving, so the first request does not pay for lazy initialisation."""
