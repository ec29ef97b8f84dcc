"""The JSON of Healer's OpenAI-compatible face (POST /v1/chat/completions, GET /v1/models): the
subset of OpenAI's chat API a vision question needs, plus Healer's verdict as an extension."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from healer.screening.schemas import StreamedAnswer


class ChatRequest(BaseModel):
    """OpenAI's chat completion request. Fields Healer does not use (temperature, max_tokens…) are
    accepted and ignored: answers are always greedy and end after the first sentence, as /predict's."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(description="The id GET /v1/models lists")
    messages: list[dict[str, Any]] = Field(
        min_length=1, description="The last user message's text is the question; the last image in the "
        "conversation (an image_url part with a data: URL) is the image")
    stream: bool = False
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)


class ModelEntry(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelEntry]


class Verdict(StreamedAnswer):
    """Healer's screening verdict on the answer (the `healer` extension field): the same rule and
    values as /predict. A screening aid, not a diagnosis."""

    explanation: str | None = Field(None, description="The first sentence after the answer word; null until done")


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIError
