"""The HTTP surface of screening: the health check Cloud Run probes, the question, metrics."""

from typing import Annotated

from fastapi import APIRouter, FastAPI, File, Form, Header, Response, UploadFile

from healer import metrics
from healer.api.deps import ApiKey, Service, asked_question, error_responses
from healer.api.sse import event_stream
from healer.screening.schemas import Health, Prediction, StreamedAnswer, StreamedText

router = APIRouter()


@router.get("/", response_model=Health, responses=error_responses(503), summary="Health check")
async def health(service: Service) -> Health:
    """200 once the model is loaded and warmed up, with the model it serves."""
    return service.health()


STREAM_DESCRIPTION = (
    "With `Accept: text/event-stream` (or the form field stream=true): server-sent events. `answer` "
    "(a StreamedAnswer) as soon as the screening answer is final, then `token` events (StreamedText) "
    "as the explanation is written, then `done` with the Prediction the unstreamed call returns; "
    "`error` (an ErrorBody) if anything fails once the stream is open. A full queue (503) or a bad "
    "image (400, 413, 415) is answered as JSON before any event."
)


@router.post(
    "/predict",
    response_model=Prediction,
    responses={**error_responses(400, 401, 413, 415, 422, 503, 504),
               200: {"description": "The answer as JSON, or streamed: " + STREAM_DESCRIPTION,
                     "content": {"text/event-stream": {"schema": {"type": "string"}}}}},
    summary="Ask the screening question about one H&E image",
    dependencies=[ApiKey],
)
async def predict(
    service: Service,
    image_file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, GIF, BMP or WebP")],
    question: Annotated[str | None, Form(description="Defaults to the colorectal-cancer question")] = None,
    explain: Annotated[bool, Form(description="false: answer and probability only (faster)")] = True,
    stream: Annotated[bool, Form(description="true: server-sent events, as with Accept: text/event-stream")] = False,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Prediction:
    """Yes / no / uncertain, P(yes) and a one-sentence explanation. A screening aid, not a diagnosis."""
    question = asked_question(question, service.settings.max_question_chars)
    data = await image_file.read()
    if stream or "text/event-stream" in (accept or ""):
        answer = await service.stream(data, question, explain)  # refusals leave here, as JSON
        return event_stream(answer.events(), on_close=answer.close, grace_s=service.settings.shutdown_grace_s)
    return await service.predict(data, question, explain)


def document_stream_events(app: FastAPI) -> None:
    """The streamed events' bodies in the OpenAPI schema's components, for clients (the page's
    generated types) to read: FastAPI lists only the models a route returns as JSON."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            components = build().setdefault("components", {}).setdefault("schemas", {})
            for model in (StreamedAnswer, StreamedText):
                components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        return app.openapi_schema

    app.openapi = openapi


@router.get("/metrics", include_in_schema=False, dependencies=[ApiKey])
async def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
