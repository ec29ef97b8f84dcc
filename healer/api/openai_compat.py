"""Healer's OpenAI-compatible face: POST /v1/chat/completions and GET /v1/models, so that OpenAI
clients (the openai SDK, LangChain, Open WebUI) can ask the screening question.

One image (an `image_url` part with a data: URL: Healer never fetches a URL) and the question as
text; streamed or not; `logprobs` / `top_logprobs` as OpenAI returns them. The message content is
the model's text; Healer's verdict (answer, P(yes), answer mass, threshold, triage, disclaimer) is
the `healer` extension field: in the completion, and in the streamed chunk that first carries it.
The same API key (X-API-Key, or OpenAI's `Authorization: Bearer`), queue limits and errors as
/predict, the errors in OpenAI's shape (healer.api.handlers).
"""

import base64
import binascii
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.background import BackgroundTask

from healer.api.deps import ApiKey, Service, asked_question
from healer.api.handlers import openai_error
from healer.api.openai_schemas import ChatRequest, ModelEntry, ModelList, OpenAIErrorBody, Verdict
from healer.api.sse import PING_S
from healer.errors import HealerError, TooLarge
from healer.logs import request_id
from healer.model.engine import TokenLogprob
from healer.screening.schemas import Prediction, StreamedAnswer

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
ERRORS = {status: {"model": OpenAIErrorBody} for status in (400, 401, 404, 413, 415, 422, 503, 504)}
DEFAULT_TOP = 0  # `logprobs: true` alone: each token's own logprob, no alternatives (as OpenAI)


class ModelNotFound(HealerError):
    status = 404
    code = "model_not_found"


class BadChatRequest(HealerError):
    status = 400
    code = "invalid_request"


@router.get("/models", response_model=ModelList, responses=ERRORS, dependencies=[ApiKey])
async def models(service: Service) -> ModelList:
    """The one model this service answers with."""
    return ModelList(data=[ModelEntry(id=service.model_card.id, created=0, owned_by="healer")])


@router.post("/chat/completions", dependencies=[ApiKey],
             summary="The screening question as an OpenAI chat completion (one image)",
             responses={**ERRORS, 200: {"description": "A chat.completion, or with stream=true chat.completion.chunk "
                                                       "server-sent events ending with [DONE]",
                                        "content": {"application/json": {"schema": {"type": "object"}},
                                                    "text/event-stream": {"schema": {"type": "string"}}}}})
async def chat_completions(body: ChatRequest, request: Request, service: Service):
    """A screening aid, not a diagnosis: read the `healer` field's answer, not only the text."""
    served = service.model_card.id
    if body.model != served:
        raise ModelNotFound(f"The model {body.model!r} is not served here; this service serves {served!r}.")
    image, question = _image_and_question(body.messages, service.settings.max_upload_bytes)
    question = asked_question(question, service.settings.max_question_chars)
    top = (body.top_logprobs if body.top_logprobs is not None else DEFAULT_TOP) if body.logprobs else None
    completion_id, created = f"chatcmpl-{request_id.get()}", int(time.time())
    if not body.stream:
        answered = await service.answer(image, question, top_logprobs=top)
        return {
            "id": completion_id, "object": "chat.completion", "created": created, "model": served,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answered.prediction.prediction},
                         "finish_reason": "stop", "logprobs": _logprobs(answered.logprobs)}],
            "usage": None,
            "healer": _verdict(answered.prediction).model_dump(),
        }
    stream = await service.stream(image, question, top_logprobs=top)  # refusals leave here, as JSON

    def chunk(delta: dict, finish: str | None = None, **extra) -> ServerSentEvent:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": extra.pop("logprobs", None)}
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": served,
                "choices": [choice], **extra}
        return ServerSentEvent(data=JSONResponse(body).body.decode())

    async def chunks() -> AsyncIterator[ServerSentEvent]:
        async for name, payload in stream.events():
            if name == "answer":
                yield chunk({"role": "assistant", "content": ""}, healer=Verdict(**payload.model_dump()).model_dump())
            elif name == "token":
                yield chunk({"content": payload.text})
            elif name == "done":
                yield chunk({}, "stop", logprobs=_logprobs(stream.logprobs), healer=_verdict(payload).model_dump())
            else:  # an error once the stream is open: OpenAI's clients raise it
                yield ServerSentEvent(data=openai_error(payload.status, payload.code, payload.message).body.decode())
                return
        yield ServerSentEvent(data="[DONE]")

    return EventSourceResponse(chunks(), ping=PING_S, background=BackgroundTask(stream.close),
                               headers={"X-Accel-Buffering": "no"})


def _verdict(prediction: Prediction) -> Verdict:
    return Verdict(**StreamedAnswer.of(prediction).model_dump(), explanation=prediction.explanation)


def _logprobs(logprobs: tuple[TokenLogprob, ...] | None) -> dict | None:
    if logprobs is None:
        return None

    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    return {"content": [{**entry(t.token, t.logprob), "top_logprobs": [entry(*alt) for alt in t.top]} for t in logprobs],
            "refusal": None}


def _image_and_question(messages: list[dict], max_bytes: int) -> tuple[bytes, str]:
    """The last image of the conversation and the last user message's text. OpenAI chat clients
    send the whole conversation each time; Healer answers one question about one image."""
    image_url, question = None, None
    for message in messages:
        content = message.get("content")
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content or []
        if not isinstance(parts, list):
            raise BadChatRequest("Each message's content must be a string or a list of content parts.")
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = part.get("image_url")
                image_url = url.get("url") if isinstance(url, dict) else url
        if message.get("role") == "user":
            texts = [p.get("text", "") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
            question = " ".join(t for t in texts if isinstance(t, str)).strip()
    if not image_url:
        raise BadChatRequest("The request has no image: send one as an image_url part with a data: URL.")
    return _data_url_bytes(image_url, max_bytes), question or ""


def _data_url_bytes(url: str, max_bytes: int) -> bytes:
    if not isinstance(url, str) or not url.startswith("data:"):
        raise BadChatRequest("Only data: URLs are accepted as images (data:image/png;base64,...): "
                       "Healer never fetches a URL.")
    header, _, encoded = url.partition(",")
    if ";base64" not in header:
        raise BadChatRequest("The image's data: URL must be base64-encoded.")
    if len(encoded) * 3 // 4 > max_bytes:
        raise TooLarge("The image is larger than this service accepts (see MAX_UPLOAD_MB).")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadChatRequest("The image's data: URL is not valid base64.") from None
