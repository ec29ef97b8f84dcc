"""The interface between the HTTP layer and the model.

An engine is loaded once, then answers batches of (image, question) queries with the model's
raw output: the generated text, and P(yes) and the answer mass read at the answer step (the token
where the model says yes or no; see `healer.text.answer_step`). Turning that into
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
from healer.text.answer_step import Label


class Listener:
    """Hears one query's answer as it forms (a streamed answer). The engine calls it from its own
    thread, in order: `answered` once, at the answer step (never, when there is none), with the
    Generation as it stands there (no text yet); `wrote` each time the text grows, with all of it.
    Its owner sets `cancelled` when nobody waits any more: the engine then drops the row, and a
    batch of rows that are all dropped stops."""

    cancelled = False

    def answered(self, reading: "Generation") -> None:
        pass

    def wrote(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class Query:
    image: Image.Image  # RGB, any size: the processor resizes it
    question: str
    explain: bool = True  # False: answer and probability only, no text generated
    listener: Listener | None = field(default=None, compare=False)  # a streamed answer's, if any
    # Each generated token's log-probability and this many most likely alternatives (OpenAI's
    # `top_logprobs`, at most TOP_LOGPROBS); None: no logprobs.
    top_logprobs: int | None = None


TOP_LOGPROBS = 20  # OpenAI's own cap, and what ENGINE=vllm reads by default


@dataclass(frozen=True)
class TokenLogprob:
    token: str  # the token's text (a leading space where the piece has one)
    logprob: float
    top: tuple[tuple[str, float], ...] = ()  # the step's most likely tokens, best first


@dataclass(frozen=True)
class Generation:
    text: str  # the new tokens only, special tokens removed
    # P(yes) / (P(yes) + P(no)) over every yes and no variant at the answer step (at the first
    # step when there is none): sigmoid of the log-odds, in float64 so that confident answers
    # stay distinct up to a log-odds gap of ~36 instead of ~16.7 in float32.
    p_yes: float
    answer_label: Label | None  # the answer step's token; None when no answer step was found
    # P(any yes variant) + P(any no variant) at the answer step under the full softmax: how much
    # the model wanted to answer at all. 0.0 when no answer step came within ANSWER_WITHIN tokens.
    answer_mass: float
    answer_step: int | None  # 0-based index of the answer step among the generated tokens
    timings_ms: dict[str, float] = field(default_factory=dict)
    # The probability the engine did not show at the step P(yes) was read: 0.0 under the full
    # softmax (transformers); 1 - the top-k listed for an engine that returns only the top-k
    # logprobs (healer.model.openai_engine). The yes/no figures are exact up to this much.
    unseen_mass: float = 0.0
    logprobs: tuple[TokenLogprob, ...] | None = None  # asked for by Query.top_logprobs


@dataclass(frozen=True)
class Compute:
    """What computes an answer: the processor, its class and the kernel each phase runs
    (healer.model.cpu_kernels on the CPU)."""

    processor: str  # the CPU's or GPU's model name
    cpu_class: str | None  # healer.model.cpu_class's class on the CPU; None on a GPU
    kernels: dict[str, str]  # phase (vision, prefill, decode) → the kernel that computes it
    capped_by: tuple[str, ...] = ()  # the environment caps that lowered the CPU's class


@dataclass(frozen=True)
class ModelInfo:
    id: str
    revision: str | None
    device: str
    quantization: str
    demo: bool
    adapter: AdapterInfo | None = None  # the fine-tuned adapter merged in (ADAPTER_DIR), if any
    compute: Compute | None = None  # None: an engine that computes nothing (the fake)
    engine: str = "transformers"  # ENGINE: "transformers" in this process, "vllm" an OpenAI-compatible server


class Engine(ABC):
    """Load in `load()` (a classmethod of each engine), warm up once, then answer batches."""

    info: ModelInfo
    parameters: int | None = None  # the model's size, when known: what its warm-up is expected to cost

    @abstractmethod
    def generate(self, queries: Sequence[Query]) -> list[Generation]:
        """One Generation per query, in order. Blocking: call it from a worker thread."""

    def warmup(self) -> None:
        """Run once before serving, so the first request does not pay for lazy initialisation."""
