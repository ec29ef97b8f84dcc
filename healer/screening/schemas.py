"""The JSON a screening answer and the health check are made of, as the OpenAPI schema shows it."""

from dataclasses import asdict
from typing import Literal

from pydantic import BaseModel, Field

from healer.screening.triage import Band


class AdapterCard(BaseModel):
    name: str = Field(description="The adapter folder's name (ADAPTER_DIR)", examples=["lab-crc-2025"])
    sha256: str = Field(description="First 12 hex digits of the adapter weights' SHA-256")
    base_revision: str | None = Field(description="Revision of the base model it was trained on, when known")


class ComputeCard(BaseModel):
    processor: str = Field(description="The CPU's (or GPU's) model name", examples=["AMD EPYC 7B13"])
    cpu_class: Literal["baseline", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"] | None = Field(
        description="What the CPU's kernels may use, from its flags and any cap in the environment "
        "(ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY); null on a GPU"
    )
    capped_by: list[str] = Field(description="The environment caps that lowered the class, as VARIABLE=value")
    kernels: dict[str, str] = Field(
        description="The kernel each phase computes with: vision (the vision tower), prefill (the "
        "language model over the prompt), decode (each generated token)",
        examples=[{"vision": "fp32 from bf16 weights, attention fp32", "prefill": "int8 weights widened "
                   "to fp32; attention fp32", "decode": "int8 weight-only (torch._weight_int8pack_mm)"}],
    )


class ModelCard(BaseModel):
    id: str = Field(examples=["google/medgemma-4b-it"])
    revision: str | None = Field(description="Hugging Face commit of the weights, when known")
    device: Literal["cpu", "cuda", "remote"] = Field(description="remote: the engine at ENGINE_URL computes")
    quantization: Literal["int8", "none", "engine's own"] = Field(
        description="QUANTIZATION in this process; engine's own: whatever the engine at ENGINE_URL was started with"
    )
    demo: bool = Field(description="True when a random-weight demo model answers: meaningless output")
    adapter: AdapterCard | None = Field(
        None, description="The fine-tuned adapter merged into the weights (ADAPTER_DIR); null: the base model"
    )
    compute: ComputeCard | None = Field(None, description="What computes the answers; null for a stand-in engine")
    engine: Literal["transformers", "vllm"] = Field(
        "transformers", description="ENGINE: transformers in this process, or vllm: an OpenAI-compatible server "
        "(vLLM, llama-server, Vertex AI) at ENGINE_URL, named in compute.processor"
    )

    @classmethod
    def of(cls, info) -> "ModelCard":
        """The card of an engine's `ModelInfo`."""
        fields = asdict(info)
        if info.adapter is not None:
            fields["adapter"] = AdapterCard(**fields["adapter"])
        if info.compute is not None:
            fields["compute"] = ComputeCard(**fields["compute"])
        return cls(**fields)


class TriageBands(BaseModel):
    """The triage thresholds in force (TRIAGE_RULE_OUT, TRIAGE_RULE_IN or TRIAGE_FILE)."""

    rule_out: float = Field(description="P(yes) below this: rule-out (negative, low priority)")
    rule_in: float = Field(description="P(yes) above this: rule-in (suspicious, review first); between, "
                           "both included: refer")

    @classmethod
    def of(cls, triage) -> "TriageBands | None":
        return None if triage is None else cls(rule_out=triage.rule_out, rule_in=triage.rule_in)


BAND_DESCRIPTION = ("rule-out: P(yes) below TRIAGE_RULE_OUT (negative, low priority); rule-in: above "
                    "TRIAGE_RULE_IN (suspicious, review first); refer: between or at them, or not answered. "
                    "null when the service has no triage thresholds")


class SlideService(BaseModel):
    upload: Literal["bucket", "form"] = Field(
        description="bucket: send slides straight to Cloud Storage (POST /slides/uploads, then POST "
        "/slides with the upload id); form: a multipart POST /slides"
    )
    max_slide_mb: float


class Health(BaseModel):
    status: Literal["ok"]
    model: ModelCard
    slides: SlideService
    triage: TriageBands | None = Field(None, description="The triage thresholds; null: not configured")
    disclaimer: str


class Prediction(BaseModel):
    answer: Literal["yes", "no", "uncertain"] = Field(
        description="yes/no when the text and the probability agree and the model put at least "
        "min_answer_mass of its probability on answering; uncertain otherwise (refer for review)"
    )
    probability: float = Field(
        ge=0, le=1, description="P(yes), normalised over yes and no, where the model says yes or no "
        "(the answer step; the first generated token when it never does)"
    )
    answer_mass: float = Field(
        ge=0, le=1, description="P(yes) + P(no) at the answer step: the share of the model's "
        "probability on answering yes or no at all. 0 when no yes/no came within its first 8 tokens"
    )
    min_answer_mass: float = Field(description="The answer mass a yes or no needs (MIN_ANSWER_MASS)")
    unseen_mass: float = Field(
        0.0, ge=0, le=1, description="The probability the engine did not show at the step P(yes) was read: 0 "
        "under the full softmax (ENGINE=transformers); with ENGINE=vllm, 1 minus the top-k logprobs listed "
        "(ENGINE_TOP_LOGPROBS). probability and answer_mass are exact up to this much"
    )
    explanation: str = Field(description="One sentence; empty in answer-only mode")
    prediction: str = Field(description="The model's text as one string, as the first API returned it")
    question: str
    threshold: float = Field(description="P(yes) a yes needs (THRESHOLD); a no needs P(yes) at most this")
    triage: Band | None = Field(None, description=BAND_DESCRIPTION)
    model: ModelCard
    timings_ms: dict[str, float]
    cached: bool = Field(False, description="Answered from memory: same image bytes, question and mode")
    disclaimer: str


class StreamedAnswer(BaseModel):
    """A streamed /predict's `answer` event: the screening answer, final when it is sent (the
    `done` event's Prediction carries the same values)."""

    answer: Literal["yes", "no", "uncertain"]
    probability: float = Field(ge=0, le=1)
    answer_mass: float = Field(ge=0, le=1)
    min_answer_mass: float
    unseen_mass: float = Field(0.0, ge=0, le=1)
    threshold: float
    triage: Band | None = Field(None, description=BAND_DESCRIPTION)
    question: str
    disclaimer: str

    @classmethod
    def of(cls, prediction: Prediction) -> "StreamedAnswer":
        return cls(**prediction.model_dump(include=set(cls.model_fields)))


class StreamedText(BaseModel):
    """A streamed /predict's `token` event: what the model's text gained since the last one."""

    text: str = Field(description="The new text (one token or a few); the done event's explanation is the "
                      "first sentence after the answer word, as in the non-streamed answer")
